"""Large problems (issue 12.5): wall time, horizon reached and peak memory on real-sized data.

``python benchmarks/bench_large.py [--budget SECONDS] [--quick]`` runs each case in its own
subprocess (so ``ru_maxrss`` is that case's peak) and writes ``benchmarks/results/large.json``:

* ``digits-l2sam``: scikit-learn's bundled 8x8 digits, classes 0 vs 1 (n = 360, d = 64, pixels
  / 16), L = 2, l2-SAM (rho = 0.3, u = v = 1), to ``t = 1e100``; ``digits-gd`` the same with GD
  (same run: the ratio says what l2-SAM's perturbation costs); ``digits-*-loose`` with
  ``rtol = 1e-6, atol = 1e-9`` (absolute: coordinates below 1e-9 are not tracked relatively);
* ``mnist-synthetic``: an MNIST-sized two-class problem generated here (n = 10^4, d = 784 =
  28 x 28 "pixels" in [0, 1]: two smooth random prototypes, sparse noise, clipped), L = 2,
  l2-SAM (rho = 0.3, u = v = 0.5), horizon ``t = 1e100`` cut off after the budget (default
  60 s): the longest horizon reached in that time; ``mnist-synthetic-loose`` with the loose
  tolerances.  Digits cases get a budget of max(budget, 120 s).

Per case: wall seconds (problem construction -- data and the separability check -- and the
one-time SymPy derivation of the kernels timed apart),
status, ``log10 t`` reached, steps / evaluations / Jacobians, tracemalloc's peak of Python
allocations (numpy's arrays included) and the process's ``ru_maxrss``; the data's own size
(``n d`` float64) for scale.  A wall-clock budget ends a run through a terminal user event
(status ``"event: ..."``); ``log10 t`` is then where it stopped.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "large.json"


def digits_problem(algorithm: str):
    from sklearn.datasets import load_digits

    from sambias import Init, Problem

    X, labels = load_digits(return_X_y=True)
    keep = labels <= 1
    X, y = X[keep] / 16.0, np.where(labels[keep] == 1, 1.0, -1.0)
    return Problem(depth=2, algorithm=algorithm, rho=0.3 if algorithm != "gd" else 0.0, X=X, y=y,
                   init=Init(scale=1.0), name=f"digits-0v1-{algorithm}")


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
    from sambias import Init, Problem

    X, y = mnist_like()
    return Problem(depth=2, algorithm="l2-sam", rho=0.3, X=X, y=y, init=Init(scale=0.5), name="mnist-synthetic")


CASES = {
    "digits-l2sam": (lambda: digits_problem("l2-sam"), {}),
    "digits-gd": (lambda: digits_problem("gd"), {}),
    "digits-l2sam-loose": (lambda: digits_problem("l2-sam"), {"rtol": 1e-6, "atol": 1e-9}),
    "digits-gd-loose": (lambda: digits_problem("gd"), {"rtol": 1e-6, "atol": 1e-9}),
    "mnist-synthetic": (mnist_problem, {}),
    "mnist-synthetic-loose": (mnist_problem, {"rtol": 1e-6, "atol": 1e-9}),
}


def run_case(name: str, budget: float) -> dict:
    """One case in this process: construction, then ``simulate`` to 1e100 or the budget."""
    from sambias.flows import simulate

    from sambias import Init, Problem

    make, options = CASES[name]
    tracemalloc.start()
    w0 = time.perf_counter()
    problem = make()
    build = time.perf_counter() - w0
    # the kernels are derived (SymPy) once per (depth, algorithm, loss) and process, whatever
    # the data: timed apart, on a one-example problem of the same shape of flow
    w0 = time.perf_counter()
    simulate(Problem(depth=problem.depth, algorithm=problem.algorithm, rho=problem.rho, loss=problem.loss,
                     X=[[1.0, 0.5]], y=[1], init=Init(scale=1.0)), "1e-3")
    derive = time.perf_counter() - w0
    deadline = time.monotonic() + budget
    latch: list[float] = []

    def budget_left(tau, w):
        # a function of the state, not of the clock on the wall: the first step end seen past
        # the deadline becomes the root (a wall-clock event has no root inside a step, and the
        # solver's root search would end on a zero-length step)
        if not latch and time.monotonic() > deadline:
            latch.append(tau)
        return 1.0 if not latch else latch[0] - tau

    budget_left.terminal = True
    w0 = time.perf_counter()
    tr = simulate(problem, "1e100", events=[budget_left], **options)
    wall = time.perf_counter() - w0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"case": name, "n": problem.n, "d": problem.dim, "L": problem.depth, "algorithm": problem.algorithm,
            "options": options, "budget_s": budget, "build_s": round(build, 2), "derive_s": round(derive, 2), "wall_s": round(wall, 2),
            "status": tr.status[:120], "log10_t_reached": round(float(tr.log10_t_final), 3),
            "steps": tr.stats["steps"], "nfev": tr.stats["nfev"], "njev": tr.stats.get("njev", 0),
            "tracemalloc_peak_mb": round(peak / 2**20, 1),
            "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "data_mb": round(problem.n * problem.dim * 8 / 2**20, 1)}


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--case":        # the child process
        print(json.dumps(run_case(argv[1], float(argv[2]))))
        return 0
    budget = float(argv[argv.index("--budget") + 1]) if "--budget" in argv else 60.0
    names = list(CASES) if "--quick" not in argv else ["digits-gd", "mnist-synthetic-loose"]
    out = {"budget_s": budget, "cases": []}
    for name in names:
        # digits to 1e100 has its own (larger) budget: the point is the time it takes
        b = budget if name.startswith("mnist") else max(budget, 120.0)
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
