"""Algorithms defined once (symbolic/algorithms.py): built-ins, ASAM, user and plugin algorithms.

Every equality below is paired with a negative control showing the comparison can fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy as sp

from sambias import Init, Problem, ProblemError, register_algorithm
from sambias.symbolic import (Algorithm, AlgorithmError, GeneratedField, derive, derive_flow, get_algorithm,
                              unregister_algorithm)
from sambias.symbolic import algorithms as algmod
from sambias.symbolic.algorithms import coordinate_structure
from sambias.symbolic.codegen import MAX_FLAT_WEIGHTS
from sambias.symbolic.notation import NORM, RHO, SPEED, coupling, switching, weight

THEORY_X = [3.0, 2.0, 1.0, 0.5]


def half_l2(g, w, rho):  # the README's example: l2-SAM with rho/2
    return (rho / 2) * g / sp.sqrt((g.T * g)[0, 0])


def l2_by_pairs(g, w, rho):
    # ||g||^2 = (sum g)^2 - 2 sum_{i<k} g_i g_k: the same number, but coordinates meet in
    # pairwise products, so it has no per-coordinate structure (the general flat path)
    n = g.shape[0]
    pairs = sp.Add(*[g[i] * g[k] for i in range(n) for k in range(i + 1, n)])
    return rho * g / sp.sqrt(sp.Add(*g) ** 2 - 2 * pairs)


def half_linf(g, w, rho):
    return (rho / 2) * g.applyfunc(sp.sign)


USER = {"test-half-l2": Algorithm("test-half-l2", half_l2),
        "test-l2-pairs": Algorithm("test-l2-pairs", l2_by_pairs),
        "test-half-linf": Algorithm("test-half-linf", half_linf, discontinuous=True)}


@pytest.fixture(scope="module", autouse=True)
def user_algorithms():
    for a in USER.values():
        register_algorithm(a)
    yield
    for name in USER:
        unregister_algorithm(name)


def problem(algorithm, rho=0.5, depth=2, X=None, y=None, loss="exp", scale=0.3, layers=None):
    X = [THEORY_X] if X is None else X
    y = [1] * len(X) if y is None else y
    init = Init(layers=layers) if layers is not None else Init(scale=scale)
    return Problem(depth=depth, algorithm=algorithm, rho=rho, X=X, y=y, loss=loss, init=init)


def states(p, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1.2, 1.2, p.depth * p.dim) for _ in range(k)]


def field_values(f, w):
    """Everything a field answers at ``w``, as float arrays (for comparisons)."""
    r, logS = f.rescaled(w)
    rr, logS2, grad = f.rescaled_with_grad(w)
    out = {"rescaled": r, "logS": [logS, logS2], "grad": grad, "jac": f.rescaled_jac(w),
           "physical": f.physical(w), "physical_jac": f.physical_jac(w), "perturbation": f.perturbation(w)}
    return {k: np.array(v, dtype=float) for k, v in out.items()}


def assert_fields_equal(f, g, w, rtol=1e-10):
    a, b = field_values(f, w), field_values(g, w)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=rtol * 1e-2, err_msg=key)


def fields_differ(f, g, w, rtol=1e-3) -> bool:
    a, b = field_values(f, w), field_values(g, w)
    return any(not np.allclose(a[k], b[k], rtol=rtol, atol=rtol) for k in ("rescaled", "jac"))


# --- built-ins are their definitions ---------------------------------------------------------
def test_builtin_definitions_give_the_known_coordinate_forms():
    g, L = coupling(False), 3
    w = [weight(l, "j") for l in range(1, L + 1)]
    F = [g * sp.Mul(*[w[k] for k in range(L) if k != l]) for l in range(L)]
    expected = {"gd": [0] * L, "l2-sam": [RHO * f / NORM for f in F],
                "linf-sam": [RHO * switching(l, "j") for l in range(1, L + 1)],
                "usam": [RHO * SPEED * f for f in F]}
    for name, want in expected.items():
        got = coordinate_structure(get_algorithm(name), L).perturbation
        assert all(sp.simplify(a - b) == 0 for a, b in zip(got, want)), name
    # negative control: l2-SAM's form is not USAM's
    got = coordinate_structure(get_algorithm("l2-sam"), L).perturbation
    assert sp.simplify(got[0] - expected["usam"][0]) != 0
    l2 = coordinate_structure(get_algorithm("l2-sam"), L)
    assert [gs.symbol for gs in l2.globals] == [NORM] and l2.degree == 0
    assert coordinate_structure(get_algorithm("usam"), L).degree == 1


def test_asam_is_one_definition_with_its_own_norm():
    s = coordinate_structure(get_algorithm("asam"), 2)
    (gs,) = s.globals
    g, w1, w2 = coupling(False), weight(1, "j"), weight(2, "j")
    # eps^(1)_j = rho w1^2 F^(1)_j / M with M^2 = sum_j ||T_j F_j||^2 (T = diag|w|)
    assert sp.simplify(s.perturbation[0] - RHO * w1**2 * g * w2 / gs.symbol) == 0
    assert sp.expand(gs.share - (w1**2 * (g * w2) ** 2 + w2**2 * (g * w1) ** 2)) == 0
    assert str(gs.symbol) == "M" and gs.power == 2 and gs.divides  # not "N": that is ||F||


# --- a user algorithm: rho/2 * g/||g|| is l2-SAM with rho/2 ------------------------------------
def test_half_l2_derivation_equals_l2_sam_with_half_rho():
    half, l2 = derive_flow(2, 3, 2, "test-half-l2", "logistic"), derive_flow(2, 3, 2, "l2-sam", "logistic")
    for a, b in zip(np.ravel(half.perturbation), np.ravel(l2.perturbation)):
        assert sp.simplify(a - b.xreplace({RHO: RHO / 2})) == 0
    assert half.coordinate.perturbation == tuple(e.xreplace({RHO: RHO / 2}) for e in l2.coordinate.perturbation)
    # negative control: with the same rho they differ
    assert sp.simplify(half.perturbation[0][0] - l2.perturbation[0][0]) != 0


@pytest.mark.parametrize("backend", ["float64", "mp"])
def test_half_l2_field_equals_l2_sam_with_half_rho(backend):
    kw = dict(depth=2, X=[[3.0, 2.0, 1.0], [-1.0, 0.5, 2.0]], y=[1, -1], loss="logistic")
    half, l2 = problem("test-half-l2", rho=0.8, **kw), problem("l2-sam", rho=0.4, **kw)
    with mpmath.workdps(30):
        f, g = GeneratedField(half, backend), GeneratedField(l2, backend)
        for w in states(half):
            assert_fields_equal(f, g, w, rtol=1e-10)
        assert fields_differ(f, GeneratedField(problem("l2-sam", rho=0.8, **kw), backend), states(half)[0])


def test_half_l2_simulates_as_l2_sam_with_half_rho():
    from sambias.flows import simulate
    half, l2 = problem("test-half-l2", rho=1.0, scale=0.3), problem("l2-sam", rho=0.5, scale=0.3)
    a = simulate(half, "1e6", field=GeneratedField(half))
    b = simulate(l2, "1e6")                     # the default engine: an independent path
    c = simulate(problem("l2-sam", rho=1.0, scale=0.3), "1e6")
    assert a.status == b.status == "ok"
    np.testing.assert_allclose(a.direction_final, b.direction_final, atol=1e-6)
    assert abs(a.tau_final - b.tau_final) < 1e-5 * max(1.0, abs(b.tau_final))
    assert [s.index for s in a.dominant] == [s.index for s in b.dominant]
    assert np.max(np.abs(np.asarray(c.beta_final) - np.asarray(a.beta_final))) > 1e-3  # negative control


# --- the general (flat) path ---------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["float64", "mp"])
def test_flat_path_equals_the_coordinate_path(backend):
    assert coordinate_structure(get_algorithm("test-l2-pairs"), 2) is None
    kw = dict(depth=2, X=[[3.0, 2.0, 1.0], [-1.0, 0.5, 2.0]], y=[1, -1], loss="logistic")
    with mpmath.workdps(30):
        f = GeneratedField(problem("test-l2-pairs", rho=0.6, **kw), backend)
        g = GeneratedField(problem("l2-sam", rho=0.6, **kw), backend)
        assert f.flat is not None and g.flat is None
        for w in states(problem("gd", **kw)):
            assert_fields_equal(f, g, w, rtol=1e-9)
        assert fields_differ(f, GeneratedField(problem("l2-sam", rho=0.3, **kw), backend), states(problem("gd", **kw))[0])


def test_flat_path_refuses_large_shapes():
    big = problem("test-l2-pairs", depth=2, X=[[1.0] * (MAX_FLAT_WEIGHTS // 2 + 1)])
    with pytest.raises(AlgorithmError, match=f"at most {MAX_FLAT_WEIGHTS} weights"):
        GeneratedField(big)
    with pytest.raises(ProblemError):   # AlgorithmError is the CLI's one-line bad-input error
        GeneratedField(big)


def test_discontinuous_user_algorithm_is_linf_sam_with_half_rho():
    p, q = problem("test-half-linf", rho=0.8), problem("linf-sam", rho=0.4)
    f, g = GeneratedField(p), GeneratedField(q)
    for w in states(p):
        assert_fields_equal(f, g, w)
        np.testing.assert_array_equal(f.switching(w), g.switching(w))
        sigma = np.sign(np.random.default_rng(1).uniform(-1, 1, w.size))
        np.testing.assert_allclose(f.rescaled(w, sigma)[0], g.rescaled(w, sigma)[0], rtol=1e-12)
    assert f.discontinuous and not GeneratedField(problem("l2-sam")).discontinuous
    assert fields_differ(f, GeneratedField(problem("linf-sam", rho=0.8)), states(p)[0])


# --- ASAM -----------------------------------------------------------------------------------------
def asam_oracle(p, w):
    """``dW/dt`` of ASAM by hand in numpy (independent of SymPy): eps = rho T^2 grad / ||T grad||."""
    L, d = p.depth, p.dim
    A = np.asarray(p.signed_data, float)

    def grad(W):
        beta = np.prod(W, axis=0)
        z = A @ beta
        lp = -np.exp(-z) if p.loss == "exp" else -1.0 / (1.0 + np.exp(z))
        dLdb = A.T @ lp
        return np.array([dLdb * np.prod(np.delete(W, l, axis=0), axis=0) for l in range(L)])

    W = np.asarray(w, float).reshape(L, d)
    G = grad(W)
    eps = p.rho * W**2 * G / np.linalg.norm(np.abs(W) * G)
    return -grad(W + eps).ravel()


@pytest.mark.parametrize("loss,depth", [("exp", 2), ("logistic", 3)])
def test_asam_field_equals_a_hand_written_oracle(loss, depth):
    p = problem("asam", rho=0.5, depth=depth, X=[[3.0, 2.0, 1.0], [-1.0, 0.5, 2.0]], y=[1, -1], loss=loss)
    f = GeneratedField(p)
    for w in states(p):
        np.testing.assert_allclose(f.physical(w), asam_oracle(p, w), rtol=1e-10, atol=1e-13)
    # negative control: the oracle tells ASAM from l2-SAM
    w = states(p)[0]
    assert not np.allclose(GeneratedField(p.replace(algorithm="l2-sam")).physical(w), asam_oracle(p, w), rtol=1e-3)


def test_asam_jacobians_equal_finite_differences_and_mp_equals_float64():
    p = problem("asam", rho=0.5, depth=2, X=[[3.0, 2.0, 1.0], [-1.0, 0.5, 2.0]], y=[1, -1], loss="logistic")
    f = GeneratedField(p)
    h = 1e-6
    for w in states(p, 2):
        J, (_, _, grad) = f.rescaled_jac(w), f.rescaled_with_grad(w)
        for k in range(w.size):
            e = np.zeros(w.size)
            e[k] = h
            (rp, lp), (rm, lm) = f.rescaled(w + e), f.rescaled(w - e)
            np.testing.assert_allclose(J[:, k], (rp - rm) / (2 * h), rtol=1e-5, atol=1e-6)
            assert abs(grad[k] - (lp - lm) / (2 * h)) < 1e-5 * max(1.0, abs(grad[k]))
        with mpmath.workdps(30):
            fm = GeneratedField(p, "mp")
            np.testing.assert_allclose(np.array(fm.rescaled_jac(w), float), J, rtol=1e-12, atol=1e-14)
    assert not np.allclose(J, GeneratedField(p.replace(algorithm="usam")).rescaled_jac(w), rtol=1e-3)


def test_asam_collapses_cleanly_at_zero():
    f = GeneratedField(problem("asam"))
    with pytest.raises(FloatingPointError, match="collapse"):
        f.rescaled(np.zeros(8))


def test_asam_derive_latex_compiles(tmp_path):
    toml = tmp_path / "asam.toml"
    toml.write_text('depth = 2\nalgorithm = "asam"\nrho = 0.5\nX = [[3.0, 2.0, 1.0, 0.5]]\ny = [1]\n'
                    '[init]\nscale = 0.2\n')
    out = tmp_path / "asam.tex"
    run = subprocess.run([sys.executable, "-m", "sambias", "derive", str(toml), "--latex", "--standalone",
                          "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    tex = out.read_text()
    assert "ASAM" in tex and r"\operatorname{diag}" in tex and "Reduction" in tex
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed")
    res = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", out.name], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and (tmp_path / "asam.pdf").is_file(), res.stdout[-2000:]


def test_asam_simulates_in_float64_and_mp():
    from sambias.flows import simulate
    p = problem("asam", rho=0.5, scale=0.2)
    a = simulate(p, "1e3", field=GeneratedField(p))
    with mpmath.workdps(30):
        b = simulate(p, "1e3", precision="mp:30", field=GeneratedField(p, "mp"))
    assert a.status == "ok" and b.status == "ok"
    np.testing.assert_allclose(np.asarray(a.direction_final, float), np.asarray(b.direction_final, float), atol=1e-6)
    assert [s.index for s in a.dominant] == [s.index for s in b.dominant]
    # negative control: USAM from the same start ends elsewhere
    c = simulate(p.replace(algorithm="usam"), "1e3")
    assert np.max(np.abs(np.asarray(c.direction_final) - np.asarray(a.direction_final))) > 1e-3


def _asam_simulate(p, horizon, **kw):
    from sambias.flows import simulate
    return simulate(p, horizon, field=GeneratedField(p), **kw)


def test_asam_claim_major_leads_from_the_start(sambias_claim):
    """ASAM on THEORY's example: the major coordinate leads from the start (no minor-first phase)."""
    from sambias.verify import Claim, Instance, SimSettings, Verdict

    def instances(rng, n):
        for scale in (0.2, 1.0)[:n]:
            yield Instance((problem("asam", rho=0.5, scale=scale),), label=f"alpha = {scale}")

    def leads(trajs, index):
        got = [s.index for s in trajs[0].dominant]
        if got and all(i == index for i in got):
            return Verdict("holds", f"leaders {got}")
        return Verdict("fails", f"leaders {got}, predicted {index} throughout")

    claim = Claim("asam-major-first", "ASAM, L = 2, one example: argmax x leads throughout", check=leads,
                  generate=instances, predict=lambda ps: int(np.argmax(ps[0].X[0])),
                  settings=SimSettings(horizon="1e100", quick_horizon="1e100"))
    result = sambias_claim(claim, simulate=_asam_simulate)
    assert result is not None
    # negative control: the check rejects a minor-first prediction on the same run
    traj = _asam_simulate(problem("asam", rho=0.5, scale=0.2), "1e100")
    assert leads([traj], 2).outcome == "fails" and leads([traj], 0).outcome == "holds"


