"""sambias against its peers (issue 11's table), re-measured in one run.

Run ``python benchmarks/bench_peers.py`` (full: 18 instances, many minutes on 2 cores) or
``python benchmarks/bench_peers.py --quick`` (3 instances, about a minute); both write
``benchmarks/results/peers.json`` (``--json FILE`` elsewhere) and print the table with the
issue's targets.  Peers come from the optional extra: ``pip install ".[peers]"``.

Instances: one example ``x = linspace(3, 0.5, d)``, ``y = 1``, ``rho = 0.5``, every weight
``0.2``, exponential loss; ``L = 2, 3``; ``d = 4, 16, 64``; GD, l2-SAM, linf-SAM.

Peers, each on its own ground (the physical-time flow ``w' = -grad L(w + eps(w))``):

* **jitcode** (compiled C, scipy's ``dopri5``) and **heyoka.py** (LLVM: ``cfunc`` for one
  right-hand side, ``taylor_adaptive`` for runs, ``real`` at 166 bits for the mp row) are fed
  the *same* system sambias integrates: :func:`peer_system` takes sambias.symbolic's SymPy
  expressions (perturbed point, norm, perturbed margin, flow) and hands them over -- to jitcode
  as symengine expressions with the norm and the perturbed weights as helpers, to heyoka via
  ``heyoka.from_sympy`` (``sign`` becomes ``select``).
* **solve_ivp** (``DOP853``) on :func:`oracle_rhs`, a numpy right-hand side written here from
  THEORY.md's equations without sambias -- the independent oracle;
* **mpmath** ``odefun`` on the oracle's equations in mpf arithmetic (the mp row);
* a **naive discrete SAM loop** ``w <- w - eta grad L(w + eps(w))`` (numpy, ``eta = 1e-2``).

Rows: one right-hand side; float64 to ``t = 1e3`` and ``1e6``; ``t = 1e400`` (physical-time
peers cannot even be asked: they are run to the largest float horizon the run uses,
``1e300``, and their state there is compared with sambias at the time they reached; heyoka is
also given sambias's own log-time clock, where it can reach 1e400); mp:50
to ``t = 10``.  Times: derive/compile apart from integration and together (end to end; for
sambias after ``clear_caches()`` with a warm disk cache).  Agreement: ``max|w_peer - w_sam| /
max(max|w_sam|, 0.2)`` for the final weights; mp rows count correct digits per coordinate
against heyoka ``real`` at 200 bits and sambias ``mp:80``.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import signal
import statistics
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import sympy as sp

from sambias import Init, Problem
from sambias.flows import simulate
from sambias.symbolic import GeneratedField, clear_caches, derive_flow

RESULTS = Path(__file__).resolve().parent / "results" / "peers.json"
RHO = 0.5
INIT = 0.2
ALGORITHMS = ("gd", "l2-sam", "linf-sam")
DEPTHS = (2, 3)
DIMS = (4, 16, 64)
QUICK = (("l2-sam", 2, 4), ("linf-sam", 2, 16), ("gd", 3, 4))
HORIZONS = (1e3, 1e6)
FAR = "1e400"
FLOAT_FAR = 1e300          # the farthest physical horizon a float64 peer is asked for
MP_T = 10.0
MP_DIGITS = 50
RTOL, ATOL = 1e-10, 1e-12  # jitcode and solve_ivp (sambias: its default rtol = 1e-9)
ETA = 1e-2                 # naive loop step
AGREE_F64 = 1e-6           # final-state agreement, float64 rows
AGREE_NAIVE = 5e-2         # the discrete loop differs from the flow by O(eta)
ZERO_MP = 1e-45            # both below: a coordinate pinned at 0 (Filippov), counted as agreeing
# heyoka's error control is absolute below |w| = 1 (tol = 2^-prec), so at 200 bits it resolves 50
# relative digits only where |w| >= 2^-200 * 1e50 ~ 6e-11: smaller coordinates are checked against mp:80
HEY_RESOLVED = 1e-10
TARGET_FAR_S = 0.030


class PeerTimeout(Exception):
    """A peer ran past its wall-clock budget."""


@contextmanager
def alarm(seconds: float):
    """Raise :class:`PeerTimeout` in Python-level loops (solve_ivp, odefun, the naive loop)
    after ``seconds`` -- a peer that chatters at linf-SAM's sign switch would never return."""
    def handler(signum, frame):
        raise PeerTimeout(f"wall budget {seconds:g} s")
    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def problem(algorithm: str, depth: int, dim: int) -> Problem:
    """One instance of issue 11's family."""
    x = [float(v) for v in np.linspace(3.0, 0.5, dim)]
    return Problem(depth=depth, algorithm=algorithm, rho=RHO, X=[x], y=[1], init=Init(scale=INIT), loss="exp")


def label(p: Problem) -> str:
    return f"{p.algorithm} L={p.depth} d={p.dim}"


