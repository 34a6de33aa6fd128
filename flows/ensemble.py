"""Ensembles: many instances of one shape integrated as one batch (issue 11.3).

:func:`simulate_ensemble` takes problems that share depth, ``d``, ``n``, algorithm and loss
(different data values, ``rho`` and initialisations: an init grid, a ``rho`` grid) and
returns one :class:`~sambias.flows.trajectory.Trajectory` per problem, as
:func:`~sambias.flows.simulate` would.  The batch path:

* evaluates the derived field for all instances at once (:mod:`sambias.flows.batch_field`:
  the generated kernels on flat arrays of ``B * d`` coordinates);
* integrates, per instance, the weights and ``r = ln(1 + tau)`` in the single driver's
  clock ``nu`` (arc length of ``W`` in units of its initial norm plus ``ln(1 + tau)``, see
  :mod:`sambias.flows.logtime`) with an embedded Dormand-Prince 5(4) pair, each instance
  with its own step size, error control (relative per coordinate) and events;
* carries physical time by quadrature, never as an ODE: ``t = int e^{phi(W)} dtau`` is
  accumulated as ``ln t`` step by step from a quartic fit of ``psi = phi - log D`` on the
  step (``dt/dnu = e^psi``), so the stiff clock of the single driver does not limit the
  explicit steps and ``t = 1e400`` (or ``e^{1e50}``) is reached;
* handles events per instance: the horizon (either clock), overflow, l2-SAM's collapse,
  linf-SAM's Filippov switches (a coordinate reaching 0, an equivalent control reaching
  +-1: the instance settles its new mode and goes on while the others keep stepping),
  leader changes (located on the dense output), and a frozen ``W`` (clocks advanced exactly).

Whatever the batch path does not cover is run by the single driver, never approximated:
``simulate_ensemble`` routes a problem there up front (linf-SAM other than ``L = 2`` with
one example, general flat perturbations, ``rho = 0`` with a perturbed algorithm, a zero
initial coordinate under linf-SAM, starts outside float64's range) and hands over any
instance the batch gives up on (chattering, a step size underflow, the step cap).
``trajectory.stats["ensemble"]`` says which path ran and why.

A batch instance's arithmetic never mixes with another's (no reduction across
instances), so its result does not depend on which other instances share the batch.

>>> from sambias import Problem, Init
>>> ps = [Problem(depth=2, algorithm="linf-sam", rho=0.5, X=[[3.0, 2.0, 1.0]], y=[1],
...               init=Init(layers=[[u, 1.0, 0.3], [0.5, 0.5, 0.3]])) for u in (0.3, 1.2)]
>>> [int(tr.direction_final.argmax()) for tr in simulate_ensemble(ps, "1e400")]
[1, 0]
"""

from __future__ import annotations

import math
import time as _time
from typing import Sequence

import numpy as np

from sambias.errors import ProblemError
from sambias.horizon import Horizon, parse_horizon
from sambias.problem import Problem

from .batch_field import BatchField, BatchUnsupported, Modes, shape_key
from .collapse import COLLAPSE_RTOL, collapse_status, is_filippov, is_normalised, stationary_status
from .logtime import LN10, frozen_clocks, ln1p_of_horizon, log10_t_from_s, tau_from_r
from .logtime import where as _where
from .losses import log10_loss_rows
from .trajectory import DominantSwitch, Trajectory

DEFAULT_RTOL = 1e-9          # as the single driver
ATOL_FLOOR = 1e-100          # relative error control per coordinate (as the single driver)
MAX_ATTEMPTS = 200_000       # steps an instance may try in the batch before the single driver takes it
CHATTER_LIMIT = 50           # events at one instant before the single driver takes the instance
SAVE_CAP = 150               # saved points per instance kept (halved when twice this)
FREEZE_RTOL = 1.0            # W frozen once |dW/dtau| (1 + tau) < FREEZE_RTOL * rtol * scale
SNAP_FACTOR, SNAP_RTOL = 100.0, 1e-12   # linf-SAM: coordinates put on 0 at an event (as the single driver)
TIE_RTOL = 1e-12             # leader ties (as flows.dominant)
STIFF_STEPS = 15             # accepted stiff steps in a row before the single driver takes the instance
BISECT = 60                  # bisection steps locating an event on a step (2^-60 of the step)

# Dormand-Prince 5(4) (the RK45 of scipy): nodes, stages, weights, error and dense output
_C = np.array([0.0, 0.2, 0.3, 0.8, 8.0 / 9.0, 1.0])
_A = [np.array([]), np.array([0.2]), np.array([3 / 40, 9 / 40]), np.array([44 / 45, -56 / 15, 32 / 9]),
      np.array([19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729]),
      np.array([9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656])]
_B = np.array([35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84])
_E = np.array([-71 / 57600, 0.0, 71 / 16695, -71 / 1920, 17253 / 339200, -22 / 525, 1 / 40])
_P = np.array([
    [1.0, -8048581381 / 2820520608, 8663915743 / 2820520608, -12715105075 / 11282082432],
    [0.0, 0.0, 0.0, 0.0],
    [0.0, 131558114200 / 32700410799, -68118460800 / 10900136933, 87487479700 / 32700410799],
    [0.0, -1754552775 / 470086768, 14199869525 / 1410260304, -10690763975 / 1880347072],
    [0.0, 127303824393 / 49829197408, -318862633887 / 49829197408, 701980252875 / 199316789632],
    [0.0, -282668133 / 205662961, 2019193451 / 616988883, -1453857185 / 822651844],
    [0.0, 40617522 / 29380423, -110615467 / 29380423, 69997945 / 29380423]])
# the clock psi is fitted by a quartic through these nodes of a step
_NODES = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_VANDER_INV = np.linalg.inv(np.vander(_NODES, 5, increasing=True))
_GRID = np.linspace(0.0, 1.0, 65)


