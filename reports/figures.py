"""Figures of trajectories (matplotlib, no global state: every function returns a new Figure).

Every figure states its precision, tolerances and horizon in a footer, because a
picture without them cannot be trusted or reproduced.

>>> import numpy as np
>>> from sambias import Problem, Init
>>> from sambias.flows import Trajectory
>>> p = Problem(depth=1, algorithm="gd", X=[[1.0, 0.5]], y=[1], init=Init(scale=0.1))
>>> tr = Trajectory(problem=p, tau=np.array([0.0, 1.0]), log10_t=np.array([-1.0, 0.0]),
...                 weights=np.array([[[0.1, 0.1]], [[1.1, 0.6]]]), log10_loss=np.array([0.0, -0.5]))
>>> fig = share_figure([tr], ["demo"])
>>> len(fig.axes)
1
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure


def settings_line(trajectories: Sequence) -> str:
    """One line naming precision, method, tolerances and horizon of the runs shown."""
    parts = []
    for s in {_settings_key(tr): tr.settings for tr in trajectories}.values():
        parts.append(f"{s.get('precision', '?')}, {s.get('method', '?')}, rtol={s.get('rtol', '?')}, "
                     f"atol={s.get('atol', '?')}, horizon {s.get('time', '?')} {s.get('horizon', '?')}")
    return "; ".join(parts)


def _settings_key(tr) -> tuple:
    s = tr.settings
    return tuple(str(s.get(k)) for k in ("precision", "method", "rtol", "atol", "time", "horizon"))


def _x_axis(tr) -> tuple[np.ndarray, str]:
    """Plot against log10 t where it is finite, else against tau."""
    finite = np.isfinite(tr.log10_t)
    return np.where(finite, tr.log10_t, np.nan), r"$\log_{10} t$"


def share_figure(trajectories: Sequence, titles: Sequence[str]) -> Figure:
    """Shares ``|beta_j| / |beta|_1`` against log10 t, one panel per trajectory.

    Sequential feature amplification shows as the curve on top moving from a minor
    to a major coordinate.
    """
    fig = Figure(figsize=(4.2 * len(trajectories), 3.4), layout="constrained")
    axes = fig.subplots(1, len(trajectories), squeeze=False)[0]
    for ax, tr, title in zip(axes, trajectories, titles):
        x, label = _x_axis(tr)
        b = np.abs(tr.beta)
        total = b.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(total > 0, b / total, np.nan)
        data = tr.problem.X[0]
        for j in range(share.shape[1]):
            ax.plot(x, share[:, j], label=f"$j={j}$ ($x_j={data[j]:g}$)")
        for switch in tr.dominant:
            ax.axvline(switch.log10_t, color="0.8", lw=0.6, zorder=0)
        ax.set_xlabel(label)
        ax.set_ylabel(r"$|\beta_j| / \Vert\beta\Vert_1$")
        ax.set_title(f"{title}\n{tr.status}", fontsize=9)
        ax.set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=7, loc="best")
    fig.text(0.5, -0.02, settings_line(trajectories), ha="center", va="top", fontsize=7)
    return fig


def magnitude_figure(trajectories: Sequence, titles: Sequence[str]) -> Figure:
    """``|beta_j|`` (log scale) against log10 t: growth, collapse to 0 and limits."""
    fig = Figure(figsize=(4.2 * len(trajectories), 3.4), layout="constrained")
    axes = fig.subplots(1, len(trajectories), squeeze=False)[0]
    for ax, tr, title in zip(axes, trajectories, titles):
        x, label = _x_axis(tr)
        b = np.abs(tr.beta)
        tiny = np.finfo(float).tiny
        for j in range(b.shape[1]):
            ax.semilogy(x, np.maximum(b[:, j], tiny), label=f"$|\\beta_{j}|$")
        ax.set_xlabel(label)
        ax.set_title(f"{title}\n{tr.status}", fontsize=9)
    axes[0].legend(fontsize=7, loc="best")
    fig.text(0.5, -0.02, settings_line(trajectories) + "; |beta_j| = 0 drawn at the smallest float",
             ha="center", va="top", fontsize=7)
    return fig


def angle_figure(trajectories: Sequence, targets: Sequence[np.ndarray], labels: Sequence[str]) -> Figure:
    """Angle (radians, log scale) between beta and a target direction against log10 t."""
    fig = Figure(figsize=(5.0, 3.6), layout="constrained")
    ax = fig.subplots()
    for tr, target, label in zip(trajectories, targets, labels):
        x, xlabel = _x_axis(tr)
        u = tr.directions()
        t = np.asarray(target, float) / np.linalg.norm(target)
        angle = np.arccos(np.clip(u @ t, -1.0, 1.0))
        ax.semilogy(x, np.maximum(angle, 1e-16), label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("angle to target (rad)")
    ax.legend(fontsize=7)
    fig.text(0.5, -0.02, settings_line(trajectories), ha="center", va="top", fontsize=7)
    return fig


def phase_figure(scales: np.ndarray, rhos: np.ndarray, outcome: np.ndarray, legend: dict[int, str],
                 title: str, footer: str) -> Figure:
    """A phase diagram: ``outcome[i, k]`` (small integers) over init scale ``scales[k]`` and ``rhos[i]``."""
    from matplotlib.colors import ListedColormap

    fig = Figure(figsize=(5.2, 3.8), layout="constrained")
    ax = fig.subplots()
    codes = sorted(legend)
    colours = ["#d9d9d9", "#4daf4a", "#e41a1c", "#377eb8", "#ff7f00", "#984ea3"][: len(codes)]
    index = {c: i for i, c in enumerate(codes)}
    grid = np.vectorize(index.get)(outcome)
    ax.pcolormesh(scales, rhos, grid, cmap=ListedColormap(colours), vmin=-0.5, vmax=len(codes) - 0.5,
                  shading="nearest")
    ax.set_xscale("log")
    ax.set_xlabel(r"init scale $\alpha$")
    ax.set_ylabel(r"$\rho$")
    ax.set_title(title, fontsize=9)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=colours[index[c]], label=legend[c]) for c in codes], fontsize=7,
              loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.text(0.5, -0.02, footer, ha="center", va="top", fontsize=7)
    return fig