# ---------------------------------------------------------------------------------------------
# The independent oracle: THEORY.md's equations in numpy (no sambias code)
# ---------------------------------------------------------------------------------------------
def oracle_gradient(W: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``dL/dw^(l)_j = l'(z) x_j prod_{k != l} w^(k)_j`` for one example, y = 1, exp loss."""
    # prod_{k != l} as prefix * suffix products: no division, so a zero weight is harmless
    ones = np.ones((1, W.shape[1]))
    prefix = np.cumprod(np.vstack([ones, W[:-1]]), axis=0)
    suffix = np.cumprod(np.vstack([ones, W[:0:-1]]), axis=0)[::-1]
    z = float(x @ (prefix[-1] * W[-1]))
    return -math.exp(-z) * x * prefix * suffix


def oracle_rhs(p: Problem) -> Callable[[float, np.ndarray], np.ndarray]:
    """``f(t, w) = -grad L(w + eps(w))`` (flat, layer-major) for GD, l2-SAM, linf-SAM.

    >>> f = oracle_rhs(problem("gd", 2, 4)); f(0.0, np.full(8, 0.2)).shape
    (8,)
    """
    x = np.asarray(p.X[0], dtype=float)
    L, d, rho, alg = p.depth, p.dim, float(p.rho), p.algorithm

    def f(t, w):
        W = np.asarray(w, dtype=float).reshape(L, d)
        if alg == "gd":
            Wt = W
        else:
            g = oracle_gradient(W, x)
            if alg == "l2-sam":
                Wt = W + rho * g / np.linalg.norm(g)
            else:
                Wt = W + rho * np.sign(g)
        return -oracle_gradient(Wt, x).ravel()
    return f


# ---------------------------------------------------------------------------------------------
# The peers' system, from sambias.symbolic's SymPy expressions
# ---------------------------------------------------------------------------------------------
@dataclass
class PeerSystem:
    """The physical-time flow as SymPy: ``rhs`` in ``state``, ``helpers`` (in order; a helper may
    use earlier ones: the norm, the perturbed weights, the perturbed margin) and the data symbols
    ``x_1_j``, whose values are in ``data`` -- kept symbolic so that each peer folds them in its
    own precision (SymPy would round ``x_j**2`` to 53 bits, costing heyoka ``real`` its digits)."""
    state: tuple
    helpers: tuple
    rhs: tuple
    data: dict
    derive_s: float
    rescaled: tuple = ()      # dw/dtau (sambias's clock), in the same helpers


def peer_system(p: Problem) -> PeerSystem:
    """Build the flow of ``p`` from ``derive_flow`` (symbolic data; caches cleared: it is timed).

    >>> len(peer_system(problem("l2-sam", 2, 4)).rhs)
    8
    """
    clear_caches()
    t0 = time.perf_counter()
    s = derive_flow(p.depth, p.dim, 1, p.algorithm, p.loss)
    num = {s.rho: sp.Float(float(p.rho))} if isinstance(s.rho, sp.Symbol) else {}
    num.update({yi: sp.Integer(int(v)) for yi, v in zip(s.y, p.y)})
    # one example: softmax weights are 1, margins are their expressions in w
    num.update({q: sp.Integer(1) for q in s.softmax_weights if isinstance(q, sp.Symbol)})
    num.update({z: e.xreplace(num) for z, e in zip(s.margins, s.margin_exprs)})
    data = {xs: float(v) for xs, v in zip(s.X[0], p.X[0])}
    helpers = []
    pp = [e.xreplace(num) for row in s.perturbed_point for e in row]
    norm = s.norm
    if norm is not None:
        N = sp.Symbol("N_peer", positive=True)
        nx = norm.xreplace(num)
        pp = [e.xreplace({nx: N}) for e in pp]
        helpers.append((N, nx))
    wt = [w for row in s.perturbed for w in row]
    helpers += list(zip(wt, pp))
    (zt,) = s.perturbed_margins
    (zt_expr,) = s.explicit_perturbed_margins()
    helpers.append((zt, zt_expr.xreplace(num)))
    rhs = tuple(e.xreplace(num) for row in s.flow for e in row)
    qt = {q: sp.Integer(1) for q in s.perturbed_softmax_weights if isinstance(q, sp.Symbol)}
    rescaled = tuple(e.xreplace(num).xreplace(qt) for row in s.rescaled_flow for e in row)
    return PeerSystem(tuple(s.state), tuple(helpers), rhs, data, time.perf_counter() - t0, rescaled)


def _expand(ps: PeerSystem, exprs: tuple | None = None) -> list:
    """The right-hand side with every helper substituted (for heyoka, which does its own CSE)."""
    sub: dict = {}
    for sym, expr in ps.helpers:
        sub[sym] = expr.xreplace(sub)
    return [e.xreplace(sub) for e in (ps.rhs if exprs is None else exprs)]


def to_heyoka(exprs: list, table: dict) -> list:
    """SymPy -> heyoka expressions (``table``: SymPy symbol -> heyoka expression);
    ``sign(a)`` becomes ``select(a > 0, 1, select(a < 0, -1, 0))``."""
    import heyoka as hy
    table = dict(table)
    signs: dict = {}

    def strip(e):
        if isinstance(e, sp.sign):
            if e not in signs:
                a = hy.from_sympy(strip(e.args[0]), table)
                signs[e] = sp.Symbol(f"sign_{len(signs)}")
                table[signs[e]] = hy.select(hy.gt(a, 0.0), 1.0, hy.select(hy.lt(a, 0.0), -1.0, 0.0))
            return signs[e]
        if not e.args:
            return e
        return e.func(*[strip(a) for a in e.args])
    return [hy.from_sympy(strip(e), table) for e in exprs]


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}" + (f": {text[0][:80]}" if text else "")


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------
@dataclass
class Run:
    """One integration: its times, how far it got and where it ended."""
    peer: str
    prep_s: float = math.nan      # derive + compile
    run_s: float = math.nan       # integration alone
    status: str = "ok"
    t_reached: float = math.nan
    w: Any = None                 # final weights (floats, or mp strings for mp rows)
    extra: dict = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return self.prep_s + self.run_s

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "w"}
        out["total_s"] = self.total_s
        out["w_final"] = None if self.w is None else [str(v) if not isinstance(v, float) else v for v in self.w]
        return out


def best_of(fn: Callable[[], Any], repeats: int, cap_s: float = 2.0) -> tuple[float, Any]:
    """Best wall time of up to ``repeats`` calls (fewer once ``cap_s`` has been spent)."""
    best, out, spent = math.inf, None, 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
        if spent > cap_s:
            break
    return best, out


def rhs_time(fn: Callable[[], Any], budget: float = 0.2) -> float:
    """Seconds per call: best of 5 batches sized to ~budget/5."""
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    n = max(1, int(budget / 5 / one))
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def clear_compiled() -> None:
    """Forget the compiled kernel and lean-loop modules loaded in this process, so the next
    run loads them again from the (warm) disk cache: end to end then includes that load."""
    from sambias.flows import compiled_loop
    from sambias.symbolic import compiled

    compiled.load_module.cache_clear()
    compiled._DEMAND.clear()
    compiled_loop.load_loop.cache_clear()
    compiled_loop._LOADED.clear()


_FRESH = """
import json, sys, time
t0 = time.perf_counter()
from sambias import Init, Problem
from sambias.flows import simulate
import numba  # noqa: F401  (imported by the compiled path anyway; timed apart)
t1 = time.perf_counter()
a = json.loads(sys.argv[1])
p = Problem(depth=a["L"], algorithm=a["alg"], rho=a["rho"], X=[a["x"]], y=[1], init=Init(scale=a["init"]), loss=a["loss"])
tr = simulate(p, a["h"])
t2 = time.perf_counter()
tr = simulate(p, a["h"])
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_run_s": t2 - t1, "second_run_s": t3 - t2, "status": tr.status}))
"""


def fresh_process(p: Problem, horizon: str) -> dict:
    """sambias in a new Python process with a warm disk cache: imports, then the first run
    (derive + load the compiled kernel and loop + integrate), then a second run."""
    import subprocess

    arg = json.dumps({"L": p.depth, "alg": p.algorithm, "rho": RHO, "init": INIT, "h": horizon, "loss": p.loss,
                      "x": [float(v) for v in np.asarray(p.signed_data)[0]]})
    try:
        out = subprocess.run([sys.executable, "-c", _FRESH, arg], capture_output=True, text=True, timeout=300)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except Exception as exc:   # the benchmark goes on without this line
        return {"error": _why(exc)}