def simulate_ensemble(problems: Sequence[Problem], horizon: Horizon | str | float | int, *,
                      time: str = "physical", rtol: float | None = None, atol: float | None = None,
                      max_steps: int | None = None, batch: bool = True) -> list[Trajectory]:
    """Integrate every problem to ``horizon``; one :class:`Trajectory` per problem, in order.

    Arguments as :func:`sambias.flows.simulate` (float64 only).  Problems of one shape
    (depth, ``d``, ``n``, algorithm, loss) are integrated as a batch; problems of several
    shapes are grouped by shape.  ``batch=False`` runs every problem through the single
    driver (the reference the batch is checked against).  Bad arguments raise
    :class:`~sambias.errors.ProblemError` with one line.

    >>> from sambias import Problem, Init
    >>> ps = [Problem(depth=2, algorithm="gd", X=[[3.0, 1.0]], y=[1], init=Init(scale=a)) for a in (0.1, 1.0)]
    >>> [tr.status for tr in simulate_ensemble(ps, "1e100")]
    ['ok', 'ok']
    """
    problems = list(problems)
    h = _check(problems, horizon, time, rtol, atol, max_steps)
    out: list[Trajectory | None] = [None] * len(problems)
    single: list[tuple[int, str]] = []
    groups: dict[tuple, list[int]] = {}
    # a rescaled horizon below the bisection's resolution of a first step (2^-60): single driver
    tiny = time == "rescaled" and h.log10 < -12
    for i, p in enumerate(problems):
        reason = "batch=False" if not batch else ("rescaled horizon below 1e-12" if tiny else _unsupported(p))
        if reason:
            single.append((i, reason))
        else:
            groups.setdefault(shape_key(p), []).append(i)
    for idxs in groups.values():
        try:
            run = _Ensemble([problems[i] for i in idxs], h, time=time, rtol=rtol, atol=atol, max_steps=max_steps)
        except BatchUnsupported as exc:
            single.extend((i, str(exc)) for i in idxs)
            continue
        for i, (traj, reason) in zip(idxs, run.run()):
            if traj is None:
                single.append((i, reason))
            else:
                out[i] = traj
    from sambias.flows import simulate      # the single driver, whichever module provides it

    for i, reason in sorted(single):
        tr = simulate(problems[i], h, time=time, rtol=rtol, atol=atol, max_steps=max_steps)
        tr.stats["ensemble"] = {"path": "single", "reason": reason}
        out[i] = tr
    return out  # type: ignore[return-value]


def _check(problems, horizon, time, rtol, atol, max_steps) -> Horizon:
    if not problems:
        raise ProblemError("problems: expected at least one problem")
    for i, p in enumerate(problems):
        if not isinstance(p, Problem):
            raise ProblemError(f"problems[{i}]: expected a sambias Problem, got {type(p).__name__}")
    if time not in ("physical", "rescaled"):
        raise ProblemError(f"time: expected 'physical' or 'rescaled', got {time!r}")
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
                or not (math.isfinite(value) and value > 0):
            raise ProblemError(f"{name}: expected a positive finite number, got {value!r}")
    if rtol is not None and rtol >= 1:
        raise ProblemError(f"rtol: must be below 1, got {rtol!r}")
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer))
                                  or max_steps < 1):
        raise ProblemError(f"max_steps: expected a positive integer, got {max_steps!r}")
    return horizon if isinstance(horizon, Horizon) else parse_horizon(horizon)


def _unsupported(p: Problem) -> str:
    """Why the batch path leaves ``p`` to the single driver ('' when it takes it)."""
    from sambias.symbolic.algorithms import get_algorithm

    alg = get_algorithm(p.algorithm)
    w0 = p.initial_weights()
    if p.rho == 0 and p.algorithm != "gd":
        return "rho = 0 with a perturbed algorithm"
    if alg.discontinuous and p.rho > 0:
        if p.depth != 2 or p.n != 1:
            return "linf-type flow other than L = 2 with one example"
        if np.any(w0 == 0.0):
            return "linf-type flow with a zero initial coordinate"
    if not np.all(np.isfinite(w0)) or float(np.max(np.abs(w0))) >= _w_max(p):
        return "start outside float64's range"
    return ""


def _w_max(p) -> float:
    """The single driver's overflow bound on ``|w|`` (margins and the clock in float64)."""
    big = float(np.max(np.abs(p.signed_data))) * p.dim * p.n
    if not big > 0:
        return 1e150
    L = p.depth
    log_w = min(150.0, (298.0 - math.log10(big)) / L)
    if L > 1:
        log_w = min(log_w, (298.0 - 2.0 * math.log10(big)) / (2.0 * (L - 1)))
    return 10.0 ** log_w


def _combine(coefs: np.ndarray, K: np.ndarray) -> np.ndarray:
    """``sum_i coefs[i] K[i]`` by element-wise operations only: a BLAS product could round an
    instance differently depending on the batch around it (vector kernels and their tails)."""
    coefs = np.asarray(coefs)
    if coefs.ndim == 2:
        return np.stack([_combine(c, K) for c in coefs])
    acc = None
    for c, k in zip(coefs, K):
        if c == 0.0:
            continue
        acc = c * k if acc is None else acc + c * k
    return acc if acc is not None else np.zeros_like(K[0])


def _safe_norm_rows(v: np.ndarray) -> np.ndarray:
    m = np.max(np.abs(v), axis=1) if v.shape[1] else np.zeros(v.shape[0])
    safe = np.where(m > 0, m, 1.0)
    return np.where(m > 0, safe * np.sqrt(np.sum((v / safe[:, None]) ** 2, axis=1)), 0.0)


