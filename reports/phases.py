"""Phase diagrams drawn from sweep stores (``sambias sweep``): the l-inf SAM basin map,
the l2-SAM regime map and the basin map at depths 2, 3, 4 side by side.

Every figure is drawn from a store alone (the stored sweep definition rebuilds each point's
problem) and carries a caption naming the problem, precision, tolerances and horizon,
and how many points agree with the predicted boundaries drawn over them.

>>> sorted(LIMIT_COLOURS)[:2]
['collapse', 'e0']

Render all three from stores (``python -m sambias.reports.phases BASIN REGIME DEPTH --out DIR``):

>>> from sambias.sweep import Store                                       # doctest: +SKIP
>>> basin_map(Store.open("basin.sqlite")).savefig("basin.png")            # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

LIMIT_COLOURS = {"collapse": "#9e9e9e", "e0": "#1f77b4", "e1": "#ff7f0e", "e2": "#2ca02c", "e3": "#9467bd",
                 "none": "#ffffff", "error": "#d62728"}
REGIMES = ("collapse", "minor first", "major first")
REGIME_COLOURS = ("#9e9e9e", "#ff7f0e", "#1f77b4")


@dataclass(frozen=True)
class PointView:
    """One finished point: its problem dict and its record."""

    problem: dict
    record: object

    @property
    def agree(self) -> bool | None:
        """The prediction judged from the record (stores written before undecided points
        were kept apart stored False for them)."""
        from sambias.sweep.record import judge

        return judge(self.record.predicted, self.record.limit)

    @property
    def limit_name(self) -> str:
        r = self.record
        if r.status.startswith("error"):
            return "error"
        return "none" if r.limit is None else "collapse" if r.limit == -1 else f"e{r.limit}"


def points(store) -> tuple[dict, list[PointView]]:
    """The stored sweep definition and every finished point with its problem."""
    from sambias.sweep.spec import apply_values

    definition = store.definition()
    out = []
    for record in store.records():
        values = [tuple(v) for v in json.loads(record.values)]
        out.append(PointView(apply_values(definition["problem"], values, definition.get("data")), record))
    return definition, out


def caption(definition: dict, views: Sequence[PointView], extra: str = "") -> str:
    """Problem, precision, tolerances, horizon and agreement, in two lines."""
    p = definition["problem"]
    x = ", ".join(f"{v:g}" for v in p["X"][0]) if len(p["X"]) == 1 else f"n={len(p['X'])}"
    judged = [v for v in views if v.agree is not None]
    agree = sum(v.agree for v in judged)
    unsettled = sum(v.record.predicted is not None and v.record.limit is None for v in views)
    line1 = (f"{p['algorithm']}, one example x = ({x}), loss {p['loss']}; {len(views)} points "
             f"(sweep '{definition.get('name') or '-'}'){extra}")
    line2 = (f"{definition['precision']}, method {definition['method']}, rtol {definition['rtol'] or 'default'}, "
             f"atol {definition['atol'] or 'default'}; horizon {definition['time']} {definition['horizon']}; "
             f"limit = e_k when |dir - e_k| <= {definition['limit_tol']:g}")
    if definition.get("predict"):
        line2 += (f"; prediction '{definition['predict']}' agrees on {agree} / {len(judged)}"
                  f" ({unsettled} not settled within the horizon)")
    return line1 + "\n" + line2


# --- the l-inf basin map ----------------------------------------------------------------------
def _layer_axes(definition: dict) -> list[int]:
    """The coordinates ``j`` of the swept ``init.layers.*.j`` / ``init.layers.l.j`` axes."""
    coords = []
    for axis in definition["axes"]:
        parts = axis["path"].split(".")
        if parts[:2] == ["init", "layers"] and int(parts[3]) not in coords:
            coords.append(int(parts[3]))
    if len(coords) != 2:
        raise ValueError("a basin map needs a sweep over two coordinates of init.layers")
    return coords


def _ratio(problem: dict, j: int) -> float:
    """``mean_l w_j^(l) / rho``: ``(u_j + v_j) / 2 rho`` at L = 2, ``alpha_j / rho`` when balanced."""
    layers = np.array(problem["init"]["layers"], float) if "layers" in problem["init"] \
        else np.full((problem["depth"], len(problem["X"][0])), problem["init"]["scale"])
    return float(layers[:, j].mean() / problem["rho"])


def _cells(values: np.ndarray) -> np.ndarray:
    """Cell edges around sorted grid values (midpoints, ends mirrored)."""
    v = np.unique(values)
    if v.size == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[2 * v[0] - mid[0]], mid, [2 * v[-1] - mid[-1]]])


def _basin_panel(ax, views: Sequence[PointView], coords: list[int], title: str) -> dict[str, int]:
    j0, j1 = coords
    xs = np.array([_ratio(v.problem, j0) for v in views])
    ys = np.array([_ratio(v.problem, j1) for v in views])
    names = [v.limit_name for v in views]
    order = list(LIMIT_COLOURS)
    gx, gy = np.unique(xs), np.unique(ys)
    grid = np.full((gy.size, gx.size), np.nan)
    for x, y, name in zip(xs, ys, names):
        grid[np.searchsorted(gy, y), np.searchsorted(gx, x)] = order.index(name)
    cmap = ListedColormap(list(LIMIT_COLOURS.values()))
    ax.pcolormesh(_cells(xs), _cells(ys), np.ma.masked_invalid(grid), cmap=cmap, vmin=-0.5,
                  vmax=len(order) - 0.5, edgecolors="#ffffff", linewidth=0.3)
    wrong = [(x, y) for x, y, v in zip(xs, ys, views) if v.agree is False]
    if wrong:
        ax.plot(*zip(*wrong), "x", color="#d62728", ms=6, mew=1.5, label="disagrees with prediction")
    p = views[0].problem
    x = np.abs(np.array(p["X"][0], float))
    L = p["depth"]
    ax.axvline(1.0, color="k", ls="--", lw=1.2)
    ax.axhline(1.0, color="k", ls="--", lw=1.2)
    if L >= 3:  # j* switches where x_j0 (a_j0 - rho)^(L-2) = x_j1 (a_j1 - rho)^(L-2)
        r0 = np.linspace(1.0, xs.max() + 0.1, 200)
        r1 = 1.0 + (x[j0] / x[j1]) ** (1.0 / (L - 2)) * (r0 - 1.0)
        ax.plot(r0, r1, color="k", ls=":", lw=1.4)
    ax.set_xlim(_cells(xs)[[0, -1]])
    ax.set_ylim(_cells(ys)[[0, -1]])
    ax.set_xlabel(f"layer mean of w_{j0} / rho")
    ax.set_ylabel(f"layer mean of w_{j1} / rho")
    ax.set_title(title, fontsize=10)
    return {n: names.count(n) for n in order if n in names}


def _legend(fig: Figure, present: set[str]) -> None:
    names = {"none": "no basis vector within limit_tol"}
    handles = [Patch(facecolor=c, edgecolor="k", lw=0.5,
                     label=("limit " + n) if n.startswith("e") else names.get(n, n))
               for n, c in LIMIT_COLOURS.items() if n in present]
    from matplotlib.lines import Line2D

    handles.append(Line2D([], [], color="k", ls="--", label="predicted boundary u_j+v_j = 2rho\n(alpha_j = rho when balanced)"))
    handles.append(Line2D([], [], color="k", ls=":", label="L >= 3: x_j (alpha_j - rho)^(L-2) tie"))
    handles.append(Line2D([], [], color="#d62728", marker="x", ls="", label="disagrees with prediction"))
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)


def basin_map(store) -> Figure:
    """The l-inf SAM basin map: the observed limit over ``(u_j + v_j) / 2 rho`` for the two
    swept coordinates, the predicted boundaries ``u_j + v_j = 2 rho`` dashed over it."""
    definition, views = points(store)
    coords = _layer_axes(definition)
    p = definition["problem"]
    fig = Figure(figsize=(8.4, 5.6), layout="constrained")
    ax = fig.subplots()
    counts = _basin_panel(ax, views, coords, f"l-inf SAM basins, L = {p['depth']}, rho = {p['rho']:g}")
    _legend(fig, set(counts))
    fig.supxlabel(caption(definition, views), fontsize=7)
    return fig


def depth_maps(store, depths: Sequence[int] = (2, 3, 4)) -> Figure:
    """Basin maps at depths 2, 3, 4 side by side (one store sweeping ``depth`` and two
    coordinates of a balanced init); for L >= 3 the dotted curve is where
    ``argmax_j x_j (alpha_j - rho)^(L-2)`` switches."""
    definition, views = points(store)
    coords = _layer_axes(definition)
    fig = Figure(figsize=(4.2 * len(depths) + 2.6, 4.8), layout="constrained")
    axes = fig.subplots(1, len(depths), squeeze=False, sharey=True)[0]
    present: set[str] = set()
    for ax, L in zip(axes, depths):
        subset = [v for v in views if v.problem["depth"] == L]
        if not subset:
            raise ValueError(f"the store has no points at depth {L}")
        judged = [v for v in subset if v.agree is not None]
        counts = _basin_panel(ax, subset, coords, f"L = {L}: prediction agrees on "
                                                  f"{sum(v.agree for v in judged)}/{len(judged)}")
        present |= set(counts)
    _legend(fig, present)
    fig.supxlabel(caption(definition, views, extra="; balanced init, L = 2, 3, 4"), fontsize=7)
    return fig


# --- the l2-SAM regime map --------------------------------------------------------------------
def regime(view: PointView) -> tuple[int, float]:
    """``(code into REGIMES, minor-phase length in tau)`` of one l2-SAM point.

    The minor phase lasts until the major coordinate (largest ``|x_j|``) takes the lead
    for the last time; ``inf`` when it never does within the horizon, ``0`` for major first.
    """
    r = view.record
    if r.limit == -1 or r.status.startswith("collapse"):
        return 0, float("nan")
    major = int(np.argmax(np.abs(view.problem["X"][0])))
    dominant = json.loads(r.dominant)
    if not dominant:
        return 0, float("nan")
    if dominant[0][0] == major:
        return 2, 0.0
    last = dominant[-1]
    return 1, (float(last[2]) if last[0] == major and last[2] is not None else float("inf"))


def regime_map(store) -> Figure:
    """The l2-SAM regime map over ``(alpha / rho, rho)``: collapse / minor first / major first,
    and beside it the minor phase's length (rescaled time until the major coordinate leads
    for good).  The rescaled flow depends on ``alpha / rho`` only, so the map must be
    constant along vertical lines -- a check on the simulator in the picture itself."""
    definition, views = points(store)
    fig = Figure(figsize=(11.5, 4.8), layout="constrained")
    ax, ax2 = fig.subplots(1, 2)
    a_over_rho = np.array([v.problem["init"]["scale"] / v.problem["rho"] for v in views])
    rho = np.array([v.problem["rho"] for v in views])
    codes, lengths = map(np.array, zip(*(regime(v) for v in views)))
    for k, (name, colour) in enumerate(zip(REGIMES, REGIME_COLOURS)):
        sel = codes == k
        ax.scatter(a_over_rho[sel], rho[sel], c=colour, marker="s", s=90, edgecolors="k", linewidths=0.4,
                   label=f"{name} ({int(sel.sum())})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("alpha / rho  (uniform init alpha)")
    ax.set_ylabel("rho")
    ax.set_title("l2-SAM regimes, L = 2", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.18), ncol=3, frameon=False)
    finite = np.isfinite(lengths) & (codes == 1)
    never = np.isinf(lengths) & (codes == 1)
    sc = ax2.scatter(a_over_rho[finite], rho[finite], c=lengths[finite], cmap="viridis", marker="s", s=90,
                     edgecolors="k", linewidths=0.4)
    if never.any():
        ax2.scatter(a_over_rho[never], rho[never], marker="^", s=70, c="#d62728",
                    label="major never leads within the horizon")
        ax2.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.18), frameon=False)
    if finite.any():
        fig.colorbar(sc, ax=ax2, label="minor phase: tau until major leads for good")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlim(ax.get_xlim())
    ax2.set_ylim(ax.get_ylim())
    ax2.set_xlabel("alpha / rho")
    ax2.set_title("minor phase length (minor-first points)", fontsize=10)
    fig.supxlabel(caption(definition, views, extra="; major = argmax |x_j|"), fontsize=7)
    return fig


# The sweeps behind the three figures (stores basin/regime/depth.sqlite, the names `sambias report
# --phases DIR` looks for).  Timings on 2 loaded cores: 144 points 8.5 min, 30 points 8.5 min, 147
# points ~25 min (L >= 3 points blow up in finite tau and run until float64 overflows).
SWEEPS = {
    "basin": """\
