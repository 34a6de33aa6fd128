"""Cost of the float64 integrators: wall time to t = 1e400, and what a naive loop gets instead.

Run ``python benchmarks/bench_flows.py`` (under a minute).  It writes
``benchmarks/results/flows.json`` and prints a table.  Cases: THEORY.md's example (L = 2,
x = (3, 2, 1, 0.5), rho = 0.5, u = v = alpha): linf-SAM and l2-SAM at alpha = 0.2 and 1.0,
GD at 0.2 and the collapsing l2-SAM at 0.06.

For each case and method (``auto`` = LSODA with a BDF fallback, and the other solvers):
the best of ``REPEATS`` wall and CPU times of ``simulate(p, "1e400")``, steps, evaluations,
status and the final ``beta``.  Then the horizon a naive float64 discrete SAM loop
(``w <- w - eta grad L(w + eps(w))``, ``eta = 1e-2``, :meth:`GeneratedField.physical`) reaches in
the same wall time as ``auto``, and the ratio of the two horizons' log10.

``--oracle`` integrates the hand-written ``tests/oracles`` ``NumpyField`` instead of the
derived kernels (written to ``results/flows_oracle.json``: the before/after of issue 9).
``--mp`` also times ``precision="mp:50"`` on the same cases (the mpmath integrator; see
``bench_mp.py`` for its own benchmark) and records the mp / float64 ratio.

``--lean`` (``--lean-only``: nothing else) adds issue 11.2's table: the median wall time of
``simulate(p, "1e400")`` over ``LEAN_REPEATS`` runs with the lean compiled loop
(``SAMBIAS_LEAN=1``) and without it (``SAMBIAS_LEAN=0``, the scipy driver) in the same
process, both on the compiled kernels (``SAMBIAS_JIT=1``), for GD, l2-SAM and linf-SAM
(Filippov: not on the lean loop, reported for completeness) at d = 4 and 16 on THEORY.md's
one example ``x = linspace(3, 0.5, d)``, rho = 0.5, init 0.2; target: lean median <= 30 ms.
Written to ``results/flows_lean.json``; the first run of a shape compiles (untimed).
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from sambias import Init, Problem
from sambias.flows import simulate
from sambias.symbolic import GeneratedField

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.oracles.field import NumpyField  # noqa: E402  (the hand-written oracle, for --oracle)

X = [[3.0, 2.0, 1.0, 0.5]]
RHO = 0.5
HORIZON = "1e400"
ETA = 1e-2
REPEATS = 3
TARGET_S = 1.0
CASES = [("linf-sam", 0.2), ("linf-sam", 1.0), ("l2-sam", 0.2), ("l2-sam", 1.0), ("gd", 0.2), ("l2-sam", 0.06)]
METHODS = ["auto", "BDF", "Radau", "DOP853"]


def problem(algorithm: str, alpha: float) -> Problem:
    return Problem(depth=2, algorithm=algorithm, rho=RHO, X=X, y=[1], init=Init(scale=alpha))


def time_simulate(p: Problem, **kw) -> dict:
    best = None
    for _ in range(REPEATS):
        w0, c0 = time.perf_counter(), time.process_time()
        tr = simulate(p, HORIZON, **kw)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        if best is None or wall < best["wall_s"]:
            best = {"wall_s": wall, "cpu_s": cpu, "status": tr.status, "steps": tr.stats["steps"],
                    "nfev": tr.stats["nfev"], "njev": tr.stats.get("njev", 0), "events": tr.stats["events"],
                    "log10_t_final": tr.log10_t_final, "tau_final": tr.tau_final,
                    "beta_final": [float(v) for v in tr.beta_final],
                    "dominant": [s.index for s in tr.dominant]}
    return best


def naive_loop(p: Problem, seconds: float) -> dict:
    """Discrete SAM in float64 for ``seconds`` of wall time: how far in t does it get?"""
    f = GeneratedField(p)
    w = p.initial_weights().ravel().copy()
    k = 0
    start = time.perf_counter()
    status = "ok"
    with np.errstate(over="ignore", under="ignore"):
        while True:
            for _ in range(100):
                try:
                    w = w + ETA * f.physical(w)
                except FloatingPointError:
                    status = "collapse (F = 0)"
                    break
                k += 1
            if status != "ok" or time.perf_counter() - start >= seconds:
                break
    wall = time.perf_counter() - start
    z = float(np.prod(w.reshape(p.depth, p.dim), axis=0) @ p.signed_data[0])
    return {"steps": k, "wall_s": wall, "log10_t": math.log10(k * ETA) if k else -math.inf,
            "margin": z, "status": status}


LEAN_REPEATS = 7
LEAN_TARGET_S = 0.030


def lean_table() -> dict:
    """Issue 11.2: the 1e400 medians with and without the lean loop, in one run."""
    import os
    import statistics

    from sambias.flows import compiled_loop

    os.environ["SAMBIAS_JIT"] = "1"
    rows = []
    for d in (4, 16):
        x = [list(np.linspace(3.0, 0.5, d))]
        for algorithm in ("gd", "l2-sam", "linf-sam"):
            p = Problem(depth=2, algorithm=algorithm, rho=RHO, X=x, y=[1], init=Init(scale=0.2))
            row = {"case": f"{algorithm} d={d}"}
            for label, flag in (("lean", "1"), ("scipy", "0")):
                os.environ["SAMBIAS_LEAN"] = flag
                simulate(p, HORIZON)                       # compile / load (untimed)
                before = compiled_loop.STATS["segments"]
                walls = []
                for _ in range(LEAN_REPEATS):
                    w0 = time.perf_counter()
                    tr = simulate(p, HORIZON)
                    walls.append(time.perf_counter() - w0)
                row[label] = {"median_s": statistics.median(walls), "min_s": min(walls), "steps": tr.stats["steps"],
                              "status": tr.status, "lean_segments": compiled_loop.STATS["segments"] - before,
                              "direction": [float(v) for v in tr.direction_final.ravel()]
                              if tr.direction_final is not None else None}
            a, b = row["lean"]["direction"], row["scipy"]["direction"]
            row["direction_diff"] = float(np.max(np.abs(np.subtract(a, b)))) if a and b else None
            row["speedup"] = row["scipy"]["median_s"] / row["lean"]["median_s"]
            rows.append(row)
    os.environ.pop("SAMBIAS_LEAN", None)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"\nt = {HORIZON}, median of {LEAN_REPEATS} (load {load}): lean compiled loop vs scipy driver, same run")
    print(f"{'case':16s}{'lean ms':>10s}{'scipy ms':>10s}{'speedup':>9s}{'steps':>13s}{'|dir diff|':>12s}  target <= 30 ms")
    for r in rows:
        dd = r["direction_diff"]
        print(f"{r['case']:16s}{1e3 * r['lean']['median_s']:10.2f}{1e3 * r['scipy']['median_s']:10.2f}"
              f"{r['speedup']:9.1f}{r['lean']['steps']:>6d}/{r['scipy']['steps']:<6d}"
              f"{(f'{dd:.1e}' if dd is not None else '-'):>12s}  "
              f"{'met' if r['lean']['median_s'] <= LEAN_TARGET_S else 'missed'}"
              f"{'' if r['lean']['lean_segments'] else ' (not on the lean loop)'}")
    out = {"benchmark": "flows_lean", "horizon": HORIZON, "repeats": LEAN_REPEATS, "target_s": LEAN_TARGET_S,
           "load": load, "python": sys.version.split()[0], "cases": rows}
    path = Path(__file__).resolve().parent / "results" / "flows_lean.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"written {path}")
    return out


def main(argv: list[str]) -> int:
    warnings.simplefilter("ignore")
    if "--lean-only" in argv:
        lean_table()
        return 0
    with_mp = "--mp" in argv
    # --oracle integrates the hand-written tests/oracles NumpyField instead of the derived
    # kernels (the engine before issue 9): the before/after comparison of the two fields
    oracle = "--oracle" in argv
    rows = []
    for algorithm, alpha in CASES:
        p = problem(algorithm, alpha)
        row = {"case": f"{algorithm} alpha={alpha}", "algorithm": algorithm, "alpha": alpha, "methods": {}}
        for method in METHODS:
            row["methods"][method] = time_simulate(p, method=method,
                                                   **({"field": NumpyField(p)} if oracle else {}))
        auto = row["methods"]["auto"]
        naive = naive_loop(p, auto["wall_s"])
        row["naive"] = naive
        row["horizon_ratio"] = (auto["log10_t_final"] / naive["log10_t"]
                                if naive["log10_t"] > 0 and auto["status"] == "ok" else None)
        if with_mp:
            try:
                w0 = time.perf_counter()
                tr = simulate(p, HORIZON, precision="mp:50")
                row["mp50"] = {"wall_s": time.perf_counter() - w0, "status": tr.status,
                               "ratio_to_float64": (time.perf_counter() - w0) / auto["wall_s"]}
            except Exception as exc:   # the hook must not break the float64 benchmark
                row["mp50"] = {"error": f"{type(exc).__name__}: {exc}"}
        rows.append(row)

    out = {"benchmark": "flows", "horizon": HORIZON, "eta_naive": ETA, "repeats": REPEATS,
           "target_wall_s": TARGET_S, "python": sys.version.split()[0], "cases": rows}
    path = Path(__file__).resolve().parent / "results" / ("flows_oracle.json" if oracle else "flows.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))

    head = f"{'case':24s}" + "".join(f"{m:>14s}" for m in METHODS) + f"{'naive log10 t':>15s}{'ratio':>9s}  status"
    print(f"wall seconds to t = {HORIZON} (best of {REPEATS}); naive discrete SAM, eta = {ETA}, same wall time as auto")
    print(head)
    for row in rows:
        cells = "".join(f"{row['methods'][m]['wall_s']:14.3f}" for m in METHODS)
        ratio = f"{row['horizon_ratio']:9.0f}" if row["horizon_ratio"] else f"{'-':>9s}"
        print(f"{row['case']:24s}{cells}{row['naive']['log10_t']:15.2f}{ratio}  {row['methods']['auto']['status'][:40]}")
        if "mp50" in row:
            print(f"{'':24s}mp:50 {row['mp50']}")
    slow = [r["case"] for r in rows if r["methods"]["auto"]["wall_s"] >= TARGET_S]
    print(f"auto under {TARGET_S:g} s on every case: {'yes' if not slow else 'no: ' + ', '.join(slow)}")
    print(f"written {path}")
    if "--lean" in argv:
        lean_table()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