def _leader(b: np.ndarray) -> np.ndarray:
    """Row-wise unique argmax of ``|beta|`` (``-1`` on a tie within TIE_RTOL), as flows.dominant."""
    top = np.argmax(b, axis=1)
    if b.shape[1] == 1:
        return top
    bt = np.take_along_axis(b, top[:, None], axis=1)[:, 0]
    rest = b.copy()
    np.put_along_axis(rest, top[:, None], -np.inf, axis=1)
    second = np.max(rest, axis=1)
    return np.where(bt - second > TIE_RTOL * np.maximum(bt, 1e-300), top, -1)


# --- the clock by quadrature ---------------------------------------------------------------------
def _quartic(psi_nodes: np.ndarray) -> np.ndarray:
    """Coefficients ``c`` (low to high) of the quartic through ``psi`` at ``_NODES`` (rows)."""
    return _combine(_VANDER_INV, psi_nodes.T).T


def _log_integral(coef: np.ndarray, h: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """``ln int_0^theta h e^{psi(x)} dx`` per row, ``psi`` the quartic ``coef``.

    Piecewise exact for ``psi`` linear on 32 and 64 pieces, then Richardson: accurate for
    any slope (at ``psi' ~ 1e50`` the integral is ``e^{psi(theta)} / psi'``, which the
    linear pieces give exactly).
    """
    out = []
    x = theta[:, None] * _GRID[None, :]
    p64 = coef[:, 4:5]
    for k in (3, 2, 1, 0):
        p64 = p64 * x + coef[:, k:k + 1]
    for n, p in ((32, p64[:, ::2]), (64, p64)):
        a, b = p[:, :-1], p[:, 1:]
        dx = (theta / n)[:, None]
        d = b - a
        hi = np.maximum(a, b)
        small = np.abs(d) < 1e-8
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            # int over a piece of e^{a + d u} = e^{max} (1 - e^{-|d|}) / |d|, in logs
            lw = np.where(small, (a + b) / 2, hi + np.log(-np.expm1(-np.abs(d))) - np.log(np.abs(d)))
        lw = lw + np.log(dx)
        top = np.max(lw, axis=1, keepdims=True)
        out.append(top[:, 0] + np.log(np.sum(np.exp(lw - top), axis=1)))
    l32, l64 = out
    with np.errstate(over="ignore", invalid="ignore"):
        corr = np.log(np.maximum((4.0 - np.exp(l32 - l64)) / 3.0, 1e-300))
    return l64 + np.where(np.isfinite(corr), corr, 0.0) + np.log(h)


class _Ensemble:
    def __init__(self, problems, horizon, *, time, rtol, atol, max_steps) -> None:
        self.problems = problems
        self.horizon = horizon
        self.time = time
        self.bf = BatchField(problems)
        p0 = problems[0]
        self.L, self.d = p0.depth, p0.dim
        self.N = self.L * self.d
        self.B = len(problems)
        self.rtol = DEFAULT_RTOL if rtol is None else float(rtol)
        self.W0 = np.stack([np.asarray(p.initial_weights(), float) for p in problems])        # (B, L, d)
        w0 = self.W0.reshape(self.B, self.N)
        self.scale0 = np.max(np.abs(w0), axis=1)
        self.atol_user = atol
        self.atol = np.full(self.B, float(atol)) if atol is not None else ATOL_FLOOR * np.maximum(self.scale0, 1e-6)
        self.atol_zero = 1e-3 * self.rtol * np.maximum(self.scale0, 1e-6)
        self.atol_clock = 1e-3 * self.rtol if atol is None else max(float(atol), 1e-3 * self.rtol)
        self.w_scale = np.maximum(_safe_norm_rows(w0), 1e-3)
        self.w_max = np.array([_w_max(p) for p in problems])
        self.max_attempts = MAX_ATTEMPTS if max_steps is None else min(MAX_ATTEMPTS, int(max_steps))
        if time == "physical":
            self.s_target, self.r_target = ln1p_of_horizon(horizon), math.inf
        else:
            self.s_target, self.r_target = math.inf, ln1p_of_horizon(horizon)
        self.linf = is_filippov(p0)
        self.normalised = is_normalised(p0)
        self.modes = Modes(np.where(self.W0 < 0, -1.0, 1.0), np.zeros(self.W0.shape, bool)) if self.linf else None
        self.norm0 = None
        if self.normalised:
            self.norm0 = _safe_norm_rows(self.bf.normalised_gradient(self.W0, np.arange(self.B)).reshape(self.B, -1))
            if np.any(~(self.norm0 > 0)) or np.any(~np.isfinite(self.norm0)):
                raise BatchUnsupported("l2-type flow that starts at F = 0 (collapsed or underflowing start)")
        # per-instance state
        self.Y = np.concatenate([w0, np.zeros((self.B, 1))], axis=1)      # (W, r)
        self.nu = np.zeros(self.B)
        self.lt = np.full(self.B, -math.inf)                                # ln t
        self.H = np.full(self.B, 1e-3)
        self.active = np.ones(self.B, bool)
        self.result: list = [None] * self.B
        self.handoff: list[str | None] = [None] * self.B
        self.status = ["ok"] * self.B
        self.attempts = np.zeros(self.B, int)
        self.steps = np.zeros(self.B, int)
        self.nfev = np.zeros(self.B, int)
        self.n_events = np.zeros(self.B, int)
        self.chatter = np.zeros(self.B, int)
        self.stiff = np.zeros(self.B, int)
        self.last_event_nu = np.full(self.B, -math.inf)
        self.leader = np.full(self.B, -1)
        self.dominant: list[list[DominantSwitch]] = [[] for _ in range(self.B)]
        self.saved: list[list[tuple]] = [[] for _ in range(self.B)]
        self.frozen_from: list = [None] * self.B
        self.F0 = np.zeros_like(self.Y)
        self.psi0 = np.zeros(self.B)
        self.phi0 = np.zeros(self.B)

    # --- the right-hand side in nu --------------------------------------------------------------
    def _rhs(self, y: np.ndarray, idx: np.ndarray):
        """``(dy/dnu, psi, phi, max|dW/dtau|, bad)`` for state rows ``y`` of instances ``idx``."""
        m = y.shape[0]
        W = y[:, :self.N].reshape(m, self.L, self.d)
        r = y[:, self.N]
        self.nfev[idx] += 1
        if self.linf:
            f, log_S = self.bf.mode_flow(W, idx, self.modes.rows(idx))
            bad = np.zeros(m, bool)
        else:
            f, log_S, bad = self.bf.rescaled_checked(W, idx)
        f = f.reshape(m, self.N)
        nf = _safe_norm_rows(f)
        with np.errstate(divide="ignore"):
            log_D = np.logaddexp(-r, np.log(nf / self.w_scale[idx]))
        inv_D = np.exp(np.minimum(-log_D, 690.0))
        dy = np.empty_like(y)
        dy[:, :self.N] = f * inv_D[:, None]
        dy[:, self.N] = np.exp(-r - log_D)
        phi = -np.asarray(log_S, float)
        psi = phi - log_D
        fmax = np.max(np.abs(f), axis=1) if self.N else np.zeros(m)
        bad = bad | ~np.all(np.isfinite(dy), axis=1) | ~np.isfinite(psi)
        return dy, psi, phi, fmax, bad

    def _start(self, idx) -> None:
        dy, psi, phi, _, bad = self._rhs(self.Y[idx], idx)
        self.F0[idx], self.psi0[idx], self.phi0[idx] = dy, psi, phi
        for b in idx[bad]:
            self._handoff(b, "the field is not finite at the start")

    # --- bookkeeping ----------------------------------------------------------------------------------
    def _handoff(self, b: int, reason: str) -> None:
        self.active[b] = False
        self.handoff[b] = reason

    def _s(self, lt):
        return np.logaddexp(0.0, lt)

    def _save(self, b: int, nu: float, w: np.ndarray, lt: float, r: float) -> None:
        lst = self.saved[b]
        lst.append((float(nu), np.array(w, float), float(np.logaddexp(0.0, lt)), float(r)))
        if len(lst) >= 2 * SAVE_CAP:
            keep = lst[::2]
            if keep[-1] is not lst[-1]:
                keep.append(lst[-1])
            self.saved[b] = keep

    # --- the loop ----------------------------------------------------------------------------------
    def run(self) -> list[tuple[Trajectory | None, str]]:
        start = _time.perf_counter()
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            for b in range(self.B):
                self._save(b, 0.0, self.Y[b, :self.N], -math.inf, 0.0)
            self._start(np.flatnonzero(self.active))
            self.leader = _leader(np.abs(self.bf.beta(self.W0)))
            self.first_pending = self.leader >= 0
            while self.active.any():
                self._step(np.flatnonzero(self.active))
        wall = _time.perf_counter() - start
        out = []
        for b in range(self.B):
            if self.handoff[b] is not None:
                out.append((None, self.handoff[b]))
            else:
                out.append((self._trajectory(b, wall / self.B), ""))
        return out

    def _dense(self, y0, h, Q, theta):
        """State at ``theta`` (per row) on the Dormand-Prince interpolant."""
        acc = Q[:, :, 3] * theta[:, None]
        for k in (2, 1, 0):
            acc = (acc + Q[:, :, k]) * theta[:, None]
        return y0 + h[:, None] * acc

    def _step(self, idx: np.ndarray) -> None:
        y0, h = self.Y[idx], self.H[idx]
        m = idx.size
        K = np.empty((7, m, y0.shape[1]))
        K[0] = self.F0[idx]
        bad = np.zeros(m, bool)
        for i in range(1, 6):
            yi = y0 + h[:, None] * _combine(_A[i], K)
            K[i], _, _, _, bi = self._rhs(yi, idx)
            bad |= bi
        y6 = yi
        y1 = y0 + h[:, None] * _combine(_B, K)
        K[6], psi1, phi1, fmax1, b1 = self._rhs(y1, idx)
        bad |= b1
        err = h[:, None] * _combine(_E, K)
        atol = np.empty_like(y0)
        atol[:, :self.N] = self.atol[idx][:, None]
        if self.atol_user is None:
            atol[:, :self.N] = np.where(y0[:, :self.N] == 0.0, self.atol_zero[idx][:, None], atol[:, :self.N])
        atol[:, self.N] = self.atol_clock
        sc = atol + self.rtol * np.maximum(np.abs(y0), np.abs(y1))
        en = np.sqrt(np.mean((err / sc) ** 2, axis=1))
        ok = (en <= 1.0) & ~bad & np.isfinite(en)
        fac = np.where(en == 0.0, 10.0, np.clip(0.9 * en ** -0.2, 0.2, 10.0))
        fac = np.where(ok, fac, np.where(bad | ~np.isfinite(en), 0.25, np.minimum(fac, 1.0)))
        self.attempts[idx] += 1
        self.H[idx] = h * fac
        for b in idx[~ok]:
            if self.H[b] < 1e-13 * (1.0 + abs(self.nu[b])):
                self._handoff(b, f"step size underflow at nu = {self.nu[b]:.6g}")
        for b in idx[self.attempts[idx] >= self.max_attempts]:
            if self.active[b]:
                self._handoff(b, f"{self.max_attempts} steps attempted")
        if not ok.any():
            return
        # stiffness (Hairer's test for DOPRI5: h |lambda| ~ h |K7 - K6| / |y1 - y6| > 3.25 on 15
        # accepted steps in a row): an implicit method serves the instance better
        with np.errstate(invalid="ignore", divide="ignore"):
            lam = h * _safe_norm_rows(K[6] - K[5]) / _safe_norm_rows(y1 - y6)
        stiff = ok & (lam > 3.25)
        self.stiff[idx] = np.where(stiff, self.stiff[idx] + 1, np.where(ok, 0, self.stiff[idx]))
        for b in idx[self.stiff[idx] >= STIFF_STEPS]:
            self._handoff(b, f"stiff at nu = {self.nu[b]:.6g} (an implicit method takes it)")
        ok &= self.active[idx]
        if not ok.any():
            return
        a = np.flatnonzero(ok)
        ia = idx[a]
        ya0, ha, Ka, ya1 = y0[a], h[a], K[:, a], y1[a]
        Q = np.stack([_combine(_P[:, k], Ka) for k in range(4)], axis=2)        # (m, M, 4)
        # the clock: psi at the quartic's nodes
        psi_nodes = np.empty((a.size, 5))
        psi_nodes[:, 0], psi_nodes[:, 4] = self.psi0[ia], psi1[a]
        for j, th in enumerate((0.25, 0.5, 0.75)):
            yt = self._dense(ya0, ha, Q, np.full(a.size, th))
            _, psi_t, _, _, bt = self._rhs(yt, ia)
            psi_nodes[:, j + 1] = np.where(bt, np.nan, psi_t)
        coef = _quartic(psi_nodes)
        lt0 = self.lt[ia]
        lt1 = np.logaddexp(lt0, _log_integral(coef, ha, np.ones(a.size)))
        lost = np.isnan(lt1)
        if lost.any():
            # the clock cannot be carried over this step (the field failed at a node): the single
            # driver takes the instance rather than a silently wrong t
            for b in ia[lost]:
                self._handoff(b, f"the clock's quadrature failed at nu = {self.nu[b]:.6g}")
            keep = ~lost
            a, ia, ya0, ha, Ka, ya1 = a[keep], ia[keep], ya0[keep], ha[keep], Ka[:, keep], ya1[keep]
            Q, coef, lt0, lt1 = Q[keep], coef[keep], lt0[keep], lt1[keep]
            if a.size == 0:
                return
        self.steps[ia] += 1
        # events of this step (earliest wins); theta = 1 is the step end
        theta, kinds = self._events(ia, ya0, ya1, ha, Q, coef, lt0, lt1, phi1[a])
        cut = theta < 1.0
        yend = ya1.copy()
        if cut.any():
            yend[cut] = self._dense(ya0[cut], ha[cut], Q[cut], theta[cut])
            ltc = np.logaddexp(lt0[cut], _log_integral(coef[cut], ha[cut], theta[cut]))
            lt1 = lt1.copy()
            lt1[cut] = ltc
        self._dominant(ia, ya0, yend, ha, Q, coef, lt0, theta)
        nu1 = self.nu[ia] + theta * ha
        self.Y[ia], self.nu[ia], self.lt[ia] = yend, nu1, lt1
        self.F0[ia], self.psi0[ia], self.phi0[ia] = K[6][a], psi1[a], phi1[a]
        for k, b in enumerate(ia):
            self._save(b, nu1[k], yend[k, :self.N], lt1[k], yend[k, self.N])
        settle = []
        for k, b in enumerate(ia):
            kind = kinds[k]
            if kind is None:
                continue
            if kind in ("horizon", "overflow", "collapse"):
                self._finish(b, kind)
            else:
                settle.append((b, kind))
        if settle:
            self._settle(np.array([b for b, _ in settle]), [k for _, k in settle])
        # frozen W: finish with the clocks advanced exactly (the step end's field is at hand)
        plain = np.array([k is None for k in kinds]) & self.active[ia]
        if plain.any():
            self._check_frozen(ia[plain], fmax1[a][plain], phi1[a][plain], bad[a][plain])

    # --- events ----------------------------------------------------------------------------------
    def _events(self, ia, y0, y1, h, Q, coef, lt0, lt1, phi1):
        m = ia.size
        N = self.N
        theta = np.ones(m)
        kinds = np.full(m, None, dtype=object)
        cands = []      # (kind, rows mask, value function of (rows, theta) -> value; event when value crosses to <= 0)
        if self.time == "physical":
            rows = self._s(lt1) >= self.s_target
            r = np.flatnonzero(rows)
            if r.size:
                theta[r] = self._horizon_root(lt0[r], coef[r], h[r])
                kinds[r] = "horizon"
            rows = np.zeros(m, bool)
            cands.append(("horizon", rows, None))
        else:
            rows = y1[:, N] >= self.r_target
            cands.append(("horizon", rows, lambda r, th: self.r_target - self._dense(y0[r], h[r], Q[r], th)[:, N]))
        wmax = self.w_max[ia]
        rows = np.max(np.abs(y1[:, :N]), axis=1) >= wmax
        cands.append(("overflow", rows, lambda r, th: wmax[r] - np.max(np.abs(self._dense(y0[r], h[r], Q[r], th)[:, :N]), axis=1)))
        if self.normalised:
            def ratio(r, yy):
                W = yy[:, :N].reshape(-1, self.L, self.d)
                F = self.bf.normalised_gradient(W, ia[r]).reshape(W.shape[0], -1)
                return _safe_norm_rows(F) / self.norm0[ia[r]] / COLLAPSE_RTOL - 1.0
            rows = ratio(np.arange(m), y1) <= 0.0
            cands.append(("collapse", rows, lambda r, th: ratio(r, self._dense(y0[r], h[r], Q[r], th))))
        if self.linf:
            pw = self.modes.pw[ia].reshape(m, N)
            free = ~self.modes.pinned[ia].reshape(m, N)

            def cross(r, yy):
                v = np.where(free[r], pw[r] * yy[:, :N], np.inf)
                return np.min(v, axis=1)
            c0, c1 = cross(np.arange(m), y0), cross(np.arange(m), y1)
            rows = (c1 <= 0.0) & (c0 > 0.0) | (c1 < 0.0)
            cands.append(("cross", rows, lambda r, th: cross(r, self._dense(y0[r], h[r], Q[r], th))))
            pinned = self.modes.pinned[ia]
            lone = pinned.sum(axis=1) == 1                                   # (m, d)
            if lone.any():
                rho = self.bf.rho[ia]

                def release(r, yy):
                    W = yy[:, :N].reshape(-1, self.L, self.d)
                    other = np.where(pinned[r][:, 0, :], W[:, 1, :], W[:, 0, :])
                    v = np.where(lone[r], 1.0 - np.abs(other) / rho[r][:, None], np.inf)
                    return np.min(v, axis=1)
                rows = release(np.arange(m), y1) <= 0.0
                cands.append(("release", rows, lambda r, th: release(r, self._dense(y0[r], h[r], Q[r], th))))
        for kind, rows, fn in cands:
            r = np.flatnonzero(rows)
            if fn is None:
                continue
            if r.size == 0:
                continue
            lo, hi = np.zeros(r.size), np.ones(r.size)
            v_lo = fn(r, lo)
            at0 = v_lo <= 0.0
            for _ in range(BISECT):
                mid = 0.5 * (lo + hi)
                v = fn(r, mid)
                below = v <= 0.0
                hi = np.where(below, mid, hi)
                lo = np.where(below, lo, mid)
            root = np.where(at0, 0.0, hi)
            better = root < theta[r]
            theta[r[better]] = root[better]
            kinds[r[better]] = kind
        return theta, kinds

    def _horizon_root(self, lt0, coef, h) -> np.ndarray:
        """``theta`` where ``ln(1 + t)`` reaches the horizon: Newton on ``ln t`` as a function of
        ``u = ln theta`` (``d ln t/du = theta h e^{psi - ln t}``), kept inside its bracket.  In
        ``ln theta`` because a start with a huge margin (``dt/dtau = e^{450}``) reaches a short
        horizon after ``1e-190`` of the first step, where ``ln t`` is linear in ``ln theta``."""
        target = self.s_target + math.log(-math.expm1(-self.s_target))      # ln T
        lo, hi = np.full(h.size, -700.0), np.zeros(h.size)
        u = hi.copy()
        done = np.zeros(h.size, bool)
        for _ in range(60):
            th = np.exp(u)
            lt = np.logaddexp(lt0, _log_integral(coef, h, th))
            g = lt - target
            done |= np.abs(g) <= 1e-14 * max(1.0, abs(target))
            hi = np.where(done | (g >= 0), u, hi)
            lo = np.where(~done & (g < 0), u, lo)
            psi = coef[:, 4]
            for k in (3, 2, 1, 0):
                psi = psi * th + coef[:, k]
            slope = th * h * np.exp(psi - lt)
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                nxt = u - g / slope
            bad = ~np.isfinite(nxt) | (nxt <= lo) | (nxt >= hi)
            nxt = np.where(bad, 0.5 * (lo + hi), nxt)
            if done.all():
                break
            u = np.where(done, u, nxt)
        return np.exp(hi)

    def _dominant(self, ia, y0, yend, h, Q, coef, lt0, theta) -> None:
        m = ia.size
        W1 = yend[:, :self.N].reshape(m, self.L, self.d)
        new = _leader(np.abs(self.bf.beta(W1)))
        old = self.leader[ia]
        # the first leader is dated at the first step end where it is unique (flows.dominant)
        first = self.first_pending[ia] | ((old == -1) & (new >= 0))
        if first.any():
            lte = np.logaddexp(lt0, _log_integral(coef, h, theta))
            for k in np.flatnonzero(first):
                idx0 = int(old[k]) if old[k] >= 0 else int(new[k])
                self._add_switch(ia[k], idx0, float(self._s(lte[k])), float(yend[k, self.N]))
            self.first_pending[ia] = False
            old = np.where(old >= 0, old, new)
        change = (old >= 0) & (new >= 0) & (new != old)
        if change.any():
            r = np.flatnonzero(change)
            a_idx, b_idx = old[r], new[r]

            def gap(th):
                yy = self._dense(y0[r], h[r], Q[r], th)
                bb = np.abs(self.bf.beta(yy[:, :self.N].reshape(r.size, self.L, self.d)))
                return bb[np.arange(r.size), b_idx] - bb[np.arange(r.size), a_idx]
            lo, hi = np.zeros(r.size), theta[r].copy()
            g_lo, g_hi = gap(lo), gap(hi)
            bracket = (g_lo < 0.0) & (g_hi > 0.0)
            for _ in range(BISECT):
                mid = 0.5 * (lo + hi)
                pos = gap(mid) > 0.0
                hi = np.where(pos, mid, hi)
                lo = np.where(pos, lo, mid)
            root = np.where(g_lo == 0.0, 0.0, np.where(bracket, 0.5 * (lo + hi), theta[r]))
            yr = self._dense(y0[r], h[r], Q[r], root)
            ltr = np.logaddexp(lt0[r], _log_integral(coef[r], h[r], np.maximum(root, 1e-300)))
            for k, kk in enumerate(r):
                self._add_switch(ia[kk], int(new[kk]), float(self._s(ltr[k])), float(yr[k, self.N]))
        self.leader[ia] = np.where(new >= 0, new, old)

    def _add_switch(self, b: int, index: int, s: float, r: float) -> None:
        log_t, tau = float(log10_t_from_s(s)), float(tau_from_r(r))
        out = self.dominant[b]
        if len(out) == 1 and log_t < out[0].log10_t:
            out[0] = DominantSwitch(out[0].index, log_t, tau)
        out.append(DominantSwitch(index, log_t, tau))

    # --- the end of an instance ------------------------------------------------------------------
    def _finish(self, b: int, kind: str) -> None:
        self.active[b] = False
        s, r = float(self._s(self.lt[b])), float(self.Y[b, self.N])
        if kind == "horizon":
            self.result[b] = "horizon"
        elif kind == "overflow":
            self.status[b] = (f"overflow: |w| reached {self.w_max[b]:.3g} at {_where(s, r)}; float64 cannot "
                              "carry the weights further (use precision mp:DIGITS)")
        else:
            self.status[b] = collapse_status(log10_t_from_s(s), tau_from_r(r), self.Y[b, :self.N],
                                             self.problems[b])

    def _check_frozen(self, cand, fmax=None, phi=None, bad=None) -> None:
        W = self.Y[cand, :self.N]
        if fmax is None:
            _, _, phi, fmax, bad = self._rhs(self.Y[cand], cand)
        r = self.Y[cand, self.N]
        scale = np.maximum(np.maximum(np.max(np.abs(W), axis=1), self.scale0[cand]), 1e-300)
        with np.errstate(divide="ignore"):
            left = np.where(fmax > 0, np.log(fmax / scale) + r, -np.inf)
        frozen = (left <= math.log(FREEZE_RTOL * self.rtol)) & ~bad
        for k in np.flatnonzero(frozen):
            self._freeze(int(cand[k]), float(phi[k]))

    def _freeze(self, b: int, phi: float) -> None:
        s, r = float(self._s(self.lt[b])), float(self.Y[b, self.N])
        s1, r1 = frozen_clocks(self.time, s, r, phi, self.s_target, self.r_target)
        self.frozen_from[b] = (float(log10_t_from_s(s)), float(tau_from_r(r)))
        nu1 = self.nu[b] + (r1 - r)
        self.Y[b, self.N] = r1
        self.lt[b] = s1 + math.log(-math.expm1(-s1)) if s1 > 0 else -math.inf
        self._save(b, nu1, self.Y[b, :self.N], self.lt[b], r1)
        self.active[b] = False
        self.result[b] = "horizon"
        note = stationary_status(self.problems[b], self.Y[b, :self.N], _where(s, r))
        if note:
            self.status[b] = note

    # --- linf-SAM: settling a new mode at an event --------------------------------------------------
    def _normal(self, W, rows, pw, pinned, k, side):
        """Velocities of the pinned coordinates of layer ``k`` (``(m, d)``), each unpinned on
        ``side``.  With one example ``g`` is constant and a column's velocity depends on that
        column alone, so every column's trial is one evaluation."""
        pw2, pin2 = pw.copy(), pinned.copy()
        pw2[:, k, :] = np.where(pinned[:, k, :], side, pw[:, k, :])
        pin2[:, k, :] = False
        f, _ = self.bf.mode_flow(W, rows, Modes(pw2, pin2))
        return f[:, k, :]

    def _settle(self, rows: np.ndarray, kinds: list) -> None:
        m = rows.size
        L, d, N = self.L, self.d, self.N
        W = self.Y[rows, :N].reshape(m, L, d).copy()
        pw, pinned = self.modes.pw[rows].copy(), self.modes.pinned[rows].copy()
        dw, _ = self.bf.mode_flow(W, rows, Modes(pw, pinned))
        W_scale = np.maximum(np.max(np.abs(W.reshape(m, N)), axis=1), self.scale0[rows])
        snap = SNAP_FACTOR * self.atol[rows] + max(SNAP_RTOL, 10.0 * self.rtol) * W_scale
        near = (np.abs(W) <= snap[:, None, None]) & ~pinned
        signed = pw * W
        hit = np.zeros_like(pinned)
        is_cross = np.array([k == "cross" for k in kinds])
        for i in np.flatnonzero(is_cross):
            free = ~pinned[i]
            if free.any():
                v = np.where(free, signed[i], np.inf)
                hit[i].flat[int(np.argmin(v))] = True
        cand = (near & ((W * dw <= 0.0) | (signed <= 0.0))) | hit | pinned
        W[cand] = 0.0
        base_pw, base_pin = pw.copy(), pinned.copy()
        is_rel = np.array([k == "release" for k in kinds])
        if is_rel.any():
            Pi, _ = self.bf.signs(W, rows, Modes(pw, pinned))
            count = pinned.sum(axis=1)
            go = is_rel[:, None, None] & pinned & (count[:, None, :] == 1) & (np.abs(Pi) >= 1.0 - 1e-6)
            base_pin &= ~go
            base_pw = np.where(go, np.where(Pi > 0, 1.0, -1.0), base_pw)
            cand &= base_pin | ~pinned
        free = ~cand
        base_pw = np.where(free & (W != 0.0), np.where(W < 0.0, -1.0, 1.0), base_pw)
        base_pin &= cand
        # settle (FilippovModel.settle; L = 2 without g-surfaces): every candidate starts pinned,
        # then is released to the side it moves to unless both sides push it in
        pw, pinned = base_pw, base_pin | (cand & (W == 0.0))
        dwb, _ = self.bf.mode_flow(W, rows, Modes(pw, pinned))
        tol = 1e-10 * (1.0 + np.max(np.abs(dwb.reshape(m, N)), axis=1)) + 1e-12 * self.bf.rho[rows]
        for _ in range(2 * (N + d) + 2):
            changed = False
            for k in range(L):      # layer by layer: FilippovModel.settle's order within a column
                r = np.flatnonzero(pinned[:, k, :].any(axis=1))
                if r.size == 0:
                    continue
                fp = self._normal(W[r], rows[r], pw[r], pinned[r], k, 1.0)
                fm = self._normal(W[r], rows[r], pw[r], pinned[r], k, -1.0)
                t = tol[r][:, None]
                # FilippovModel._classify: leave to a repelling side (the stronger of two)
                rep_p, rep_m = fp > t, fm < -t
                go_p = pinned[r, k, :] & rep_p & (~rep_m | (fp >= -fm))
                go_m = pinned[r, k, :] & rep_m & (~rep_p | (fp < -fm))
                go = go_p | go_m
                if go.any():
                    changed = True
                    sub = pinned[r]
                    sub[:, k, :] &= ~go
                    pinned[r] = sub
                    side = pw[r]
                    side[:, k, :] = np.where(go_p, 1.0, np.where(go_m, -1.0, side[:, k, :]))
                    pw[r] = side
            if not changed:
                break
        self.modes.pw[rows], self.modes.pinned[rows] = pw, pinned
        self.Y[rows, :N] = W.reshape(m, N)
        self.n_events[rows] += 1
        same = self.nu[rows] - self.last_event_nu[rows] <= 1e-12 * (1.0 + np.abs(self.nu[rows]))
        self.chatter[rows] = np.where(same, self.chatter[rows] + 1, 0)
        self.last_event_nu[rows] = self.nu[rows]
        for b in rows[self.chatter[rows] >= CHATTER_LIMIT]:
            self._handoff(b, f"{CHATTER_LIMIT} linf-SAM events at one instant")
        for b in rows:
            lst = self.saved[b]
            if lst:
                lst[-1] = (lst[-1][0], self.Y[b, :N].copy(), lst[-1][2], lst[-1][3])
        live = rows[self.active[rows]]
        if live.size:
            self._start(live)
            self._check_frozen(live[self.active[live]])

    # --- the result ----------------------------------------------------------------------------------
    def _trajectory(self, b: int, wall: float) -> Trajectory:
        p = self.problems[b]
        pts = self.saved[b]
        nu = np.array([q[0] for q in pts])
        weights = np.array([q[1] for q in pts]).reshape(-1, self.L, self.d)
        s = np.array([q[2] for q in pts])
        r = np.array([q[3] for q in pts])
        reached = self.result[b] == "horizon"
        log10_t = np.atleast_1d(log10_t_from_s(s)).astype(float)
        tau = np.atleast_1d(tau_from_r(r)).astype(float)
        if reached:
            if self.time == "physical":
                log10_t[-1] = self.horizon.log10
            else:
                tau[-1] = self.horizon.as_float()
        r_fin = float(r[-1])
        log10_tau_final = (r_fin / LN10 + math.log10(-math.expm1(-r_fin))) if r_fin > 50 else (
            math.log10(math.expm1(r_fin)) if r_fin > 0 else -math.inf)
        stats = {"steps": int(self.steps[b]), "attempts": int(self.attempts[b]), "nfev": int(self.nfev[b]),
                 "wall_s": round(wall, 6), "events": int(self.n_events[b]), "saved_points": int(nu.size),
                 "log10_tau_final": log10_tau_final,
                 "ensemble": {"path": "batch", "batch": self.B}}
        if self.frozen_from[b] is not None:
            stats["frozen_from_log10_t"], stats["frozen_from_tau"] = self.frozen_from[b]
        settings = {"time": self.time, "precision": "float64", "method": "ensemble:DOPRI5",
                    "rtol": self.rtol, "atol": float(self.atol[b]), "horizon": str(self.horizon),
                    "clock": "arc length of W + ln(1+tau); state (W, ln(1+tau)); ln t by quadrature"}
        return Trajectory(problem=p, tau=tau, log10_t=log10_t, weights=weights,
                          log10_loss=log10_loss_rows(p, weights), status=self.status[b],
                          dominant=tuple(self.dominant[b]), settings=settings, stats=stats)


# --- agreement with the single driver ---------------------------------------------------------------
def disagreements(single: Trajectory, batch: Trajectory, *, direction_tol: float = 1e-6,
                  clock_rtol: float = 1e-5, switch_tol: float = 1e-3) -> list[str]:
    """How ``batch`` differs from ``single`` beyond the stated tolerances ([] when they agree).

    Compared: the status kind (the text before ``:``), whether ``beta`` collapsed, the final
    direction (max-norm ``direction_tol``), the final clocks (relative ``clock_rtol`` on
    ``tau`` and ``log10 t`` where finite), the leader sequence, and the times of its changes
    after the first (``switch_tol`` in ``log10 t``; the first leader is dated at the first
    solver step, which differs between integrators).

    >>> from sambias import Problem, Init
    >>> p = Problem(depth=2, algorithm="gd", X=[[3.0, 1.0]], y=[1], init=Init(scale=0.5))
    >>> a, b = simulate_ensemble([p, p], "1e50", batch=False)[0], simulate_ensemble([p], "1e50")[0]
    >>> disagreements(a, b)
    []
    """
    out = []
    kind = (single.status.split(":", 1)[0], batch.status.split(":", 1)[0])
    if kind[0] != kind[1]:
        out.append(f"status {kind[0]!r} vs {kind[1]!r}")
    if single.beta_collapsed != batch.beta_collapsed:
        out.append(f"beta_collapsed {single.beta_collapsed} vs {batch.beta_collapsed}")
    da, db = single.direction_final, batch.direction_final
    if da is not None and db is not None:
        err = float(np.max(np.abs(da - db)))
        if not err <= direction_tol:
            out.append(f"direction differs by {err:.3g}")
    for name in ("tau_final", "log10_t_final"):
        x, y = getattr(single, name), getattr(batch, name)
        if math.isfinite(x) or math.isfinite(y):
            if not abs(x - y) <= clock_rtol * max(abs(x), abs(y), 1e-300):
                out.append(f"{name} {x:.10g} vs {y:.10g}")
    la, lb = [s.index for s in single.dominant], [s.index for s in batch.dominant]
    if la != lb:
        out.append(f"leaders {la} vs {lb}")
    else:
        for sa, sb in list(zip(single.dominant, batch.dominant))[1:]:
            if not abs(sa.log10_t - sb.log10_t) <= switch_tol * max(1.0, abs(sa.log10_t)):
                out.append(f"switch to {sa.index} at log10 t {sa.log10_t:.6g} vs {sb.log10_t:.6g}")
    return out
