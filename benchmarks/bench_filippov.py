"""Cost of linf-SAM's Filippov switching and sliding, this tree against another (issue 9).

Run ``python benchmarks/bench_filippov.py --base /tmp/headtree`` with ``/tmp/headtree`` a
checkout of the revision to compare with (``git worktree add /tmp/headtree HEAD``).  Every
case runs in a fresh child process, alternately on the base tree and on this one (the
installed editable package's module map is pointed at the tree, and the child prints which
``sambias.flows`` file it imported), ``REPEATS`` times each; the best wall times and their
ratio (this / base) are printed and written to ``benchmarks/results/filippov.json``.  Both
trees run in the same window on the same load, so the ratio is what the change costs.

Cases (linf-SAM only: the Filippov model is all that issue 9 moved), each in float64 and
in ``mp:30``: THEORY.md's example (L = 2, x = (3, 2, 1, 0.5), rho = 0.5) at alpha = 0.2
(every coordinate driven to 0 and held: pins and corners) and 1.0 (switching only); the
"mixed" example (corners, a frozen clock); an L = 3 column reaching a pinned coordinate;
three examples sliding on ``g_1 = 0`` (equivalent control of ``G``).

Without ``--base`` it times this tree alone.  ``--micro`` (with ``--base``) isolates the
model itself: the base tree's ``flows/filippov.py`` and ``flows/mp.py`` are loaded next to
this tree's in one process, over the same field kernels, and ``FilippovModel.flow_and_grad``
/ ``settle`` (float64) and ``_MpRun._eval`` (mp:30, the right-hand side) are timed at fixed
states -- off every surface, a single pin, a pin next to a corner, a column sliding on
``g_1 = 0`` -- best of interleaved repeats (the other engines' changes do not enter).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPEATS = 3

CHILD = r"""
import json, sys, time
root = sys.argv[1]
import __editable___sambias_0_1_0_finder as finder
for k, v in list(finder.MAPPING.items()):
    finder.MAPPING[k] = root + v[len("/work/main"):] if v.startswith("/work/main/") else v
from sambias import Init, Problem, load_problem
import sambias.flows as flows
from sambias.flows import simulate

def case(name):
    if name.startswith("theory"):
        a = float(name.split("-")[1])
        return Problem(depth=2, algorithm="linf-sam", rho=0.5, X=[[3.0, 2.0, 1.0, 0.5]], y=[1],
                       init=Init(scale=a)), "1e400", "physical"
    if name == "mixed":
        return load_problem("example:linf-sam-depth2-mixed"), "1e50", "physical"
    if name == "depth3-pin":
        return Problem(depth=3, algorithm="linf-sam", rho=0.5, X=[[3.0, 2.0]], y=[1],
                       init=Init(layers=[[0.3, 0.6], [0.2, 0.5], [0.9, 0.4]])), "3", "rescaled"
    X = [[0.6747172923257772, 1.6637239913911968, 0.659147749832255],
         [2.141397294584647, -0.005203264171931977, -0.6234637409883934],
         [0.6486315232520263, -1.608187784186389, 0.2417718768768513]]
    return Problem(depth=1, algorithm="linf-sam", rho=0.5511075398579942, X=X, y=[1, 1, 1],
                   init=Init(layers=[[-0.04569295232158743, -0.13900744454117375, 0.5778934350886589]])), "0.5", "rescaled"

name, precision = sys.argv[2], sys.argv[3]
p, horizon, kind = case(name)
simulate(p, "1e-3", time="rescaled", precision=precision)      # warm: kernels, caches
t0 = time.perf_counter()
tr = simulate(p, horizon, time=kind, precision=precision)
wall = time.perf_counter() - t0
print(json.dumps({"wall": wall, "status": tr.status, "tau": float(tr.tau_final), "events": tr.stats["events"],
                  "module": flows.__file__}))
