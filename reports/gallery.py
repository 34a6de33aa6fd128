"""The report's figures: what each one runs, draws and says in its caption.

Each entry of :data:`GALLERY` is a :class:`FigureSpec` whose ``build(runner, mode)``
simulates what it needs (through ``runner``, which remembers runs so figures share them)
and returns the matplotlib figure, its caption (problem, precision, tolerances, horizon)
and a few measured numbers for the report's text.

>>> [spec.stem for spec in GALLERY][:2]
['l2sam-story', 'l2sam-alpha-timeline']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .figures import angle_panels_figure, leader_timeline_figure, settings_line, story_figure

X_THEORY = (3.0, 2.0, 1.0, 0.5)     # THEORY.md's example; the major coordinate is j = 0
RHO = 0.5
MAX_STEPS = 100_000   # measured: the slowest gallery run (paper setting, rtol 1e-8) takes ~20 000 steps


@dataclass(frozen=True)
class Mode:
    """How hard to work: the quick report (a minute) or the full one."""

    quick: bool
    rtol: float
    alphas: tuple[float, ...]
    tau: str = "80"

    @classmethod
    def of(cls, quick: bool) -> "Mode":
        if quick:
            return cls(quick=True, rtol=1e-5, alphas=(0.19, 0.2, 0.22, 0.5))
        return cls(quick=False, rtol=1e-8, alphas=(0.15, 0.19, 0.2, 0.205, 0.21, 0.22, 0.25, 0.3, 0.5, 1.0))


@dataclass(frozen=True)
class Built:
    """A built figure: the matplotlib figure, its caption and numbers for the text."""

    figure: Any
    caption: str
    facts: tuple[str, ...] = ()


@dataclass(frozen=True)
class FigureSpec:
    stem: str
    title: str
    build: Callable[["Runner", Mode], Built]


@dataclass
class Runner:
    """Runs flows once per (problem, horizon, clock, rtol) within one report."""

    runs: dict = field(default_factory=dict)

    def flow(self, problem, horizon: str, *, time: str, rtol: float):
        from sambias.flows import simulate

        key = (repr(problem.to_dict()), horizon, time, rtol)
        if key not in self.runs:
            # A stalled solver must end as a visible 'max_steps' status in the figure, not as a
            # report that never finishes (the default cap, 1e6 steps, is hours on a loaded machine).
            self.runs[key] = simulate(problem, horizon, time=time, rtol=rtol, max_steps=MAX_STEPS)
        return self.runs[key]

    def flow_reordered(self, problem, horizon: str, *, time: str, rtol: float):
        """The flow of ``problem`` integrated with its coordinates sorted by decreasing ``|x_j|``
        and mapped back to ``problem``'s order (see :func:`decreasing_order`)."""
        perm = decreasing_order(problem)
        if perm is None:
            return self.flow(problem, horizon, time=time, rtol=rtol)
        return unpermute(self.flow(permuted(problem, perm), horizon, time=time, rtol=rtol), problem, perm)

    def done(self, problem, horizon: str, *, time: str, rtol: float):
        """The run if a figure already made it, else ``None`` (text never triggers new runs)."""
        return self.runs.get((repr(problem.to_dict()), horizon, time, rtol))


def theory_problem(algorithm: str, scale: float, *, depth: int = 2, x=X_THEORY, rho: float = RHO,
                   loss: str = "exp", layers=None):
    """THEORY.md's single example with a uniform (or given) init.

    >>> theory_problem("gd", 0.2).X.tolist()
    [[3.0, 2.0, 1.0, 0.5]]
    """
    from sambias import Init, Problem

    init = Init(layers=layers) if layers is not None else Init(scale=float(scale))
    return Problem(depth=depth, algorithm=algorithm, rho=rho if algorithm != "gd" else 0.0, loss=loss,
                   X=[list(x)], y=[1], init=init)