def sambias_float(p: Problem, horizons: tuple, repeats: int) -> tuple[dict, float]:
    """sambias end to end and split; returns ({horizon: Run}, one-RHS seconds)."""
    simulate(p, horizons[0])                 # warm the disk cache (compiled kernels, lean loop)
    clear_caches()
    clear_compiled()
    t0 = time.perf_counter()
    f = GeneratedField(p)
    prep = time.perf_counter() - t0
    w0 = p.initial_weights().ravel().astype(float)
    rhs = rhs_time(lambda: f.physical(w0))
    runs = {}
    for h in horizons:
        hs = h if isinstance(h, str) else f"{h:g}"
        run_s, tr = best_of(lambda: simulate(p, hs, field=f), repeats)
        def e2e():
            # derive + load the compiled kernel and loop from the warm disk cache + integrate
            clear_caches()
            clear_compiled()
            return simulate(p, hs)
        total, _ = best_of(e2e, repeats)
        r = Run("sambias", prep, run_s, tr.status, 10.0 ** tr.log10_t_final if tr.log10_t_final < 308 else math.inf,
                [float(v) for v in final_weights(tr)])
        r.extra = {"end_to_end_s": total, "log10_t_final": tr.log10_t_final, "steps": tr.stats.get("steps"),
                   "nfev": tr.stats.get("nfev"), "lean": os.environ.get("SAMBIAS_LEAN", "auto")}
        if h == 1e6:
            r.extra["fresh_process"] = fresh_process(p, hs)
        runs[h] = r
    return runs, rhs


def final_weights(tr) -> list:
    """The trajectory's last weights, flat and layer-major: the mp run's full-precision decimal
    strings (``stats["w_final_mp"]``) when there are any, else floats."""
    mp = tr.stats.get("w_final_mp")
    if mp:
        return list(mp)
    return [float(v) for v in np.asarray(tr.weights[-1], dtype=float).ravel()]


@functools.lru_cache(maxsize=64)
def sambias_at(p: Problem, t: float) -> np.ndarray | None:
    """sambias's weights at physical time ``t`` (to judge a peer that stopped there)."""
    if not (t > 0 and math.isfinite(t)):
        return None
    tr = simulate(p, f"{t:.17g}")
    return np.asarray([float(v) for v in final_weights(tr)])


class Jitcode:
    """jitcode: the derived system compiled to C, integrated by scipy's dopri5."""
    name = "jitcode"

    def __init__(self, ps: PeerSystem):
        import symengine as se
        from jitcode import jitcode, y
        t0 = time.perf_counter()
        table = {s: y(i) for i, s in enumerate(ps.state)}
        table.update({se.Symbol(str(k)): se.RealDouble(v) for k, v in ps.data.items()})
        conv = lambda e: se.sympify(e).subs(table)  # noqa: E731  (SymPy objects, not text)
        helpers = [(se.Symbol(str(sym)), conv(expr)) for sym, expr in ps.helpers]
        rhs = [conv(e) for e in ps.rhs]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.ode = jitcode(rhs, helpers=helpers, n=len(rhs), verbose=False)
            self.ode.compile_C(verbose=False)
            self.ode.set_integrator("dopri5", rtol=RTOL, atol=ATOL, nsteps=200_000)
        self.compile_s = time.perf_counter() - t0
        self.prep_s = ps.derive_s + self.compile_s

    def rhs_s(self, w0: np.ndarray) -> float:
        f = self.ode.f
        return rhs_time(lambda: f(0.0, w0))

    def run(self, w0: np.ndarray, T: float) -> Run:
        r = Run(self.name, self.prep_s)
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                self.ode.set_initial_value(w0, 0.0)
                w = self.ode.integrate(T)
            r.t_reached = T
        except Exception as exc:  # jitcode raises on an unsuccessful integration
            r.status = f"failed: {_why(exc)}"
            w = self.ode.y
            r.t_reached = float(self.ode.t)
        r.run_s = time.perf_counter() - t0
        r.w = [float(v) for v in w]
        if r.status == "ok" and not np.all(np.isfinite(r.w)):
            r.status = "nan/inf"
        return r


class _StepBudget:
    """heyoka callback: stop after a wall budget (a chattering Taylor run would not return)."""
    def __init__(self, seconds: float):
        self.deadline = time.perf_counter() + seconds
        self.steps = 0
        self.expired = False

    def __call__(self, ta) -> bool:
        self.steps += 1
        if self.steps % 256 == 0 and time.perf_counter() > self.deadline:
            self.expired = True
            return False
        return True


