"""l2-SAM's collapse to w = 0 (THEORY.md "Careful"): detected, stopped cleanly, reported."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sambias import Init, Problem
from sambias.flows import iterate, simulate
from sambias.flows.collapse import CollapseWatch

X4 = [[3.0, 2.0, 1.0, 0.5]]


def l2(scale: float, depth: int = 2) -> Problem:
    return Problem(depth=depth, algorithm="l2-sam", rho=0.5, X=X4, y=[1], init=Init(scale=scale))


@pytest.mark.parametrize("alpha", [0.01, 0.06, 0.1])
def test_small_inits_collapse_cleanly(alpha):
    tr = simulate(l2(alpha), "1e400")
    assert tr.status.startswith("collapse: w reached 0 at log10 t = ")
    assert not tr.ok and math.isfinite(tr.log10_t_final) and tr.log10_t_final < 2
    assert tr.beta_collapsed and tr.direction_final is None
    doc = tr.to_json()
    json.dumps(doc, allow_nan=False)
    assert doc["direction_final"] is None and doc["beta_collapsed"] is True
    # the run ends where |F| fell by COLLAPSE_RTOL: w is (numerically) 0, nothing non-finite
    assert np.all(np.isfinite(tr.weights)) and np.abs(tr.weights[-1]).max() < 1e-6 * alpha
    assert any(e["kind"] == "collapse" for e in tr.stats["event_log"])


@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_larger_inits_do_not_collapse(alpha):
    tr = simulate(l2(alpha), "1e400")
    assert tr.status == "ok" and not tr.beta_collapsed


def test_collapse_time_is_stable_across_methods_and_tolerances():
    times = [simulate(l2(0.06), "1e400", method=m, rtol=rt).tau_final
             for m, rt in (("auto", 1e-9), ("auto", 1e-10), ("DOP853", 1e-9))]
    assert max(times) - min(times) < 1e-6 * times[0]


def test_collapse_time_is_where_the_norm_vanishes():
    # near the collapse |W| falls linearly in tau: extrapolating the last saved points to
    # |W| = 0 lands (to within the tiny remaining distance) on the reported time
    tr = simulate(l2(0.06), "1e400")
    n = np.linalg.norm(tr.weights.reshape(len(tr.tau), -1), axis=1)
    slope = (n[-1] - n[-4]) / (tr.tau[-1] - tr.tau[-4])
    assert slope < 0 and -n[-1] / slope < 1e-6 * tr.tau_final


def test_zero_initialisation_is_a_collapse_at_the_start():
    tr = simulate(l2(0.0), "1e400")
    assert tr.status.startswith("collapse: w starts at 0") and tr.log10_t_final == -math.inf
    assert tr.direction_final is None
    it = iterate(l2(0.0), 0.01, 10)
    assert it.status.startswith("collapse") and it.stats["steps"] == 0


def test_depth_one_never_collapses():
    p = Problem(depth=1, algorithm="l2-sam", rho=5.0, X=X4, y=[1], init=Init(scale=0.0))
    assert not CollapseWatch.applies(p)
    assert simulate(p, "1e400").status == "ok"


def test_the_perturbation_is_never_evaluated_at_zero():
    # the l2-SAM field raises exactly at F = 0; a collapsing run must end before that
    from tests.oracles.field import NumpyField

    p = l2(0.01)
    calls = {"n": 0}

    class Strict(NumpyField):
        def perturbation(self, w, sigma=None):
            calls["n"] += 1
            return super().perturbation(w, sigma)

    tr = simulate(p, "1e400", field=Strict(p))
    assert tr.status.startswith("collapse") and calls["n"] > 0
