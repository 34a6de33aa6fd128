"""Benchmark of sambias.symbolic: derivation + code generation time, and the cost of one
right-hand side of the generated code against the hand-written numpy field and against a
plain ``sympy.lambdify`` of the derived (unsimplified) expressions.

Run ``python benchmarks/bench_symbolic.py``; prints a table and writes
``benchmarks/results/symbolic.json``.  Ratios are measured in the same run (see
benchmarks/README.md, section "symbolic").
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import timeit
from pathlib import Path

import numpy as np
import sympy as sp

from sambias import Init, Problem
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.oracles.field import NumpyField  # noqa: E402  (the hand-written oracle)
from sambias.symbolic import clear_caches, derive, generate_kernels
from sambias.symbolic.notation import Z

ALGORITHMS = ("gd", "l2-sam", "linf-sam", "usam")
SHAPES = ((2, 4, 1), (4, 8, 4), (8, 16, 8))
RHS_SHAPE = (2, 64, 4)          # (L, d, n) of the per-call comparison
RESULTS = Path(__file__).resolve().parent / "results" / "symbolic.json"


def separable(L, d, n, algorithm, loss, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sign(X @ rng.normal(size=d))
    y[y == 0] = 1.0
    return Problem(depth=L, algorithm=algorithm, rho=0.3, loss=loss, X=X, y=y, init=Init(scale=0.5))


# --- derivation + code generation ---------------------------------------------------------------------
def time_derivation(L, d, n, algorithm, loss) -> dict:
    """Cold-cache wall times: derive(problem), then float64 and mpmath kernels."""
    p = separable(L, d, n, algorithm, loss)
    clear_caches()
    t0 = time.perf_counter()
    system = derive(p)
    t1 = time.perf_counter()
    field = system.compile()
    t2 = time.perf_counter()
    generate_kernels(L, algorithm, loss, "mpmath")
    t3 = time.perf_counter()
    field.rescaled(p.initial_weights().ravel())
    return {"L": L, "d": d, "n": n, "algorithm": algorithm, "loss": loss,
            "derive_s": t1 - t0, "codegen_float64_s": t2 - t1, "codegen_mpmath_s": t3 - t2,
            "total_s": t3 - t0}


# --- the lambdify baseline -------------------------------------------------------------------------------
def lambdify_pipeline(problem):
    """dW/dt from ``sympy.lambdify`` (numpy module, no CSE) of the FlowSystem's expressions as
    derived: margins z(w), |l'(z)|, eps(w) and the flow at w~ -- one lambdified expression list per
    stage.  (Substituting every stage into one expression is not feasible for SAM at d = 64:
    every entry would repeat the whole norm and every margin.)"""
    s = derive(problem)
    W = list(s.state)
    Wt = [v for row in s.perturbed for v in row]
    z_of_w = sp.lambdify(W, list(s.margin_exprs), "numpy", cse=False)
    lam = sp.lambdify([Z], -s.loss_derivative, "numpy", cse=False)
    eps_args = W + list(s.margins) + [q for q in s.softmax_weights if isinstance(q, sp.Symbol)] + [s.rho]
    eps = sp.lambdify(eps_args, [e for row in s.perturbation for e in row], "numpy", cse=False)
    flow = sp.lambdify(Wt + list(s.perturbed_margins) + [s.rho],
                       [e for row in s.flow for e in row], "numpy", cse=False)
    rho, n = problem.rho, problem.n

    def rhs(w):
        z = z_of_w(*w)
        lams = [lam(zi) for zi in z]
        total = sum(lams)
        q = [v / total for v in lams] if n > 1 else []
        wt = np.asarray(w) + np.asarray(eps(*w, *z, *q, rho), dtype=float)
        zt = z_of_w(*wt)
        return np.asarray(flow(*wt, *zt, rho), dtype=float)
    return rhs


def per_call(f, *args, number=None) -> float:
    timer = timeit.Timer(lambda: f(*args))
    if number is None:
        number, _ = timer.autorange()
    return min(timer.repeat(repeat=5, number=number)) / number


def time_rhs(algorithm, loss) -> dict:
    L, d, n = RHS_SHAPE
    p = separable(L, d, n, algorithm, loss, seed=1)
    rng = np.random.default_rng(2)
    w = rng.normal(scale=0.3, size=L * d)
    ref, gen = NumpyField(p), derive(p).compile()
    t0 = time.perf_counter()
    lam = lambdify_pipeline(p)
    build = time.perf_counter() - t0
    # the three agree (the benchmark times the same function)
    np.testing.assert_allclose(gen.physical(w), ref.physical(w), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(lam(w), ref.physical(w), rtol=1e-8, atol=1e-10)
    t_gen = per_call(gen.rescaled, w)
    t_ref = per_call(ref.rescaled, w)
    t_gen_phys = per_call(gen.physical, w)
    t_lam = per_call(lam, w, number=20)
    return {"algorithm": algorithm, "loss": loss, "L": L, "d": d, "n": n,
            "generated_rescaled_us": 1e6 * t_gen, "numpy_rescaled_us": 1e6 * t_ref,
            "generated_physical_us": 1e6 * t_gen_phys, "lambdify_physical_us": 1e6 * t_lam,
            "lambdify_build_s": build,
            "ratio_generated_over_numpy": t_gen / t_ref,
            "speedup_over_lambdify": t_lam / t_gen_phys}


def main() -> int:
    # SymPy's first use in a process (its own caches, assumption tables) is paid once per
    # process, whatever the shape; time it apart so the table compares shapes fairly
    t0 = time.perf_counter()
    derive(separable(1, 1, 1, "gd", "exp")).compile()
    warmup = time.perf_counter() - t0
    derivation = []
    for L, d, n in SHAPES:
        for algorithm in ALGORITHMS:
            for loss in ("exp", "logistic"):
                derivation.append(time_derivation(L, d, n, algorithm, loss))
    d64 = [time_derivation(*RHS_SHAPE, algorithm, "logistic") for algorithm in ALGORITHMS]
    t0 = time.perf_counter()
    for algorithm in ALGORITHMS:  # the kernels alone (what compile() needs): independent of d
        generate_kernels.cache_clear()
        generate_kernels(RHS_SHAPE[0], algorithm, "logistic", "float64")
    kernels_only = (time.perf_counter() - t0) / len(ALGORITHMS)
    rhs = [time_rhs(algorithm, loss) for algorithm in ALGORITHMS for loss in ("exp", "logistic")]

    print("derivation + code generation (cold caches, wall seconds; worst over algorithms x losses)")
    print(f"{'L,d,n':>10} {'derive':>8} {'codegen f64':>12} {'codegen mp':>11} {'total':>8}   target")
    for L, d, n in SHAPES + (RHS_SHAPE,):
        rows = [r for r in derivation + d64 if (r["L"], r["d"], r["n"]) == (L, d, n)]
        worst = max(rows, key=lambda r: r["total_s"])
        target = "< 5 s" if (L, d, n) == SHAPES[-1] else ""
        print(f"{L},{d},{n:>3} {worst['derive_s']:8.3f} {worst['codegen_float64_s']:12.3f} "
              f"{worst['codegen_mpmath_s']:11.3f} {worst['total_s']:8.3f}   {target}")
    print()
    print(f"one right-hand side at (L, d, n) = {RHS_SHAPE} (microseconds per call, best of 5)")
    print(f"{'case':>20} {'generated':>10} {'NumpyField':>11} {'gen/numpy':>10} {'gen phys':>9} "
          f"{'lambdify':>10} {'speedup':>8}")
    for r in rhs:
        print(f"{r['algorithm'] + ' ' + r['loss']:>20} {r['generated_rescaled_us']:10.1f} "
              f"{r['numpy_rescaled_us']:11.1f} {r['ratio_generated_over_numpy']:10.2f} "
              f"{r['generated_physical_us']:9.1f} {r['lambdify_physical_us']:10.0f} "
              f"{r['speedup_over_lambdify']:8.0f}")
    summary = {
        "sympy_first_use_s": warmup,
        "largest_derivation_total_s": max(r["total_s"] for r in derivation if (r["L"], r["d"], r["n"]) == SHAPES[-1]),
        "d64_derivation_total_s": max(r["total_s"] for r in d64),
        "d64_kernel_generation_s": kernels_only,
        "worst_ratio_generated_over_numpy": max(r["ratio_generated_over_numpy"] for r in rhs),
        "min_speedup_over_lambdify": min(r["speedup_over_lambdify"] for r in rhs),
        "targets": {"largest_derivation_total_s": "< 5", "worst_ratio_generated_over_numpy": "<= 1.5",
                    "min_speedup_over_lambdify": ">= 10"},
    }
    print()
    print(json.dumps(summary, indent=1))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "symbolic", "python": sys.version.split()[0], "sympy": sp.__version__,
        "numpy": np.__version__, "machine": platform.machine(), "cpus": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "summary": summary, "derivation": derivation + d64, "rhs": rhs}, indent=1) + "\n")
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
