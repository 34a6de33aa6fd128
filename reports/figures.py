"""Figures of trajectories (matplotlib, no global state: every function returns a new Figure).

Every figure states its precision, tolerances and horizon in a footer, because a
picture without them cannot be trusted or reproduced.

>>> import numpy as np
>>> from sambias import Problem, Init
>>> from sambias.flows import Trajectory
>>> p = Problem(depth=1, algorithm="gd", X=[[1.0, 0.5]], y=[1], init=Init(scale=0.1))
>>> tr = Trajectory(problem=p, tau=np.array([0.0, 1.0]), log10_t=np.array([-1.0, 0.0]),
...                 weights=np.array([[[0.1, 0.1]], [[1.1, 0.6]]]), log10_loss=np.array([0.0, -0.5]))
>>> fig = story_figure([tr], ["demo"])
>>> ["physical" in ax.get_xlabel() for ax in fig.axes]     # tau below, log10 t on top
[False, True]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure


def settings_line(trajectories: Sequence) -> str:
    """One line naming precision, method, tolerances and horizon of the runs shown.

    The default ``atol`` is 1e-100 times each run's init scale, so runs that differ only
    there are merged and their ``atol`` range is given.
    """
    groups: dict[tuple, list[float]] = {}
    for tr in trajectories:
        groups.setdefault(_settings_key(tr), []).append(_float(tr.settings.get("atol")))
    parts = []
    for (precision, method, rtol, time, horizon), atols in groups.items():
        lo, hi = min(atols), max(atols)
        atol = f"{lo:.2g}" if lo == hi else f"{lo:.2g}..{hi:.2g}"
        parts.append(f"{precision}, {method}, rtol={rtol}, atol={atol}, horizon {time} {horizon}")
    return "; ".join(parts)


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _settings_key(tr) -> tuple:
    s = tr.settings
    return tuple(str(s.get(k, "?")) for k in ("precision", "method", "rtol", "time", "horizon"))


# --- figures on rescaled time --------------------------------------------------------------
# Physical time spans 1e-5 .. 10^(7e68) in one l2-SAM run, so no axis in t (or log t) shows
# both the early switches and the late take-over; rescaled time tau does, and t is marked
# on a second axis at the tau where log10 t crosses each power of ten.

def coordinate_colour(j: int) -> str:
    """A fixed colour per coordinate index, so the same j looks the same in every panel."""
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
    return palette[j % len(palette)]


def leader_segments(tr) -> list[tuple[float, float, int]]:
    """``(tau_start, tau_end, index)`` for each stretch of one leader, up to the run's end.

    >>> import numpy as np
    >>> from sambias import Problem, Init
    >>> from sambias.flows import Trajectory, DominantSwitch
    >>> p = Problem(depth=1, algorithm="gd", X=[[1.0, 0.5]], y=[1], init=Init(scale=0.1))
    >>> tr = Trajectory(problem=p, tau=np.array([0.0, 2.0]), log10_t=np.array([-1.0, 0.0]),
    ...                 weights=np.zeros((2, 1, 2)), log10_loss=np.zeros(2),
    ...                 dominant=(DominantSwitch(1, -1.0, 0.0), DominantSwitch(0, -0.5, 1.5)))
    >>> leader_segments(tr)
    [(0.0, 1.5, 1), (1.5, 2.0, 0)]
    """
    end = float(np.nanmax(tr.tau))
    starts = [(0.0 if i == 0 else float(s.tau), int(s.index)) for i, s in enumerate(tr.dominant)]
    return [(a, (starts[k + 1][0] if k + 1 < len(starts) else end), j) for k, (a, j) in enumerate(starts)]


def t_ticks(tr, max_ticks: int = 7) -> tuple[list[float], list[str]]:
    """Positions (in tau) and labels of ``log10 t`` ticks for a run's top axis.

    Ticks sit where ``log10 t`` equals ``10^k`` for "nice" ``k`` (steps 1, 2, 5, 10, ...
    chosen so that at most ``max_ticks`` fit), labelled ``10^k``; runs that stay below
    ``log10 t = 10`` get integer ticks instead.
    """
    tau, lt = np.asarray(tr.tau, float), np.asarray(tr.log10_t, float)
    ok = np.isfinite(tau) & np.isfinite(lt)
    tau, lt = tau[ok], np.maximum.accumulate(lt[ok]) if ok.any() else lt[ok]
    if tau.size < 2:
        return [], []
    lo, hi = float(lt[0]), float(lt[-1])
    if hi <= 10:
        values = [float(v) for v in range(int(np.ceil(lo)), int(np.floor(hi)) + 1)]
        labels = [f"{v:g}" for v in values]
    else:
        top = int(np.floor(np.log10(hi)))
        step = next(s for s in (1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000) if top // s + 1 <= max_ticks)
        ks = [k for k in range(0, top + 1, step) if 10.0 ** k >= lo]
        values = [10.0 ** k for k in ks]
        labels = [f"$10^{{{k}}}$" for k in ks]
    # Where t races ahead (a blow-up at finite tau) many ticks land on one spot: keep the first.
    gap = 0.06 * float(tau[-1] - tau[0])
    pos, keep = [], []
    for v, lab in zip(values, labels):
        p = float(np.interp(v, lt, tau))
        if not pos or p - pos[-1] >= gap:
            pos.append(p)
            keep.append(lab)
    return pos[:max_ticks], keep[:max_ticks]


def _time_axis(ax, tr) -> None:
    top = ax.twiny()
    top.set_xlim(ax.get_xlim())
    pos, labels = t_ticks(tr)
    top.set_xticks(pos)
    top.set_xticklabels(labels, fontsize=7)
    top.set_xlabel(r"$\log_{10} t$ (physical time)", fontsize=8)


def _stop_note(tr) -> str:
    """A short note for a run that stopped before its horizon (never 'ok')."""
    if tr.ok:
        return ""
    kind = tr.status.split(":", 1)[0]
    return {"overflow": f"blow-up: stopped at tau = {tr.tau_final:.3g}",
            "collapse": f"collapse to w = 0 at tau = {tr.tau_final:.3g}"}.get(kind, f"stopped ({kind})")


ZERO_FLOOR = 1e-30   # |beta_j| = 0 (a coordinate held at 0 by Filippov sliding) is drawn here


def story_figure(trajectories: Sequence, titles: Sequence[str], *, share: bool = True,
                 footer: str | None = None) -> Figure:
    """Shares ``|beta_j|/|beta|_1`` (or ``|beta_j|``, log scale, with ``share=False``) against
    rescaled time, one panel per run; leader switches marked and labelled, ``t`` on the top axis.

    >>> import numpy as np
    >>> from sambias import Problem, Init
    >>> from sambias.flows import Trajectory
    >>> p = Problem(depth=1, algorithm="gd", X=[[1.0, 0.5]], y=[1], init=Init(scale=0.1))
    >>> tr = Trajectory(problem=p, tau=np.array([0.0, 1.0]), log10_t=np.array([-1.0, 0.0]),
    ...                 weights=np.array([[[0.1, 0.1]], [[1.1, 0.6]]]), log10_loss=np.array([0.0, -0.5]))
    >>> len(story_figure([tr], ["demo"]).axes)    # the panel and its time axis
    2
    """
    n = len(trajectories)
    fig = Figure(figsize=(4.3 * n if n > 1 else 7.0, 3.6), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, tr, title in zip(axes, trajectories, titles):
        tau = np.asarray(tr.tau, float)
        b = np.abs(tr.beta)
        data = np.asarray(tr.problem.X)[0]
        if share:
            total = b.sum(axis=1, keepdims=True)
            with np.errstate(invalid="ignore", divide="ignore"):
                y = np.where(total > 0, b / total, np.nan)
        else:
            y = np.maximum(b, ZERO_FLOOR)
            ax.set_yscale("log")
        for j in range(b.shape[1]):
            ax.plot(tau, y[:, j], color=coordinate_colour(j), lw=1.4,
                    label=f"$j={j}$, $x_j={data[j]:g}$" if tr.problem.n == 1 else f"$j={j}$")
        ax.set_xlim(0.0, float(np.nanmax(tau)) * 1.02 if np.nanmax(tau) > 0 else 1.0)
        if share:
            ax.set_ylim(-0.02, 1.12)
        for k, s in enumerate(tr.dominant):
            if k == 0:
                continue
            ax.axvline(s.tau, color=coordinate_colour(s.index), lw=0.8, ls="--", zorder=0)
            ax.annotate(f"{s.index}", (s.tau, 1.0 if k % 2 else 0.93), xycoords=("data", "axes fraction"),
                        xytext=(2, -2), textcoords="offset points", fontsize=7, va="top",
                        color=coordinate_colour(s.index), fontweight="bold")
        ax.set_xlabel(r"rescaled time $\tau$")
        ax.set_ylabel(r"$|\beta_j| / \Vert\beta\Vert_1$" if share else r"$|\beta_j|$")
        leaders = " → ".join(str(s.index) for s in tr.dominant) or "-"
        note = _stop_note(tr)
        ax.set_title(f"{title}\nleaders {leaders}" + (f"; {note}" if note else ""), fontsize=8)
        _time_axis(ax, tr)
    axes[0].legend(fontsize=7, loc="center right")
    floor = "" if share else f"; |β_j| = 0 drawn at {ZERO_FLOOR:g}"
    fig.text(0.5, -0.01, (footer or settings_line(trajectories)) + floor, ha="center", va="top", fontsize=7)
    return fig


def leader_timeline_figure(runs: Sequence[tuple[str, object]], *, footer: str | None = None) -> Figure:
    """One row per run: the leading coordinate as coloured bars over rescaled time.

    Collapses end in a black cross, blow-ups in an arrow; the tau of the last switch is
    written with its physical time.
    """
    fig = Figure(figsize=(7.5, 0.45 * len(runs) + 1.4), layout="constrained")
    ax = fig.subplots()
    seen = set()
    for row, (label, tr) in enumerate(runs):
        for a, b, j in leader_segments(tr):
            ax.barh(row, b - a, left=a, height=0.6, color=coordinate_colour(j),
                    label=f"leader $j={j}$" if j not in seen else None)
            seen.add(j)
        end = float(np.nanmax(tr.tau))
        if tr.status.startswith("collapse"):
            ax.plot(end, row, "kx", ms=7, mew=2)
            ax.text(end, row, "  collapse", va="center", fontsize=7)
        elif tr.status.startswith("overflow"):
            ax.text(end, row, " ▶ blow-up", va="center", fontsize=7)
        if len(tr.dominant) > 1:
            last = tr.dominant[-1]
            ax.text(last.tau, row + 0.33, f"τ={last.tau:.3g}, log10 t={last.log10_t:.2g}", fontsize=6,
                    va="bottom")
    ax.set_yticks(range(len(runs)))
    ax.set_yticklabels([label for label, _ in runs], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(r"rescaled time $\tau$")
    handles, labels = ax.get_legend_handles_labels()
    order = np.argsort(labels)
    ax.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=7, loc="upper left",
              bbox_to_anchor=(1.01, 1.0))
    fig.text(0.5, -0.01, footer or settings_line([tr for _, tr in runs]), ha="center", va="top", fontsize=7)
    return fig


def angle_to(u: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Angles between the rows of ``u`` and ``target``, accurate near 0 (``arccos`` of a
    cosine loses everything below ~1e-8 rad; ``atan2`` of the sine and cosine does not).

    >>> float(angle_to(np.array([[1.0, 1e-12]]), np.array([1.0, 0.0]))[0])
    1e-12
    """
    t = np.asarray(target, float) / np.linalg.norm(target)
    u = np.asarray(u, float)
    cos = u @ t
    sin = np.linalg.norm(u - np.outer(cos, t), axis=1)
    return np.arctan2(sin, cos)


