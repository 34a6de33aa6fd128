"""Benchmark of sambias.symbolic.compiled: numba kernels against the numpy path of
GeneratedField, all ratios measured in the same run.

* one call of ``rescaled_with_grad`` (what the float64 driver's right-hand side needs),
  of ``rescaled_jac`` and of the log-time system's ``fun`` built on either;
* the compile: cold (an empty cache directory) against a second process (disk cache);
* ``simulate`` to ``t = 1e6`` and ``t = 1e400`` end to end, ``SAMBIAS_JIT=0`` against
  ``SAMBIAS_JIT=1`` (warm disk cache), with the final states compared.

Example of issue 11: ``x = linspace(3, 0.5, d)``, ``y = 1``, ``rho = 0.5``, init 0.2;
``L = 2, 3``; ``d = 4, 16, 64``; GD, l2-SAM, linf-SAM.

Run ``python benchmarks/bench_kernels.py [--quick]``; prints tables and writes
``benchmarks/results/kernels.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
import timeit
from pathlib import Path

import numpy as np

from sambias import Init, Problem
from sambias.flows import simulate
from sambias.flows.logtime import LogTimeSystem
from sambias.symbolic import GeneratedField
from sambias.symbolic import compiled as C

ALGORITHMS = ("gd", "l2-sam", "linf-sam")
DEPTHS = (2, 3)
DIMS = (4, 16, 64)
RESULTS = Path(__file__).resolve().parent / "results" / "kernels.json"


def example(L: int, d: int, algorithm: str) -> Problem:
    return Problem(depth=L, algorithm=algorithm, rho=0.5, X=[np.linspace(3.0, 0.5, d).tolist()], y=[1],
                   init=Init(scale=0.2))


def _loop(fn, budget: float) -> int:
    fn()
    n = 1
    while timeit.timeit(fn, number=n) < budget and n < 1_000_000:
        n *= 4
    return n


def paired(a, b, budget: float = 0.05, rounds: int = 9) -> tuple[float, float]:
    """Seconds per call of ``a`` and ``b``: the minimum over ``rounds`` alternating timed loops
    (alternating, so a burst of load from other jobs hits both alike)."""
    na, nb = _loop(a, budget), _loop(b, budget)
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(timeit.timeit(a, number=na) / na)
        tb.append(timeit.timeit(b, number=nb) / nb)
    return min(ta), min(tb)


def _system(field, w):
    return LogTimeSystem(lambda v: field.rescaled(v), lambda v: field.rescaled_with_grad(v)[2],
                         field.rescaled_jac, w, flow_and_grad=field.rescaled_with_grad,
                         w_scale=float(np.linalg.norm(w)))


def per_call(L: int, d: int, algorithm: str) -> dict:
    p = example(L, d, algorithm)
    f = GeneratedField(p)
    f._jit = None                                   # the numpy path
    t0 = time.perf_counter()
    jit = C.compiled_field(f)
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(L * 100 + d)
    w = p.initial_weights().ravel() * (1 + 0.1 * rng.normal(size=f.size))
    row = {"L": L, "d": d, "algorithm": algorithm, "load_s": load_s, "from_cache": jit.module.from_cache}
    a, b = paired(lambda: f.rescaled_with_grad(w), lambda: jit.rescaled_with_grad(w))
    row["rhs_numpy_us"], row["rhs_jit_us"] = a * 1e6, b * 1e6
    a, b = paired(lambda: f.rescaled_jac(w), lambda: jit.rescaled_jac(w))
    row["jac_numpy_us"], row["jac_jit_us"] = a * 1e6, b * 1e6
    y = np.concatenate([w, [0.0, 0.0]])
    sn = _system(f, w)
    sj = _system(jit, w)
    # evaluate() remembers the last w; alternate two states so every call computes
    y2 = y.copy()
    y2[0] *= 1 + 1e-9
    ys = [y, y2]
    i = [0]

    def fun(system):
        def call():
            i[0] ^= 1
            system.fun(0.0, ys[i[0]])
        return call
    a, b = paired(fun(sn), fun(sj))
    row["fun_numpy_us"], row["fun_jit_us"] = a * 1e6, b * 1e6
    row["max_rel_diff"] = max(
        float(np.max(np.abs(a - b)) / np.max(np.abs(a)))
        for a, b in ((f.rescaled_with_grad(w)[0], jit.rescaled_with_grad(w)[0]),
                     (f.rescaled_with_grad(w)[2], jit.rescaled_with_grad(w)[2]),
                     (f.rescaled_jac(w), jit.rescaled_jac(w))))
    return row


_CHILD = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    from sambias.symbolic import compiled as C
    from sambias.symbolic.coordinate import coordinate_form
    L, algorithm = int(sys.argv[1]), sys.argv[2]
    coordinate_form(L, algorithm, "exp")
    t1, c1 = time.perf_counter(), time.process_time()
    mod = C.load_module(L, algorithm, "exp")
    t2, c2 = time.perf_counter(), time.process_time()
    print(json.dumps({"from_cache": mod.from_cache, "load_s": t2 - t1, "load_cpu_s": c2 - c1,
                      "derive_s": t1 - t0}))
""")


