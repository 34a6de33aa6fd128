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

*mp:50 to t = 10 against heyoka.py* (issue 11.4; ``--t10``; 11 minutes for the d = 4 cases on a loaded machine): issue 11's
instances (x = linspace(3, 0.5, d), rho 0.5, init 0.2; L = 2, 3; d = 4, 16; GD, l2-SAM,
linf-SAM) plus a GD case whose coordinate 2 starts at 1e-19 in both layers (beta_2 ~ 1e-38).
Same run, CPU seconds: sambias *before* (libmp field and tableau, no guard digits, local
tolerance = rtol: the path as it was), *exact* (guard digits, GBS safety 1e-3, gmpy2 field
where it pays, none of the speed work below: the previous table's *after*), sambias *after*
(the default: also Newton event location with short steps, gmpy2 tableau and mpfr midpoint
sums, the order kept after a rejection, kmax = digits/2 + 10, leaders dated by 1e-24 steps),
all with warm kernel caches, and the after path *cold* (symbolic/ and the printers' caches
cleared: derivation + printing included, the analogue of heyoka's compile); heyoka.py's
Taylor integrator in ``real`` at 166 bits, compile (building ``taylor_adaptive``: JIT) and
integration apart.  Correct digits (fewest over the coordinates, relative) of before/after
against heyoka at 300 bits (the oracle), and of after against heyoka at 200 bits and mp:80.
The oracle's ODE is typed in by hand (tests/oracles/heyoka_flow.py).  ``--t1e400`` runs only
the t = 1e400 table below; no flag runs both; ``--only TEXT`` (repeatable) keeps the t = 10
cases whose name contains TEXT.
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


# --- mp:50 to t = 10 against heyoka.py (issue 11.4) --------------------------------------------------
T10 = 10.0


class _switches:
    """Set module switches of flows/ for a ``with`` block (restored on exit)."""

    def __init__(self, **values) -> None:
        from sambias.flows import mp as mp_mod, mp_integrators as mi, steppers as st
        self.values = {(mod, k): v for k, v in values.items()
                       for mod in (mi, st, mp_mod) if hasattr(mod, k)}

    def __enter__(self):
        self.saved = {key: getattr(*key) for key in self.values}
        for (mod, k), v in self.values.items():
            setattr(mod, k, v)

    def __exit__(self, *exc):
        for (mod, k), v in self.saved.items():
            setattr(mod, k, v)


# issue 11.4's speed work, all off: Illinois on re-taken steps (no memo), libmp tableau, mpf midpoint
# sums, ODEX's order drop after a rejection, kmax = digits/2 + 4, leaders dated by full re-takes
_NO_SPEED = dict(NEWTON_LOCATE=False, SHORT_HOPS=False, MEMO_DENSE=False, FAST_TABLEAU=False, MPFR_STEPS=False,
                 REJECT_KEEPS_ORDER=False, _KMAX_ADD=4, DENSE_RTOL=None)


def _before_11_4():
    """The integrator as it was before issue 11.4: no guard digits, local tolerance = rtol,
    libmp extrapolation tableau (the field: pass ``mp_field(p, "libmp")``), none of the speed work."""
    return _switches(GUARD_DIGITS=0, GBS_SAFETY="1", **_NO_SPEED)


def _exact_only():
    """Issue 11.4's exactness (guard digits, GBS safety) without its speed work: the path the
    previous README table calls *after*."""
    return _switches(**_NO_SPEED)


def _digits(got, ref) -> float:
    worst = 99.0
    with mpmath.workprec(400):
        for u, v in zip(got, ref):
            u, v = mpmath.mpf(u), mpmath.mpf(v)
            if u != v:
                worst = min(worst, float(-mpmath.log10(abs(u - v) / max(abs(u), abs(v)))))
    return round(worst, 2)


def _cpu(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.process_time() - c0, time.perf_counter() - t0


def t10_problems() -> list[tuple[str, Problem]]:
    out = []
    for L in (2, 3):
        for d in (4, 16):
            for alg in ("gd", "l2-sam", "linf-sam"):
                x = np.linspace(3.0, 0.5, d).tolist()
                out.append((f"{alg} L={L} d={d}",
                            Problem(depth=L, algorithm=alg, rho=RHO, X=[x], y=[1], init=Init(scale=0.2))))
    layers = [[0.2, 0.3, 1e-19], [0.2, 0.3, 1e-19]]
    out.append(("gd L=2 d=3 tiny", Problem(depth=2, algorithm="gd", X=[[3.0, 2.0, 0.5]], y=[1],
                                             init=Init(layers=layers))))
    return out


def t10() -> dict:
    from sambias.flows.mp_field import mp_field as make_field, fr_kernels, raw_kernels
    from sambias.symbolic.cache import clear_caches
    from tests.oracles.heyoka_flow import heyoka_final

    rows = []
    head = (f"{'case':18s} {'before':>7s} {'exact':>6s} {'after':>6s} {'cold':>6s} {'hy166':>6s} {'+comp':>6s} "
            f"{'after/hy+c':>10s} {'d_bef':>6s} {'d_aft':>6s} {'d_h200':>6s} {'d_mp80':>6s} {'min|w|':>8s}")
    print(head)
    print("-" * len(head), flush=True)
    only = [a for k, a in zip(sys.argv, sys.argv[1:]) if k == "--only"]
    for name, p in t10_problems():
        if only and not any(o in name for o in only):
            continue
        w_h300, _ = heyoka_final(p, T10, prec=300)
        w_h200, _ = heyoka_final(p, T10, prec=200)
        w_h166, info166 = heyoka_final(p, T10, prec=166)
        # cold = derivation + printing of the kernels (caches cleared) + the warm run below
        _, derive_cpu, _ = _cpu(lambda: (clear_caches(), raw_kernels.cache_clear(), fr_kernels.cache_clear(),
                                         make_field(p)))
        with _before_11_4():
            before, before_cpu, before_wall = _cpu(lambda: simulate_mp(p, str(T10), digits=DIGITS,
                                                                       field=make_field(p, "libmp")))
        with _exact_only():
            exact, exact_cpu, _ = _cpu(lambda: simulate_mp(p, str(T10), digits=DIGITS))
        after, after_cpu, after_wall = _cpu(lambda: simulate_mp(p, str(T10), digits=DIGITS))
        cold_cpu = derive_cpu + after_cpu
        mp80, mp80_cpu, _ = _cpu(lambda: simulate_mp(p, str(T10), digits=80))
        w = lambda tr: tr.stats["w_final_mp"]  # noqa: E731
        hy_total = info166["compile_cpu_s"] + info166["integrate_cpu_s"]
        row = {
            "case": name, "status": [before.status, after.status, mp80.status],
            "before_cpu_s": before_cpu, "before_nfev": before.stats["nfev"],
            "exact_only_cpu_s": exact_cpu, "exact_only_nfev": exact.stats["nfev"],
            "after_cpu_s": after_cpu, "after_nfev": after.stats["nfev"], "after_wall_s": after_wall,
            "after_cold_cpu_s": cold_cpu, "mp80_cpu_s": mp80_cpu,
            "heyoka166_compile_cpu_s": info166["compile_cpu_s"], "heyoka166_integrate_cpu_s": info166["integrate_cpu_s"],
            "heyoka166_compile_wall_s": info166["compile_s"], "heyoka166_integrate_wall_s": info166["integrate_s"],
            "heyoka166_steps": info166["nsteps"],
            "ratio_after_over_heyoka166_with_compile": after_cpu / hy_total,
            "ratio_cold_over_heyoka166_with_compile": cold_cpu / hy_total,
            "ratio_after_over_heyoka166_integrate": after_cpu / info166["integrate_cpu_s"],
            "speedup_after_over_before": before_cpu / after_cpu,
            "speedup_after_over_exact_only": exact_cpu / after_cpu,
            "digits_exact_only_vs_h300": _digits(w(exact), w_h300),
            "digits_before_vs_h300": _digits(w(before), w_h300),
            "digits_after_vs_h300": _digits(w(after), w_h300),
            "digits_after_vs_h200": _digits(w(after), w_h200),
            "digits_after_vs_mp80": _digits(w(after), w(mp80)),
            "digits_mp80_vs_h300": _digits(w(mp80), w_h300),
            "digits_h166_vs_h300": _digits(w_h166, w_h300),
            "min_abs_w": float(min(abs(mpmath.mpf(v)) for v in w(after))),
        }
        rows.append(row)
        _write_t10(rows)     # after every case: a long run interrupted still leaves its rows
        print(f"{name:18s} {before_cpu:7.2f} {exact_cpu:6.2f} {after_cpu:6.2f} {cold_cpu:6.2f} {info166['integrate_cpu_s']:6.2f} "
              f"{hy_total:6.2f} {row['ratio_after_over_heyoka166_with_compile']:10.2f} "
              f"{row['digits_before_vs_h300']:6.1f} {row['digits_after_vs_h300']:6.1f} "
              f"{row['digits_after_vs_h200']:6.1f} {row['digits_after_vs_mp80']:6.1f} {row['min_abs_w']:8.1e}",
              flush=True)
    print(f"wrote {_write_t10(rows)}")
    return rows


def _write_t10(rows: list) -> Path:
    import gmpy2
    import heyoka

    result = {"schema": "sambias.bench.mp_t10/1", "digits": DIGITS, "horizon": T10, "cases": rows,
              "python": sys.version.split()[0], "mpmath": mpmath.__version__, "gmpy2": gmpy2.version(),
              "heyoka": heyoka.__version__,
              "note": "CPU seconds of this process (heyoka's JIT threads included); "
                      "machine shared with six other jobs"}
    out = Path(__file__).resolve().parent / "results" / "mp_t10.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return out


def main() -> int:
    if "--t1e400" not in sys.argv:
        t10()
        if "--t10" in sys.argv:
            return 0
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