class Heyoka:
    """heyoka.py: ``cfunc`` for one right-hand side, ``taylor_adaptive`` for runs."""

    def __init__(self, ps: PeerSystem, fp: str = "float64", prec: int = 0, cfunc: bool = True, taylor: bool = True):
        import heyoka as hy
        self.hy, self.fp, self.prec = hy, fp, prec
        self.name = "heyoka" if fp == "float64" else f"heyoka real{prec}"
        self.n = len(ps.rhs)
        # compact mode: heyoka's advice for large systems and for ``real`` (without it, compiling
        # the mp Taylor integrator of l2-SAM L = 2, d = 4 did not finish in 5 minutes)
        self.compact = self.n > 32 or fp != "float64"
        t0 = time.perf_counter()
        hvars = list(hy.make_vars(*[f"w{i}" for i in range(self.n)])) if self.n > 1 else [hy.make_vars("w0")]
        const = (lambda v: hy.expression(v)) if fp == "float64" else (lambda v: hy.expression(hy.real(v, prec)))
        table = dict(zip(ps.state, hvars)) | {k: const(v) for k, v in ps.data.items()}
        exprs = to_heyoka(_expand(ps), table)
        self.translate_s = time.perf_counter() - t0
        self.cfunc_s = math.nan
        if cfunc:
            t0 = time.perf_counter()
            self.cf = hy.cfunc(exprs, hvars, compact_mode=self.compact)
            self.cfunc_s = time.perf_counter() - t0
        self.ta, self.compile_s = None, 0.0
        if taylor:
            self._build_taylor(hvars, exprs)
        self.prep_s = ps.derive_s + self.translate_s + self.compile_s

    def _build_taylor(self, hvars: list, exprs: list) -> None:
        hy, fp, prec = self.hy, self.fp, self.prec
        t0 = time.perf_counter()
        sys_ = list(zip(hvars, exprs))
        init = [INIT] * self.n
        if fp == "float64":
            self.ta = hy.taylor_adaptive(sys_, init, compact_mode=self.compact)
        else:
            self.ta = hy.taylor_adaptive(sys_, [hy.real(v, prec) for v in init], fp_type=hy.real, prec=prec,
                                         compact_mode=self.compact)
        self.compile_s = time.perf_counter() - t0

    def rhs_s(self, w0: np.ndarray) -> float:
        cf = self.cf
        return rhs_time(lambda: cf(w0))

    def run(self, w0, T: float, budget: float) -> Run:
        hy, ta = self.hy, self.ta
        r = Run(self.name, self.prep_s)
        if self.fp == "float64":
            ta.state[:] = np.asarray(w0, dtype=float)
            ta.time = 0.0
            target = T
        else:
            ta.state[:] = np.array([hy.real(v, self.prec) for v in w0])
            ta.time = hy.real(0, self.prec)
            target = hy.real(T, self.prec)
        cb = _StepBudget(budget)
        t0 = time.perf_counter()
        try:
            with np.errstate(all="ignore"):
                outcome = ta.propagate_until(target, callback=cb)[0]
            r.status = "ok" if str(outcome).endswith("time_limit") else f"stopped: {outcome}"
            if cb.expired:
                r.status = f"budget: {budget:g} s wall ({cb.steps} steps)"
        except Exception as exc:
            r.status = f"failed: {_why(exc)}"
        r.run_s = time.perf_counter() - t0
        r.t_reached = float(ta.time)
        r.w = [float(v) for v in ta.state] if self.fp == "float64" else list(ta.state)
        r.extra = {"steps": cb.steps, "compact_mode": self.compact}
        if r.status == "ok" and not all(math.isfinite(float(v)) for v in r.w):
            r.status = "nan/inf"
        return r


def heyoka_logtime_run(ps: PeerSystem, log_t: float, budget: float) -> Run:
    """heyoka's Taylor integrator on sambias's clock: ``dw/dtau`` (loss-free) and
    ``s = ln(1 + t)`` with ``ds/dtau = exp(z~ - s)``, stopped by a terminal event at
    ``s = log_t ln 10`` -- what the peer needs to reach ``t = 1e400`` at all."""
    import heyoka as hy
    t0 = time.perf_counter()
    n = len(ps.rhs)
    hv = list(hy.make_vars(*[f"w{i}" for i in range(n)], "s"))
    table = dict(zip(ps.state, hv[:n])) | {k: hy.expression(v) for k, v in ps.data.items()}
    zt_sym = ps.helpers[-1][0]
    flow = _expand(ps, ps.rescaled + (sp.exp(zt_sym - sp.Symbol("s_clock")),))
    table[sp.Symbol("s_clock")] = hv[n]
    exprs = to_heyoka(flow, table)
    s_end = log_t * math.log(10.0)
    ta = hy.taylor_adaptive(list(zip(hv, exprs)), [INIT] * n + [0.0], compact_mode=n > 32,
                            t_events=[hy.t_event(hv[n] - s_end)])
    r = Run("heyoka log-time", ps.derive_s + time.perf_counter() - t0)
    cb = _StepBudget(budget)
    t0 = time.perf_counter()
    try:
        with np.errstate(all="ignore"):
            ta.propagate_until(1e12, callback=cb)
        s_now = float(ta.state[n])
        r.status = "ok" if abs(s_now - s_end) <= 1e-9 * s_end else f"stopped at log10 t = {s_now / math.log(10):.3g}"
        if cb.expired:
            r.status = f"budget: {budget:g} s wall ({cb.steps} steps)"
    except Exception as exc:
        r.status = f"failed: {_why(exc)}"
    r.run_s = time.perf_counter() - t0
    r.w = [float(v) for v in ta.state[:n]]
    s_now = float(ta.state[n])
    r.t_reached = math.expm1(s_now) if s_now < 700 else math.inf
    r.extra = {"log10_t_reached": s_now / math.log(10.0), "tau": float(ta.time), "steps": cb.steps}
    if r.status == "ok" and not all(math.isfinite(v) for v in r.w):
        r.status = "nan/inf"
    return r


def scipy_run(p: Problem, T: float, budget: float) -> Run:
    """scipy's DOP853 on the hand-written numpy oracle, stepped as ``solve_ivp`` steps it (without
    storing every step: a chattering run takes millions), so a run cut off says how far it got."""
    from scipy.integrate import DOP853
    f = oracle_rhs(p)
    w0 = p.initial_weights().ravel().astype(float)
    r = Run("solve_ivp", 0.0)
    t0 = time.perf_counter()
    solver = None
    try:
        with alarm(budget), np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            solver = DOP853(f, 0.0, w0, T, rtol=RTOL, atol=ATOL)
            while solver.status == "running":
                solver.step()
        r.status = "ok" if solver.status == "finished" else f"failed: {str(solver.message)[:80]}"
    except PeerTimeout as exc:
        r.status = f"budget: {exc}"
    except Exception as exc:
        r.status = f"failed: {_why(exc)}"
    r.run_s = time.perf_counter() - t0
    if solver is not None:
        r.t_reached, r.w = float(solver.t), [float(v) for v in solver.y]
        r.extra = {"nfev": int(solver.nfev)}
    if r.status == "ok" and not all(math.isfinite(v) for v in r.w):
        r.status = "nan/inf"
    return r


def naive_run(p: Problem, T: float, budget: float) -> Run:
    """The discrete algorithm with a small step (the oracle's gradient)."""
    f = oracle_rhs(p)
    w = p.initial_weights().ravel().astype(float)
    steps = int(round(T / ETA))
    r = Run(f"naive eta={ETA:g}", 0.0)
    t0 = time.perf_counter()
    k = 0
    try:
        with alarm(budget), np.errstate(all="ignore"):
            for k in range(steps):
                w = w + ETA * f(0.0, w)
        k = steps
    except PeerTimeout as exc:
        r.status = f"budget: {exc}"
    r.run_s = time.perf_counter() - t0
    r.t_reached, r.w = k * ETA, [float(v) for v in w]
    r.extra = {"steps": k, "s_per_step": r.run_s / max(k, 1)}
    return r


