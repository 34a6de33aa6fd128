"""The stepper protocol and the one run loop (flows/steppers.py, flows/driver.py).

Both precisions go through :func:`advance`; these tests pin its event semantics on
problems with closed-form answers (``y' = -y``, ``y' = y``, ``y' = 1``), for the scipy
family and the mpmath stepper alike, with negative controls for direction and terminality.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from sambias.flows.driver import Event, advance
from sambias.flows.steppers import FLOAT64_METHODS, Float64Stepper, MpStepper


def decay(method: str, **kw) -> Float64Stepper:
    return Float64Stepper(method, lambda t, y: -y, 0.0, np.array([1.0]), rtol=1e-10, atol=1e-12,
                          jac=lambda t, y: np.array([[-1.0]]), **kw)


@pytest.mark.parametrize("method", FLOAT64_METHODS)
def test_every_float64_method_steps_and_interpolates_the_decay(method):
    st = decay(method)
    while st.t < 2.0:
        st.step()
        assert st.status == "running" and st.t > st.t_old
    mid = 0.5 * (st.t_old + st.t)
    assert abs(st.dense_output()(mid)[0] - math.exp(-mid)) < 1e-7
    assert abs(st.y[0] - math.exp(-st.t)) < 1e-7
    assert st.nfev > 0


def test_an_unknown_method_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown float64 method 'Euler'"):
        decay("Euler")


def test_event_located_to_rounding_and_the_state_is_the_dense_one():
    st = decay("DOP853")
    out = advance(st, [Event("e-half", lambda t, y: y[0] - math.exp(-0.5), direction=-1)], max_steps=1000)
    assert out.kind == "event" and out.fired == ["e-half"]
    assert out.t == pytest.approx(0.5, abs=1e-9)
    assert out.y[0] == pytest.approx(math.exp(-0.5), rel=1e-9)


def test_direction_and_terminality_are_respected():
    # negative controls: a rising event on a falling solution never fires; a non-terminal one
    # is recorded and the run goes on to the terminal one
    st = decay("RK45")
    events = [Event("rising", lambda t, y: y[0] - 0.5, direction=1),
              Event("pass", lambda t, y: y[0] - 0.5, direction=-1, terminal=False),
              Event("stop", lambda t, y: t - 1.5, direction=1)]
    out = advance(st, events, max_steps=1000)
    assert out.fired == ["stop"] and out.t == pytest.approx(1.5, abs=1e-12)
    assert [(n, round(t, 9)) for n, t, _ in out.passed] == [("pass", round(math.log(2.0), 9))]


def test_step_budget_and_failures_end_with_their_kind():
    st = decay("LSODA")
    out = advance(st, [Event("never", lambda t, y: 1.0)], max_steps=5)
    assert out.kind == "max_steps" and out.steps == 5
    bounded = Float64Stepper("RK45", lambda t, y: -y, 0.0, np.array([1.0]), rtol=1e-8, atol=1e-10, t_bound=0.1)
    out = advance(bounded, [], max_steps=1000)
    assert out.kind == "failed" and "bound" in out.message and out.t == pytest.approx(0.1)


def test_simultaneous_roots_fire_together():
    st = Float64Stepper("RK45", lambda t, y: np.array([1.0]), 0.0, np.array([0.0]), rtol=1e-10, atol=1e-12)
    out = advance(st, [Event("a", lambda t, y: y[0] - 0.25, 1), Event("b", lambda t, y: 0.25 - y[0], -1),
                       Event("c", lambda t, y: y[0] - 0.75, 1)], max_steps=100)
    assert sorted(out.fired) == ["a", "b"] and out.t == pytest.approx(0.25, abs=1e-12)


def grow_mp(method: str, digits: int = 40) -> MpStepper:
    return MpStepper(method, lambda y: [y[0]], mpmath.mpf(0), [mpmath.mpf(1)], mpmath.mpf("0.1"),
                     rtol=mpmath.mpf(10) ** (4 - digits), atol=[mpmath.mpf(10) ** (4 - digits)], digits=digits)


@pytest.mark.parametrize("method, digits", [("gbs", 40), ("rkf78", 20)])
def test_the_mp_stepper_lands_events_with_its_own_accuracy(method, digits):
    # y' = y from 1: y = 2 at t = ln 2, located by re-taking the step (not on a cubic)
    with mpmath.workdps(digits):
        tol = mpmath.mpf(10) ** (10 - digits)
        st = grow_mp(method, digits)
        out = advance(st, [Event("two", lambda t, y: y[0] - 2, 1, ftol=tol / 1000)], max_steps=2000)
        assert out.kind == "event" and out.fired == ["two"]
        assert abs(out.t - mpmath.log(2)) < tol and abs(out.y[0] - 2) < tol
        # a falling event on the rising solution never fires (negative control)
        st = grow_mp(method, digits)
        out = advance(st, [Event("falls", lambda t, y: y[0] - 2, -1), Event("end", lambda t, y: t - 1, 1)],
                      max_steps=2000)
        assert out.fired == ["end"] and abs(out.y[0] - mpmath.e) < tol


def test_both_precisions_find_the_same_root_through_the_same_loop():
    f64 = Float64Stepper("DOP853", lambda t, y: y, 0.0, np.array([1.0]), rtol=1e-12, atol=1e-14)
    a = advance(f64, [Event("three", lambda t, y: y[0] - 3.0, 1)], max_steps=1000)
    with mpmath.workdps(30):
        b = advance(grow_mp("gbs", 30), [Event("three", lambda t, y: y[0] - 3, 1, ftol=mpmath.mpf(10) ** -25)],
                    max_steps=1000)
        exact = float(mpmath.log(3))
    assert a.fired == b.fired == ["three"]
    assert a.t == pytest.approx(exact, abs=1e-10) and float(b.t) == pytest.approx(exact, abs=1e-15)