# --- registration errors ---------------------------------------------------------------------------
def test_registration_errors_are_clear():
    with pytest.raises(AlgorithmError, match="already registered"):
        register_algorithm(Algorithm("test-half-l2", half_l2))
    assert register_algorithm(USER["test-half-l2"]) is USER["test-half-l2"]   # the same object: no-op
    with pytest.raises(AlgorithmError, match="built-in"):
        register_algorithm(Algorithm("l2-sam", half_l2))
    with pytest.raises(AlgorithmError, match="callable"):
        Algorithm("test-bad", "rho * g")
    with pytest.raises(AlgorithmError, match="name"):
        Algorithm("bad name; rm", half_l2)
    with pytest.raises(AlgorithmError, match="expects a sambias.symbolic.Algorithm"):
        register_algorithm(half_l2)
    cases = {
        "shape": lambda g, w, rho: rho * g[:1, :],
        "SymPy Matrix": lambda g, w, rho: [rho * x for x in g],
        "besides g, w and rho": lambda g, w, rho: sp.Symbol("eta") * g,
        "raised ZeroDivisionError": lambda g, w, rho: 1 / 0,
        "declare it discontinuous": lambda g, w, rho: rho * g.applyfunc(sp.sign),
    }
    for message, fn in cases.items():
        with pytest.raises(AlgorithmError, match=message) as info:
            register_algorithm(Algorithm("test-broken", fn))
        assert "\n" not in str(info.value)
    with pytest.raises(AlgorithmError, match="uses no sign"):
        register_algorithm(Algorithm("test-broken", half_l2, discontinuous=True))
    with pytest.raises(ProblemError, match="unknown algorithm 'test-broken'.*asam"):
        problem("test-broken")