def compile_times(L: int, algorithm: str) -> dict:
    """First process (empty cache directory) against a second one (the disk cache)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, SAMBIAS_CACHE_DIR=tmp)
        runs = []
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c", _CHILD, str(L), algorithm], env=env,
                                 capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {"L": L, "algorithm": algorithm, "first": runs[0], "second": runs[1]}


def end_to_end(L: int, d: int, algorithm: str, horizon: str) -> dict:
    p = example(L, d, algorithm)
    out = {"L": L, "d": d, "algorithm": algorithm, "horizon": horizon}
    trajs = {}
    for mode in ("0", "1"):
        os.environ["SAMBIAS_JIT"] = mode
        t0 = time.perf_counter()
        tr = simulate(p, horizon)
        out[f"seconds_jit{mode}"] = time.perf_counter() - t0
        out[f"nfev_jit{mode}"] = int(tr.stats.get("nfev", -1))
        out[f"status_jit{mode}"] = tr.status
        trajs[mode] = tr
    os.environ.pop("SAMBIAS_JIT", None)
    a, b = trajs["0"], trajs["1"]
    ta, tb = a.tau_final, b.tau_final
    # tau passes float64's range (inf) in long linf-SAM runs: equal infinities agree
    out["tau_rel_diff"] = 0.0 if ta == tb else abs(ta - tb) / max(abs(ta), 1e-300)
    da, db = a.direction_final, b.direction_final
    out["direction_diff"] = None if da is None or db is None else float(np.max(np.abs(da - db)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="L = 2 only, d = 4, 16; fewer simulate runs")
    args = ap.parse_args(argv)
    depths = (2,) if args.quick else DEPTHS
    dims = (4, 16) if args.quick else DIMS
    # warm the disk cache for every shape first (a cold compile is measured separately below)
    os.environ["SAMBIAS_JIT"] = "1"
    rows = [per_call(L, d, a) for a in ALGORITHMS for L in depths for d in dims]
    os.environ.pop("SAMBIAS_JIT", None)
    print("one call, microseconds (min of 9 alternating loops), numpy path vs compiled; machine loaded by other jobs")
    print(f"{'alg':9} {'L':>2} {'d':>3} | {'rhs np':>8} {'jit':>7} {'x':>5} | {'jac np':>8} {'jit':>7} {'x':>5} |"
          f" {'fun np':>8} {'jit':>7} {'x':>5} | rel.diff")
    for r in rows:
        print(f"{r['algorithm']:9} {r['L']:2d} {r['d']:3d} | {r['rhs_numpy_us']:8.1f} {r['rhs_jit_us']:7.2f} "
              f"{r['rhs_numpy_us'] / r['rhs_jit_us']:5.1f} | {r['jac_numpy_us']:8.1f} {r['jac_jit_us']:7.2f} "
              f"{r['jac_numpy_us'] / r['jac_jit_us']:5.1f} | {r['fun_numpy_us']:8.1f} {r['fun_jit_us']:7.2f} "
              f"{r['fun_numpy_us'] / r['fun_jit_us']:5.1f} | {r['max_rel_diff']:.1e}")
    comp = [compile_times(2, "l2-sam")] + ([] if args.quick else [compile_times(3, "linf-sam")])
    print("\ncompile: first process (empty cache) vs second process (disk cache), seconds")
    for c in comp:
        a, b = c["first"], c["second"]
        print(f"  L={c['L']} {c['algorithm']:9} first {a['load_s']:.2f} (CPU {a['load_cpu_s']:.2f}, from cache: "
              f"{a['from_cache']})  second {b['load_s']:.2f} (CPU {b['load_cpu_s']:.2f}, from cache: "
              f"{b['from_cache']})  ratio {a['load_s'] / b['load_s']:.0f}x")
    sims = []
    cases = [(2, 4, "l2-sam"), (2, 16, "linf-sam")] if args.quick else \
        [(L, d, a) for a in ALGORITHMS for L in DEPTHS for d in (4, 16)]
    for horizon in ("1e6", "1e400"):
        for L, d, a in cases:
            sims.append(end_to_end(L, d, a, horizon))
    print("\nsimulate end to end (warm caches), seconds: SAMBIAS_JIT=0 vs 1")
    for s in sims:
        dd = "-" if s["direction_diff"] is None else f"{s['direction_diff']:.1e}"
        print(f"  {s['algorithm']:9} L={s['L']} d={s['d']:2d} t={s['horizon']:>5}: {s['seconds_jit0']:7.3f} "
              f"{s['seconds_jit1']:7.3f}  x{s['seconds_jit0'] / s['seconds_jit1']:5.1f}  nfev {s['nfev_jit0']}/"
              f"{s['nfev_jit1']}  tau rel.diff {s['tau_rel_diff']:.1e}  dir.diff {dd}  {s['status_jit1']}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
                    "note": "2 cores shared with other jobs: compare ratios, not absolute times"},
        "per_call": rows, "compile": comp, "simulate": sims}, indent=1))
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
