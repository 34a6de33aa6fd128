"""Claims about l2-SAM at L = 2 on one example with a uniform init that THEORY.md's
reduction ``u = v = a`` predicts in full (:mod:`sambias.verify.reduced`, integrated on its
own): the *whole* sequence of leaders (Thms 4.4/4.5 -- not only the first leader), and the
phases over ``alpha / rho`` -- collapse below a measured boundary ``c(x)``, a minor phase
up to ``m(x) = (x_(1) + x_(2)) / (sqrt 2 |x|)``, the major from the start above -- with a
minor phase that shortens as ``alpha / rho`` grows.

>>> LeaderSequence((2, 3, 2, 1, 0)).describe()
'leaders 2 > 3 > 2 > 1 > 0'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from sambias.problem import Init, Problem

from . import checks as C
from .checks import run_info
from .claims import Claim, Instance, NegativeControl, Rival, SimSettings
from .reduced import SQRT2, collapse_ratio, reduced_leaders, trivial_collapse_ratio
from .verdict import Verdict, combine

THEORY_X = (3.0, 2.0, 1.0, 0.5)


# --- whole leader sequences ------------------------------------------------------------------
@dataclass(frozen=True)
class LeaderSequence:
    """Every leader ``argmax_j |beta_j|`` in order; ``()`` means the run collapses."""

    leaders: tuple[int, ...]

    def describe(self) -> str:
        return "collapse" if not self.leaders else "leaders " + " > ".join(map(str, self.leaders))

    def to_dict(self) -> dict[str, Any]:
        return {"leaders": list(self.leaders), "describe": self.describe()}


def _settled(traj) -> bool:
    """The run's last state leads with the major for good: it leads and every growth
    rate increases with ``|x_j|`` (l2-SAM: ``N >= 2 rho max|x|``; USAM:
    ``2 rho |l'(z)| max|x| <= 1``; GD: always)."""
    p = traj.problem
    x = np.abs(np.asarray(p.X[0], float))
    W = traj.weights[-1]
    b = np.abs(W.prod(axis=0))
    if int(np.argmax(b)) != int(np.argmax(x)):
        return False
    if p.algorithm == "gd":
        return True
    if p.algorithm == "usam":
        z = float(np.sum(np.asarray(p.X[0], float) * float(p.y[0]) * W.prod(axis=0)))
        g = math.exp(-z) if p.loss == "exp" else 1.0 / (1.0 + math.exp(min(z, 700.0)))
        return 2.0 * p.rho * g * float(x.max()) <= 1.0
    N = float(np.sqrt(np.sum(x ** 2 * np.sum(W ** 2, axis=0))))
    return N >= 2.0 * p.rho * float(x.max())


def check_leader_sequence(traj, prediction: LeaderSequence) -> Verdict:
    """The run's leader changes (``Trajectory.dominant``, located by the integrator) against
    the predicted sequence: ``holds`` when equal; ``fails`` when they differ and the run
    has settled (collapsed, or the major leads with ``N >= 2 rho max|x|``) -- or differ
    already before the run's last leader; ``inconclusive`` when the run stops while the
    sequence is a prefix of the prediction."""
    seen = tuple(s.index for s in traj.dominant)
    collapsed = C._collapsed(traj)
    ev = {"predicted": list(prediction.leaders), "observed": list(seen), "collapsed": collapsed,
          "margin_units": "leader changes (count)", **run_info(traj)}
    if collapsed or not prediction.leaders:
        if collapsed and not prediction.leaders:
            return Verdict("holds", f"collapse, as predicted ({traj.status})", 0.0, {**ev, "decided_by": "collapse"})
        if collapsed:
            return Verdict("fails", f"the run collapsed ({traj.status}); predicted {prediction.describe()}", -1.0,
                           {**ev, "decided_by": "collapse"})
        if _settled(traj):
            return Verdict("fails", f"predicted a collapse; the run escaped with leaders {seen}", -1.0,
                           {**ev, "decided_by": "escaped"})
        return Verdict("inconclusive", "predicted a collapse; the run has neither collapsed nor escaped yet",
                       math.nan, {**ev, "decided_by": "horizon (not settled)"})
    if not seen and not _settled(traj):
        # no leader located at all: a run that stopped at its start (a solver failure) is
        # evidence of nothing -- () is a prefix of every sequence
        return Verdict("inconclusive", f"no leader located{C._note(traj)}: predicted {prediction.describe()}",
                       math.nan, {**ev, "decided_by": "horizon (not settled)"})
    if seen == prediction.leaders:
        return Verdict("holds", f"leaders {' > '.join(map(str, seen))} as predicted (tau_final {traj.tau_final:.4g})",
                       float(len(seen) - 1), {**ev, "decided_by": "leader sequence"})
    if _settled(traj) or seen[:-1] != prediction.leaders[:len(seen) - 1] or len(seen) > len(prediction.leaders):
        return Verdict("fails", f"leaders {' > '.join(map(str, seen))}, predicted {prediction.describe()}", -1.0,
                       {**ev, "decided_by": "leader sequence"})
    return Verdict("inconclusive", f"leaders so far {seen}, a prefix of the predicted {prediction.leaders}: the "
                                   f"horizon ends first", math.nan, {**ev, "decided_by": "horizon (not settled)"})


def _predict_leaders(algorithm: str = "l2-sam"):
    def predict(ps) -> LeaderSequence:
        p = ps[0]
        if p.n != 1 or p.depth != 2 or p.init.scale is None:
            raise ValueError("the reduction is for one example, L = 2 and a uniform init")
        x = np.asarray(p.X[0], float) * float(p.y[0])
        if np.any(x <= 0):
            raise ValueError("the reduction assumes y x_j > 0")
        return LeaderSequence(reduced_leaders(x, abs(p.init.scale), p.rho, algorithm=algorithm, loss=p.loss))
    return predict


def _first_then_major(ps) -> LeaderSequence:
    """The naive reading: the first leader, then the major (nothing in between)."""
    seq = _predict_leaders()(ps).leaders
    if not seq:
        raise ValueError("collapse")
    return LeaderSequence(tuple(dict.fromkeys((seq[0], seq[-1]))))


def _monotone_ranks(ps) -> LeaderSequence:
    """Sequential amplification read literally: from the first leader through every
    coordinate of larger |x_j|, in increasing |x_j|, to the major (no transient)."""
    seq = _predict_leaders()(ps).leaders
    if not seq:
        raise ValueError("collapse")
    x = np.abs(np.asarray(ps[0].X[0], float))
    return LeaderSequence(tuple(int(j) for j in np.argsort(x) if x[j] >= x[seq[0]]))


def _leaders_generate(rng: np.random.Generator, n: int) -> Iterable[Instance]:
    def make(x, a, rho, loss="exp"):
        return (Problem(depth=2, algorithm="l2-sam", rho=rho, loss=loss, X=[list(map(float, x))], y=[1],
                        init=Init(scale=a)),)
    yield Instance(make(THEORY_X, 0.2, 0.5), label="THEORY.md x, rho 0.5, scale 0.2: the transient 2>3>2>1>0")
    yield Instance(make(THEORY_X, 0.45, 1.0, "logistic"), label="THEORY.md x, rho 1, scale 0.45, logistic loss")
    while True:
        d = int(rng.integers(3, 6))
        x = rng.permutation(np.geomspace(3.0, 3.0 / rng.uniform(3.0, 8.0), d))
        rho = float(rng.uniform(0.3, 1.0))
        c = collapse_ratio(x)
        m = (np.sort(x)[-1] + np.sort(x)[-2]) / (SQRT2 * np.linalg.norm(x))
        ratio = float(rng.uniform(1.05 * c, 0.95 * m))
        yield Instance(make(x, ratio * rho, rho, "logistic" if rng.random() < 0.5 else "exp"),
                       label=f"random d={d} alpha/rho={ratio:.3g} (c={c:.3g}, m={m:.3g})")


LEADERS = Claim(
    id="l2sam-depth2-leader-sequence",
    statement="L = 2 l2-SAM, one example, uniform init: the whole sequence of leaders argmax|beta_j| is the one of "
              "THEORY.md's reduction u = v = a (transient included), ending at the major",
    latex=r"L=2,\ \ell_2\text{-SAM},\ n=1,\ u=v=\alpha\mathbf 1:\ (\arg\max_j|\beta_j(t)|)_{t\ge0}="
          r"(\arg\max_j a_j(\tau))_{\tau\ge0},\ \dot a_j=x_ja_j(1-\rho x_j/N)",
    hypotheses="one example, y x_j > 0 with distinct |x_j|, uniform init alpha with c(x) < alpha/rho < m(x) "
               "(no collapse, a minor phase); exp or logistic loss (the normalisation cancels l'); "
               "rescaled horizon tau = 80 (THEORY.md's transient hands over to the major near tau = 67)",
    source="derivation in THEORY.md",
    generate=_leaders_generate, predict=_predict_leaders(), check=lambda trs, pred: check_leader_sequence(trs[0], pred),
    settings=SimSettings(horizon="80", quick_horizon="80", time="rescaled", instances=4, quick_instances=1),
    # ~100 s of CPU even quick (a run near the collapse boundary to tau = 80, and its GD
    # control): outside the default --quick subset; `sambias verify ID --quick` runs it
    quick=False,
    negative_controls=(
        NegativeControl("gd-run", "GD from the same init follows the same leaders",
                        lambda inst: Instance((inst.problems[0].replace(algorithm="gd"),), inst.prediction,
                                              inst.label + " [GD run]")),
        NegativeControl("reversed", "the predicted leaders in reverse order",
                        lambda inst: Instance(inst.problems, LeaderSequence(inst.prediction.leaders[::-1]),
                                              inst.label + " [reversed]")),
    ),
    rivals=(Rival("gd", _predict_leaders("gd"), "GD's reduction: the major leads throughout"),
            Rival("usam", _predict_leaders("usam"), "USAM's reduction (the unnormalised perturbation rho grad L)"),
            Rival("first-then-major", _first_then_major, "the first leader, then the major, nothing between"),
            Rival("monotone-ranks", _monotone_ranks, "from the first leader through every larger |x_j| in order "
                                                     "(no transient)")))


# --- phases over alpha / rho: collapse boundary and minor-phase length -------------------------
@dataclass(frozen=True)
class Phases:
    """Phase boundaries in ``alpha / rho``: collapse below ``collapse``, a minor first
    leader below ``major``, the major from the start above; ``rho_power`` says how the
    boundaries scale with rho (1: ``alpha = c rho``, the l2-SAM homogeneity; 0: fixed in
    alpha at ``rho_ref``)."""

    collapse: float
    major: float
    rho_power: float = 1.0
    rho_ref: float = 0.5

    def boundaries(self, rho: float) -> tuple[float, float]:
        """The two boundaries in alpha at this rho."""
        s = self.rho_ref * (rho / self.rho_ref) ** self.rho_power
        return self.collapse * s, self.major * s

    def phase(self, alpha: float, rho: float) -> int:
        c, m = self.boundaries(rho)
        return 0 if alpha < c else (1 if alpha < m else 2)

    def describe(self) -> str:
        return (f"collapse for alpha/rho < {self.collapse:.4g}, minor first below {self.major:.4g}"
                + ("" if self.rho_power == 1 else f" (boundaries ~ rho^{self.rho_power:g})"))

    def to_dict(self) -> dict[str, Any]:
        return {"collapse": self.collapse, "major": self.major, "rho_power": self.rho_power, "describe": self.describe()}


PHASE_NAMES = ("collapse", "minor first", "major from the start")


def _major_ratio(x) -> float:
    ax = np.sort(np.abs(np.asarray(x, float)))
    return float((ax[-1] + ax[-2]) / (SQRT2 * np.linalg.norm(ax)))


def _predict_phases(ps) -> Phases:
    x = np.abs(np.asarray(ps[0].X[0], float))
    return Phases(collapse_ratio(x), _major_ratio(x))


def _observed_phase(traj) -> int | None:
    if C._collapsed(traj):
        return 0
    if not traj.dominant:
        return None
    major = int(np.argmax(np.abs(traj.problem.X[0])))
    return 2 if traj.dominant[0].index == major else 1


def _minor_phase_tau(traj) -> float:
    """Rescaled time at which the major takes the lead for the last time (0: from the start)."""
    major = int(np.argmax(np.abs(traj.problem.X[0])))
    d = traj.dominant
    if not d or d[-1].index != major:
        return math.inf
    return 0.0 if len(d) == 1 else float(d[-1].tau)


def check_phases(trajs, prediction: Phases) -> Verdict:
    """Every run's phase (collapse / minor first / major from the start) against the
    predicted boundaries at its own rho; and the minor phase (rescaled time until the major
    leads for good) shortening as ``alpha / rho`` grows.  The measured curve -- per rho,
    the largest collapsing and the smallest surviving ``alpha`` -- is in the evidence."""
    rows, parts = [], []
    for tr in trajs:
        p = tr.problem
        a = abs(p.init.scale)
        want, got = prediction.phase(a, p.rho), _observed_phase(tr)
        row = {"rho": p.rho, "alpha": a, "alpha_over_rho": a / p.rho, "predicted": PHASE_NAMES[want],
               "observed": None if got is None else PHASE_NAMES[got], "minor_phase_tau": _minor_phase_tau(tr),
               "status": tr.status}
        rows.append(row)
        if got is None:
            parts.append(Verdict("inconclusive", f"alpha {a:g}, rho {p.rho:g}: no leader yet"))
        elif got != want:
            parts.append(Verdict("fails", f"alpha/rho = {a / p.rho:.4g} (rho {p.rho:g}): {PHASE_NAMES[got]}, "
                                          f"predicted {PHASE_NAMES[want]}", -1.0))
        else:
            parts.append(Verdict("holds", f"alpha/rho = {a / p.rho:.4g}: {PHASE_NAMES[got]}", 0.0))
    curve = {}
    for r in rows:
        c = curve.setdefault(r["rho"], {"collapses_up_to": 0.0, "survives_from": math.inf})
        if r["observed"] == "collapse":
            c["collapses_up_to"] = max(c["collapses_up_to"], r["alpha"])
        elif r["observed"] is not None:
            c["survives_from"] = min(c["survives_from"], r["alpha"])
    minor = sorted((r["alpha_over_rho"], r["minor_phase_tau"]) for r in rows if r["observed"] == "minor first")
    ev = {"runs": rows, "collapse_boundary_bracket": curve, "minor_phase_tau_by_ratio": minor,
          "prediction": prediction.to_dict(), "margin_units": "runs (count)", **run_info(trajs[-1])}
    # the minor phase shortens as alpha/rho grows (ratios within 1e-9 are the same point at another rho)
    for (r0, t0), (r1, t1) in zip(minor, minor[1:]):
        if r1 > r0 * (1 + 1e-9) and t1 > t0 * 1.02 + 1e-9 and math.isfinite(t1):
            parts.append(Verdict("fails", f"the minor phase lengthens from tau {t0:.4g} at alpha/rho {r0:.4g} to "
                                          f"{t1:.4g} at {r1:.4g}", -1.0))
            break
    v = combine(parts)
    return Verdict(v.outcome, v.reason, v.margin, {**ev, "counts": v.evidence.get("counts"),
                                                   "decided_by": "phase of every run"})


def _phase_problems(x, rhos=(0.25, 0.5, 1.0), loss: str = "exp") -> tuple[Problem, ...]:
    c, m = collapse_ratio(x), _major_ratio(x)
    out = []
    for rho in rhos:
        # the two points next to each boundary (the reduction collapses by tau ~ 6 at 0.97 c
        # and hands the lead to the major by tau ~ 30 at 1.04 c: horizon tau = 40)
        picks = [c * 0.97, c * 1.04, m * 0.9, m * 1.06]
        out += [Problem(depth=2, algorithm="l2-sam", rho=rho, loss=loss, X=[list(map(float, x))], y=[1],
                        init=Init(scale=float(r * rho))) for r in picks]
    return tuple(out)


def _phases_generate(rng: np.random.Generator, n: int) -> Iterable[Instance]:
    yield Instance(_phase_problems(THEORY_X, rhos=(0.5, 1.0)), label="THEORY.md x at rho 0.5, 1")
    while True:
        d = int(rng.integers(2, 5))
        x = rng.permutation(np.geomspace(3.0, 3.0 / rng.uniform(2.0, 8.0), d))
        yield Instance(_phase_problems(x, loss="logistic" if rng.random() < 0.5 else "exp"),
                       label=f"random d={d} at rho 0.25, 0.5, 1")


def _phase_rival(kind: str):
    def predict(ps) -> Phases:
        base = _predict_phases(ps)
        x = np.abs(np.asarray(ps[0].X[0], float))
        if kind == "trivial":
            return Phases(trivial_collapse_ratio(x), base.major)
        if kind == "shifted":
            return Phases(1.1 * base.collapse, base.major)
        if kind == "no-sqrt2":
            return Phases(base.collapse, SQRT2 * base.major)
        return Phases(base.collapse, base.major, rho_power=0.0)
    return predict


PHASES = Claim(
    id="l2sam-depth2-phases",
    statement="L = 2 l2-SAM, one example, uniform init: collapse iff alpha/rho < c(x) (measured boundary, a ray in "
              "(rho, alpha)), a minor first leader for c(x) < alpha/rho < (x_(1)+x_(2))/(sqrt2 |x|), the major from "
              "the start above; the minor phase shortens as alpha/rho grows",
    latex=r"\alpha/\rho<c(x):\ w\to0;\ c(x)<\alpha/\rho<\frac{x_{(1)}+x_{(2)}}{\sqrt2\lVert x\rVert}:\ "
          r"\text{minor first};\ \text{above: major from the start};\ \tau_{\rm major}(\alpha/\rho)\downarrow",
    hypotheses="one example, y x_j > 0, distinct |x_j|, uniform init; c(x) is the collapse threshold of THEORY.md's "
               "reduction (bisection; 0.3965 for x = (3, 2, 1, 0.5), against the trivial sufficient bound 0.0937); "
               "runs at 0.97 / 1.04 c(x) and 0.9 / 1.06 of the major boundary, at rho = 0.25, 0.5, 1 (quick: 0.5, 1); rescaled "
               "horizon tau = 40; exp or logistic loss (the normalisation cancels l': the same rescaled flow)",
    source="derivation in THEORY.md",
    generate=_phases_generate, predict=_predict_phases, check=check_phases,
    settings=SimSettings(horizon="40", quick_horizon="40", time="rescaled", instances=3, quick_instances=1),
    quick=False,   # 8 runs + 4 GD runs, ~90 s of CPU quick: run by id or in full

    negative_controls=(
        NegativeControl("gd-phases", "GD runs from the same inits (at the first rho) show the same phases",
                        lambda inst: Instance(tuple(p.replace(algorithm="gd") for p in inst.problems
                                                    if p.rho == inst.problems[0].rho),
                                              inst.prediction, inst.label + " [GD runs]")),
        NegativeControl("swapped-boundaries", "the collapse boundary at the major boundary's place",
                        lambda inst: Instance(inst.problems, Phases(inst.prediction.major, 2 * inst.prediction.major),
                                              inst.label + " [collapse up to m(x)]")),
    ),
    rivals=(Rival("trivial-collapse", _phase_rival("trivial"), "collapse only under the trivial sufficient "
                                                                "condition N(0) < rho min|x_j|"),
            Rival("shifted-collapse", _phase_rival("shifted"), "the collapse boundary 10 % higher"),
            Rival("no-sqrt2", _phase_rival("no-sqrt2"), "the major boundary with N0 = alpha |x| (sqrt 2 dropped)"),
            Rival("rho-independent", _phase_rival("rho-free"), "boundaries fixed in alpha (as at rho = 0.5), "
                                                                "not scaling with rho")))