# --- plugins through entry points -----------------------------------------------------------------
def _dist(tmp_path: Path, entry: str, module: str = "") -> Path:
    info = tmp_path / "sambias_test_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sambias-test-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[sambias.algorithms]\n{entry}\n")
    if module:
        (tmp_path / "sambias_test_plugin_mod.py").write_text(textwrap.dedent(module))
    return tmp_path


PLUGIN = """
    import sympy as sp
    from sambias.symbolic import Algorithm

    def quarter_l2(g, w, rho):
        return (rho / 4) * g / sp.sqrt((g.T * g)[0, 0])

    ALG = Algorithm("test-plugin-quarter", quarter_l2)
"""


def test_entry_point_algorithm_is_found(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(_dist(tmp_path, "test-plugin-quarter = sambias_test_plugin_mod:ALG", PLUGIN)))
    monkeypatch.setattr(algmod, "_REGISTRY", algmod._Registry())   # a fresh scan of the entry points
    assert "test-plugin-quarter" in algmod.algorithm_names()
    p = problem("test-plugin-quarter", rho=1.0)
    f, g = GeneratedField(p), GeneratedField(problem("l2-sam", rho=0.25))
    w = states(p)[0]
    assert_fields_equal(f, g, w)
    assert derive(p).definition.name == "test-plugin-quarter"


def test_broken_plugin_is_one_error_line(tmp_path, monkeypatch):
    root = _dist(tmp_path, "test-broken-plugin = sambias_no_such_module_xyz:ALG")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setattr(algmod, "_REGISTRY", algmod._Registry())
    with pytest.raises(ProblemError, match="test-broken-plugin.*failed to load: ModuleNotFoundError"):
        problem("test-broken-plugin")
    toml = tmp_path / "p.toml"
    toml.write_text('depth = 2\nalgorithm = "test-broken-plugin"\nrho = 0.5\nX = [[3.0, 1.0]]\ny = [1]\n'
                    '[init]\nscale = 0.2\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-m", "sambias", "derive", str(toml)], capture_output=True, text=True,
                         env=env, timeout=120)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "failed to load" in lines[0] and "Traceback" not in run.stderr, run.stderr


def test_default_simulate_runs_the_definition():
    """Once flows integrates the derived kernels by default, a non-built-in runs as defined."""
    from sambias.flows import simulate
    p = problem("asam", scale=0.2)
    a, b = simulate(p, "1e2"), simulate(p, "1e2", field=GeneratedField(p))
    np.testing.assert_allclose(a.beta_final, b.beta_final, rtol=1e-6)
