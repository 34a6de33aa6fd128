"""Large problems (issue 12.5): wall time, horizon reached and peak memory on real-sized data.

``python benchmarks/bench_large.py [--budget SECONDS] [--quick] [--only TEXT]`` runs each case
in its own subprocess (so ``ru_maxrss`` is that case's peak) and writes
``benchmarks/results/large.json``:

* ``digits-l2sam``: scikit-learn's bundled 8x8 digits, classes 0 vs 1 (n = 360, d = 64, pixels
  / 16), L = 2, l2-SAM (rho = 0.3), start ``u = 1, v = 0.5`` (every sign of ``beta`` reachable:
  :func:`unbalanced_init`), to ``t = 1e100``; ``digits-gd`` the same with GD (same run: the
  ratio says what l2-SAM's perturbation costs); ``digits-*-loose`` with ``rtol = 1e-6,
  atol = 1e-9`` (absolute: coordinates below 1e-9 are not tracked relatively);
* ``digits-*-orthant-loose``: the balanced start ``u = v = 1`` of the first version of this
  benchmark, where ``beta >= 0`` for ever and the class of ``y = -1`` is never separated (the
  loss tends to a positive constant, ``grad L -> 0``, and l2-SAM's ``grad L / |grad L|`` turns
  ill-conditioned: README, "large");
* ``digits-l2sam-blas-threads``: ``digits-l2sam`` with every product on all of BLAS's threads
  (the "before" of the one-thread policy of ``symbolic/large.py``, in the same run);
* ``mnist-synthetic``: an MNIST-sized two-class problem generated here (n = 10^4, d = 784 =
  28 x 28 "pixels" in [0, 1]: two smooth random prototypes, sparse noise, clipped), L = 2,
  l2-SAM (rho = 0.3, ``u = 0.5, v = 0.25``), horizon ``t = 1e100`` cut off after the budget
  (default 60 s): the longest horizon reached in that time; ``mnist-synthetic-loose`` with the
  loose tolerances.  Digits cases that should reach 1e100 get a budget of max(budget, 120 s).

Per case: wall seconds of the run (untraced; problem construction -- data and the separability
check -- and the one-time SymPy derivation of the kernels timed apart), status, ``log10 t``
reached, steps / evaluations / Jacobians, the process's ``ru_maxrss`` and tracemalloc's peak of
Python allocations (numpy's arrays included) over a second, traced run of at most a quarter of
the budget (15 s); the data's own size (``n d`` float64) for scale; the smallest margin of the
final ``beta`` (``> 0``: separated); the 1-minute load average before and after.  Digits runs
that reach the horizon are repeated with ``rtol`` (and a given ``atol``) divided by 10: the
largest change of the final direction ``beta / |beta|`` must stay within
``DIRECTION_TOL_PER_RTOL * rtol``.  A wall-clock budget ends a run through a terminal user event
(status ``"event: ..."``); ``log10 t`` is then where it stopped.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "large.json"
# |direction(rtol) - direction(rtol / 10)|_max allowed, per unit of rtol: the global error of a
# run to t = 1e100 is a few hundred local errors (steps), amplified along the way
DIRECTION_TOL_PER_RTOL = 100.0


def digits_data():
    from sklearn.datasets import load_digits

    X, labels = load_digits(return_X_y=True)
    keep = labels <= 1
    return X[keep] / 16.0, np.where(labels[keep] == 1, 1.0, -1.0)


def unbalanced_init(d: int, u: float, v: float):
    """``u`` in layer 1, ``v`` in layer 2 (``|u| > |v|``).  At L = 2 ``u_j^2 - v_j^2`` is
    conserved by GD (and nearly so by SAM), so ``u_j`` never reaches 0 while ``v_j`` can change
    sign: every sign of ``beta_j = u_j v_j`` is reachable.  With ``u = v`` (balanced) the sign
    of ``beta_j`` is fixed for ever (``u_j = v_j`` by symmetry, ``beta >= 0``), and on data with
    ``x >= 0`` (pixels) every example of the class ``y = -1`` keeps a margin ``<= 0``: the data
    are separable, but not by any reachable ``beta`` (the ``orthant`` cases)."""
    from sambias import Init

    return Init(layers=[[u] * d, [v] * d])


def digits_problem(algorithm: str, orthant: bool = False):
    """Digits 0 vs 1, L = 2; ``orthant=True`` is the balanced start ``u = v = 1`` (beta >= 0
    for ever: not separable from there, the loss tends to a positive constant)."""
    from sambias import Init, Problem

    X, y = digits_data()
    init = Init(scale=1.0) if orthant else unbalanced_init(X.shape[1], 1.0, 0.5)
    return Problem(depth=2, algorithm=algorithm, rho=0.3 if algorithm != "gd" else 0.0, X=X, y=y,
                   init=init, name=f"digits-0v1-{algorithm}" + ("-orthant" if orthant else ""))


def mnist_like(n: int = 10_000, side: int = 28, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two smooth random 28x28 prototypes; each example is its class's prototype times a
    random contrast, plus sparse speckle, clipped to [0, 1] (like MNIST's pixel values)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / (side - 1)
    protos = []
    for _ in range(2):
        img = np.zeros((side, side))
        for _ in range(6):                   # a few Gaussian strokes
            cy, cx, s = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.15)
            img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        img = img / img.max()
        protos.append(np.where(img > 0.2, img, 0.0).ravel())   # a blank background, as in MNIST
    y = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    base = np.where(y[:, None] > 0, protos[0][None, :], protos[1][None, :])
    X = base * rng.uniform(0.6, 1.0, size=(n, 1))
    speckle = (rng.random((n, side * side)) < 0.03) * rng.random((n, side * side))
    return np.clip(X + speckle, 0.0, 1.0), y


def mnist_problem():
    from sambias import Problem

    X, y = mnist_like()
    return Problem(depth=2, algorithm="l2-sam", rho=0.3, X=X, y=y, init=unbalanced_init(X.shape[1], 0.5, 0.25),
                   name="mnist-synthetic")


LOOSE = {"rtol": 1e-6, "atol": 1e-9}
CASES = {
    "digits-l2sam": (lambda: digits_problem("l2-sam"), {}),
    "digits-gd": (lambda: digits_problem("gd"), {}),
    "digits-l2sam-loose": (lambda: digits_problem("l2-sam"), LOOSE),
    "digits-gd-loose": (lambda: digits_problem("gd"), LOOSE),
    # the previous session's start (u = v = 1): beta >= 0 for ever, class 0 (x >= 0, y = -1)
    # never separated; kept to show what l2-SAM does where the loss does not vanish
    "digits-l2sam-orthant-loose": (lambda: digits_problem("l2-sam", orthant=True), LOOSE),
    "digits-gd-orthant-loose": (lambda: digits_problem("gd", orthant=True), LOOSE),
    # before/after of the single-thread GEMM in the same run (the Jacobian's d x d data term)
    "digits-l2sam-blas-threads": (lambda: digits_problem("l2-sam"), {}),
    "mnist-synthetic": (mnist_problem, {}),
    "mnist-synthetic-loose": (mnist_problem, LOOSE),
    "mnist-synthetic-loose-blas-threads": (mnist_problem, LOOSE),
}


def run_case(name: str, budget: float) -> dict:
    """One case in this process: construction, then ``simulate`` to 1e100 or the budget."""
    from sambias.flows import simulate

    from sambias import Init, Problem

    make, options = CASES[name]
    if name.endswith("-blas-threads"):
        # the "before" of issue 12.5's BLAS fix: every product on all of BLAS's threads
        import sambias.symbolic.large as large
        large.SINGLE_THREAD_FLOPS = 0
        os.environ["SAMBIAS_BLAS_THREADS"] = "all"
    w0 = time.perf_counter()
    problem = make()
    build = time.perf_counter() - w0
    # the kernels are derived (SymPy) once per (depth, algorithm, loss) and process, whatever
    # the data: timed apart, on a one-example problem of the same shape of flow
    w0 = time.perf_counter()
    simulate(Problem(depth=problem.depth, algorithm=problem.algorithm, rho=problem.rho, loss=problem.loss,
                     X=[[1.0, 0.5]], y=[1], init=Init(scale=1.0)), "1e-3")
    derive = time.perf_counter() - w0

    def budget_event(seconds: float):
        deadline = time.monotonic() + seconds
        latch: list[float] = []

        def budget_left(tau, w):
            # a function of the state, not of the clock on the wall: the first step end seen past
            # the deadline becomes the root (a wall-clock event has no root inside a step, and
            # the solver's root search would end on a zero-length step)
            if not latch and time.monotonic() > deadline:
                latch.append(tau)
            return 1.0 if not latch else latch[0] - tau

        budget_left.terminal = True
        return budget_left

    load0 = os.getloadavg()[0]
    # timed without tracemalloc (tracing every allocation made the digits runs 2-3x slower);
    # ru_maxrss is the process's peak either way
    w0 = time.perf_counter()
    tr = simulate(problem, "1e100", events=[budget_event(budget)], **options)
    wall = time.perf_counter() - w0
    # Python's own allocation peak (numpy arrays included) on a shorter traced run
    tracemalloc.start()
    simulate(problem, "1e100", events=[budget_event(min(budget / 4, 15.0))], **options)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    beta = np.prod(tr.weights[-1], axis=0)
    margin = float(np.min(problem.signed_data @ beta))
    row = {"case": name, "n": problem.n, "d": problem.dim, "L": problem.depth, "algorithm": problem.algorithm,
           "options": options, "budget_s": budget, "build_s": round(build, 2), "derive_s": round(derive, 2),
           "wall_s": round(wall, 2), "status": tr.status[:120], "log10_t_reached": round(float(tr.log10_t_final), 3),
           "steps": tr.stats["steps"], "nfev": tr.stats["nfev"], "njev": tr.stats.get("njev", 0),
           "tracemalloc_peak_mb": round(peak / 2**20, 1),
           "tracemalloc_run_s": min(budget / 4, 15.0),
           "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           "data_mb": round(problem.n * problem.dim * 8 / 2**20, 1),
           # > 0: the final beta separates the data (the loss -> 0); <= 0: it does not
           "min_margin_final": round(margin, 4),
           "load_avg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)]}
    if tr.status == "ok" and name.startswith("digits"):
        # honesty: the reported limit direction must not move when rtol is tightened tenfold
        tight = {"rtol": options.get("rtol", 1e-9) / 10}
        if "atol" in options:
            tight["atol"] = options["atol"] / 10
        w0 = time.perf_counter()
        tr2 = simulate(problem, "1e100", **tight)
        d1, d2 = tr.direction_final, tr2.direction_final
        change = float(np.max(np.abs(d1 - d2))) if d1 is not None and d2 is not None else float("nan")
        tol = DIRECTION_TOL_PER_RTOL * options.get("rtol", 1e-9)
        row.update({"rtol10_wall_s": round(time.perf_counter() - w0, 2), "rtol10_status": tr2.status[:60],
                    "rtol10_direction_change": change, "rtol10_direction_tol": tol,
                    "rtol10_direction_stable": bool(change <= tol)})
    return row


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--case":        # the child process
        print(json.dumps(run_case(argv[1], float(argv[2]))))
        return 0
    budget = float(argv[argv.index("--budget") + 1]) if "--budget" in argv else 60.0
    names = list(CASES) if "--quick" not in argv else ["digits-gd", "mnist-synthetic-loose"]
    only = [argv[i + 1] for i, a in enumerate(argv) if a == "--only"]
    if only:                                  # --only TEXT (repeatable): cases whose name contains TEXT
        names = [n for n in names if any(o in n for o in only)]
    out = {"budget_s": budget, "cases": []}
    for name in names:
        # digits to 1e100 has its own (larger) budget: the point is the time it takes (the
        # orthant cases never get there: they show how far they crawl in the common budget)
        b = budget if name.startswith("mnist") or "orthant" in name else max(budget, 120.0)
        proc = subprocess.run([sys.executable, __file__, "--case", name, str(b)], capture_output=True, text=True,
                              cwd=ROOT)
        if proc.returncode != 0:
            row = {"case": name, "error": proc.stderr.strip().splitlines()[-1:]}
        else:
            row = json.loads(proc.stdout.strip().splitlines()[-1])
        out["cases"].append(row)
        print(json.dumps(row), flush=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
