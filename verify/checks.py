"""Checks on trajectories: each returns a :class:`~sambias.verify.verdict.Verdict`.

* :func:`check_direction` -- directional convergence to a target: the angle over time, its
  trend against ``log t`` (``angle ~ c (log t)^(-p)`` on the tail), an extrapolated limit;
  ``"inconclusive"`` when the horizon is too short to decide, ``"fails"`` when the
  direction stagnated elsewhere or moves away;
* :func:`check_collapse`, :func:`check_limit` -- the limit is ``0`` / a basis vector /
  a direction (a :class:`Limit`); :func:`check_kkt` -- the limit is a KKT point of
  ``min |beta|_{2/L}`` (and which one);
* :func:`predict_linf_limit` (THEORY.md's rule for linf-SAM), :func:`check_limits` and
  :func:`check_init_rule` -- initialisation-dependent limits, predicted against simulated
  over a grid or sample of inits;
* :func:`amplification_profile`, :func:`check_amplification` -- sequential feature
  amplification, stated precisely (see :class:`Amplification`), and
  :func:`amplification_phase_diagram` -- where it holds over ``(init scale, rho)``.

Every verdict's ``evidence`` names the measured numbers, the tolerances, and the
precision and horizon of the runs.  ``margin`` is ``log10(threshold / measured)`` of the
deciding test: decades of slack, negative when it fails.

>>> import numpy as np
>>> from sambias import Problem, Init
>>> from sambias.flows import Trajectory
>>> p = Problem(depth=1, algorithm="gd", X=[[1.0, 0.5]], y=[1], init=Init(scale=0.0))
>>> lt = np.linspace(1, 400, 200)                       # log10 t
>>> ln_t = lt * np.log(10)
>>> beta = np.stack([np.ones_like(lt), 0.5 + 3.0 / ln_t], axis=1)   # -> (1, 0.5) like 1/log t
>>> tr = Trajectory(problem=p, tau=ln_t, log10_t=lt, weights=beta[:, None, :], log10_loss=-lt)
>>> check_direction(tr, [1.0, 0.5], tol=1e-2).outcome
'holds'
>>> check_direction(tr, [1.0, 0.4], tol=1e-2).outcome      # converged, but elsewhere
'fails'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .verdict import Verdict, combine

LN10 = math.log(10.0)


# --- predictions ------------------------------------------------------------------------
@dataclass(frozen=True)
class Limit:
    """A predicted limit of ``beta``: ``kind`` is ``"zero"`` (collapse), ``"basis"``
    (``sign * e_index``) or ``"direction"`` (``vector``, any nonzero direction).

    >>> Limit.basis(2, 4).target().tolist()
    [0.0, 0.0, 1.0, 0.0]
    >>> Limit.zero(3).describe()
    '0 (collapse)'
    """

    kind: str
    dim: int
    index: int | None = None
    vector: tuple[float, ...] | None = None
    label: str = ""
    norm: float | None = None   # p when the target is the l_p max-margin direction

    def __post_init__(self) -> None:
        if self.kind not in ("zero", "basis", "direction"):
            raise ValueError(f"Limit kind must be zero, basis or direction, got {self.kind!r}")
        if self.kind == "basis" and not (0 <= int(self.index) < self.dim):
            raise ValueError(f"basis index {self.index} out of range for d = {self.dim}")
        if self.vector is not None:
            v = np.asarray(self.vector, float)
            n = np.linalg.norm(v)
            if v.shape != (self.dim,) or not n > 0:
                raise ValueError("Limit.vector must be a nonzero vector of length dim")
            object.__setattr__(self, "vector", tuple(float(a) for a in v / n))

    @classmethod
    def basis(cls, index: int, dim: int, sign: float = 1.0, label: str = "") -> "Limit":
        v = np.zeros(dim)
        v[int(index)] = 1.0 if sign >= 0 else -1.0
        return cls("basis", dim, int(index), tuple(v), label)

    @classmethod
    def zero(cls, dim: int, label: str = "") -> "Limit":
        return cls("zero", dim, None, None, label)

    @classmethod
    def direction(cls, vector, label: str = "", norm: float | None = None) -> "Limit":
        """A direction; ``norm = p`` says it is the l_p max-margin direction (the check
        then also follows the margin-normalised l_p norm of the run)."""
        v = np.asarray(vector, float).reshape(-1)
        return cls("direction", v.size, None, tuple(v), label, norm)

    def target(self) -> np.ndarray | None:
        return None if self.vector is None else np.array(self.vector)

    def describe(self) -> str:
        if self.kind == "zero":
            return "0 (collapse)"
        if self.kind == "basis":
            sign = "-" if self.vector[self.index] < 0 else ""
            return f"{sign}e_{self.index}"
        return self.label or "direction " + np.array2string(np.array(self.vector), precision=4)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "index": self.index, "vector": None if self.vector is None else list(self.vector),
                "label": self.label, "norm": self.norm, "describe": self.describe()}


def _single_example(problem) -> tuple[np.ndarray, float]:
    if problem.n != 1:
        raise ValueError(f"this rule is for one example; the problem has n = {problem.n}")
    return np.asarray(problem.X[0], float), float(problem.y[0])


def predict_gd_depth2_limit(problem) -> Limit:
    """GD, one example: the basis vector of the dominant data coordinate ``argmax |x_j|``
    (with the sign of ``y x_j``).  Hypothesis: ``y x_j > 0`` for every j under a
    uniform positive init (otherwise ``beta_j = u_j v_j`` cannot take that sign).

    >>> from sambias import Problem, Init
    >>> predict_gd_depth2_limit(Problem(depth=2, algorithm="gd", X=[[0.5, 3.0, 1.0]], y=[1],
    ...                                 init=Init(scale=0.1))).describe()
    'e_1'
    """
    x, y = _single_example(problem)
    if np.any(y * x <= 0):
        raise ValueError("the GD rule assumes y x_j > 0 for every j")
    ax = np.abs(x)
    k = int(np.argmax(ax))
    if np.sum(ax == ax[k]) > 1:
        raise ValueError("the GD rule assumes a unique largest |x_j|")
    return Limit.basis(k, x.size, np.sign(y * x[k]), label=f"e_{k} (dominant |x|)")


def predict_linf_limit(problem) -> Limit:
    """THEORY.md's rule for linf-SAM, one example, ``y x_j > 0``, positive init.

    * ``L = 2`` (derivation in THEORY.md): coordinate j grows iff ``u_j(0) + v_j(0) > 2 rho``;
      the limit is ``e_{k*}``, ``k*`` the growing coordinate with the largest ``|x_j|``
      (order-agnostic), and ``0`` when none grows.
    * ``L >= 3``, balanced init ``w_j^(l)(0) = alpha_j`` (Cor 3.5 -- *secondary source*):
      ``e_{j*}``, ``j* = argmax_{alpha_j > rho} |x_j| (alpha_j - rho)^(L-2)``; with no
      ``alpha_j > rho``: ``0`` for even L, the direction of ``rho^L`` on every coordinate
      with ``alpha_j <= rho`` for odd L.

    >>> from sambias import Problem, Init
    >>> p = Problem(depth=2, algorithm="linf-sam", rho=0.5, X=[[3.0, 2.0, 1.0, 0.5]], y=[1],
    ...             init=Init(layers=[[0.3, 0.3, 0.8, 0.8]] * 2))
    >>> predict_linf_limit(p).describe()
    'e_2'
    >>> predict_linf_limit(p.replace(init_scale=0.4)).describe()
    '0 (collapse)'
    """
    x, y = _single_example(problem)
    W0 = problem.initial_weights()
    L, rho = problem.depth, problem.rho
    if np.any(y * x <= 0):
        raise ValueError("the linf-SAM rule assumes y x_j > 0 for every j")
    if np.any(W0 <= 0):
        raise ValueError("the linf-SAM rule assumes a positive initialisation")
    ax = np.abs(x)
    if L == 1:
        raise ValueError("the linf-SAM init rule is for depth >= 2")
    if L == 2:
        grows = W0.sum(axis=0) > 2 * rho
        if not grows.any():
            return Limit.zero(x.size, label="0 (no u_j + v_j > 2 rho)")
        k = int(np.flatnonzero(grows)[np.argmax(ax[grows])])
        return Limit.basis(k, x.size, label=f"e_{k} (largest |x_j| among u_j + v_j > 2 rho)")
    if not np.allclose(W0, W0[0], rtol=0, atol=0):
        raise ValueError("the depth >= 3 rule (Cor 3.5) assumes a balanced init (all layers equal)")
    alpha = W0[0]
    above = alpha > rho
    if above.any():
        score = np.where(above, ax * np.abs(alpha - rho) ** (L - 2), -np.inf)
        k = int(np.argmax(score))
        return Limit.basis(k, x.size, label=f"e_{k} (argmax |x_j| (alpha_j - rho)^(L-2), Cor 3.5)")
    if L % 2 == 0:
        return Limit.zero(x.size, label="0 (even L, every alpha_j <= rho)")
    v = np.full(x.size, rho ** L)
    return Limit.direction(v, label="rho^L on every coordinate (odd L, every alpha_j <= rho)")


# --- helpers ------------------------------------------------------------------------------
def run_info(traj) -> dict[str, Any]:
    """Precision, clocks, tolerances and horizon of a run (for ``evidence``)."""
    s = dict(traj.settings or {})
    return {"status": traj.status, "horizon": s.get("horizon"), "time": s.get("time"),
            "precision": s.get("precision"), "method": s.get("method"), "rtol": s.get("rtol"),
            "atol": s.get("atol"), "log10_t_final": traj.log10_t_final, "tau_final": traj.tau_final}


def angle_between(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Angle (rad) between rows of ``u`` and the vector ``v``; accurate near 0
    (``2 atan2(|u - v|, |u + v|)`` on unit vectors); ``nan`` where a row is 0."""
    u = np.atleast_2d(np.asarray(u, float))
    v = np.asarray(v, float) / np.linalg.norm(v)
    nu = np.linalg.norm(u, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        uu = np.where(nu > 0, u / nu, np.nan)
    return 2.0 * np.arctan2(np.linalg.norm(uu - v, axis=1), np.linalg.norm(uu + v, axis=1))


def _collapsed(traj) -> bool:
    return bool(traj.beta_collapsed or str(traj.status).startswith("collapse"))


@dataclass(frozen=True)
class Trend:
    """Power-law fit ``angle ~ c (ln t)^(-p)`` on the tail of a run.

    ``p`` over the whole tail, ``p_local`` over its last quarter and ``p_early`` over its
    first quarter (a decay that flattens -- an angle settling at a nonzero limit -- shows
    as ``p_local << p_early``), ``r2`` of the log-log fit, ``span`` the decades of ``ln t``
    the tail covers, ``limit`` the extrapolated limit angle (Aitken's delta-squared on
    three equally spaced tail points: exact for a power law plus a constant; ``nan`` when
    the tail is not contracting), and ``log10_t_at_tol`` where the local law reaches a
    tolerance.
    """

    p: float
    p_local: float
    p_early: float
    r2: float
    span: float
    limit: float
    log10_ln_t_end: float
    c: float

    def log10_t_at(self, angle: float, angle_end: float) -> float:
        """``log10 t`` at which the local power law reaches ``angle`` (``inf`` if never)."""
        if self.p_local <= 0 or angle <= 0:
            return math.inf
        x = self.log10_ln_t_end + (math.log10(angle_end) - math.log10(angle)) / self.p_local
        return 10.0 ** x / LN10 if x < 300 else math.inf

    def to_dict(self) -> dict[str, float]:
        return {"p": self.p, "p_local": self.p_local, "p_early": self.p_early, "r2": self.r2, "span_decades_ln_t": self.span,
                "extrapolated_limit": self.limit, "log10_ln_t_end": self.log10_ln_t_end, "c": self.c}


def fit_trend(log10_t: np.ndarray, values: np.ndarray, *, tail: float = 0.5, grid: int = 41) -> Trend | None:
    """Fit ``values ~ c (ln t)^(-p)`` on the last ``tail`` fraction (in ``log ln t``) of
    the points with ``t > e``; ``None`` when too few points or too short a span.

    >>> lt = np.linspace(0.5, 300, 100)
    >>> tr = fit_trend(lt, 2.0 / (lt * np.log(10)) ** 0.5)
    >>> round(tr.p, 6), round(tr.p_local, 6), tr.limit < 1e-12
    (0.5, 0.5, True)
    """
    lt = np.asarray(log10_t, float)
    v = np.asarray(values, float)
    ok = np.isfinite(lt) & np.isfinite(v) & (v > 0)
    ok &= lt * LN10 > 1.0
    if ok.sum() < 6:
        return None
    x = np.log10(lt[ok] * LN10)
    y = np.log10(v[ok])
    x, idx = np.unique(x, return_index=True)
    y = y[idx]
    if x.size < 6:
        return None
    x0 = x[-1] - tail * (x[-1] - x[0])
    span = float(x[-1] - x0)
    if span < 0.05:
        return None
    xs = np.linspace(x0, x[-1], grid)
    ys = np.interp(xs, x, y)
    A = np.vstack([np.ones_like(xs), xs]).T
    coef, *_ = np.linalg.lstsq(A, ys, rcond=None)
    pred = A @ coef
    ss = float(np.sum((ys - ys.mean()) ** 2))
    r2 = 1.0 - float(np.sum((ys - pred) ** 2)) / ss if ss > 0 else 1.0
    q = grid - grid // 4 - 1
    coef_l, *_ = np.linalg.lstsq(A[q:], ys[q:], rcond=None)
    coef_e, *_ = np.linalg.lstsq(A[: grid // 4 + 1], ys[: grid // 4 + 1], rcond=None)
    th = 10.0 ** ys[[0, grid // 2, grid - 1]]
    d1, d2 = th[1] - th[0], th[2] - th[1]
    den = d2 - d1
    if d1 < 0 and d2 < 0 and abs(d2) < abs(d1) and den > 0:
        limit = max(0.0, float(th[2] - d2 * d2 / den))
    elif abs(d2) <= 1e-15 * max(th[2], 1e-300):
        limit = float(th[2])
    else:
        limit = math.nan
    return Trend(p=float(-coef[1]), p_local=float(-coef_l[1]), p_early=float(-coef_e[1]), r2=r2, span=span, limit=limit,
                 log10_ln_t_end=float(x[-1]), c=float(10.0 ** coef[0]))


# --- directional convergence ----------------------------------------------------------------
@dataclass(frozen=True)
class Motion:
    """How far the direction of ``beta`` can still move: directions ``u0, u1, u2`` at
    three equally spaced points of ``log10 ln t`` ending at the horizon, the steps
    ``step1 = angle(u0, u1)``, ``step2 = angle(u1, u2)``, their ratio ``r`` and the
    geometric-series estimate of the movement still to come, ``remaining = step2 r / (1 - r)``
    (exact for a power law in ``log t``; ``inf`` when the steps do not shrink).  The
    horizon is *converged* for a target at angle ``theta`` when ``remaining`` is below
    half of ``theta - tol``: the run cannot get within tolerance any more."""

    step1: float
    step2: float
    r: float
    remaining: float
    h: float
    last: tuple[float, ...] = ()
    velocity: tuple[float, ...] = ()

    def heading(self, target) -> float:
        """Cosine between the last step of the direction and the way to ``target`` (both
        in the tangent space at the final direction): near 1 when the run is still
        moving straight towards it; ``nan`` when it does not move."""
        u, v = np.array(self.last), np.array(self.velocity)
        t = np.asarray(target, float) / np.linalg.norm(target)
        g = t - (t @ u) * u
        v = v - (v @ u) * u
        ng, nv = np.linalg.norm(g), np.linalg.norm(v)
        return float(g @ v / (ng * nv)) if ng > 0 and nv > 0 else math.nan

    def converged(self, angle: float, tol: float, target=None, heading_min: float = 0.9) -> bool:
        """The run cannot reach ``target`` within ``tol`` any more: the movement left is
        below half of ``angle - tol`` and either below a twentieth of it or (when
        ``target`` is given) not headed straight for it."""
        if not self.remaining < 0.5 * (angle - tol):
            return False
        if target is None or self.remaining < 0.05 * (angle - tol):
            return True  # even straight at the target it would cover a twentieth of the way
        return not self.heading(target) > heading_min

    def to_dict(self) -> dict[str, Any]:
        return {"step1_rad": self.step1, "step2_rad": self.step2, "ratio": self.r,
                "remaining_rad": self.remaining, "h_decades_ln_t": self.h}


def _three_points(traj, values: np.ndarray, tail: float = 0.5):
    """``values`` (rows per sample) interpolated at three equally spaced points of
    ``log10 ln t`` ending at the horizon (over the last ``tail``), and the spacing."""
    lt = np.asarray(traj.log10_t, float)
    vals = np.asarray(values, float).reshape(lt.size, -1)
    ok = np.isfinite(lt) & (lt * LN10 > 1.0) & np.all(np.isfinite(vals), axis=1)
    if ok.sum() < 4:
        return None
    x, idx = np.unique(np.log10(lt[ok] * LN10), return_index=True)
    vals = vals[ok][idx]
    if x.size < 4 or x[-1] - x[0] <= 0:
        return None
    h = 0.5 * tail * (x[-1] - x[0])
    pts = [x[-1] - 2 * h, x[-1] - h, x[-1]]
    return np.stack([np.array([np.interp(p, x, vals[:, j]) for j in range(vals.shape[1])]) for p in pts]), float(h)


def objective_progress(traj, target, p: float) -> dict[str, Any] | None:
    """The margin-normalised ``l_p`` norm ``R(t) = |beta|_p / min_i y_i <beta, x_i>`` of a
    run against the target's value: ``approaching`` when ``R`` still falls at the end and
    its geometric extrapolation (as in :class:`Motion`) can still reach the target's
    value -- a max-margin direction is approached through this objective, however
    slowly the angle moves; ``None`` when the run never separates the data."""
    A = traj.problem.signed_data
    b = traj.beta
    with np.errstate(invalid="ignore", divide="ignore"):
        m = (b @ A.T).min(axis=1)
        R = np.where(m > 0, np.sum(np.abs(b) ** p, axis=1) ** (1.0 / p) / m, np.nan)
    t = np.asarray(target, float)
    mt = float((A @ t).min())
    if not mt > 0:
        return None
    r_target = float(np.sum(np.abs(t) ** p) ** (1.0 / p) / mt)
    best = None
    for tail in (0.5, 0.25, 0.125):   # the most cautious window (see direction_motion)
        got = _three_points(traj, R, tail)
        if got is None:
            continue
        (r0, r1, r2), _ = got[0][:, 0], got[1]
        d1, d2 = r0 - r1, r1 - r2
        ratio = d2 / d1 if d1 > 0 else math.inf
        remaining = d2 * ratio / (1.0 - ratio) if 0 <= ratio < 1 else (math.inf if d2 > 0 else 0.0)
        if best is None or remaining > best[2]:
            best = (r2, d2, remaining)
    if best is None:
        return None
    r2, d2, remaining = best
    gap = r2 - r_target
    # the last step alone (or the extrapolated rest) covers half the gap: consistent with
    # reaching the target; a floor elsewhere shows as steps that shrink far below the gap
    approaching = gap > 1e-9 * r_target and d2 > 1e-12 * r2 and max(remaining, d2) >= 0.5 * gap
    return {"p": p, "value_final": float(r2), "value_target": r_target, "gap_relative": gap / r_target,
            "last_decrease": float(d2), "remaining_decrease": float(remaining), "approaching": bool(approaching)}


def direction_motion(traj, *, tails: Sequence[float] = (0.5, 0.25, 0.125)) -> Motion | None:
    """The most cautious :func:`_direction_motion` over several tails: fast components of
    the motion die out first, so a short window at the end sees the slow one best (the
    largest ``remaining`` is kept)."""
    ms = [m for m in (_direction_motion(traj, tail=a) for a in tails) if m is not None]
    return max(ms, key=lambda m: m.remaining) if ms else None


def _direction_motion(traj, *, tail: float = 0.5) -> Motion | None:
    """The :class:`Motion` of ``beta / |beta|`` over the last ``tail`` of the run (in
    ``log10 ln t``); ``None`` when the run is too short (fewer than 4 points past t = e)."""
    got = _three_points(traj, traj.directions(), tail)
    if got is None:
        return None
    u, h = got
    s1 = float(angle_between(u[1], u[0])[0])
    s2 = float(angle_between(u[2], u[1])[0])
    u = u / np.linalg.norm(u, axis=1, keepdims=True)
    last, vel = tuple(float(a) for a in u[2]), tuple(float(a) for a in u[2] - u[1])
    if s2 <= 1e-12:  # round-off: the direction does not move
        return Motion(s1, s2, 0.0, 0.0, float(h), last, vel)
    r = s2 / s1 if s1 > 0 else math.inf
    remaining = s2 * r / (1.0 - r) if r < 1.0 else math.inf
    return Motion(s1, s2, float(r), float(remaining), float(h), last, vel)


def check_direction(traj, target, *, tol: float = 1e-3, p_min: float = 0.05, r2_min: float = 0.98,
                    extrapolate: bool = True, max_angle_extrapolated: float = 0.3,
                    min_span: float = 0.3, label: str = "", norm: float | None = None) -> Verdict:
    """Does ``beta(t) / |beta(t)|`` converge to ``target``?

    * ``holds`` (measured): the angle is ``<= tol`` over the last quarter of the tail;
    * ``holds`` (extrapolated, only if ``extrapolate``): the angle is not yet below ``tol``
      but decays cleanly to 0 -- a power law in ``log t`` with exponent
      ``p_local >= p_min`` that does not flatten (``p_local >= p / 2``), ``r2 >= r2_min``,
      an extrapolated limit ``<= tol`` and an angle already below ``max_angle_extrapolated``;
    * ``fails`` -- only on contradicting evidence at a *converged horizon*: the movement
      the direction still has in it (:func:`direction_motion`, extrapolated geometrically)
      is below half of ``angle - tol``, so it cannot reach the target any more; and then
      the direction stagnated elsewhere (``p_local < p_min`` and fading -- below half the
      tail's early exponent, or below ``p_min / 10`` -- while the extrapolated limit is
      not below ``tol``), or the extrapolated limit is above ``tol`` and at least half the
      angle, or it moves away (the angle grows at the end: ``p_local < -p_min / 10``);
      or beta collapsed to 0 -- unless the component of beta along the target still grows
      like a power of ``log t`` (a metastable plateau: a component of 1e-60 that grows
      does not move the angle yet): ``inconclusive``;
    * ``inconclusive``: otherwise -- the horizon is too short to decide (a direction still
      moving, slowly, towards the target: ``evidence["log10_t_needed"]`` says how far).

    ``evidence["decided_by"]`` names the deciding test.

    ``margin``: ``log10(tol / angle)`` when measured, ``log10(p_local / p_min)`` when
    extrapolated; negative when failing (``log10(tol / angle or limit)``, or how far the
    growth exponent exceeds ``p_min / 10``).
    """
    t = np.asarray(target, float).reshape(-1)
    info = run_info(traj)
    ev: dict[str, Any] = {"target": t / np.linalg.norm(t), "tol_rad": tol, "p_min": p_min, "r2_min": r2_min,
                          "margin_units": "decades (log10 threshold/measured)", **info}
    if label:
        ev["target_label"] = label
    if t.shape != (traj.problem.dim,):
        raise ValueError(f"target has {t.size} entries, the problem has d = {traj.problem.dim}")
    if _collapsed(traj):
        return Verdict("fails", f"beta collapsed to 0 ({traj.status}); no limit direction", -math.inf, ev)
    ang = angle_between(traj.beta, t)
    good = np.isfinite(ang)
    if not good.any():
        return Verdict("inconclusive", "beta is 0 at every saved point", math.nan, ev)
    last = int(np.flatnonzero(good)[-1])
    final = float(ang[last])
    ev["angle_final"] = final
    ev["direction_final"] = traj.directions()[last]
    trend = fit_trend(traj.log10_t, np.maximum(ang, 1e-300))
    n = ang.size
    recent = ang[max(0, n - max(3, n // 8)):]
    recent = recent[np.isfinite(recent)]
    ev["angle_recent_max"] = float(recent.max())
    if trend is not None:
        ev["trend"] = trend.to_dict()
    where = f"log10 t = {traj.log10_t_final:.4g}"
    if final <= tol and ev["angle_recent_max"] <= tol:
        return Verdict("holds", f"angle {final:.3g} rad <= tol {tol:g} at {where}{_note(traj)}",
                       math.log10(tol / max(final, 1e-300)), {**ev, "basis": "measured", "decided_by": "measured angle"})
    if trend is None or trend.span < min_span:
        return Verdict("inconclusive", f"horizon too short to fit a trend (angle {final:.3g} rad at {where})",
                       math.nan, ev)
    ev["log10_t_needed"] = trend.log10_t_at(tol, final)
    # The angle is blind to a target component that is tiny but growing (a metastable
    # plateau: at pi/2 a component of 1e-60 does not move the angle); its log is not.
    comp = traj.directions() @ (t / np.linalg.norm(t))
    comp_trend = fit_trend(traj.log10_t, np.maximum(np.nan_to_num(comp, nan=0.0), 1e-300))
    growth = -comp_trend.p_local if comp_trend is not None else 0.0
    ev["target_component_growth"] = growth
    approaching = growth > p_min
    motion = direction_motion(traj)
    converged = motion is not None and motion.converged(final, tol, t)
    if motion is not None:
        ev["motion"] = {**motion.to_dict(), "heading_cos": motion.heading(t)}
    if norm is not None and converged:
        # a max-margin target is approached through its objective: while the normalised
        # norm still falls towards the target's value, the horizon has not converged
        prog = objective_progress(traj, t, norm)
        if prog is not None:
            # the objective may fall on the way to another limit: count it only while the
            # direction itself moves towards the target
            heading = motion.heading(t)
            prog["approaching"] = bool(prog["approaching"] and heading > 0)
            ev["objective"] = prog
            converged = not prog["approaching"]
    ev["converged_horizon"] = converged
    if trend.p_local < -0.1 * p_min and not approaching and converged:
        return Verdict("fails", f"angle {final:.3g} rad grows like (log t)^{-trend.p_local:.2g}: moving away "
                                f"(at most {motion.remaining:.2g} rad of movement left)",
                       -math.log10(abs(trend.p_local) / (0.1 * p_min)), {**ev, "decided_by": "moving away"})
    # Settling at a nonzero angle makes the local exponent itself fade (like (theta -
    # theta_inf)/theta); a slow but genuine power law keeps it constant, however small.
    fading = trend.p_local < 0.5 * trend.p_early or abs(trend.p_local) < 0.1 * p_min
    if trend.p_local < p_min and fading and not (trend.limit <= tol) and not approaching and converged:
        return Verdict("fails", f"direction stagnated {final:.3g} rad from the target (local exponent "
                                f"{trend.p_local:.2g} < {p_min:g} and fading from {trend.p_early:.2g}, "
                                f"extrapolated limit {trend.limit:.3g}; at most {motion.remaining:.2g} rad "
                                f"of movement left)", math.log10(tol / final), {**ev, "decided_by": "stagnation"})
    # Aitken's limit is exact for a power law plus a constant; mixtures of power laws bias
    # it by a small fraction of the angle, so a limit above half the angle is a real floor.
    if trend.limit > tol and trend.limit >= 0.5 * final and not approaching and converged:
        return Verdict("fails", f"direction settles {trend.limit:.3g} rad from the target (extrapolated limit "
                                f"> tol {tol:g}; angle {final:.3g} rad at {where}; at most "
                                f"{motion.remaining:.2g} rad of movement left)",
                       math.log10(tol / trend.limit), {**ev, "decided_by": "extrapolated limit"})
    clean = (trend.p_local >= p_min and trend.p_local >= 0.5 * trend.p and trend.r2 >= r2_min
             and trend.limit <= tol and final <= max_angle_extrapolated)
    if extrapolate and clean:
        return Verdict("holds", f"angle {final:.3g} rad at {where} decays like (log t)^-{trend.p_local:.2g} "
                                f"to an extrapolated {trend.limit:.2g} <= tol {tol:g}{_note(traj)}",
                       math.log10(trend.p_local / p_min), {**ev, "basis": "extrapolated",
                                                           "decided_by": "extrapolated decay"})
    left = "" if motion is None else f", {motion.remaining:.2g} rad of movement left"
    if "objective" in ev and ev["objective"]["approaching"]:
        o = ev["objective"]
        left += (f", l{norm:g}/margin {o['value_final']:.4g} still falling towards {o['value_target']:.4g} "
                 f"(+{100 * o['gap_relative']:.2g} %)")
    return Verdict("inconclusive", f"horizon too short: angle {final:.3g} rad > tol {tol:g} at {where}, "
                                   f"local exponent {trend.p_local:.2g}, r2 {trend.r2:.3f}{left}; tol reached near "
                                   f"log10 t ~ {ev['log10_t_needed']:.3g}", math.nan,
                   {**ev, "decided_by": "horizon (not converged)"})


def check_kkt(traj, *, tol: float = 1e-3, support_tol: float = 1e-2, samples: int = 40, p_min: float = 0.05,
              r2_min: float = 0.98, depth: int | None = None) -> Verdict:
    """Does ``beta/|beta|`` tend to a first-order KKT point of
    ``min |beta|_{2/L} s.t. y_i <beta, x_i> >= 1`` (GD on depth-L diagonal networks:
    Gunasekar et al. 2018; Yun, Krishnan, Mobahi 2021)?

    The KKT residual (stationarity plus complementarity, :func:`~sambias.verify.references.kkt_check`)
    is measured at up to ``samples`` late points; ``holds`` when it is ``<= tol`` at the end
    (or decays cleanly to 0 like a power of ``log t``), ``fails`` when it settles at a
    nonzero value, else ``inconclusive``.  ``evidence["kkt"]`` says *which* KKT point: its
    support, its value, and whether it is the global minimiser (for ``L >= 3`` there are
    several).  ``depth`` tests another problem than the run's own (``min |beta|_{2/depth}``:
    a rival's).  An ``inconclusive`` verdict carries ``evidence["log10_t_needed"]``, where
    the residual's local power law in ``log t`` reaches ``tol``.
    """
    from .references import kkt_check

    info = run_info(traj)
    ev: dict[str, Any] = {"tol": tol, "support_tol": support_tol, "margin_units": "decades of residual below tol",
                          **info}
    if _collapsed(traj):
        return Verdict("fails", f"beta collapsed to 0 ({traj.status})", -math.inf, ev)
    lt = traj.log10_t
    ok = np.flatnonzero(np.isfinite(lt) & (lt * LN10 > 1.0) & (np.linalg.norm(traj.beta, axis=1) > 0))
    if ok.size < 2:
        return Verdict("inconclusive", "horizon too short (t < e throughout)", math.nan, ev)
    x = np.log10(lt[ok] * LN10)
    picks = np.unique(np.searchsorted(x, np.linspace(x[0], x[-1], samples)).clip(0, ok.size - 1))
    idx = ok[picks]
    p = traj.problem
    depth = p.depth if depth is None else int(depth)
    ev["kkt_depth"] = depth
    reports = [kkt_check(traj.beta[i], p.X, p.y, depth, tol=tol, support_tol=support_tol, weighted=True)
               for i in idx]
    res = np.array([max(r.residual, r.off_support) if r.feasible else np.inf for r in reports])
    last = reports[-1]
    ev.update(kkt=last.to_dict(), residuals=res, log10_t=lt[idx])
    final = float(res[-1])
    if final <= tol and np.all(res[-max(1, len(res) // 4):] <= tol):
        return Verdict("holds", f"KKT residual {final:.2g} <= {tol:g} at log10 t = {lt[-1]:.4g}: {last.describe()}",
                       math.log10(tol / max(final, 1e-300)), {**ev, "basis": "measured", "decided_by": "measured residual"})
    trend = fit_trend(lt[idx], np.maximum(res, 1e-300))
    if trend is None:
        return Verdict("inconclusive", f"KKT residual {final:.2g} > {tol:g}; too few points for a trend", math.nan, ev)
    ev["trend"] = trend.to_dict()
    if (trend.p_local >= p_min and trend.p_local >= 0.5 * trend.p and trend.r2 >= r2_min and trend.limit <= tol):
        return Verdict("holds", f"KKT residual {final:.2g} decays like (log t)^-{trend.p_local:.2g} to an extrapolated "
                                f"{trend.limit:.2g}: {last.describe()}", math.log10(trend.p_local / p_min),
                       {**ev, "basis": "extrapolated", "decided_by": "extrapolated decay"})
    fading = abs(trend.p_local) < 0.1 * p_min or (0 <= trend.p_local < 0.5 * trend.p_early)
    floor = final if math.isnan(trend.limit) else trend.limit   # nan: not contracting at all
    if fading and floor > tol and floor >= 0.5 * final:
        return Verdict("fails", f"KKT residual settles at {floor:.2g} > {tol:g}: not a KKT point "
                                f"({last.describe()})", math.log10(tol / floor), {**ev, "decided_by": "settled residual"})
    # slow is not false: a residual still falling says how far the horizon would have to go
    needed = trend.log10_t_at(tol, final) if final < math.inf else math.inf
    ev["log10_t_needed"] = needed
    return Verdict("inconclusive", f"KKT residual {final:.2g} > {tol:g} at log10 t = {lt[-1]:.4g}, local exponent "
                                   f"{trend.p_local:.2g}, tol reached near log10 t ~ {needed:.3g}: {last.describe()}",
                   math.nan, {**ev, "decided_by": "horizon (not converged)"})


def _note(traj) -> str:
    return "" if traj.status == "ok" else f" (run stopped: {str(traj.status).split(':')[0]})"


def check_collapse(traj, *, tol: float | None = None) -> Verdict:
    """Does ``beta`` go to 0?  ``holds`` when the run reports a collapse or ended with
    ``beta = 0`` (``Trajectory.beta_collapsed``); ``inconclusive`` when ``|beta|`` is still
    falling; ``fails`` otherwise (margin: decades of ``|beta|`` above ``tol``)."""
    info = run_info(traj)
    tol = traj.collapse_tol if tol is None else tol
    norm = float(np.linalg.norm(traj.beta_final))
    ev = {"norm_beta_final": norm, "collapse_tol": tol, "beta_collapsed": traj.beta_collapsed,
          "margin_units": "decades of |beta| below tol", **info}
    if _collapsed(traj) or norm <= tol:
        m = math.inf if norm == 0 else math.log10(tol / norm)
        return Verdict("holds", f"beta -> 0 ({traj.status if traj.status != 'ok' else 'beta = 0 at the end'})",
                       m, {**ev, "decided_by": "collapse detected"})
    norms = np.linalg.norm(traj.beta, axis=1)
    m = norms.size
    tail = norms[m // 2:]
    falling = tail.size > 2 and tail[-1] < 1e-3 * tail[0] and np.all(np.diff(tail) <= 0)
    ev["norm_beta_mid"] = float(tail[0])
    if falling:
        return Verdict("inconclusive", f"|beta| = {norm:.3g} still falling at log10 t = {traj.log10_t_final:.4g}",
                       math.nan, {**ev, "decided_by": "horizon (|beta| still falling)"})
    return Verdict("fails", f"beta does not go to 0: |beta| = {norm:.3g} at log10 t = {traj.log10_t_final:.4g}",
                   math.log10(tol / norm), {**ev, "decided_by": "|beta| not falling"})


def check_limit(traj, limit: Limit, **kw) -> Verdict:
    """``beta``'s limit is ``limit`` (``0``, ``±e_k`` or a direction): :func:`check_collapse`
    or :func:`check_direction` (``kw`` go to the latter)."""
    if limit.kind == "zero":
        v = check_collapse(traj)
    else:
        v = check_direction(traj, limit.target(), label=limit.describe(), **{"norm": limit.norm, **kw})
    return v.with_evidence(predicted=limit.to_dict(), observed=observed_limit(traj).to_dict())


def observed_limit(traj, *, basis_tol: float = 0.1) -> Limit:
    """Classify where a run ended: ``0``, the nearest ``±e_k`` (within ``basis_tol`` rad)
    or the final direction."""
    d = traj.problem.dim
    if _collapsed(traj):
        return Limit.zero(d)
    u = traj.direction_final
    k = int(np.argmax(np.abs(u)))
    e = Limit.basis(k, d, np.sign(u[k]))
    if float(angle_between(u, e.target())[0]) <= basis_tol:
        return e
    return Limit.direction(u, label="final direction")


def check_limits(trajectories: Sequence, limits: Sequence[Limit], **kw) -> Verdict:
    """Predicted against simulated limits over many runs (e.g. a grid of inits): the
    conjunction of :func:`check_limit`, with a table of predicted/observed limits."""
    parts = [check_limit(tr, lim, **kw) for tr, lim in zip(trajectories, limits, strict=True)]
    table = [{"init": tr.problem.init.to_dict(), "predicted": lim.describe(),
              "observed": observed_limit(tr).describe(), "outcome": v.outcome}
             for tr, lim, v in zip(trajectories, limits, parts)]
    agree = sum(row["predicted"] == row["observed"] for row in table)
    out = combine(parts)
    return out.with_evidence(table=table, agree=agree, runs=len(table))


def check_init_rule(problems: Sequence, *, rule: Callable = None, horizon: str = "1e1000", tol: float = 1e-2,
                    simulate: Callable | None = None, progress: bool = False) -> Verdict:
    """Simulate each problem (e.g. a grid or a random sample of initialisations) and
    compare its limit with ``rule(problem)`` (default :func:`predict_linf_limit`): the
    verdict of :func:`check_limits`, with the predicted/observed table in its evidence."""
    sim = _simulator(simulate)
    rule = predict_linf_limit if rule is None else rule
    bar = _bar(len(problems), progress, "init rule")
    trajs = []
    for p in problems:
        trajs.append(sim(p, horizon))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return check_limits(trajs, [rule(p) for p in problems], tol=tol)


# --- per-coordinate fates (Thm 3.2) -------------------------------------------------------------
@dataclass(frozen=True)
class Fates:
    """Predicted limit of every ``beta_j`` (``inf``: diverges).

    >>> Fates((0.0, 0.125, math.inf)).describe()
    'beta -> (0, 0.125, inf)'
    """

    beta: tuple[float, ...]
    label: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta", tuple(float(b) for b in self.beta))

    def describe(self) -> str:
        return self.label or "beta -> (" + ", ".join(f"{b:.4g}" for b in self.beta) + ")"

    def to_dict(self) -> dict[str, Any]:
        return {"beta": [b if math.isfinite(b) else "inf" for b in self.beta], "label": self.label,
                "describe": self.describe()}


def predict_linf_fates(problem) -> Fates:
    """Thm 3.2 (linf-SAM, L >= 2, one example, balanced init alpha; *secondary source*):
    ``beta_j -> 0`` (even L) or ``rho^L`` (odd L) when ``alpha_j < rho``, ``beta_j = rho^L``
    when ``alpha_j = rho``, divergence when ``alpha_j > rho``.  Hypothesis (THEORY.md's
    measurement): no coordinate blows up, i.e. every ``alpha_j <= rho`` -- otherwise the
    blow-up ends the flow first and the minor ``beta_j`` stop short.

    >>> from sambias import Problem, Init
    >>> p = Problem(depth=3, algorithm="linf-sam", rho=0.5, X=[[3.0, 2.0]], y=[1],
    ...             init=Init(layers=[[0.3, 0.5]] * 3))
    >>> predict_linf_fates(p).beta
    (0.125, 0.125)
    """
    x, y = _single_example(problem)
    W0 = problem.initial_weights()
    L, rho = problem.depth, problem.rho
    if L < 2 or np.any(y * x <= 0) or np.any(W0 <= 0) or not np.allclose(W0, W0[0], rtol=0, atol=0):
        raise ValueError("Thm 3.2 is for L >= 2, y x_j > 0 and a balanced positive init")
    alpha = W0[0]
    if np.any(alpha > rho):
        raise ValueError("Thm 3.2's fates assume no coordinate blows up (every alpha_j <= rho)")
    below = 0.0 if L % 2 == 0 else rho ** L
    return Fates(tuple(rho ** L if a == rho else below for a in alpha))


def check_fates(traj, fates: Fates, *, rtol: float = 1e-3, settle: float = 0.75) -> Verdict:
    """Does every ``beta_j`` end at its predicted value (within ``rtol`` of
    ``max(|predicted|, rho^L)``), or diverge where ``inf`` is predicted?  ``fails`` only at
    a converged horizon: a coordinate off by more than its tolerance that moved less than
    half of that error since ``settle`` of the run (in ``log10 t``); a coordinate still
    moving is ``inconclusive``."""
    info = run_info(traj)
    p = traj.problem
    scale = p.rho ** p.depth if p.rho > 0 else 1.0
    pred = np.array(fates.beta)
    b = traj.beta
    if pred.shape != (p.dim,):
        raise ValueError(f"{pred.size} predicted fates for d = {p.dim}")
    lt = traj.log10_t
    first = lt[np.isfinite(lt)][0]     # log10 t = -inf at t = 0
    k = int(np.searchsorted(lt, first + settle * (lt[-1] - first)))
    k = min(max(k, 0), len(lt) - 1)
    end, mid = b[-1], b[k]
    fin = np.isfinite(pred)
    tol = rtol * np.maximum(np.abs(pred[fin]), scale)
    err = np.abs(end[fin] - pred[fin])
    moved = np.abs(end[fin] - mid[fin])
    ev = {"predicted": fates.to_dict(), "beta_final": end, "beta_at_settle": mid, "tol": tol, "error": err,
          "moved_since_settle": moved, "margin_units": "decades of the worst error below its tolerance", **info}
    big = ~fin
    diverge = None
    if big.any():
        growing = bool(np.all(np.abs(end[big]) > np.abs(mid[big])))
        ev["diverging_final"] = end[big]
        if not (np.all(np.abs(end[big]) >= 100 * scale) and growing):
            off = float(np.abs(end[big]).min())
            diverge = Verdict("inconclusive" if growing else "fails",
                              f"a coordinate predicted to diverge is at {off:.3g}" +
                              (" and growing" if growing else " and not growing"), -1.0,
                              {**ev, "decided_by": "divergence"})
    if not fin.any():
        return diverge or Verdict("holds", "every predicted divergence seen", 0.0, {**ev, "decided_by": "divergence"})
    worst = float(np.max(err / tol))
    margin = -math.log10(max(worst, 1e-300))
    if worst <= 1.0 and diverge is not None:
        return diverge
    if worst <= 1.0:
        if np.all(moved <= tol):
            return Verdict("holds", f"every beta_j within its tolerance of {fates.describe()} (worst error "
                                    f"{worst:.2g} x tol) at log10 t = {traj.log10_t_final:.4g}", margin,
                           {**ev, "decided_by": "measured values"})
        return Verdict("inconclusive", "within tolerance but still moving", math.nan,
                       {**ev, "decided_by": "horizon (not converged)"})
    j = int(np.flatnonzero(fin)[int(np.argmax(err / tol))])
    settled = err / tol > 1.0
    if np.all(moved[settled] < 0.5 * err[settled]):
        return Verdict("fails", f"beta_{j} settles at {end[j]:.6g}, predicted {pred[j]:.6g} (error {worst:.3g} x tol, "
                                f"moved {moved.max():.2g} since log10 t = {lt[k]:.4g})", margin,
                       {**ev, "decided_by": "settled value"})
    return Verdict("inconclusive", f"beta_{j} = {end[j]:.6g} still moving towards or away from {pred[j]:.6g}",
                   math.nan, {**ev, "decided_by": "horizon (not converged)"})


# --- sequential feature amplification ------------------------------------------------------
@dataclass(frozen=True)
class Amplification:
    """The prediction checked by :func:`check_amplification`.

    For one example the *rank* of coordinate j is its position when the ``|x_j|`` are
    sorted ascending (0 = most minor, d-1 = the major).  The statement (made precise
    here; THEORY.md's "minor first, major last"):

    (a) the first coordinate to lead is ``first_leader``;
    (b) once ``N(t) = |grad L| / S`` (the normalisation of l2-SAM's perturbation; THEORY.md
        calls it N) has stopped decreasing -- at ``t0``; earlier lies the transient --
        the leader's rank only moves in the direction ``order`` ("minor-to-major": never
        decreases);
    (c) the last leader is the major coordinate;
    (d) the share ``|beta_j| / |beta|_1`` of every coordinate that peaks after ``t0``
        peaks in increasing order of ``|x_j|`` (for "minor-to-major");
    (e) if ``minor_phase``: at least one minor coordinate leads before the major.

    For ``l2-SAM``, ``L = 2``, uniform init ``alpha``: ``first_leader =
    argmax_j |x_j| (1 - rho |x_j| / N0)`` with ``N0 = alpha sqrt(2) |x|_2``
    (:func:`predict_first_leader`).
    """

    first_leader: int | None
    order: str = "minor-to-major"
    minor_phase: bool = True

    def __post_init__(self) -> None:
        if self.order not in ("minor-to-major", "major-to-minor"):
            raise ValueError("order must be 'minor-to-major' or 'major-to-minor'")

    def to_dict(self) -> dict[str, Any]:
        return {"first_leader": self.first_leader, "order": self.order, "minor_phase": self.minor_phase}


def predict_first_leader(problem, rho: float | None = None) -> int:
    """The fastest-growing coordinate at ``t = 0`` under l2-SAM, ``L = 2``, uniform init
    (THEORY.md: ``da_j/dtau = x_j a_j (1 - rho x_j / N)``): ``argmax |x_j|(1 - rho|x_j|/N0)``.
    With a uniform init every ``|beta_j|`` starts equal, so this coordinate leads first.
    ``rho`` defaults to the problem's (``0`` for GD: the major).

    >>> from sambias import Problem, Init
    >>> p = Problem(depth=2, algorithm="l2-sam", rho=0.5, X=[[3.0, 2.0, 1.0, 0.5]], y=[1],
    ...             init=Init(scale=0.3))
    >>> predict_first_leader(p), predict_first_leader(p, rho=0.0)
    (1, 0)
    """
    x, _ = _single_example(problem)
    if problem.depth != 2 or problem.init.scale is None:
        raise ValueError("the first-leader formula is for L = 2 and a uniform init (init.scale)")
    if rho is None:
        rho = 0.0 if problem.algorithm == "gd" else problem.rho
    ax = np.abs(x)
    n0 = abs(problem.init.scale) * math.sqrt(2.0) * float(np.linalg.norm(x))
    return int(np.argmax(ax * (1.0 - rho * ax / n0)))


@dataclass(frozen=True)
class Leader:
    index: int
    rank: int
    tau: float
    log10_t: float


@dataclass(frozen=True)
class AmplificationProfile:
    """Measurements of who leads when, several ways (see :func:`amplification_profile`)."""

    ranks: tuple[int, ...]
    major: int
    leaders: tuple[Leader, ...]
    leaders_from_samples: tuple[int, ...]
    t0_index: int
    t0_tau: float
    t0_log10_t: float
    leaders_after_t0: tuple[Leader, ...]
    share_peaks: tuple[tuple[int, int, float, float], ...]   # (index, sample, tau, log10_t), after t0
    unpeaked: tuple[int, ...]          # coordinates whose share still rises at the end
    collapsed: bool
    N: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ranks": list(self.ranks), "major": self.major,
            "leaders": [{"index": l.index, "rank": l.rank, "tau": l.tau, "log10_t": l.log10_t} for l in self.leaders],
            "leaders_from_samples": list(self.leaders_from_samples),
            "t0": {"sample": self.t0_index, "tau": self.t0_tau, "log10_t": self.t0_log10_t},
            "leaders_after_t0": [l.index for l in self.leaders_after_t0],
            "share_peaks_after_t0": [{"index": i, "tau": ta, "log10_t": lt} for i, _, ta, lt in self.share_peaks],
            "unpeaked": list(self.unpeaked), "collapsed": self.collapsed,
        }


def _normalised_gradient_norms(traj) -> np.ndarray:
    from sambias.symbolic import GeneratedField

    f = GeneratedField(traj.problem)
    out = np.empty(traj.weights.shape[0])
    for i, W in enumerate(traj.weights):
        out[i] = np.linalg.norm(f.normalised_gradient(W.ravel())) if np.any(W) else 0.0
    return out


def amplification_profile(traj) -> AmplificationProfile:
    """Who leads when (one example): the leader changes (``Trajectory.dominant``, located
    by the integrator, and recomputed from the samples as a cross-check), the time ``t0``
    after which ``N = |grad L|/S`` never decreases, and the time each share
    ``|beta_j| / |beta|_1`` peaks after ``t0``."""
    x, _ = _single_example(traj.problem)
    ax = np.abs(x)
    order = np.argsort(ax, kind="stable")
    ranks = np.empty(x.size, int)
    ranks[order] = np.arange(x.size)
    major = int(order[-1])
    b = np.abs(traj.beta)
    collapsed = _collapsed(traj)
    # leaders from the integrator's located switches
    leaders = [Leader(s.index, int(ranks[s.index]), float(s.tau), float(s.log10_t)) for s in traj.dominant]
    if not leaders:
        leaders = [Leader(i, int(ranks[i]), float(traj.tau[k]), float(traj.log10_t[k]))
                   for k, i in _sample_leaders(b)]
    from_samples = tuple(i for _, i in _sample_leaders(b))
    N = _normalised_gradient_norms(traj)
    valid = np.flatnonzero(N > 0)
    last = int(valid[-1]) if valid.size else 0
    Nv = N[: last + 1]
    drops = np.flatnonzero(Nv[:-1] > Nv[1:] * (1 + 1e-9))
    t0 = int(drops[-1] + 1) if drops.size else 0
    t0_tau = float(traj.tau[t0])
    t0_lt = float(traj.log10_t[t0])
    after = []
    for k, lead in enumerate(leaders):
        nxt = leaders[k + 1] if k + 1 < len(leaders) else None
        # a leader counts after t0 if it still leads at t0 or takes over later
        if nxt is None or _later(nxt, t0_tau, t0_lt):
            after.append(lead)
    total = b.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, b / total, np.nan)
    end = last if not collapsed else max(t0, last - 1)
    peaks, unpeaked = [], []
    if end > t0:
        seg = share[t0:end + 1]
        for j in range(x.size):
            col = seg[:, j]
            if not np.isfinite(col).any():
                continue
            k = int(np.nanargmax(col))
            if k == 0:
                continue        # falling from t0 on: skipped, not amplified after t0
            if k == seg.shape[0] - 1:
                unpeaked.append(j)
                continue
            peaks.append((j, t0 + k, float(traj.tau[t0 + k]), float(traj.log10_t[t0 + k])))
    peaks.sort(key=lambda p: p[1])
    return AmplificationProfile(tuple(int(r) for r in ranks), major, tuple(leaders), from_samples, t0, t0_tau, t0_lt,
                                tuple(after), tuple(peaks), tuple(unpeaked), collapsed, N)


def _later(leader: Leader, tau0: float, lt0: float) -> bool:
    if math.isfinite(leader.tau) and math.isfinite(tau0):
        return leader.tau > tau0
    return leader.log10_t > lt0


def _sample_leaders(b: np.ndarray) -> list[tuple[int, int]]:
    out, cur = [], None
    for k, row in enumerate(b):
        if not np.any(row > 0):
            continue
        top = np.sort(row)[-2:]
        if row.size > 1 and top[1] - top[0] <= 1e-12 * top[1]:
            continue  # a tie (uniform init at t = 0): no leader yet
        i = int(np.argmax(row))
        if i != cur:
            out.append((k, i))
            cur = i
    return out


def check_amplification(traj, prediction: Amplification) -> Verdict:
    """Check the statement of :class:`Amplification` on one single-example run.

    ``fails`` at the first violated part (a)-(e); ``inconclusive`` when everything seen
    agrees but the major has not taken over yet (or a share has not peaked); ``fails``
    also on a collapse (the statement is about runs that do not collapse).
    ``evidence["decided_by"]`` names the deciding part.
    """
    v = _check_amplification_parts(traj, prediction)
    part = v.reason[:3] if v.reason.startswith("(") else ("all parts" if v.holds else "collapse or no leader")
    return v.with_evidence(decided_by=part)


def _check_amplification_parts(traj, prediction: Amplification) -> Verdict:
    prof = amplification_profile(traj)
    info = run_info(traj)
    located = [l.index for l in prof.leaders]
    ev: dict[str, Any] = {"prediction": prediction.to_dict(), "profile": prof.to_dict(),
                          # two measurements of who leads: the integrator's located switches and the samples
                          "leaders_agree": located == list(prof.leaders_from_samples),
                          "margin_units": "leader changes / share peaks to spare (count)", **info}
    if prof.collapsed:
        return Verdict("fails", f"the run collapsed ({traj.status}); no amplification", -math.inf, ev)
    if not prof.leaders:
        return Verdict("inconclusive", "no coordinate leads (ties throughout)", math.nan, ev)
    sign = 1 if prediction.order == "minor-to-major" else -1
    first = prof.leaders[0].index
    if prediction.first_leader is not None and first != prediction.first_leader:
        return Verdict("fails", f"(a) first leader is {first}, predicted {prediction.first_leader}", -1.0, ev)
    ranks_after = [l.rank for l in prof.leaders_after_t0]
    for a, b_ in zip(ranks_after, ranks_after[1:]):
        if sign * (b_ - a) < 0:
            return Verdict("fails", f"(b) after t0 (log10 t = {prof.t0_log10_t:.3g}) the leader goes "
                                    f"{_leader_path(prof.leaders_after_t0)}: not {prediction.order}", -1.0, ev)
    if prediction.minor_phase and prof.leaders[0].index == prof.major:
        return Verdict("fails", "(e) the major coordinate leads from the start: no minor phase", -1.0, ev)
    if not prediction.minor_phase and len({l.index for l in prof.leaders}) > 1:
        return Verdict("fails", f"(e) leaders {_leader_path(prof.leaders)}: predicted the major throughout",
                       -1.0, ev)
    peak_ranks = [prof.ranks[j] for j, *_ in prof.share_peaks]
    for a, b_ in zip(peak_ranks, peak_ranks[1:]):
        if sign * (b_ - a) < 0:
            return Verdict("fails", f"(d) share peaks after t0 come in order {[j for j, *_ in prof.share_peaks]}: "
                                    f"not {prediction.order}", -1.0, ev)
    if peak_ranks and prof.unpeaked and sign * (min(prof.ranks[j] for j in prof.unpeaked) - max(peak_ranks)) < 0:
        return Verdict("fails", f"(d) coordinate(s) {list(prof.unpeaked)} still rise after "
                                f"{[j for j, *_ in prof.share_peaks]} peaked", -1.0, ev)
    final = prof.leaders[-1].index
    if sign > 0 and final != prof.major:
        return Verdict("inconclusive", f"(c) the major ({prof.major}) has not taken over by log10 t = "
                                       f"{traj.log10_t_final:.4g} (leaders {_leader_path(prof.leaders)})",
                       math.nan, ev)
    if sign < 0 and final == prof.major and len(prof.leaders) > 1:
        return Verdict("fails", f"(c) leaders {_leader_path(prof.leaders)} end at the major: not major-to-minor",
                       -1.0, ev)
    extra = len(prof.leaders) - 1
    return Verdict("holds", f"leaders {_leader_path(prof.leaders)} (t0 at log10 t = {prof.t0_log10_t:.3g}); "
                            f"share peaks in order {[j for j, *_ in prof.share_peaks] + [prof.major]}",
                   float(extra) if prediction.minor_phase else 0.0, ev)


def _leader_path(leaders: Sequence[Leader]) -> str:
    return " -> ".join(str(l.index) for l in leaders) if leaders else "none"


@dataclass(frozen=True)
class FirstLeaders:
    """The prediction of :func:`check_first_leaders` for a sweep of init scales: the
    ``order`` in which the first leader moves as the scale grows and, optionally, the
    predicted first leader of every run (``None``: :func:`predict_first_leader`).

    >>> FirstLeaders("minor-to-major", (1, 1, 0)).leaders
    (1, 1, 0)
    """

    order: str = "minor-to-major"
    leaders: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.order not in ("minor-to-major", "major-to-minor"):
            raise ValueError("order must be 'minor-to-major' or 'major-to-minor'")
        if self.leaders is not None:
            object.__setattr__(self, "leaders", tuple(int(k) for k in self.leaders))

    def to_dict(self) -> dict[str, Any]:
        return {"order": self.order, "leaders": None if self.leaders is None else list(self.leaders)}


def check_first_leaders(trajectories: Sequence, *, order: str = "minor-to-major",
                        leaders: Sequence[int] | None = None) -> Verdict:
    """Amplification in init scale: runs ordered by increasing init scale (same data and
    rho).  Among the runs that do not collapse, (i) the first leader is the predicted one
    (``leaders[i]`` for run i, by default ``argmax |x_j|(1 - rho|x_j|/N0)``) in each run and
    (ii) its ``|x|``-rank moves only in direction ``order`` as the scale grows
    ("minor-to-major": a larger init skips the early minor phase); (iii) the largest scale
    starts with the major."""
    if leaders is not None and len(leaders) != len(trajectories):
        raise ValueError(f"{len(leaders)} predicted first leaders for {len(trajectories)} runs")
    rows = []
    for i, tr in enumerate(trajectories):
        prof = amplification_profile(tr)
        pred = predict_first_leader(tr.problem) if leaders is None else int(leaders[i])
        first = prof.leaders[0].index if prof.leaders else None
        rows.append({"scale": tr.problem.init.scale, "collapsed": prof.collapsed, "first_leader": first,
                     "rank": None if first is None else prof.ranks[first], "predicted": pred,
                     "leaders": [l.index for l in prof.leaders]})
    ev = {"runs": rows, "order": order, "margin_units": "runs to spare (count)",
          **{k: v for k, v in run_info(trajectories[-1]).items() if k not in ("status",)}}
    live = [r for r in rows if not r["collapsed"] and r["first_leader"] is not None]
    if len(live) < 2:
        return Verdict("inconclusive", f"only {len(live)} run(s) do not collapse", math.nan, ev)
    bad = [r for r in live if r["first_leader"] != r["predicted"]]
    if bad:
        r = bad[0]
        return Verdict("fails", f"(i) at scale {r['scale']:g} the first leader is {r['first_leader']}, "
                                f"predicted {r['predicted']}", -float(len(bad)), ev)
    sign = 1 if order == "minor-to-major" else -1
    ranks = [r["rank"] for r in live]
    for a, b_, ra, rb in zip(ranks, ranks[1:], live, live[1:]):
        if sign * (b_ - a) < 0:
            return Verdict("fails", f"(ii) first leader's rank goes {a} -> {b_} from scale {ra['scale']:g} "
                                    f"to {rb['scale']:g}: not {order} in the init scale", -1.0, ev)
    major_rank = len(trajectories[0].problem.X[0]) - 1
    ends = (ranks[0], ranks[-1]) if sign > 0 else (ranks[-1], ranks[0])
    if ends[1] != major_rank or ends[0] == major_rank:
        return Verdict("fails", f"(iii) first-leader ranks {ranks} over the scales: not from a minor first "
                                f"leader to the major ({order})", -1.0, ev)
    changes = sum(a != b_ for a, b_ in zip(ranks, ranks[1:]))
    path = ", ".join(f"{r['scale']:g}:{r['first_leader']}" for r in live)
    return Verdict("holds", f"first leader by init scale: {path} ({order})",
                   float(changes), ev)


# --- phase diagram ------------------------------------------------------------------------
PHASES = {0: "collapse (w -> 0)", 1: "minor first, major last", 2: "major from the start",
          3: "statement violated", 4: "inconclusive (horizon)"}


@dataclass(frozen=True)
class PhaseDiagram:
    """``outcome[i, k]`` (a code of ``legend``) at ``rhos[i]``, ``scales[k]``; the first
    leader of each run in ``first_leader`` (-1 when the run collapsed)."""

    scales: np.ndarray
    rhos: np.ndarray
    outcome: np.ndarray
    first_leader: np.ndarray
    legend: dict[int, str]
    x: tuple[float, ...]
    horizon: str
    reasons: tuple[tuple[str, ...], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"scales": self.scales.tolist(), "rhos": self.rhos.tolist(), "outcome": self.outcome.tolist(),
                "first_leader": self.first_leader.tolist(), "legend": {str(k): v for k, v in self.legend.items()},
                "x": list(self.x), "horizon": self.horizon}


def amplification_phase(traj) -> tuple[int, str]:
    """The phase code (:data:`PHASES`) of one l2-SAM run and the deciding reason."""
    if _collapsed(traj):
        return 0, traj.status
    prof = amplification_profile(traj)
    if not prof.leaders:
        return 4, "no leader"
    if prof.leaders[0].index == prof.major and len(prof.leaders) == 1:
        return 2, "major from the start"
    v = check_amplification(traj, Amplification(first_leader=None, minor_phase=True))
    return {"holds": 1, "fails": 3, "inconclusive": 4}[v.outcome], v.reason


def amplification_phase_diagram(x, scales, rhos, *, horizon: str = "1e400", algorithm: str = "l2-sam",
                                simulate: Callable | None = None, progress: bool = False,
                                **sim_kw) -> PhaseDiagram:
    """Where "minor first, major last" holds over ``(init scale, rho)`` for one example
    ``x`` (``y = +1``, depth 2, uniform init): one run per grid point, classified by
    :func:`amplification_phase`.  ``simulate`` defaults to ``sambias.flows.simulate``.

    Since the rescaled flow only depends on ``scale / rho``, rows at different ``rho`` are
    the same diagram along rays ``scale / rho = const`` -- a check on the simulator.
    """
    from sambias import Init, Problem

    sim = _simulator(simulate)
    scales = np.asarray(scales, float)
    rhos = np.asarray(rhos, float)
    out = np.zeros((rhos.size, scales.size), int)
    first = np.full((rhos.size, scales.size), -1)
    reasons = []
    bar = _bar(rhos.size * scales.size, progress, "phase diagram")
    for i, rho in enumerate(rhos):
        row = []
        for k, a in enumerate(scales):
            p = Problem(depth=2, algorithm=algorithm, rho=float(rho), X=[list(map(float, x))], y=[1],
                        init=Init(scale=float(a)))
            tr = sim(p, horizon, **sim_kw)
            out[i, k], why = amplification_phase(tr)
            if not _collapsed(tr) and tr.dominant:
                first[i, k] = tr.dominant[0].index
            row.append(why)
            if bar is not None:
                bar.update(1)
        reasons.append(tuple(row))
    if bar is not None:
        bar.close()
    return PhaseDiagram(scales, rhos, out, first, dict(PHASES), tuple(float(v) for v in x), str(horizon),
                        tuple(reasons))


def _simulator(simulate: Callable | None) -> Callable:
    if simulate is not None:
        return simulate
    import sambias.flows as flows

    sim = getattr(flows, "simulate", None)
    if sim is None:
        from sambias.errors import SimulationError

        raise SimulationError("sambias.flows.simulate is not available")
    return sim


def _bar(total: int, progress: bool, desc: str):
    if not progress:
        return None
    import sys

    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False)