"""

CASES = ["theory-0.2", "theory-1.0", "mixed", "depth3-pin", "g-slide"]
PRECISIONS = ["float64", "mp:30"]


def run(root: str, name: str, precision: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, root, name, precision], capture_output=True, text=True,
                         check=True, env=dict(os.environ), cwd="/")   # (not a tree: "" on sys.path)
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    if not rec["module"].startswith(root):
        raise SystemExit(f"the child imported {rec['module']}, not the tree {root}")
    return rec


def micro(base: str) -> None:
    """Time the base tree's Filippov code against this tree's in one process (see the docstring)."""
    import importlib.util
    import timeit

    import mpmath
    import numpy as np

    from sambias import Init, Problem
    from sambias.horizon import parse_horizon
    import sambias.flows.filippov as F_this
    import sambias.flows.mp as M_this

    def load(path, name):
        # a module inside sambias.flows: its relative imports are this tree's (steppers, field)
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        return mod

    F_base = load(base + "/flows/filippov.py", "sambias.flows._filippov_base")
    M_base = load(base + "/flows/mp.py", "sambias.flows._mp_base")
    theory = Problem(depth=2, algorithm="linf-sam", rho=0.5, X=[[3.0, 2.0, 1.0, 0.5]], y=[1], init=Init(scale=0.2))
    X = [[0.6747172923257772, 1.6637239913911968, 0.659147749832255],
         [2.141397294584647, -0.005203264171931977, -0.6234637409883934],
         [0.6486315232520263, -1.608187784186389, 0.2417718768768513]]
    gs = Problem(depth=1, algorithm="linf-sam", rho=0.5511075398579942, X=X, y=[1, 1, 1],
                 init=Init(layers=[[-0.04569295232158743, -0.13900744454117375, 0.5778934350886589]]))
    w2 = np.array([0.0, 0.2, 0.2, 0.2, 0.3, 0.2, 0.2, 0.2])
    wc = np.array([0.0, 0.0, 0.2, 0.2, 0.3, 0.0, 0.2, 0.2])
    wg = np.array([-0.0457, -0.139, 0.578])
    STATES = [("free", theory, np.full(8, 0.2), [], []), ("pin", theory, w2, [0], []),
              ("pin+corner", theory, wc, [0, 1, 5], []), ("g-slide", gs, wg, [], [1])]

    def pair(fa, fb, n, rounds=4):
        """Best time of each, their repeats interleaved (the machine's load changes)."""
        a = b = float("inf")
        for _ in range(rounds):
            a = min(a, min(timeit.repeat(fa, number=n, repeat=2)) / n)
            b = min(b, min(timeit.repeat(fb, number=n, repeat=2)) / n)
        return a * 1e6, b * 1e6

    def f64(F, p, w, pins, gsl):
        m = F.FilippovModel(p)
        mode = m.initial_mode(w)
        mode.pinned.flat[pins] = True
        mode.gslide[gsl] = True
        if gsl:
            mode.cg = np.zeros(p.dim)
        m.flow_and_grad(w, mode)
        return m, mode

    print("float64 FilippovModel (same field kernels), us per call: base  this  ratio")
    for name, p, w, pins, gsl in STATES:
        (ma, sa), (mb, sb) = f64(F_base, p, w, pins, gsl), f64(F_this, p, w, pins, gsl)
        a, b = pair(lambda: ma.flow_and_grad(w, sa), lambda: mb.flow_and_grad(w, sb), 50)
        print(f"  flow_and_grad {name:<11} {a:9.1f} {b:9.1f} {b / a:6.3f}")
    for name, p, w, pins, gsl in STATES[1:]:
        c = np.zeros(p.depth * p.dim, bool); c[pins] = True
        g = np.zeros(p.dim, bool); g[gsl] = True
        ma, mb = F_base.FilippovModel(p), F_this.FilippovModel(p)
        sa, sb = ma.initial_mode(w), mb.initial_mode(w)
        a, b = pair(lambda: ma.settle(w, sa, c, g, tol=1e-10), lambda: mb.settle(w, sb, c, g, tol=1e-10), 5)
        print(f"  settle        {name:<11} {a:9.1f} {b:9.1f} {b / a:6.3f}")

    def mprun(M, p, w, pins, gsl):
        run = M._MpRun(p, parse_horizon("1e3"), "physical", 30, None, None, None, None, "gbs", 1e-12)
        wm = run.mf.to_mp(w)
        if M is M_base:
            run.side = [1 if v >= 0 else -1 for v in wm]
            run.gsign = [1 if v >= 0 else -1 for v in run.mf.g(wm)]
            run.pinned = set(pins); run.gslide = set(gsl)
            run.cg = {j: mpmath.mpf(0) for j in gsl}
        else:
            mode = run.model.initial_mode(wm)
            mode.pinned.flat[pins] = True
            mode.gslide[gsl] = True
            run.mode = mode
        run.y = wm + [mpmath.mpf(0), mpmath.mpf(0)]
        run._eval(wm)
        return run, wm

    print("mp:30 _MpRun._eval (same mp field), us per call: base  this  ratio")
    with mpmath.workdps(30):
        for name, p, w, pins, gsl in STATES:
            (ra, wa), (rb, wb) = mprun(M_base, p, w, pins, gsl), mprun(M_this, p, w, pins, gsl)
            a, b = pair(lambda: ra._eval(wa), lambda: rb._eval(wb), 10)
            print(f"  _eval         {name:<11} {a:9.1f} {b:9.1f} {b / a:6.3f}")



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", help="a checkout to compare with (e.g. a git worktree of HEAD)")
    ap.add_argument("--repeats", type=int, default=REPEATS)
    ap.add_argument("--cases", nargs="*", default=CASES)
    ap.add_argument("--micro", action="store_true", help="time the model at fixed states (needs --base)")
    args = ap.parse_args()
    if args.micro:
        print(f"load: {os.getloadavg()[0]:.2f} (1-min average) on {os.cpu_count()} cores")
        return micro(os.path.abspath(args.base))
    here = str(HERE.parent)
    trees = [("base", os.path.abspath(args.base)), ("this", here)] if args.base else [("this", here)]
    rows = []
    print(f"load: {os.getloadavg()[0]:.2f} (1-min average) on {os.cpu_count()} cores")
    print(f"{'case':<12} {'precision':<8} " + " ".join(f"{t:>9}" for t, _ in trees) + "   ratio  tau (this)")
    for name in args.cases:
        for prec in PRECISIONS:
            best = {t: None for t, _ in trees}
            info = {}
            for _ in range(args.repeats):
                for t, root in trees:       # alternate, so both see the same load
                    rec = run(root, name, prec)
                    info[t] = rec
                    best[t] = rec["wall"] if best[t] is None else min(best[t], rec["wall"])
            ratio = best["this"] / best["base"] if args.base else None
            rows.append({"case": name, "precision": prec, **{f"wall_{t}": best[t] for t in best},
                         "ratio": ratio, **{f"tau_{t}": info[t]["tau"] for t in info},
                         **{f"status_{t}": info[t]["status"] for t in info}})
            print(f"{name:<12} {prec:<8} " + " ".join(f"{best[t]:9.3f}" for t, _ in trees)
                  + (f"  {ratio:6.3f}" if ratio else "") + f"  {info['this']['tau']:.10g}")
    out = HERE / "results" / "filippov.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"load_1min": os.getloadavg()[0], "repeats": args.repeats, "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
