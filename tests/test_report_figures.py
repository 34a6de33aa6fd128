"""The report's figures: time ticks, leader marks, angles -- and that each shows what it claims."""

from __future__ import annotations

import numpy as np
import pytest

from sambias import Init, Problem
from sambias.flows import DominantSwitch, Trajectory
from sambias.reports.figures import (angle_panels_figure, angle_to, leader_segments, leader_timeline_figure,
                                     settings_line, story_figure, t_ticks)


def _traj(tau, log10_t, beta, *, dominant=(), status="ok", atol=1e-101):
    p = Problem(depth=1, algorithm="gd", X=[[3.0, 2.0, 1.0]], y=[1], init=Init(scale=0.1))
    beta = np.asarray(beta, float)
    return Trajectory(problem=p, tau=np.asarray(tau, float), log10_t=np.asarray(log10_t, float),
                      weights=beta[:, None, :], log10_loss=np.zeros(len(tau)), dominant=dominant, status=status,
                      settings={"precision": "float64", "method": "LSODA", "rtol": 1e-8, "atol": atol,
                                "time": "rescaled", "horizon": "80"})


def test_t_ticks_sit_where_log10_t_crosses_powers_of_ten():
    tau = np.linspace(0.0, 60.0, 601)
    tr = _traj(tau, 10.0 ** (tau / 2.0), np.ones((tau.size, 3)))          # log10 t = 10^(tau/2): up to 1e30
    pos, labels = t_ticks(tr)
    ks = [int(s.strip("$").split("{")[1].rstrip("}")) for s in labels]
    assert len(pos) <= 7 and ks == sorted(ks) and ks[0] == 0 and ks[-1] >= 25
    np.testing.assert_allclose(pos, [2.0 * k for k in ks], atol=0.05)
    # Negative control: the same ticks on a clock twice as fast must move (ticks are read off the run).
    pos_fast, labels_fast = t_ticks(_traj(tau, 10.0 ** np.minimum(tau, 300.0), np.ones((tau.size, 3))))
    ks_fast = np.array([int(s.strip("$").split("{")[1].rstrip("}")) for s in labels_fast])
    np.testing.assert_allclose(pos_fast, ks_fast, atol=0.05)
    assert not np.allclose(pos_fast[1:], 2.0 * ks_fast[1:], atol=0.5)


def test_t_ticks_for_a_short_run_are_integers_and_never_pile_up():
    tau = np.linspace(0.0, 10.0, 101)
    pos, labels = t_ticks(_traj(tau, np.linspace(-2.0, 8.0, 101), np.ones((101, 3))))
    assert labels[:3] == ["-2", "-1", "0"] and np.all(np.diff(pos) > 0)
    # A blow-up: log10 t jumps from 1 to 1e200 in the last step; the ticks there collapse to one.
    lt = np.concatenate([np.linspace(0.0, 1.0, 100), [1e200]])
    pos, labels = t_ticks(_traj(np.linspace(0.0, 10.0, 101), lt, np.ones((101, 3))))
    assert np.all(np.diff(pos) >= 0.06 * 10.0 - 1e-12)


def test_leader_segments_cover_the_run():
    dom = (DominantSwitch(2, -5.0, 0.0), DominantSwitch(1, 3.0, 4.0), DominantSwitch(0, 9.0, 7.5))
    tr = _traj([0.0, 5.0, 10.0], [-5.0, 4.0, 12.0], np.ones((3, 3)), dominant=dom)
    segs = leader_segments(tr)
    assert [j for _, _, j in segs] == [2, 1, 0]
    assert segs[0][0] == 0.0 and segs[-1][1] == 10.0
    assert all(a[1] == b[0] for a, b in zip(segs, segs[1:]))


def test_story_figure_marks_each_switch_and_says_no_ok():
    tau = np.linspace(0.0, 10.0, 50)
    beta = np.column_stack([np.exp(tau), np.exp(0.5 * tau + 2), np.full(50, 3.0)])
    dom = (DominantSwitch(2, -3.0, 0.0), DominantSwitch(1, 0.0, 0.2), DominantSwitch(0, 5.0, 4.0))
    fig = story_figure([_traj(tau, tau, beta, dominant=dom), _traj(tau, tau, beta, status="collapse: w = 0")],
                       ["a", "b"])
    panels = [ax for ax in fig.axes if ax.get_xlabel().startswith("rescaled")]
    assert len(panels) == 2
    switch_lines = [ln for ln in panels[0].get_lines() if ln.get_linestyle() == "--"]
    assert sorted(round(float(ln.get_xdata()[0]), 6) for ln in switch_lines) == [0.2, 4.0]
    assert [t.get_text() for t in panels[0].texts] == ["1", "0"]     # labelled with who takes over
    titles = [ax.get_title() for ax in panels]
    assert "leaders 2 → 1 → 0" in titles[0] and "ok" not in titles[0].split()
    assert "collapse" in titles[1]


def test_angle_to_is_accurate_where_arccos_is_not():
    u = np.array([[1.0, 1e-12, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    target = np.array([1.0, 0.0, 0.0])
    np.testing.assert_allclose(angle_to(u / np.linalg.norm(u, axis=1, keepdims=True), target),
                               [1e-12, np.pi / 2, np.pi], rtol=1e-9)
    assert np.arccos(np.clip(u[0] @ target, -1, 1)) == 0.0      # the naive formula loses it entirely


def test_angle_and_timeline_figures_draw_every_run():
    tau = np.linspace(0.0, 10.0, 40)
    beta = np.column_stack([np.exp(tau), np.ones(40), np.ones(40)])
    runs = [("α = 0.1", _traj(tau, 10.0 ** (tau / 3), beta, dominant=(DominantSwitch(0, -1.0, 0.0),))),
            ("α = 0.2", _traj(tau[:20], tau[:20], beta[:20], status="collapse: w = 0", atol=2e-101))]
    fig = angle_panels_figure([("GD", runs), ("SAM", runs[:1])], np.eye(3)[0])
    assert [len(ax.get_lines()) for ax in fig.axes] == [2, 1]
    tl = leader_timeline_figure(runs)
    assert any("collapse" in t.get_text() for t in tl.axes[0].texts)
    # Runs that differ only in atol (it scales with the init) share one settings entry.
    assert settings_line([tr for _, tr in runs]).count("float64") == 1


@pytest.mark.parametrize("stem", ["l2sam-story"])
def test_gallery_spec_has_a_caption_with_settings(stem):
    from sambias.reports.gallery import GALLERY

    assert stem in [s.stem for s in GALLERY]
    assert len({s.stem for s in GALLERY}) == len(GALLERY)