# The flows are equivariant under a permutation of the coordinates (the same permutation of x
# and of every layer's init), so a run may be made in any order and mapped back.  The float64
# driver is not order-blind: with the coordinates in increasing order of x_j (the paper's
# 0 < mu_1 < ... < mu_d) its Newton solves, which carry the clock row delta of the log-time
# system, lose their digits once log10 t passes ~1e30, the steps shrink to ~1e-4 in tau and
# a run to tau = 80 does not finish in an hour; in decreasing order the same run takes
# ~2e4 steps (measured; reproducer in reports/canonical/README.md).
def decreasing_order(problem) -> list[int] | None:
    """The permutation sorting a one-example problem's coordinates by decreasing ``|x_j|``
    (stable), or ``None`` when they already are (or there are several examples).

    >>> decreasing_order(theory_problem("gd", 0.2, x=(0.5, 1.0, 2.0, 3.0)))
    [3, 2, 1, 0]
    >>> decreasing_order(theory_problem("gd", 0.2)) is None
    True
    """
    X = np.asarray(problem.X, float)
    if X.shape[0] != 1:
        return None
    perm = [int(j) for j in np.argsort(-np.abs(X[0]), kind="stable")]
    return None if perm == list(range(X.shape[1])) else perm


def permuted(problem, perm: list[int]):
    """``problem`` with coordinate ``perm[k]`` moved to place ``k`` (data and init)."""
    from sambias import Init, Problem

    X = np.asarray(problem.X, float)[:, perm]
    layers = problem.init.layers
    init = Init(layers=np.asarray(layers, float)[:, perm].tolist()) if layers is not None else problem.init
    return Problem(depth=problem.depth, algorithm=problem.algorithm, rho=problem.rho, loss=problem.loss,
                   X=X.tolist(), y=list(np.asarray(problem.y).tolist()), init=init, name=problem.name)


def unpermute(tr, problem, perm: list[int]):
    """The trajectory ``tr`` of ``permuted(problem, perm)`` as a trajectory of ``problem``:
    weight columns and leader indices put back in ``problem``'s order; ``settings`` says so."""
    from dataclasses import replace

    from sambias.flows import DominantSwitch

    inverse = np.argsort(perm)
    dominant = tuple(DominantSwitch(perm[s.index], s.log10_t, s.tau) for s in tr.dominant)
    settings = dict(tr.settings, coordinate_order="decreasing |x_j| (mapped back)")
    return replace(tr, problem=problem, weights=np.asarray(tr.weights)[:, :, inverse], dominant=dominant,
                   settings=settings)


def _leaders(tr) -> str:
    return " → ".join(f"{s.index} (τ={s.tau:.3g})" for s in tr.dominant) or "-"


def _story(runner: Runner, mode: Mode) -> Built:
    sam = runner.flow(theory_problem("l2-sam", 0.2), mode.tau, time="rescaled", rtol=mode.rtol)
    gd = runner.flow(theory_problem("gd", 0.2), mode.tau, time="rescaled", rtol=mode.rtol)
    fig = story_figure([sam, gd], ["ℓ2-SAM, L = 2, α = 0.2, ρ = 0.5", "GD, L = 2, α = 0.2"])
    last = sam.dominant[-1] if sam.dominant else None
    caption = (f"Sequential feature amplification. One example x = (3, 2, 1, 0.5), y = +1, exponential loss, "
               f"depth 2, uniform init α = 0.2, ρ = 0.5. Shares |β_j|/‖β‖₁ against rescaled time τ "
               f"(bottom axis) with physical time t marked on the top axis; dashed lines mark leader switches, "
               f"labelled with the coordinate that takes over. ℓ2-SAM (left): leaders {_leaders(sam)}; the "
               f"major coordinate 0 takes over only at log10 t = {last.log10_t:.3g}. GD (right): coordinate 0 "
               f"leads throughout. Runs: {settings_line([sam, gd])}.")
    facts = (f"ℓ2-SAM (α = 0.2): leaders {_leaders(sam)}; coordinate 0 takes over at log10 t ≈ "
             f"{last.log10_t:.3g} — far past t = 1e400." if last else "",)
    return Built(fig, caption, facts)


