"""The float64 façade ``simulate``: arguments, horizons past float64, options, results."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

from sambias import Init, Problem
from sambias.errors import ProblemError, SimulationError
from sambias.flows import Trajectory, simulate
from tests.oracles.field import NumpyField
from sambias.horizon import parse_horizon

X4 = [[3.0, 2.0, 1.0, 0.5]]


def theory(algorithm: str, scale: float, depth: int = 2, **kw) -> Problem:
    return Problem(depth=depth, algorithm=algorithm, rho=0.5, X=X4, y=[1], init=Init(scale=scale), **kw)


# --- arguments ------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,word", [
    ({"method": "Euler"}, "Euler"), ({"rtol": 0.0}, "rtol"), ({"rtol": -1e-9}, "rtol"), ({"rtol": 2.0}, "rtol"),
    ({"rtol": float("nan")}, "rtol"), ({"atol": -1.0}, "atol"), ({"atol": "x"}, "atol"),
    ({"time": "wall"}, "time"), ({"precision": "float32"}, "precision"), ({"precision": "mp:x"}, "precision"),
    ({"precision": "mp:5"}, "precision"), ({"max_steps": 0}, "max_steps"), ({"events": [3]}, "events"),
])
def test_bad_arguments_raise_one_line_problem_errors(kwargs, word):
    with pytest.raises(ProblemError) as err:
        simulate(theory("gd", 0.2), "10", **kwargs)
    assert word in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("horizon", ["-1", "0", "abc", "inf"])
def test_bad_horizons(horizon):
    with pytest.raises(ProblemError):
        simulate(theory("gd", 0.2), horizon)


def test_method_names_are_case_insensitive_and_recorded():
    tr = simulate(theory("gd", 0.2), "10", method="radau")
    assert tr.ok and tr.settings["method"] == "Radau"
    assert simulate(theory("gd", 0.2), "10").settings["method"] == "auto:LSODA"


def test_mp_precision_dispatch_and_missing_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "sambias.flows.mp", None)   # import fails
    with pytest.raises(SimulationError, match="mp precision not available"):
        simulate(theory("gd", 0.2), "10", precision="mp:30")
    with pytest.raises(ProblemError, match="method"):
        simulate(theory("gd", 0.2), "10", precision="mp:30", method="Radau")


def test_mp_precision_is_handed_over(monkeypatch):
    import types

    seen = {}

    def fake_simulate_mp(problem, horizon, *, time, digits, rtol, atol, field=None, max_steps=None, progress=False):
        seen.update(time=time, digits=digits, rtol=rtol, atol=atol, field=field, max_steps=max_steps,
                    horizon=horizon.log10)
        return "mp-result"

    monkeypatch.setitem(sys.modules, "sambias.flows.mp", types.SimpleNamespace(simulate_mp=fake_simulate_mp))
    out = simulate(theory("gd", 0.2), "1e400", precision="mp:40", time="rescaled", max_steps=7)
    assert out == "mp-result"
    assert seen == {"time": "rescaled", "digits": 40, "rtol": None, "atol": None, "field": None,
                    "max_steps": 7, "horizon": 400.0}


# --- horizons past float64 ----------------------------------------------------------------------
@pytest.mark.parametrize("algorithm,scale", [("gd", 0.2), ("linf-sam", 0.2), ("linf-sam", 1.0),
                                             ("l2-sam", 0.2), ("l2-sam", 1.0), ("usam", 0.2)])
@pytest.mark.parametrize("horizon", ["1e400", "1e1000"])
def test_far_horizons_are_reached(algorithm, scale, horizon):
    # (the speed target, well under a second, is benchmarks/bench_flows.py's, not a unit test's)
    tr = simulate(theory(algorithm, scale), horizon)
    assert tr.status == "ok", tr.status
    assert tr.log10_t_final == parse_horizon(horizon).log10
    assert np.all(np.diff(tr.log10_t) >= 0) and np.all(np.isfinite(tr.weights))
    assert tr.log10_loss_final < -300 or tr.beta_collapsed
    assert tr.stats["steps"] < 5000


def test_rescaled_horizon_is_exact_and_physical_time_reported():
    tr = simulate(theory("gd", 0.2), "1.2", time="rescaled")
    assert tr.status == "ok" and tr.tau_final == 1.2 and tr.settings["time"] == "rescaled"
    assert 10 < tr.log10_t_final < 300
    # and the same trajectory, asked for at the physical time it reported, ends at tau = 1.2
    back = simulate(theory("gd", 0.2), repr(10.0 ** tr.log10_t_final))
    assert back.tau_final == pytest.approx(1.2, rel=1e-7)
    assert back.beta_final == pytest.approx(tr.beta_final, rel=1e-6)


def test_small_physical_horizon_matches_a_direct_physical_integration():
    from scipy.integrate import solve_ivp

    p = theory("l2-sam", 0.3)
    f = NumpyField(p)
    ref = solve_ivp(lambda t, w: f.physical(w), (0.0, 3.0), p.initial_weights().ravel(), method="DOP853",
                    rtol=1e-12, atol=1e-14)
    tr = simulate(p, "3")
    assert tr.log10_t_final == pytest.approx(math.log10(3.0), abs=1e-15)
    assert tr.weights[-1].ravel() == pytest.approx(ref.y[:, -1], rel=1e-7)


def test_depth3_reaches_far_horizons_without_overflow():
    # L >= 3 blows up in finite tau (GD: tau* = 1/(x_0 a_0)); t -> infinity first
    tr = simulate(theory("gd", 0.2, depth=3), "1e400")
    assert tr.status == "ok" and tr.tau_final < 1.0 / (3.0 * 0.2)
    assert np.all(np.isfinite(tr.weights)) and int(np.argmax(tr.direction_final)) == 0


@pytest.mark.slow
def test_weights_leaving_float64_stop_with_an_overflow_status():
    # (Problem now refuses |w0|^L > 1e150, so no start next to the limit): L = 3 GD blows up at
    # tau* = 1/(x_0 a_0) = 5/3, and float64's limit for the weights of L = 3 is ~1e74
    p = theory("gd", 0.2, depth=3)
    tr = simulate(p, "10", time="rescaled")
    assert tr.status.startswith("overflow:") and "log10 t" in tr.status
    assert np.all(np.isfinite(tr.weights)) and math.isfinite(tr.log10_t_final)
    w_end = np.abs(tr.weights[-1]).max()
    assert 1e70 < w_end <= 1e75 and f"{w_end:.3g}" in tr.status
    assert tr.tau_final == pytest.approx(5.0 / 3.0, rel=1e-6) and tr.log10_t_final > 200
    doc = tr.to_json()
    json.dumps(doc, allow_nan=False)
    assert doc["direction_final"][0] == pytest.approx(1.0)


# --- options ----------------------------------------------------------------------------------
def test_a_given_field_is_used():
    class Counting(NumpyField):
        calls = 0

        def rescaled(self, w, sigma=None):
            Counting.calls += 1
            return super().rescaled(w, sigma)

        def rescaled_with_grad(self, w, sigma=None):
            Counting.calls += 1
            return super().rescaled_with_grad(w, sigma)

    p = theory("l2-sam", 0.3)
    tr = simulate(p, "1e50", field=Counting(p))
    assert Counting.calls > 50
    assert tr.beta_final == pytest.approx(simulate(p, "1e50", field=NumpyField(p)).beta_final, rel=1e-12)
    # the default engine (the derived kernels) agrees with the oracle to the integration error
    assert tr.beta_final == pytest.approx(simulate(p, "1e50").beta_final, rel=1e-7)


def test_a_field_with_only_the_reference_methods_works():
    class Plain:          # what a generated field offers: NumpyField's public methods, no extras
        def __init__(self, problem):
            self._f = NumpyField(problem)

        def __getattr__(self, name):
            if name in ("rescaled_with_grad", "parts"):
                raise AttributeError(name)
            return getattr(self._f, name)

    for algorithm in ("l2-sam", "linf-sam"):
        p = theory(algorithm, 0.3)
        assert simulate(p, "1e50", field=Plain(p)).beta_final == pytest.approx(
            simulate(p, "1e50").beta_final, rel=1e-9, abs=1e-300)


def test_user_events_are_recorded_or_stop_the_run():
    p = theory("gd", 0.2)

    def big(tau, w):       # |w_0| passes 2
        return abs(w[0]) - 2.0

    tr = simulate(p, "1e100", events=[big])
    assert tr.status == "ok"
    hits = [e for e in tr.stats["event_log"] if e["kind"] == "big"]
    assert len(hits) == 1 and 0 < hits[0]["tau"] < tr.tau_final

    big.terminal = True
    tr = simulate(p, "1e100", events=[big])
    assert tr.status.startswith("event: big") and abs(tr.weights[-1, 0, 0]) == pytest.approx(2.0, rel=1e-8)


def test_max_steps_stops_cleanly():
    tr = simulate(theory("l2-sam", 0.2), "1e400", max_steps=25)
    assert tr.status.startswith("max_steps: 25") and tr.stats["steps"] <= 25
    assert math.isfinite(tr.log10_t_final)


def test_progress_bar(capsys):
    tr = simulate(theory("gd", 0.2), "1e400", progress=True)
    assert tr.ok
    assert "simulate" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["Radau", "BDF", "LSODA", "DOP853", "RK45"])
def test_every_method_agrees(method):
    ref = simulate(theory("l2-sam", 1.0), "1e400", method="Radau", rtol=1e-11)
    tr = simulate(theory("l2-sam", 1.0), "1e400", method=method)
    assert tr.ok and tr.beta_final == pytest.approx(ref.beta_final, rel=2e-7)


def test_tightening_rtol_tenfold_changes_nothing_that_matters():
    # the l2-SAM transient (THEORY.md "Careful") and the linf-SAM mixed case
    for p in (theory("l2-sam", 0.2), Problem(depth=2, algorithm="linf-sam", rho=0.5, X=X4, y=[1],
                                             init=Init(layers=[[0.3, -0.2, 0.8, 0.1], [0.6, 0.3, -0.1, 0.8]]))):
        a = simulate(p, "1e400", rtol=1e-9)
        b = simulate(p, "1e400", rtol=1e-10)
        assert a.status == b.status == "ok"
        assert [s.index for s in a.dominant] == [s.index for s in b.dominant]
        for sa, sb in zip(a.dominant[1:], b.dominant[1:]):
            assert sa.tau == pytest.approx(sb.tau, rel=1e-6)
            assert sa.log10_t == pytest.approx(sb.log10_t, rel=1e-6, abs=1e-6)
        assert a.beta_collapsed == b.beta_collapsed
        if not a.beta_collapsed:
            assert np.abs(a.direction_final - b.direction_final).max() < 1e-6
        assert np.array_equal(a.weights[-1] == 0.0, b.weights[-1] == 0.0)


# --- the result -----------------------------------------------------------------------------------
def test_trajectory_json_settings_stats_and_round_trip(tmp_path):
    tr = simulate(theory("l2-sam", 0.2), "1e400")
    assert tr.weights.shape[0] > 300          # every solver step is kept ...
    doc = tr.to_json()
    json.dumps(doc, allow_nan=False)
    assert doc["schema"] == "sambias.trajectory/1"
    assert len(doc["samples"]["log10_t"]) <= 300 and len(doc["samples"]["beta"]) <= 300  # ... thinned here
    assert doc["log10_t_final"] == 400.0 and doc["status"] == "ok"
    assert [d["index"] for d in doc["dominant"]] == [2, 3]
    assert all(isinstance(d["log10_t"], float) for d in doc["dominant"])
    for key in ("time", "precision", "method", "rtol", "atol", "horizon"):
        assert key in tr.settings
    assert tr.settings["horizon"] == "1e400" and tr.settings["precision"] == "float64"
    for key in ("nfev", "njev", "steps", "wall_s", "events"):
        assert key in tr.stats
    assert tr.stats["nfev"] > tr.stats["steps"] > 0
    tr.save(tmp_path / "run.npz")
    back = Trajectory.load(tmp_path / "run.npz")
    for name in ("tau", "log10_t", "weights", "log10_loss"):
        assert np.array_equal(getattr(back, name), getattr(tr, name))
    assert back.dominant == tr.dominant and back.status == tr.status
    assert back.settings == json.loads(json.dumps(tr.to_json()["settings"]))
    assert back.to_json() == json.loads(json.dumps(doc))


def test_margins_and_loss_columns():
    tr = simulate(Problem(depth=2, algorithm="gd", X=[[2.0, 1.0], [1.0, 3.0], [-1.0, -1.0]], y=[1, 1, -1],
                          init=Init(scale=0.1)), "1e50")
    z = tr.margins()
    assert z.shape == (tr.weights.shape[0], 3) and np.all(np.diff(z.min(axis=1)[-50:]) > 0)
    # log10 of the loss from the margins, far below float64's smallest number
    assert tr.log10_loss_final == pytest.approx(np.log10(np.exp(-(z[-1] - z[-1].min())).sum()) - z[-1].min() / math.log(10))
    assert np.all(np.diff(tr.log10_loss) <= 1e-12)
