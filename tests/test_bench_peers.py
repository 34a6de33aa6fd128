"""Smoke test of benchmarks/bench_peers.py: its peers solve the system sambias solves, and its
agreement checks reject a wrong answer.  One tiny case; skipped without the ``peers`` extra."""

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("heyoka")
pytest.importorskip("jitcode")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_peers as B  # noqa: E402

from sambias import Init, Problem  # noqa: E402
from sambias.flows import simulate  # noqa: E402
from sambias.symbolic import GeneratedField  # noqa: E402

T = 5.0


@pytest.fixture(scope="module")
def tiny():
    p = B.problem("l2-sam", 2, 4)   # (d = 3 collapses to w = 0 before t = 5)
    return p, B.peer_system(p)


def _points(p, rng):
    """The start and two points with mixed signs (linf-SAM's sign must be carried over)."""
    w0 = p.initial_weights().ravel().astype(float)
    return [w0] + [rng.normal(0.0, 0.5, w0.size) for _ in range(2)]


@pytest.mark.parametrize("algorithm", ["gd", "l2-sam", "linf-sam"])
def test_oracle_and_heyoka_rhs_match_sambias(algorithm):
    p = B.problem(algorithm, 2, 3)
    field, oracle = GeneratedField(p), B.oracle_rhs(p)
    hey = B.Heyoka(B.peer_system(p), taylor=False)
    for w in _points(p, np.random.default_rng(1)):
        ref = np.asarray(field.physical(w), dtype=float).ravel()
        scale = np.max(np.abs(ref))
        assert np.max(np.abs(oracle(0.0, w) - ref)) <= 1e-13 * scale
        assert np.max(np.abs(hey.cf(w) - ref)) <= 1e-13 * scale


def test_peers_agree_with_sambias_and_the_check_rejects_a_wrong_state(tiny):
    p, ps = tiny
    w0 = p.initial_weights().ravel().astype(float)
    tr = simulate(p, f"{T:g}")
    assert tr.status == "ok"
    ref = [float(v) for v in B.final_weights(tr)]
    jit, hey = B.Jitcode(ps), B.Heyoka(ps)
    assert np.max(np.abs(jit.ode.f(0.0, w0) - B.oracle_rhs(p)(0.0, w0))) <= 1e-13
    runs = [jit.run(w0, T), hey.run(w0, T, budget=10.0), B.scipy_run(p, T, budget=10.0)]
    for r in runs:
        assert r.status == "ok" and r.t_reached == T, (r.peer, r.status)
        assert B.rel_diff(r.w, ref) <= B.AGREE_F64, r.peer
    # negative controls: the same peer on a different rho, and a state off by 1e-5, are flagged
    other = Problem(depth=2, algorithm="l2-sam", rho=0.45, X=p.X, y=[1], init=Init(scale=B.INIT))
    wrong = B.scipy_run(other, T, budget=10.0)
    assert B.rel_diff(wrong.w, ref) > B.AGREE_F64
    assert "DISAGREE" in B.mark(B.rel_diff(np.asarray(ref) * (1 + 1e-5), ref), B.AGREE_F64)
    assert "DISAGREE" not in B.mark(B.rel_diff(runs[1].w, ref), B.AGREE_F64)


def test_peer_stopping_short_is_reported_not_hidden(tiny):
    p, _ = tiny
    # float64 physical time cannot even be asked for 1e400: the peer must say it failed
    r = B.scipy_run(p, float("1e400"), budget=1.0)
    assert r.status.startswith("budget") and r.t_reached < 1e300


def test_mp_digits_against_heyoka_real(tiny):
    p, ps = tiny
    tr = simulate(p, "1", precision="mp:50")
    sam = [str(v) for v in B.final_weights(tr)]
    hey = B.Heyoka(ps, "real", 200, taylor=True, cfunc=False).run([B.INIT] * len(ps.rhs), 1.0, budget=10.0)
    assert hey.status == "ok"
    ref = [str(v) for v in hey.w]
    assert B.correct_digits(sam, ref) >= 40
    # negative control: one coordinate wrong in its 30th digit costs the digits
    bad = list(sam)
    bad[0] = _perturb(sam[0], 1e-30)
    assert B.correct_digits(bad, ref) < 31


def _perturb(text, rel):
    import mpmath
    with mpmath.workdps(80):
        return mpmath.nstr(mpmath.mpf(text) * (1 + mpmath.mpf(rel)), 70)
