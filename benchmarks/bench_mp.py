"""Cost of the mpmath integrator (mp:50) against float64 DOP853 on the same horizon.

Run ``python benchmarks/bench_mp.py`` (about six minutes on 2 cores).  It writes
``benchmarks/results/mp.json`` and prints two tables.  Cases: THEORY.md's example
(L = 2, x = (3, 2, 1, 0.5), rho = 0.5, u = v = alpha) for GD, l2-SAM and linf-SAM at
alpha = 0.2 and 1.0, to the physical horizon t = 1e400.

*Derived vs hand-written field* (issue 9): the mp driver integrates the kernels symbolic/
derives (:mod:`sambias.flows.mp_field`, printed as libmp code); the same run with the
hand-written oracle ``tests/oracles/mp_field.py`` as ``field=`` is timed alongside, and one
right-hand side is timed for the oracle, the derived field and symbolic/'s own mpmath
``GeneratedField`` (numpy object arrays).  Ratios are derived / oracle (1.0 = no slow-down).

Two float64 references, both ``scipy.integrate.solve_ivp(method="DOP853", rtol=1e-12,
atol=1e-14)`` with symbolic/'s float64 :class:`~sambias.symbolic.GeneratedField`:

* ``f64_tau`` -- the textbook log-time system in rescaled time:
  ``d(W, s)/dtau = (-F(W~), exp(-log S(W~) - s))``, stopped by an event at
  ``s = ln(1 + T)``;
* ``f64_nu`` -- the system the mp integrator integrates, ``(W, s, tau)`` in the clock
  ``dnu = ds + d ln(1 + tau)`` (see :mod:`sambias.flows.mp`).

Neither float64 run treats linf-SAM's discontinuity; where it chatters it is cut off by an
evaluation budget and reported as such.  The ratio is mp time / float64 time,
measured in the same run, in CPU time of the process (wall time is recorded too; on a
shared machine it is distorted by other jobs).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import mpmath
import numpy as np
from scipy.integrate import solve_ivp

from sambias import Init, Problem
from sambias.flows.mp import simulate_mp
from sambias.flows.mp_field import mp_field
from sambias.symbolic import GeneratedField

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.oracles.mp_field import MpField  # noqa: E402  (the hand-written oracle)

NumpyField = GeneratedField  # the float64 reference field

X = [[3.0, 2.0, 1.0, 0.5]]
RHO = 0.5
LOG10_T = 400.0
DIGITS = 50
F64_BUDGET = 150_000  # RHS evaluations before a chattering float64 run is cut off
TARGET_RATIO = 30.0


class _Budget(Exception):
    pass


def f64_tau(p: Problem) -> dict:
    f = NumpyField(p)
    N = p.depth * p.dim
    s_T = LOG10_T * math.log(10.0)  # ln(1 + 1e400) to 1e-400
    nfev = [0]

    def rhs(_tau, y):
        nfev[0] += 1
        if nfev[0] > F64_BUDGET:
            raise _Budget
        dw, log_S = f.rescaled(y[:N])
        return np.concatenate([dw, [math.exp(-log_S - y[N])]])

    def hit(_tau, y):
        return y[N] - s_T
    hit.terminal, hit.direction = True, 1
    y0 = np.concatenate([p.initial_weights().ravel(), [0.0]])
    return _run(lambda: solve_ivp(rhs, (0.0, 1e4), y0, method="DOP853", rtol=1e-12, atol=1e-14,
                                  events=hit), nfev, N)


def f64_nu(p: Problem) -> dict:
    f = NumpyField(p)
    N = p.depth * p.dim
    s_T = LOG10_T * math.log(10.0)
    nfev = [0]

    def rhs(_nu, y):
        nfev[0] += 1
        if nfev[0] > F64_BUDGET:
            raise _Budget
        dw, log_S = f.rescaled(y[:N])
        a = math.exp(min(-log_S - y[N], 700.0))
        c = 1.0 / (a + 1.0 / (1.0 + y[N + 1]))
        return np.concatenate([dw * c, [a * c, c]])

    def hit(_nu, y):
        return y[N] - s_T
    hit.terminal, hit.direction = True, 1
    y0 = np.concatenate([p.initial_weights().ravel(), [0.0, 0.0]])
    return _run(lambda: solve_ivp(rhs, (0.0, 1e5), y0, method="DOP853", rtol=1e-12, atol=1e-14,
                                  events=hit), nfev, N)


def _run(solve, nfev, N) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        sol = solve()
    except _Budget:
        return {"status": f"cut off after {F64_BUDGET} evaluations (chattering at the sign switch)",
                "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                "nfev": nfev[0], "steps": None, "w_final": None}
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    ok = sol.status == 1
    return {"status": "ok" if ok else f"failed: {sol.message}", "wall_s": wall, "cpu_s": cpu, "nfev": nfev[0],
            "steps": int(len(sol.t) - 1),
            "w_final": sol.y_events[0][0][:N].tolist() if ok else None}


def _per_call(fn, reps: int) -> float:
    """Best of three CPU-time measurements of ``reps`` calls, in microseconds per call."""
    best = math.inf
    for _ in range(3):
        t0 = time.process_time()
        for _ in range(reps):
            fn()
        best = min(best, (time.process_time() - t0) / reps)
    return round(best * 1e6, 2)


def rhs_cost() -> dict:
    """Microseconds per right-hand side at 50 digits: oracle, derived (libmp), GeneratedField."""
    out = {}
    for alg in ("gd", "l2-sam", "linf-sam", "usam"):
        for L in (2, 3):
            p = Problem(depth=L, algorithm=alg, rho=RHO, X=X, y=[1], init=Init(scale=0.2))
            w = p.initial_weights().ravel()
            nf = NumpyField(p)
            sig = [-1] * (L * 4) if alg == "linf-sam" else None
            row = {"numpy_us": _per_call(lambda: nf.rescaled(w), 2000)}
            with mpmath.workdps(DIGITS):
                wm = MpField.to_mp(w)
                for name, f in (("oracle", MpField(p)), ("derived", mp_field(p)),
                                ("generated_objarray", GeneratedField(p, backend="mpmath"))):
                    row[f"{name}_us"] = _per_call(lambda: f.rescaled_mp(wm, sig) if sig else f.rescaled_mp(wm), 500)
            row["derived_over_oracle"] = round(row["derived_us"] / row["oracle_us"], 3)
            row["generated_over_oracle"] = round(row["generated_objarray_us"] / row["oracle_us"], 3)
            out[f"{alg} L={L}"] = row
    return out


def main() -> int:
    rows = []
    for alg in ("gd", "l2-sam", "linf-sam"):
        for alpha in (0.2, 1.0):
            p = Problem(depth=2, algorithm=alg, rho=RHO, X=X, y=[1], init=Init(scale=alpha))
            ref_tau = f64_tau(p)
            ref_nu = f64_nu(p)
            c0 = time.process_time()
            tr_oracle = simulate_mp(p, f"1e{int(LOG10_T)}", digits=DIGITS, field=MpField(p))
            cpu_oracle = time.process_time() - c0
            t0, c0 = time.perf_counter(), time.process_time()
            tr = simulate_mp(p, f"1e{int(LOG10_T)}", digits=DIGITS)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            w_mp = tr.weights[-1].ravel()
            agree = None
            if tr.ok and ref_tau["w_final"] is not None:
                ref = np.array(ref_tau["w_final"])
                agree = float(np.max(np.abs(w_mp - ref)) / np.max(np.abs(ref))) if np.any(ref) else \
                    float(np.max(np.abs(w_mp - ref)))
            row = {
                "algorithm": alg, "alpha": alpha, "horizon": f"1e{int(LOG10_T)}",
                "mp": {"status": tr.status, "wall_s": wall, "cpu_s": cpu, "steps": tr.stats["steps"],
                       "rejected": tr.stats["rejected"], "nfev": tr.stats["nfev"],
                       "method": tr.settings["method"], "rtol": tr.settings["rtol"],
                       "log10_loss_final": tr.log10_loss_final},
                "f64_tau": {k: v for k, v in ref_tau.items() if k != "w_final"},
                "f64_nu": {k: v for k, v in ref_nu.items() if k != "w_final"},
                # CPU time of this process: other jobs on a shared machine distort wall time
                "ratio_vs_f64_tau": cpu / ref_tau["cpu_s"],
                "ratio_vs_f64_nu": cpu / ref_nu["cpu_s"],
                "eval_ratio_vs_f64_tau": tr.stats["nfev"] / ref_tau["nfev"],
                "max_rel_diff_w_mp_vs_f64_tau": agree,
                "oracle_field": {"status": tr_oracle.status, "cpu_s": cpu_oracle, "nfev": tr_oracle.stats["nfev"]},
                "derived_over_oracle_cpu": cpu / cpu_oracle,
            }
            rows.append(row)
            print(f"{alg:9s} a={alpha:<4} mp {cpu:7.2f}s ({tr.stats['nfev']:7d} f, oracle field "
                  f"{cpu_oracle:6.2f}s: ratio {cpu / cpu_oracle:4.2f})  "
                  f"f64_tau {ref_tau['cpu_s']:6.2f}s ({ref_tau['nfev']:6d} f)  "
                  f"f64_nu {ref_nu['cpu_s']:6.2f}s ({ref_nu['nfev']:6d} f)", flush=True)
    costs = rhs_cost()
    result = {
        "schema": "sambias.bench.mp/1",
        "digits": DIGITS, "target_ratio": TARGET_RATIO, "rhs_cost": costs, "cases": rows,
        "python": sys.version.split()[0], "mpmath": mpmath.__version__,
        "mpmath_backend": mpmath.libmp.BACKEND,
    }
    out = Path(__file__).resolve().parent / "results" / "mp.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    print()
    print(f"mp:{DIGITS} (default rtol) vs float64 DOP853 rtol=1e-12, horizon t = 1e{int(LOG10_T)}; "
          "CPU seconds")
    head = (f"{'case':18s} {'mp s':>7s} {'mp nfev':>8s} {'f64_tau s':>9s} {'ratio':>6s} "
            f"{'f64_nu s':>8s} {'ratio':>6s} {'|dw|/|w|':>9s}  mp status / f64_tau status")
    print(head)
    print("-" * len(head))
    for r in rows:
        agree = "-" if r["max_rel_diff_w_mp_vs_f64_tau"] is None else f"{r['max_rel_diff_w_mp_vs_f64_tau']:.1e}"
        print(f"{r['algorithm'] + ' a=' + str(r['alpha']):18s} {r['mp']['cpu_s']:7.2f} {r['mp']['nfev']:8d} "
              f"{r['f64_tau']['cpu_s']:9.2f} {r['ratio_vs_f64_tau']:6.1f} {r['f64_nu']['cpu_s']:8.2f} "
              f"{r['ratio_vs_f64_nu']:6.1f} {agree:>9s}  {r['mp']['status'][:20]} / {r['f64_tau']['status'][:40]}")
    print(f"\nRHS cost at mp:{DIGITS}, microseconds per call (best of 3; mpmath backend {mpmath.libmp.BACKEND})")
    print(f"{'case':14s} {'numpy':>7s} {'oracle':>8s} {'derived':>8s} {'objarray':>9s} {'der/orc':>8s} {'obj/orc':>8s}")
    for k, r in costs.items():
        print(f"{k:14s} {r['numpy_us']:7.1f} {r['oracle_us']:8.1f} {r['derived_us']:8.1f} "
              f"{r['generated_objarray_us']:9.1f} {r['derived_over_oracle']:8.2f} {r['generated_over_oracle']:8.2f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