name = "linf-basin-map"
description = "L = 2 linf-SAM basin map, x = (3, 2, 1), rho = 0.5, v = rho"
horizon = "6"
time = "rescaled"
rtol = 1e-6
limit_tol = 1e-2
predict = "linf-basin"
[problem]
depth = 2
algorithm = "linf-sam"
rho = 0.5
X = [[3.0, 2.0, 1.0]]
y = [1]
[problem.init]
layers = [[1.0, 1.0, 0.3], [0.5, 0.5, 0.3]]
[axes]
"init.layers.0.0" = { linspace = [0.05, 1.45, 12] }
"init.layers.0.1" = { linspace = [0.05, 1.45, 12] }
""",
    "regime": """\
name = "l2-regimes"
description = "L = 2 l2-SAM regimes over (alpha / rho, rho), x = (3, 2, 1, 0.5)"
horizon = "80"
time = "rescaled"
rtol = 1e-6
predict = "major"
[problem]
depth = 2
algorithm = "l2-sam"
rho = 0.5
X = [[3.0, 2.0, 1.0, 0.5]]
y = [1]
[problem.init]
scale = 0.2
[axes]
rho = [0.25, 0.5, 1.0]
"init.scale" = { logspace = [0.02, 2.0, 10] }
""",
    "depth": """\
