"""Ensembles (issue 11.3): the batch path against the single driver, instance by instance."""

from __future__ import annotations

import numpy as np
import pytest

from sambias import Init, Problem
from sambias.errors import ProblemError
from sambias.flows import simulate
from sambias.flows.batch_field import BatchField, BatchUnsupported, Modes
from sambias.flows.ensemble import _unsupported, disagreements, simulate_ensemble
from sambias.flows.filippov import FilippovModel
from sambias.symbolic import GeneratedField
from sambias.sweep.predict import linf_basin
from sambias.sweep.record import limit_index

RHO = 0.5
X3 = [3.0, 2.0, 1.0]


def _linf(u, v, rho=RHO, x=X3):
    return Problem(depth=2, algorithm="linf-sam", rho=rho, X=[list(x)], y=[1], init=Init(layers=[list(u), list(v)]))


def _basin_points(seed: int = 11, count: int = 3):
    """L = 2 linf-SAM inits on both sides of THEORY's boundary u_j + v_j = 2 rho (never on it):
    point i has coordinates 0..i-1 above the boundary (point 0: none grows, beta -> 0)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        v = rng.uniform(0.2, 0.8, 3)
        side = np.where(np.arange(3)[::-1] < i % 4, 1.0, -1.0)
        u = np.maximum(2 * RHO - v + side * rng.uniform(0.05, 0.3, 3), 0.02)
        out.append(_linf(u, v))
    return out


def _seeded_set(extended: bool):
    ps = _basin_points(count=6 if extended else 3) + [
        Problem(depth=2, algorithm="gd", X=[[3.0, 2.0, 1.0, 0.5]], y=[1], init=Init(scale=0.2)),
        Problem(depth=2, algorithm="l2-sam", rho=0.5, X=[[3.0, 2.0]], y=[1], init=Init(scale=0.1)),  # collapses
    ]
    if extended:
        ps += [Problem(depth=2, algorithm="gd", X=[[2.0, 1.0, 0.5], [1.0, 2.0, 0.3]], y=[1, 1], init=Init(scale=0.3)),
               Problem(depth=2, algorithm="l2-sam", rho=0.5, X=[[3.0, 2.0, 1.0, 0.5]], y=[1], init=Init(scale=0.6)),
               Problem(depth=3, algorithm="l2-sam", rho=0.3, X=[X3], y=[1], init=Init(scale=0.7))]
    return ps, [simulate(p, "1e400") for p in ps], simulate_ensemble(ps, "1e400")


# --- the batched field is the derived field -----------------------------------------------------
@pytest.mark.parametrize("algorithm,L,n", [("gd", 3, 3), ("l2-sam", 2, 1), ("l2-sam", 3, 2), ("usam", 2, 2),
                                           ("asam", 2, 2), ("linf-sam", 2, 1)])
def test_batch_field_equals_generated_field(algorithm, L, n):
    rng = np.random.default_rng(3)
    ps = [Problem(depth=L, algorithm=algorithm, rho=float(rng.uniform(0.1, 1.0)), X=rng.uniform(0.2, 3, (n, 4)).tolist(),
                  y=[1] * n, init=Init(layers=rng.uniform(0.1, 1.5, (L, 4)).tolist())) for _ in range(5)]
    f, log_S = BatchField(ps).rescaled(np.stack([p.initial_weights() for p in ps]))
    for b, p in enumerate(ps):
        f1, l1 = GeneratedField(p).rescaled(p.initial_weights().ravel())
        np.testing.assert_allclose(f[b].ravel(), f1, rtol=1e-13, atol=0)
        assert abs(log_S[b] - l1) <= 1e-13 * max(1.0, abs(l1))


def test_batch_filippov_modes_equal_the_filippov_model():
    rng = np.random.default_rng(5)
    ps = [_linf(rng.uniform(-1.5, 1.5, 4), rng.uniform(-1.5, 1.5, 4), rho=float(rng.uniform(0.2, 1.0)),
                x=rng.uniform(0.2, 3.0, 4)) for _ in range(40)]
    W = np.stack([p.initial_weights() for p in ps])
    pinned = rng.random(W.shape) < 0.3          # lone pinned coordinates and corners
    W[pinned] = 0.0
    pw = np.where(rng.random(W.shape) < 0.5, 1.0, -1.0)
    f, log_S = BatchField(ps).mode_flow(W, np.arange(len(ps)), Modes(pw, pinned))
    assert pinned.sum(axis=1).max() == 2 and (pinned.sum(axis=1) == 1).any()
    for b, p in enumerate(ps):
        model = FilippovModel(p)
        mode = model.initial_mode(W[b].ravel())
        mode.pw, mode.pinned = pw[b].copy(), pinned[b].copy()
        f1, l1 = model.flow(W[b].ravel(), mode)
        np.testing.assert_allclose(f[b].ravel(), f1, rtol=1e-12, atol=1e-15)
        assert abs(log_S[b] - l1) <= 1e-12 * max(1.0, abs(l1))


def test_flat_kernel_calls_equal_broadcast_calls():
    # compiled kernels get flat (B*d,) arrays instead of (B, d) ones: the same numbers
    rng = np.random.default_rng(9)
    ps = [_linf(rng.uniform(0.1, 1.5, 3), rng.uniform(0.1, 1.5, 3), rho=float(rng.uniform(0.2, 1.0))) for _ in range(6)]
    W = np.stack([p.initial_weights() for p in ps])
    pinned = rng.random(W.shape) < 0.3
    W[pinned] = 0.0
    modes = Modes(np.ones(W.shape), pinned)
    direct, flat = BatchField(ps), BatchField(ps)
    flat._direct = False
    for a, b in zip(direct.mode_flow(W, np.arange(6), modes), flat.mode_flow(W, np.arange(6), modes)):
        np.testing.assert_array_equal(a, b)


def test_batch_field_refuses_what_it_does_not_cover():
    with pytest.raises(BatchUnsupported):
        BatchField([Problem(depth=3, algorithm="linf-sam", rho=0.5, X=[X3], y=[1], init=Init(scale=0.7))])
    with pytest.raises(BatchUnsupported):
        BatchField([_linf([0.3] * 3, [0.3] * 3), Problem(depth=2, algorithm="gd", X=[X3], y=[1], init=Init(scale=0.1))])


# --- agreement with the single driver --------------------------------------------------------------
@pytest.fixture(scope="module")
def seeded_set():
    """(problems, single-driver trajectories, ensemble trajectories) at t = 1e400."""
    return _seeded_set(extended=False)


def _check_agreement(ps, single, batch):
    for p, a, b in zip(ps, single, batch):
        assert b.stats["ensemble"]["path"] == "batch", b.stats["ensemble"]
        assert disagreements(a, b, direction_tol=1e-6, clock_rtol=1e-5, switch_tol=1e-3) == [], (p.algorithm, p.init)
        assert limit_index(a.direction_final, a.beta_collapsed, 1e-3) == limit_index(b.direction_final,
                                                                                   b.beta_collapsed, 1e-3)
    assert any(b.status.startswith("collapse") for b in batch)        # the collapse is among them


def test_ensemble_agrees_with_single_driver(seeded_set):
    _check_agreement(*seeded_set)


@pytest.mark.slow
def test_ensemble_agrees_with_single_driver_extended():
    _check_agreement(*_seeded_set(extended=True))


def test_basin_points_straddle_the_boundary_and_match_the_prediction(seeded_set):
    ps, single, batch = seeded_set
    linf = [(p, b) for p, b in zip(ps, batch) if p.algorithm == "linf-sam"]
    grows = np.array([p.initial_weights()[0] + p.initial_weights()[1] > 2 * RHO for p, _ in linf])
    assert grows.any() and (~grows).any()                            # both sides of the boundary
    predicted = [linf_basin(p) for p, _ in linf]
    assert -1 in predicted and any(k >= 0 for k in predicted)
    for (p, b), k in zip(linf, predicted):
        assert limit_index(b.direction_final, b.beta_collapsed, 1e-2) == k


def test_disagreements_reject_a_wrong_ensemble(seeded_set):
    # negative control: the same inits with rho shifted by 10% move the basin boundary
    ps, single, _ = seeded_set
    linf = [(p, a) for p, a in zip(ps, single) if p.algorithm == "linf-sam"]
    wrong = simulate_ensemble([_linf(*p.initial_weights(), rho=0.45) for p, _ in linf], "1e400")
    flagged = [disagreements(a, w) for (_, a), w in zip(linf, wrong)]
    assert all(flagged), flagged
    # and a single-clock error is caught at the stated tolerance
    a = linf[0][1]
    b = simulate_ensemble([linf[0][0]], "9e399")[0]
    assert any("log10_t_final" in m for m in disagreements(a, b, clock_rtol=1e-5))


def test_rescaled_horizon_agrees():
    # log10 t at tau = 5 is ~1e11: the single driver's s = phi + delta holds it to ~1e-6 relative
    # (it converges to the ensemble's value as its rtol shrinks), hence clock_rtol = 1e-5
    ps = [_linf([1.2, 0.3, 0.3], [0.5, 0.5, 0.3]), _linf([0.2, 0.2, 0.3], [0.5, 0.5, 0.3])]
    single = [simulate(p, "5", time="rescaled") for p in ps]
    batch = simulate_ensemble(ps, "5", time="rescaled")
    for a, b in zip(single, batch):
        assert b.tau_final == 5.0 and a.tau_final == 5.0
        assert disagreements(a, b, clock_rtol=1e-5) == []


def test_a_huge_start_margin_reaches_a_short_horizon():
    # dt/dtau = e^{450} at the start: t = 1e3 is reached at tau ~ 4e-193, inside the first step
    p = Problem(depth=2, algorithm="gd", X=[[30.0, 20.0]], y=[1], init=Init(scale=3.0))
    a, b = simulate(p, "1e3"), simulate_ensemble([p], "1e3")[0]
    assert b.stats["ensemble"]["path"] == "batch" and 1e-193 < b.tau_final < 1e-192
    assert disagreements(a, b) == []


# --- batch composition, routing, input ---------------------------------------------------------------
def test_instance_result_does_not_depend_on_its_batch():
    target = _linf([1.2, 0.3, 0.3], [0.5, 0.5, 0.3])
    others = [_linf([u, 1.0, 0.3], [0.5, 0.5, 0.3]) for u in (0.1, 0.4, 0.9, 1.4)]
    alone = simulate_ensemble([target], "1e400")[0]
    mixed = simulate_ensemble(others[:2] + [target] + others[2:], "1e400")[2]
    np.testing.assert_array_equal(alone.weights[-1], mixed.weights[-1])
    assert alone.tau_final == mixed.tau_final and alone.dominant == mixed.dominant


def test_unsupported_instances_run_on_the_single_driver():
    plain = Problem(depth=2, algorithm="l2-sam", rho=0.0, X=[X3], y=[1], init=Init(scale=0.5))   # rho = 0
    flat = _linf([1.2, 0.3, 0.3], [0.5, 0.5, 0.3])
    out = simulate_ensemble([plain, flat], "2", time="rescaled")
    assert out[0].stats["ensemble"] == {"path": "single", "reason": "rho = 0 with a perturbed algorithm"}
    assert out[1].stats["ensemble"]["path"] == "batch"
    ref = simulate(plain, "2", time="rescaled")
    np.testing.assert_array_equal(out[0].weights[-1], ref.weights[-1])   # the single driver's own answer
    capped = simulate_ensemble([flat], "1e400", max_steps=5)[0]           # the step cap hands over too
    assert capped.stats["ensemble"]["path"] == "single" and capped.status.startswith("max_steps")
    deep = Problem(depth=3, algorithm="linf-sam", rho=0.5, X=[X3], y=[1], init=Init(scale=0.7))
    two = Problem(depth=2, algorithm="linf-sam", rho=0.5, X=[X3, [1.0, 2.0, 3.0]], y=[1, 1], init=Init(scale=0.7))
    assert "L = 2 with one example" in _unsupported(deep) and "one example" in _unsupported(two)
    assert _unsupported(flat) == ""


@pytest.mark.parametrize("args,message", [
    (([], "10"), "at least one problem"),
    ((["not a problem"], "10"), "problems[0]"),
    (([_linf([1, 1, 1], [1, 1, 1])], "-3"), "horizon"),
])
def test_bad_input_is_one_clear_error(args, message):
    with pytest.raises(ProblemError, match=None) as info:
        simulate_ensemble(*args)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_options_are_one_clear_error():
    p = [_linf([1, 1, 1], [1, 1, 1])]
    for kw, msg in (({"time": "wall"}, "time"), ({"rtol": 2.0}, "rtol"), ({"atol": -1.0}, "atol"),
                    ({"max_steps": 0}, "max_steps")):
        with pytest.raises(ProblemError) as info:
            simulate_ensemble(p, "10", **kw)
        assert msg in str(info.value)


# --- sweeps: batches of one shape take the ensemble path -------------------------------------------
TINY_SWEEP = """
horizon = "1.5"
time = "rescaled"
rtol = 1e-6
limit_tol = 0.05
predict = "linf-basin"
[problem]
depth = 2
algorithm = "linf-sam"
rho = RHO
X = [[3.0, 2.0]]
y = [1]
[problem.init]
layers = [[1.0, 1.0], [0.5, 0.5]]
[axes]
"init.layers.0.0" = [0.2, 0.8, 1.1, 1.3]
"init.layers.0.1" = [0.2, 0.7]
"""


def _sweep_records(tmp_path, name, rho=0.5, ensemble=True):
    from sambias.sweep import SerialExecutor, Store, load_sweep, run_sweep

    path = tmp_path / f"{name}.sweep.toml"
    path.write_text(TINY_SWEEP.replace("RHO", str(rho)))
    if ensemble:
        run_sweep(load_sweep(path), tmp_path / f"{name}.sqlite", executor=SerialExecutor(), progress=False)
    else:   # the command line's switch to the per-point path
        from sambias.cli import main
        assert main(["sweep", str(path), "--store", str(tmp_path / f"{name}.sqlite"), "--workers", "1",
                     "--no-progress", "--no-ensemble"]) == 0
    with Store.open(tmp_path / f"{name}.sqlite") as store:
        return store.records()


def _record_mismatches(a, b) -> list[str]:
    """Records that differ beyond the ensemble's stated tolerances (exact fields exactly)."""
    import json

    out = []
    for ra, rb in zip(a, b):
        for f in ("idx", "key", "values", "limit", "leaders", "collapsed", "predicted", "agree", "tau_final"):
            if getattr(ra, f) != getattr(rb, f):
                out.append(f"{ra.key}: {f} {getattr(ra, f)!r} vs {getattr(rb, f)!r}")
        if ra.status.split(":")[0] != rb.status.split(":")[0]:
            out.append(f"{ra.key}: status {ra.status!r} vs {rb.status!r}")
        # the sweep's rtol is 1e-6: at tau = 1.5 both paths hold log10 t to ~5e-5 relative
        # (measured against rtol = 1e-11 runs, which agree to 2e-9), hence 2e-4
        if abs(ra.log10_t_final - rb.log10_t_final) > 2e-4 * abs(ra.log10_t_final):
            out.append(f"{ra.key}: log10_t_final {ra.log10_t_final} vs {rb.log10_t_final}")
        if (ra.direction is None) != (rb.direction is None) or (ra.direction is not None and np.max(np.abs(
                np.array(json.loads(ra.direction)) - np.array(json.loads(rb.direction)))) > 1e-5):
            out.append(f"{ra.key}: direction {ra.direction} vs {rb.direction}")
    return out