def angle_panels_figure(groups: Sequence[tuple[str, Sequence[tuple[str, object]]]], target: np.ndarray, *,
                        footer: str | None = None) -> Figure:
    """Angle between ``beta`` and ``target`` against ``log10 t`` (log axis), one panel per group.

    A ``1/log t`` decay is a straight line of slope -1 here.
    """
    fig = Figure(figsize=(4.4 * len(groups), 3.5), layout="constrained")
    axes = fig.subplots(1, len(groups), squeeze=False, sharey=True)[0]
    t_hat = np.asarray(target, float) / np.linalg.norm(target)
    everything = []
    for ax, (title, runs) in zip(axes, groups):
        for k, (label, tr) in enumerate(runs):
            everything.append(tr)
            lt = np.asarray(tr.log10_t, float)
            angle = angle_to(tr.directions(), t_hat)
            keep = np.isfinite(lt) & (lt > 1e-2) & np.isfinite(angle)
            ax.loglog(lt[keep], np.maximum(angle[keep], 1e-300), label=label, lw=1.3,
                      color=f"C{k}")
        ax.set_xlabel(r"$\log_{10} t$ (log scale)")
        ax.set_title(title, fontsize=8)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("angle to predicted limit (rad)")
    fig.text(0.5, -0.01, footer or settings_line(everything), ha="center", va="top", fontsize=7)
    return fig