def odefun_run(p: Problem, T: float, dps: int, budget: float) -> Run:
    """mpmath ``odefun`` (Taylor series) on the oracle's equations in mpf arithmetic."""
    import mpmath
    x = [mpmath.mpf(v) for v in p.X[0]]
    L, d, alg = p.depth, p.dim, p.algorithm
    r = Run("mpmath odefun", 0.0)

    def grad(W):
        beta = [mpmath.fprod(W[l][j] for l in range(L)) for j in range(d)]
        lp = -mpmath.exp(-mpmath.fsum(a * b for a, b in zip(x, beta)))
        return [[lp * x[j] * mpmath.fprod(W[k][j] for k in range(L) if k != l) for j in range(d)] for l in range(L)]

    def F(t, w):
        W = [list(w[l * d:(l + 1) * d]) for l in range(L)]
        if alg != "gd":
            g = grad(W)
            if alg == "l2-sam":
                nrm = mpmath.sqrt(mpmath.fsum(v * v for row in g for v in row))
                W = [[W[l][j] + p.rho * g[l][j] / nrm for j in range(d)] for l in range(L)]
            else:
                W = [[W[l][j] + p.rho * mpmath.sign(g[l][j]) for j in range(d)] for l in range(L)]
        return [-v for row in grad(W) for v in row]

    t0 = time.perf_counter()
    try:
        with mpmath.workdps(dps), alarm(budget):
            sol = mpmath.odefun(F, 0, [mpmath.mpf(INIT)] * (L * d))
            w = sol(T)
            r.w = [mpmath.nstr(v, dps + 5) for v in w]
        r.t_reached = T
    except PeerTimeout as exc:
        r.status = f"budget: {exc}"
    r.run_s = time.perf_counter() - t0
    return r


# ---------------------------------------------------------------------------------------------
# Agreement
# ---------------------------------------------------------------------------------------------
def rel_diff(w, ref) -> float:
    """``max|w - ref| / max(max|ref|, INIT)``: the floor keeps all-zero limits (linf-SAM) meaningful."""
    if w is None or ref is None:
        return math.nan
    a, b = np.asarray(w, dtype=float), np.asarray(ref, dtype=float)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return math.inf
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), INIT))


def digits_detail(w, ref) -> tuple[float, int, str]:
    """``(fewest correct digits, at which coordinate, ref's value there)``: relative per
    coordinate (a coordinate at 1e-38 must keep its digits); both within ``ZERO_MP`` of 0 counts as
    agreeing; a reference exactly 0 (a Filippov-pinned coordinate) is compared on the init scale."""
    import mpmath
    with mpmath.workdps(120):
        worst, at, val = math.inf, -1, ""
        for j, (a, b) in enumerate(zip(w, ref)):
            a, b = mpmath.mpf(str(a)), mpmath.mpf(str(b))
            if abs(a) <= ZERO_MP and abs(b) <= ZERO_MP:
                continue
            err = abs(a - b)
            if err == 0:
                continue
            dig = float(-mpmath.log10(err / (abs(b) if b != 0 else mpmath.mpf(INIT))))
            if dig < worst:
                worst, at, val = dig, j, mpmath.nstr(b, 3)
        return worst, at, val


def resolved_digits(w, ref, floor: float = HEY_RESOLVED) -> float:
    """:func:`correct_digits` over the coordinates with ``|ref| >= floor`` only."""
    keep = [j for j, b in enumerate(ref) if abs(float(b)) >= floor]
    return correct_digits([w[j] for j in keep], [ref[j] for j in keep])


def correct_digits(w, ref) -> float:
    """Fewest correct digits over the coordinates (see :func:`digits_detail`)."""
    return digits_detail(w, ref)[0]


def mark(rel: float, tol: float) -> str:
    if math.isnan(rel):
        return "-"
    return f"{rel:.1e}" + ("" if rel <= tol else " DISAGREE")