def test_sweep_records_through_the_ensemble_match_the_per_point_path(tmp_path):
    batch = _sweep_records(tmp_path, "batch")
    single = _sweep_records(tmp_path, "single", ensemble=False)
    assert len(batch) == len(single) == 8 and {r.limit for r in batch} == {-1, 0, 1}
    assert _record_mismatches(single, batch) == []
    # two integrators really ran (they agree to tolerance, not to the last bit)
    assert any(a.log10_t_final != b.log10_t_final for a, b in zip(single, batch))
    # negative control: the same comparison flags a sweep at another rho (a moved basin boundary)
    assert _record_mismatches(single, _sweep_records(tmp_path, "shifted", rho=0.35))


def test_sweep_chunks_group_points_of_one_shape():
    from sambias.sweep.record import Task
    from sambias.sweep.run import chunks_for

    base = {"algorithm": "linf-sam", "X": [[1.0, 2.0]], "y": [1]}
    tasks = [Task(i, str(i), (), dict(base, depth=2 + i % 2), "1") for i in range(10)]
    chunks = chunks_for(tasks, workers=1)
    assert sorted(t.idx for c in chunks for t in c) == list(range(10))
    assert all(len({t.problem["depth"] for t in c}) == 1 for c in chunks)
    assert max(len(c) for c in chunks) == 2       # four chunks per worker and shape
