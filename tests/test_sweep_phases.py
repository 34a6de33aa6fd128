"""Phase diagrams from stores (reports/phases.py), on stores filled with hand-made records:
the drawing and classification logic, not the simulator, is under test here."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sambias.problem import problem_from_dict
from sambias.reports import phases
from sambias.sweep import Record, Store, sweep_from_dict
from sambias.sweep.predict import linf_basin

BASIN = {"problem": {"depth": 2, "algorithm": "linf-sam", "rho": 0.5, "X": [[3.0, 2.0, 1.0]], "y": [1],
                     "init": {"layers": [[1.0, 1.0, 0.3], [0.5, 0.5, 0.3]]}},
         "horizon": "6", "time": "rescaled", "predict": "linf-basin",
         "axes": {"init.layers.0.0": {"linspace": [0.1, 1.3, 4]}, "init.layers.0.1": {"linspace": [0.1, 1.3, 4]}}}


def _record(idx, point, limit, predicted, status="ok", dominant=()):
    return Record(idx=idx, key=point.key, values=json.dumps([list(v) for v in point.values]), status=status,
                  limit=limit, leaders=">".join(str(d[0]) for d in dominant), log10_t_final=1.0, tau_final=6.0,
                  log10_norm_beta_final=1.0, log10_loss_final=-1.0, collapsed=limit == -1, direction=None,
                  dominant=json.dumps([list(d) for d in dominant]), predicted=predicted,
                  agree=None if predicted is None else predicted == limit)


def basin_store(path, raw=BASIN, wrong=()):
    """A store whose records say what the prediction says, except at the indices ``wrong``."""
    s = sweep_from_dict(raw)
    store = Store.create(path, s)
    for pt in s.points():
        pred = linf_basin(problem_from_dict(s.problem_dict(pt)))
        observed = (pred + 1) % 2 if pt.idx in wrong else pred
        store.add(_record(pt.idx, pt, observed, pred), 0.1, "test")
    return store


def test_basin_map_puts_each_point_at_its_2rho_ratio_and_marks_disagreements(tmp_path):
    with basin_store(tmp_path / "ok.sqlite") as store:
        definition, views = phases.points(store)
        assert phases._layer_axes(definition) == [0, 1]
        ratios = sorted({phases._ratio(v.problem, 0) for v in views})
        assert ratios == pytest.approx((np.linspace(0.1, 1.3, 4) + 0.5) / 1.0)  # (u + v) / 2rho, v = rho
        fig = phases.basin_map(store)
        ax = fig.axes[0]
        assert not [line for line in ax.lines if line.get_marker() == "x"]   # every point agrees
        assert "agrees on 16 / 16" in fig._supxlabel.get_text()
    with basin_store(tmp_path / "bad.sqlite", wrong=(5,)) as store:
        fig = phases.basin_map(store)
        marks = [line for line in fig.axes[0].lines if line.get_marker() == "x"]
        _, views = phases.points(store)
        bad = next(v for v in views if v.record.idx == 5)
        assert len(marks) == 1 and marks[0].get_xdata().tolist() == [phases._ratio(bad.problem, 0)]
        assert "agrees on 15 / 16" in fig._supxlabel.get_text()


def test_depth_maps_draw_a_panel_per_depth_with_the_switch_curve(tmp_path):
    raw = {**BASIN, "problem": {**BASIN["problem"], "X": [[3.0, 2.0]], "init": {"scale": 0.5}},
           "axes": {"depth": [2, 3, 4], "init.layers.*.0": [0.3, 0.9], "init.layers.*.1": [0.3, 0.9]}}
    with basin_store(tmp_path / "d.sqlite", raw=raw) as store:
        fig = phases.depth_maps(store)
        panels = [ax for ax in fig.axes if ax.get_title().startswith("L = ")]
        assert [ax.get_title()[:5] for ax in panels] == ["L = 2", "L = 3", "L = 4"]
        dotted = [sum(line.get_linestyle() == ":" for line in ax.lines) for ax in panels]
        assert dotted == [0, 1, 1]
        curve = next(line for line in panels[1].lines if line.get_linestyle() == ":")
        r0, r1 = curve.get_data()   # L = 3: 3 (a0 - rho) = 2 (a1 - rho)
        assert np.allclose(2 * (r1 - 1), 3 * (r0 - 1))
        with pytest.raises(ValueError, match="no points at depth 5"):
            phases.depth_maps(store, depths=(2, 5))


def test_regime_classifies_collapse_minor_and_major_first(tmp_path):
    raw = {"problem": {"depth": 2, "algorithm": "l2-sam", "rho": 0.5, "X": [[3.0, 2.0, 1.0, 0.5]], "y": [1],
                       "init": {"scale": 0.2}},
           "horizon": "80", "time": "rescaled", "axes": {"rho": [0.25, 0.5], "init.scale": [0.01, 0.1, 1.0]}}
    s = sweep_from_dict(raw)
    cases = {0: (-1, "collapse: w reached 0", [(3, 0.0, 0.0)]),
             1: (0, "ok", [(2, -5.0, 0.0), (3, 0.1, 0.7), (0, 60.0, 67.0)]),
             2: (3, "ok", [(2, -5.0, 0.0), (3, 0.1, 0.7)]),
             3: (0, "ok", [(0, -5.0, 0.0)])}
    with Store.create(tmp_path / "r.sqlite", s) as store:
        for pt in s.points():
            limit, status, dominant = cases[min(pt.idx, 3)]
            store.add(_record(pt.idx, pt, limit, None, status=status, dominant=dominant), 0.1, "test")
        _, views = phases.points(store)
        got = [phases.regime(v) for v in views]
        assert got[0][0] == 0 and np.isnan(got[0][1])
        assert got[1] == (1, 67.0)                       # minor first; major leads for good at tau 67
        assert got[2] == (1, float("inf"))               # minor first; major never leads in the horizon
        assert got[3] == got[4] == got[5] == (2, 0.0)    # major first
        fig = phases.regime_map(store)
        labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert labels == ["collapse (1)", "minor first (2)", "major first (3)"]
        paths = phases.render(tmp_path / "figs", regime_store=store)
    assert [p.name for p in paths] == ["phase-l2-regimes.png"] and paths[0].stat().st_size > 10_000


def test_the_figures_sweep_files_load_and_avoid_the_predicted_boundary(tmp_path):
    from sambias.sweep import load_sweep

    sweeps = {p.stem.split(".")[0]: load_sweep(p) for p in phases.write_sweeps(tmp_path)}
    assert {k: len(s.points()) for k, s in sweeps.items()} == {"basin": 144, "regime": 30, "depth": 147}
    for name in ("basin", "depth"):   # on u_j + v_j = 2 rho exactly the flow stands still: keep off it
        s = sweeps[name]
        ratios = {phases._ratio(s.problem_dict(p), j) for p in s.points() for j in (0, 1)}
        assert min(abs(r - 1.0) for r in ratios) > 0.02
