"""Long horizons: THEORY.md's depth-2 examples run until their limits are plain.

Directions converge like a power of 1/log t, so "plain" (within 1e-6 of the predicted basis
vector) needs log10 t of 1e16 to 1e86 -- reached in float64 by running on in rescaled time
past the physical horizon.  Measured (rtol 1e-9, auto):

==============================  =========  ==============  ======================
example (x=(3,2,1,.5), rho=.5)  tau        log10 t         leader changes
==============================  =========  ==============  ======================
GD, 0.2                         6.91       5.2e16          0
linf-SAM, 1.0                   6.91       3.3e17          0
l2-SAM, 1.0                     7.11       2.2e18          0
l2-SAM, 0.2                     73.97      4.2e86          2 3 2 1 0
USAM, 0.2                       9.36       1.9e19          2 1 0
linf-SAM, 0.2                   1.02       0.17 (beta=0)   3
l2-SAM, 0.06                    0.55       -0.22 collapse  3
==============================  =========  ==============  ======================
"""

from __future__ import annotations

import numpy as np
import pytest

from sambias import Init, Problem
from sambias.flows import simulate

pytestmark = pytest.mark.slow

X4 = [[3.0, 2.0, 1.0, 0.5]]
E0 = np.array([1.0, 0.0, 0.0, 0.0])


def theory(algorithm: str, scale: float) -> Problem:
    return Problem(depth=2, algorithm=algorithm, rho=0.5, X=X4, y=[1], init=Init(scale=scale))


def first_within(tr, target, tol=1e-6):
    err = np.linalg.norm(tr.directions() - target, axis=1)
    ok = np.flatnonzero(err < tol)
    return (float(tr.tau[ok[0]]), float(tr.log10_t[ok[0]])) if ok.size else None


@pytest.mark.parametrize("algorithm,scale,tau_end,expect", [
    ("gd", 0.2, "9", (6.91, 5.2e16)),
    ("linf-sam", 1.0, "9", (6.91, 3.3e17)),
    ("l2-sam", 1.0, "9", (7.11, 2.2e18)),
    ("usam", 0.2, "12", (9.36, 1.9e19)),
    ("l2-sam", 0.2, "80", (73.97, 4.2e86)),
])
def test_limit_direction_becomes_plain(algorithm, scale, tau_end, expect):
    tr = simulate(theory(algorithm, scale), tau_end, time="rescaled")
    assert tr.status == "ok"
    reached = first_within(tr, E0)
    assert reached is not None, tr.direction_final
    tau, log10_t = reached
    assert tau == pytest.approx(expect[0], rel=0.01)
    assert log10_t == pytest.approx(expect[1], rel=0.05)
    assert np.linalg.norm(tr.direction_final - E0) < 1e-6


def test_l2sam_small_init_leader_sequence_is_stable_under_tighter_rtol():
    a = simulate(theory("l2-sam", 0.2), "80", time="rescaled", rtol=1e-9)
    b = simulate(theory("l2-sam", 0.2), "80", time="rescaled", rtol=1e-10)
    assert [s.index for s in a.dominant] == [s.index for s in b.dominant] == [2, 3, 2, 1, 0]
    for sa, sb in zip(a.dominant[1:], b.dominant[1:]):
        assert sa.tau == pytest.approx(sb.tau, rel=1e-6)
        assert sa.log10_t == pytest.approx(sb.log10_t, rel=1e-6)


def test_linf_small_init_collapses_exactly_and_l2_small_init_collapses():
    tr = simulate(theory("linf-sam", 0.2), "1e100000")
    assert tr.status == "ok" and np.all(tr.weights[-1] == 0.0) and tr.log10_t_final == 1e5
    tr = simulate(theory("l2-sam", 0.06), "1e100000")
    assert tr.status.startswith("collapse")