def _alpha_runs(runner: Runner, mode: Mode, algorithm: str = "l2-sam"):
    return [(f"α = {a:g}", runner.flow(theory_problem(algorithm, a), mode.tau, time="rescaled", rtol=mode.rtol))
            for a in mode.alphas]


def _timeline(runner: Runner, mode: Mode) -> Built:
    runs = _alpha_runs(runner, mode)
    fig = leader_timeline_figure(runs)
    rows = [f"α = {a}: {_leaders(tr)}" + (f" [{tr.status.split(':')[0]}]" if not tr.ok else "")
            for (a, tr) in [(lab.split('= ')[1], tr) for lab, tr in runs]]
    caption = (f"Amplification timeline over the init scale. ℓ2-SAM, depth 2, x = (3, 2, 1, 0.5), ρ = 0.5, "
               f"exponential loss, uniform init α (one row each): the leading coordinate argmax_j |β_j| "
               f"over rescaled time τ ∈ [0, {mode.tau}]; × marks a collapse to w = 0 (the normalised "
               f"perturbation is undefined there), ▶ a blow-up past float64. The label gives τ and log10 t of "
               f"the last switch. Runs: {settings_line([tr for _, tr in runs])}.")
    return Built(fig, caption, tuple(rows))


def _angles(runner: Runner, mode: Mode) -> Built:
    alphas = [a for a in mode.alphas if a >= 0.2][:4]
    sam = [(f"α = {a:g}", runner.flow(theory_problem("l2-sam", a), mode.tau, time="rescaled", rtol=mode.rtol))
           for a in alphas]
    gd = [(f"α = {a:g}", runner.flow(theory_problem("gd", a), mode.tau, time="rescaled", rtol=mode.rtol))
          for a in alphas]
    fig = angle_panels_figure([("GD, L = 2", gd), ("ℓ2-SAM, L = 2, ρ = 0.5", sam)], np.eye(4)[0])
    ends = [f"{lab}: the angle first falls below {ANGLE_TOL:g} rad at log10 t = {_first_below(g):.3g} for GD, "
            f"{_first_below(s):.3g} for ℓ2-SAM" for (lab, g), (_, s) in zip(gd, sam)]
    caption = (f"Angle between β(t) and the predicted limit e_0 (the ℓ1 max-margin direction of x = (3, 2, 1, 0.5)) "
               f"against log10 t on a log axis, GD beside ℓ2-SAM, depth 2, exponential loss, uniform init α. "
               f"Runs to rescaled time τ = {mode.tau}: {settings_line([tr for _, tr in gd + sam])}.")
    return Built(fig, caption, tuple(ends))


ANGLE_TOL = 1e-2


def _first_below(tr, tol: float = ANGLE_TOL) -> float:
    """``log10 t`` at which the angle to ``e_0`` first drops below ``tol`` (nan if never)."""
    from .figures import angle_to

    angle = angle_to(tr.directions(), np.eye(tr.problem.dim)[0])
    hit = np.flatnonzero(np.isfinite(angle) & (angle < tol))
    return float(tr.log10_t[hit[0]]) if hit.size else float("nan")


def _depth(runner: Runner, mode: Mode) -> Built:
    runs = [runner.flow(theory_problem("l2-sam", 0.2, depth=L), mode.tau, time="rescaled", rtol=mode.rtol)
            for L in (1, 2, 3, 4)]
    fig = story_figure(runs, [f"ℓ2-SAM, L = {L}, α = 0.2" for L in (1, 2, 3, 4)])
    facts = tuple(f"L = {L}: leaders {_leaders(tr)}" + (f"; {tr.status.split(';')[0]}" if not tr.ok else "")
                  for L, tr in zip((1, 2, 3, 4), runs))
    caption = (f"Depth L = 1..4 side by side: ℓ2-SAM, x = (3, 2, 1, 0.5), ρ = 0.5, exponential loss, the same "
               f"uniform init α = 0.2 in every layer (so β(0) = α^L). L = 1 converges to the ℓ2 max-margin direction ∝ x (shares x_j/Σx, no coordinate wins); for L = 2 the major coordinate takes over last. For L ≥ 3 the rescaled flow blows up at a "
               f"finite τ (it grows like w^(L−1)); the run stops where w leaves float64. Horizon τ = {mode.tau}. "
               f"Runs: {settings_line(runs)}.")
    return Built(fig, caption, facts)