# ---------------------------------------------------------------------------------------------
# One instance
# ---------------------------------------------------------------------------------------------
def _log(msg: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def measure(p: Problem, quick: bool, budget: float, with_mp: bool, with_odefun: bool) -> dict:
    out: dict = {"instance": label(p), "algorithm": p.algorithm, "depth": p.depth, "dim": p.dim}
    w0 = p.initial_weights().ravel().astype(float)
    repeats = 2 if quick else 3
    # --- sambias float64 ---
    _log(f"{label(p)}: sambias float64")
    sam, sam_rhs = sambias_float(p, HORIZONS + (FAR,), repeats)
    _log("peers: derive + compile")
    out["rhs_us"] = {"sambias": sam_rhs * 1e6}
    # --- peers' system ---
    ps = peer_system(p)
    out["peer_derive_s"] = ps.derive_s
    jit = Jitcode(ps)
    hey = Heyoka(ps)
    numpy_f = oracle_rhs(p)
    out["rhs_us"].update({"jitcode": jit.rhs_s(w0) * 1e6, "heyoka cfunc": hey.rhs_s(w0) * 1e6,
                          "numpy oracle": rhs_time(lambda: numpy_f(0.0, w0)) * 1e6})
    out["compile_s"] = {"sambias": sam[HORIZONS[0]].prep_s, "jitcode": jit.compile_s,
                        "heyoka taylor": hey.compile_s, "heyoka cfunc": hey.cfunc_s,
                        "heyoka translate": hey.translate_s}
    rows: dict = {}
    _log("peers: runs")
    for T in HORIZONS:
        ref = sam[T]
        runs = [ref, jit.run(w0, T), hey.run(w0, T, budget), scipy_run(p, T, budget)]
        if T <= 1e3:
            runs.append(naive_run(p, T, budget))
        rows[f"{T:g}"] = runs
    # t = 1e400: sambias reaches it; float64 peers are asked for FLOAT_FAR
    far = [sam[FAR], jit.run(w0, FLOAT_FAR), hey.run(w0, FLOAT_FAR, budget), scipy_run(p, FLOAT_FAR, budget)]
    for r in far[1:]:
        r.extra["asked"] = FLOAT_FAR
    rows[FAR] = far
    # the peer given sambias's own clock: judged against sambias at t = 1e400 itself
    log_run = heyoka_logtime_run(ps, float(FAR[2:]), budget)
    out["far_logtime"] = log_run.to_dict()
    out["far_logtime"]["rel_vs_sambias"] = rel_diff(log_run.w, sam[FAR].w) if log_run.status == "ok" else math.nan
    out["rows"] = {}
    for key, runs in rows.items():
        ref = runs[0]
        out["rows"][key] = [ref.to_dict()]
        for r in runs[1:]:
            d = r.to_dict()
            target = FLOAT_FAR if key == FAR else float(key)
            if r.w is not None and r.t_reached == target and key != FAR:
                d["rel_vs_sambias"] = rel_diff(r.w, ref.w)
            else:  # stopped early (or the far row): judge it against sambias at the time it reached
                d["rel_vs_sambias"] = rel_diff(r.w, sambias_at(p, r.t_reached)) if r.w is not None else math.nan
                d["judged_at_t_reached"] = True
            out["rows"][key].append(d)
    if with_mp:
        _log("mp row")
        out["mp"] = measure_mp(p, ps, budget, with_odefun)
    return out


def measure_mp(p: Problem, ps: PeerSystem, budget: float, with_odefun: bool) -> dict:
    res: dict = {}
    h = f"{MP_T:g}"
    def e2e(prec):
        clear_caches()
        return simulate(p, h, precision=prec)
    # the float64 row ran first (imports, disk caches warm); an mp run is long enough for one timing
    total, tr = best_of(lambda: e2e(f"mp:{MP_DIGITS}"), 2, cap_s=1.0)
    sam_w = [str(v) for v in final_weights(tr)]
    _, tr80 = best_of(lambda: simulate(p, h, precision="mp:80"), 1)
    ref80 = [str(v) for v in final_weights(tr80)]
    h200 = Heyoka(ps, "real", 200, cfunc=False)
    r200 = h200.run([INIT] * len(ps.rhs), MP_T, 4 * budget)
    ref200 = [str(v) for v in r200.w]
    h166 = Heyoka(ps, "real", 166, cfunc=False)
    r166 = h166.run([INIT] * len(ps.rhs), MP_T, budget)
    res["worst_coordinate"] = {"sambias_vs_heyoka200": digits_detail(sam_w, ref200)[1:],
                               "heyoka166_vs_mp80": digits_detail([str(v) for v in r166.w], ref80)[1:]}
    res["sambias"] = {"end_to_end_s": total, "status": tr.status,
                      "digits_vs_heyoka200": correct_digits(sam_w, ref200),
                      "digits_vs_heyoka200_resolved": resolved_digits(sam_w, ref200),
                      "digits_vs_mp80": correct_digits(sam_w, ref80)}
    res["heyoka real166"] = {"compile_s": h166.prep_s, "run_s": r166.run_s, "total_s": r166.total_s,
                             "status": r166.status, "digits_vs_heyoka200": correct_digits([str(v) for v in r166.w], ref200),
                             "digits_vs_mp80": correct_digits([str(v) for v in r166.w], ref80)}
    res["heyoka real200"] = {"status": r200.status, "digits_vs_mp80": correct_digits(ref200, ref80),
                             "total_s": r200.total_s}
    if with_odefun:
        ro = odefun_run(p, MP_T, MP_DIGITS, budget)
        res["mpmath odefun"] = {"run_s": ro.run_s, "status": ro.status,
                                "digits_vs_heyoka200": correct_digits(ro.w, ref200) if ro.w else math.nan,
                                "digits_vs_mp80": correct_digits(ro.w, ref80) if ro.w else math.nan}
    return res


# ---------------------------------------------------------------------------------------------
# Table
# ---------------------------------------------------------------------------------------------
def _fmt(v: float, unit: str = "s") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if unit == "us":
        return f"{v:.2f}" if v < 10 else f"{v:.0f}"
    return f"{v:.3g}"


def _ratio_range(vals: list) -> str:
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    if not vals:
        return "-"
    return f"{min(vals):.3g}-{max(vals):.3g}x (median {statistics.median(vals):.3g}x)"


def summarise(results: list, ensemble: dict | None) -> tuple[list, list]:
    """Per-instance lines and the summary (task, sambias, peers, target, met)."""
    lines = []
    lines.append("| instance | RHS µs sambias / jitcode / heyoka cfunc / numpy | 1e6: sambias e2e (integ) | jitcode e2e (integ) | heyoka e2e (integ) | solve_ivp | agree jit/hey/ivp | 1e400 sambias s | peers asked for 1e300 (reached, status, rel); heyoka in log time to 1e400 e2e (integ) |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for res in results:
        rhs = res["rhs_us"]
        r6 = {r["peer"]: r for r in res["rows"]["1e+06"]}
        rf = {r["peer"]: r for r in res["rows"][FAR]}
        s, j, h, v = r6["sambias"], r6["jitcode"], r6["heyoka"], r6["solve_ivp"]
        far_peers = "; ".join(f"{k}: {_short(r)}" for k, r in rf.items() if k != "sambias")
        lt = res.get("far_logtime")
        if lt:
            far_peers += (f"; heyoka log-time: {lt['status'].split(':')[0]} {_fmt(lt['total_s'])} s "
                          f"({_fmt(lt['run_s'])}) rel {mark(lt['rel_vs_sambias'], AGREE_F64)}")
        lines.append(
            f"| {res['instance']} | {_fmt(rhs['sambias'], 'us')} / {_fmt(rhs['jitcode'], 'us')} / "
            f"{_fmt(rhs['heyoka cfunc'], 'us')} / {_fmt(rhs['numpy oracle'], 'us')} | "
            f"{_fmt(s['extra']['end_to_end_s'])} ({_fmt(s['run_s'])}) | {_fmt(j['total_s'])} ({_fmt(j['run_s'])}) {_st(j)}| "
            f"{_fmt(h['total_s'])} ({_fmt(h['run_s'])}) {_st(h)}| {_fmt(v['run_s'])} {_st(v)}| "
            f"{mark(j.get('rel_vs_sambias', math.nan), AGREE_F64)} / {mark(h.get('rel_vs_sambias', math.nan), AGREE_F64)} / "
            f"{mark(v.get('rel_vs_sambias', math.nan), AGREE_F64)} | {_fmt(rf['sambias']['extra']['end_to_end_s'])} {_st(rf['sambias'])}| {far_peers} |")
    mp_lines = []
    if any("mp" in r for r in results):
        mp_lines.append("| instance | sambias mp:50 e2e s | digits vs hey200 [on abs(w) >= 1e-10] / mp:80 | heyoka real166 incl. compile (compile) | heyoka166 digits | odefun s (digits) |")
        mp_lines.append("|---|---|---|---|---|---|")
        for res in results:
            m = res.get("mp")
            if not m:
                continue
            s, h = m["sambias"], m["heyoka real166"]
            o = m.get("mpmath odefun")
            od = "-" if o is None else f"{_fmt(o['run_s'])} ({_dg(o['digits_vs_mp80'])}) {o['status'] if o['status'] != 'ok' else ''}"
            mp_lines.append(f"| {res['instance']} | {_fmt(s['end_to_end_s'])} {'' if s['status'] == 'ok' else s['status']} | "
                            f"{_dg(s['digits_vs_heyoka200'])}{_wc(m, 'sambias_vs_heyoka200')} [resolved {_dg(s['digits_vs_heyoka200_resolved'])}] / {_dg(s['digits_vs_mp80'])} | {_fmt(h['total_s'])} ({_fmt(h['compile_s'])}) "
                            f"{'' if h['status'] == 'ok' else h['status']}| {_dg(h['digits_vs_mp80'])}{_wc(m, 'heyoka166_vs_mp80')} | {od} |")
    summary = targets(results, ensemble)
    return lines + [""] + mp_lines, summary


def _wc(m: dict, key: str) -> str:
    """Where the fewest digits are: `` (w[j] = value)``."""
    j, val = m.get("worst_coordinate", {}).get(key, (-1, ""))
    return "" if j < 0 else f" (w[{j}]={val})"


def _dg(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else ("all" if v == math.inf else f"{v:.1f}")


def _st(r: dict) -> str:
    return "" if r["status"] == "ok" else f"[{r['status'].split(':')[0]}] "


def _short(r: dict) -> str:
    t = r["t_reached"]
    lt = "-" if not (t and t > 0 and math.isfinite(t)) else f"1e{math.log10(t):.0f}"
    rel = r.get("rel_vs_sambias", math.nan)
    return f"{lt} {r['status'].split(':')[0]} rel {('-' if math.isnan(rel) else f'{rel:.0e}')}"


def targets(results: list, ensemble: dict | None) -> list:
    """The issue's targets, each with the measured ratio and whether it is met."""
    rows = []
    e2e_ratio, integ_ratio, far_ms, mp_ratio, mp_digits = [], [], [], [], []
    for res in results:
        r6 = {r["peer"]: r for r in res["rows"]["1e+06"]}
        s = r6["sambias"]
        peers_ok = [r for k, r in r6.items() if k in ("jitcode", "heyoka", "solve_ivp") and r["status"] == "ok"
                    and r.get("rel_vs_sambias", math.inf) <= AGREE_F64]
        if peers_ok:
            fastest = min(r["total_s"] for r in peers_ok)
            e2e_ratio.append(s["extra"]["end_to_end_s"] / fastest)
        h = r6["heyoka"]
        if h["status"] == "ok":
            integ_ratio.append(s["run_s"] / h["run_s"])
        if res["depth"] == 2 and res["dim"] <= 16:
            far_ms.append(1e3 * {r["peer"]: r for r in res["rows"][FAR]}["sambias"]["extra"]["end_to_end_s"])
        m = res.get("mp")
        if m:
            mp_ratio.append(m["sambias"]["end_to_end_s"] / m["heyoka real166"]["total_s"])
            # heyoka steps through linf-SAM's sign switch (no Filippov sliding): no reference there
            hey = m["sambias"]["digits_vs_heyoka200_resolved"] if res["algorithm"] != "linf-sam" else math.inf
            mp_digits.append(min(hey, m["sambias"]["digits_vs_mp80"]))
    def met(vals, ok):
        return "-" if not vals else ("met" if ok(vals) else "MISSED")
    rows.append(("float64 to 1e6 end to end / fastest peer end to end", _ratio_range(e2e_ratio), "<= 1x every instance",
                 met(e2e_ratio, lambda v: max(v) <= 1.0)))
    rows.append(("float64 to 1e6 integration / heyoka Taylor integration", _ratio_range(integ_ratio), "<= 3x every instance",
                 met(integ_ratio, lambda v: max(v) <= 3.0)))
    rows.append(("t = 1e400 end to end, L = 2, d <= 16 (ms)",
                 "-" if not far_ms else f"median {statistics.median(far_ms):.1f} ms (range {min(far_ms):.1f}-{max(far_ms):.1f})",
                 "median <= 30 ms", met(far_ms, lambda v: statistics.median(v) <= 1e3 * TARGET_FAR_S)))
    rows.append(("mp:50 to t = 10 / heyoka real166 incl. compile", _ratio_range(mp_ratio), "<= 1x every instance",
                 met(mp_ratio, lambda v: max(v) <= 1.0)))
    rows.append(("mp:50 correct digits (min over coordinates: vs mp:80; vs heyoka 200 bits where it resolves them, not linf-SAM)",
                 "-" if not mp_digits else f"min {min(mp_digits):.1f}", ">= 45", met(mp_digits, lambda v: min(v) >= 45)))
    if ensemble:
        rows.append(("ensemble (E's bench, referenced)", ensemble.get("summary", "see results/ensemble.json"),
                     "1000-instance linf L=2 grid to 1e400 < 30 s", ensemble.get("met", "-")))
    else:
        rows.append(("ensemble (E's bench, referenced)", "no results/ensemble.json yet", "1000 instances < 30 s", "-"))
    return rows


def peer_ranges(results: list) -> list:
    """The issue's table layout: ranges of peer time / sambias time."""
    rows = []
    def ratio(peer, key, sam_key="run_s", peer_key="run_s"):
        vals = []
        for res in results:
            r = {x["peer"]: x for x in res["rows"][key]}
            if peer in r and r[peer]["status"] == "ok":
                s = r["sambias"]
                sv = s["extra"]["end_to_end_s"] if sam_key == "e2e" else s[sam_key]
                vals.append(r[peer][peer_key] / sv)
        return _ratio_range(vals)
    rhs_s = [r["rhs_us"]["sambias"] for r in results]
    rows.append(("one RHS call", f"{min(rhs_s):.2f}-{max(rhs_s):.2f} µs",
                 "; ".join(f"{k} {_ratio_range([r['rhs_us'][k] / r['rhs_us']['sambias'] for r in results])}"
                           for k in ("jitcode", "heyoka cfunc", "numpy oracle"))))
    for key in ("1000", "1e+06"):
        sv = [{x["peer"]: x for x in r["rows"][key]}["sambias"] for r in results]
        rows.append((f"float64 to t = {key} (integration; end to end)",
                     f"{min(s['run_s'] for s in sv):.3g}-{max(s['run_s'] for s in sv):.3g} s; "
                     f"{min(s['extra']['end_to_end_s'] for s in sv):.3g}-{max(s['extra']['end_to_end_s'] for s in sv):.3g} s",
                     "; ".join(f"{p} integ {ratio(p, key)}, e2e {ratio(p, key, 'e2e', 'total_s')}"
                               for p in ("jitcode", "heyoka", "solve_ivp")) +
                     (f"; naive loop: {_naive(results)}" if key == "1000" else "")))
    sv = [{x["peer"]: x for x in r["rows"][FAR]}["sambias"] for r in results]
    fails = {}
    for r in results:
        for x in r["rows"][FAR][1:]:
            fails.setdefault(x["peer"], []).append(_short(x))
    rows.append(("t = 1e400", f"{min(s['extra']['end_to_end_s'] for s in sv):.3g}-{max(s['extra']['end_to_end_s'] for s in sv):.3g} s, "
                 f"statuses {sorted(set(s['status'].split(':')[0] for s in sv))}",
                 "peers asked for 1e300: " + "; ".join(f"{k}: {sorted(set(v))[:3]}" for k, v in fails.items()) +
                 "; heyoka in sambias's log time to 1e400: " + _logtime_ratio(results)))
    mp = [r["mp"] for r in results if "mp" in r]
    if mp:
        rows.append(("mp:50 to t = 10", _ratio_range([m["sambias"]["end_to_end_s"] for m in mp]).replace("x", " s"),
                     f"heyoka real166 run {_ratio_range([m['heyoka real166']['run_s'] / m['sambias']['end_to_end_s'] for m in mp])}, "
                     f"incl. compile {_ratio_range([m['heyoka real166']['total_s'] / m['sambias']['end_to_end_s'] for m in mp])}; "
                     f"odefun {_ratio_range([m['mpmath odefun']['run_s'] / m['sambias']['end_to_end_s'] for m in mp if 'mpmath odefun' in m and m['mpmath odefun']['status'] == 'ok'])}"))
    return rows


def _logtime_ratio(results: list) -> str:
    ok = [r for r in results if r.get("far_logtime", {}).get("status") == "ok"
          and r["far_logtime"]["rel_vs_sambias"] <= AGREE_F64]
    sam = lambda r: {x["peer"]: x for x in r["rows"][FAR]}["sambias"]["extra"]["end_to_end_s"]  # noqa: E731
    return (f"{len(ok)}/{len(results)} reached and agree; integ {_ratio_range([r['far_logtime']['run_s'] / sam(r) for r in ok])}, "
            f"e2e {_ratio_range([r['far_logtime']['total_s'] / sam(r) for r in ok])}")


def _naive(results: list) -> str:
    """How the naive loop fared at t = 1e3: reached in its budget, or projected seconds."""
    proj = []
    for res in results:
        r = {x["peer"]: x for x in res["rows"]["1000"]}.get(f"naive eta={ETA:g}")
        if r:
            proj.append(r["extra"]["s_per_step"] * 1e3 / ETA / r_s(res, "1000"))
    return "-" if not proj else f"{_ratio_range(proj)} (projected: {1e3 / ETA:.0e} steps at the measured s/step)"


def r_s(res: dict, key: str) -> float:
    return {x["peer"]: x for x in res["rows"][key]}["sambias"]["run_s"]


def load_ensemble() -> dict | None:
    """E's ensemble benchmark (``results/ensemble.json``): its largest run's wall time."""
    path = RESULTS.parent / "ensemble.json"
    try:
        runs = json.loads(path.read_text()).get("runs", [])
        big = max((r for r in runs if isinstance(r, dict) and "ensemble_wall_s" in r),
                  key=lambda r: (r.get("instances", 0), -r["ensemble_wall_s"]))
    except (OSError, ValueError, AttributeError):
        return None
    wall = float(big["ensemble_wall_s"])
    return {"summary": f"{big.get('instances')} instances d={big.get('d')} to {big.get('horizon')}: {wall:.1f} s "
                       f"({big.get('instances_per_s')} /s; from results/ensemble.json, not re-measured here)",
            "met": "met" if big.get("instances", 0) >= 1000 and wall < 30 else "MISSED"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 instances, shorter budgets")
    ap.add_argument("--no-mp", action="store_true", help="skip the mp:50 row")
    ap.add_argument("--odefun-max-dim", type=int, default=16, help="mpmath odefun only up to this d (slow)")
    ap.add_argument("--budget", type=float, default=None, help="wall seconds per peer run (default 3; quick 2)")
    ap.add_argument("--json", type=Path, default=RESULTS)
    ap.add_argument("--lean", choices=("1", "0", "auto"), default="1",
                    help="SAMBIAS_LEAN for sambias's float64 runs: 1 (default) the lean compiled loop, "
                         "compiled once per shape if missing; 0 the scipy driver (the issue's 'before')")
    args = ap.parse_args(argv)
    os.environ["SAMBIAS_LEAN"] = args.lean
    budget = args.budget or (2.0 if args.quick else 3.0)
    cases = QUICK if args.quick else [(a, L, d) for L in DEPTHS for d in DIMS for a in ALGORITHMS]
    results = []
    started = time.perf_counter()
    for alg, L, d in cases:
        p = problem(alg, L, d)
        t0 = time.perf_counter()
        res = measure(p, args.quick, budget, not args.no_mp, d <= args.odefun_max_dim)
        results.append(res)
        print(f"# {label(p)} measured in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    lines, summary = summarise(results, load_ensemble())
    print("\n".join(lines))
    print("\n| task | sambias | peers (peer time / sambias time) |\n|---|---|---|")
    for task, s, peers in peer_ranges(results):
        print(f"| {task} | {s} | {peers} |")
    print("\n| target | measured | TARGET | met? |\n|---|---|---|---|")
    for row in summary:
        print("| " + " | ".join(row) + " |")
    payload = {"schema": "sambias.bench_peers/1", "quick": args.quick, "budget_s": budget,
               "wall_s": time.perf_counter() - started, "python": platform.python_version(),
               "versions": _versions(), "settings": {"rho": RHO, "init": INIT, "rtol": RTOL, "atol": ATOL, "eta": ETA,
                                                     "agree_f64": AGREE_F64, "float_far": FLOAT_FAR, "mp_t": MP_T,
                                                     "lean": args.lean, "load": os.getloadavg()},
               "targets": [dict(zip(("target", "measured", "TARGET", "met"), r)) for r in summary],
               "instances": results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(_clean(payload), indent=1, allow_nan=False))
    print(f"\nwrote {args.json}", file=sys.stderr)
    return 0


def _clean(v):
    """Strict JSON: non-finite floats become strings ("inf", "nan"), unknown objects their str."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, (bool, int, str)) or v is None:
        return v
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else str(float(v))
    if isinstance(v, np.integer):
        return int(v)
    return str(v)


def _versions() -> dict:
    out = {}
    for mod in ("sambias", "numpy", "scipy", "sympy", "mpmath", "heyoka", "jitcode", "symengine", "numba"):
        try:
            m = __import__(mod)
            out[mod] = getattr(m, "__version__", "?")
        except ImportError:
            out[mod] = None
    return out


if __name__ == "__main__":
    sys.exit(main())