name = "linf-depth"
description = "linf-SAM L = 2, 3, 4, balanced init alpha_j, x = (3, 2), rho = 0.5"
horizon = "6"
time = "rescaled"
rtol = 1e-6
limit_tol = 1e-2
predict = "linf-basin"
[problem]
depth = 2
algorithm = "linf-sam"
rho = 0.5
X = [[3.0, 2.0]]
y = [1]
[problem.init]
scale = 0.5
[axes]
depth = [2, 3, 4]
"init.layers.*.0" = { linspace = [0.25, 0.95, 7] }
"init.layers.*.1" = { linspace = [0.25, 0.95, 7] }
""",
}


def write_sweeps(out: Path) -> list[Path]:
    """Write the three sweep files into ``out``; run each with ``sambias sweep FILE``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in SWEEPS.items():
        path = out / f"{name}.sweep.toml"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def render(out: Path, basin=None, regime_store=None, depth=None) -> list[Path]:
    """Draw the figures whose stores are given into ``out`` (PNG, 150 dpi); returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, store, draw in (("phase-linf-basin", basin, basin_map), ("phase-l2-regimes", regime_store, regime_map),
                              ("phase-linf-depths", depth, depth_maps)):
        if store is not None:
            path = out / f"{name}.png"
            draw(store).savefig(path, dpi=150)
            written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sambias.reports.phases --basin S --regime S --depth S --out DIR``."""
    from sambias.errors import SambiasError
    from sambias.sweep import Store

    parser = argparse.ArgumentParser(prog="python -m sambias.reports.phases")
    for name in ("basin", "regime", "depth"):
        parser.add_argument(f"--{name}", metavar="STORE")
    parser.add_argument("--out", default="phases", metavar="DIR")
    args = parser.parse_args(argv)
    stores = {}
    try:
        for key in ("basin", "regime", "depth"):
            if getattr(args, key):
                stores[key] = Store.open(getattr(args, key))
        for path in render(Path(args.out), stores.get("basin"), stores.get("regime"), stores.get("depth")):
            print(path)
    except (SambiasError, ValueError) as exc:  # a missing store, or one that is no such sweep
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        for s in stores.values():
            s.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