def _linf(runner: Runner, mode: Mode) -> Built:
    inits = [("every α_j = 0.2 < ρ", 0.2, None),
             ("α = (0.3, 0.3, 0.8, 0.8)", None, [[0.3, 0.3, 0.8, 0.8]] * 2),
             ("every α_j = 1.0 > ρ", 1.0, None)]
    runs = [runner.flow(theory_problem("linf-sam", s or 0.0, layers=lay), "30", time="rescaled", rtol=mode.rtol)
            for _, s, lay in inits]
    fig = story_figure(runs, [f"ℓ∞-SAM, L = 2, {lab}" for lab, _, _ in inits], share=False)
    facts = tuple(f"ℓ∞-SAM, {lab}: " + ("β → 0" if tr.beta_collapsed else
                                        f"limit e_{int(np.argmax(np.abs(tr.beta_final)))}")
                  for (lab, _, _), tr in zip(inits, runs))
    caption = (f"ℓ∞-SAM basins, depth 2, x = (3, 2, 1, 0.5), ρ = 0.5, exponential loss: |β_j| (log scale) "
               f"against τ for three inits. A coordinate grows iff u_j(0) + v_j(0) > 2ρ, else it is driven to 0 "
               f"(Filippov sliding); the limit is the largest x_j among the growing ones, or β → 0. "
               f"Horizon τ = 30. Runs: {settings_line(runs)}.")
    return Built(fig, caption, facts)


def _paper(runner: Runner, mode: Mode) -> Built:
    from .experiments import PAPER_MU, synthetic_problem

    specs = [("GD, α = 0.2", "gd", 0.2), ("ℓ2-SAM, α = 0.2", "l2-sam", 0.2), ("ℓ2-SAM, α = 0.25", "l2-sam", 0.25),
             ("ℓ∞-SAM, α = 0.6", "linf-sam", 0.6)]
    runs = [runner.flow_reordered(synthetic_problem(alg, a), mode.tau, time="rescaled", rtol=mode.rtol)
            for _, alg, a in specs]
    fig = story_figure(runs, [lab for lab, _, _ in specs])
    facts = tuple(f"paper setting, {lab}: leaders {_leaders(tr)}" + (f" [{tr.status.split(':')[0]}]"
                                                                       if not tr.ok else "")
                  for (lab, _, _), tr in zip(specs, runs))
    caption = (f"The paper's synthetic setting: one example with increasing coordinates μ = {PAPER_MU} "
               f"(major = last, j = 3), y = +1, logistic loss, depth 2, ρ = 0.5, uniform init α. Shares against "
               f"rescaled time τ ≤ {mode.tau}, t on the top axis (for the logistic loss dt/dτ = 1/|ℓ'(z̃)|). "
               f"Runs: {settings_line(runs)}; integrated with the coordinates in decreasing order of μ and "
               f"mapped back (the flow is permutation-equivariant; the float64 driver stalls on the increasing "
               f"order past log10 t ≈ 1e30).")
    return Built(fig, caption, facts)


GALLERY: tuple[FigureSpec, ...] = (
    FigureSpec("l2sam-story", "ℓ2-SAM: minor first, major last", _story),
    FigureSpec("l2sam-alpha-timeline", "The amplification timeline over the init scale", _timeline),
    FigureSpec("angle-gd-vs-sam", "Angle to the predicted limit, GD beside ℓ2-SAM", _angles),
    FigureSpec("depth", "Depth L = 1..4", _depth),
    FigureSpec("linfsam-basins", "ℓ∞-SAM: the init decides the limit", _linf),
    FigureSpec("paper-synthetic", "The paper's synthetic setting (increasing μ, logistic loss)", _paper),
)
