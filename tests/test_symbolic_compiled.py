"""symbolic/compiled: the numba kernels against the numpy path of GeneratedField, the fallback,
and the disk cache (private directory, verified text and manifest, corrupt files rejected).

Compiling one module costs ~5-15 s of CPU, so the default run compiles a handful of shapes
(each kept in the user's disk cache afterwards); the full matrix is marked slow."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import sympy as sp

from sambias import Init, Problem, register_algorithm
from sambias.symbolic import CollapseError, GeneratedField
from sambias.symbolic import compiled as C
from sambias.symbolic.algorithms import Algorithm

pytest.importorskip("numba")

REL = 1e-13


def _half_l2(g, w, rho):
    return (rho / 2) * g / sp.sqrt((g.T * g)[0, 0])


def _coupled(g, w, rho):
    # eps_i depends on g_{i+1}: no per-coordinate structure -> the general flat path
    n = g.shape[0]
    return sp.Matrix([rho * g[(i + 1) % n] for i in range(n)])


register_algorithm(Algorithm("k-half-l2", _half_l2, discontinuous=False))
register_algorithm(Algorithm("k-coupled", _coupled, discontinuous=False))


def problem(L, d, n, algorithm, loss, seed, rho=0.3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sign(X @ rng.normal(size=d))
    y[y == 0] = 1.0
    return Problem(depth=L, algorithm=algorithm, rho=rho, loss=loss, X=X, y=y, init=Init(scale=0.5))


def rel_err(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = max(float(np.max(np.abs(a))), 1e-300)
    return float(np.max(np.abs(a - b))) / scale


def assert_same(field: GeneratedField, jit: C.CompiledField, seed: int) -> None:
    rng = np.random.default_rng(seed)
    sigmas = [None]
    if field.discontinuous:
        sigmas.append(np.sign(rng.normal(size=field.size)))
    for _ in range(3):
        w = rng.normal(size=field.size) * rng.uniform(0.2, 2.0)
        for sigma in sigmas:
            for name in ("rescaled", "rescaled_with_grad"):
                ref, got = getattr(field, name)(w, sigma), getattr(jit, name)(w, sigma)
                assert len(ref) == len(got)
                for r, g in zip(ref, got):
                    assert rel_err(r, g) <= REL, (name, sigma is None)
            assert rel_err(field.rescaled_jac(w, sigma), jit.rescaled_jac(w, sigma)) <= REL


def jit_of(f: GeneratedField) -> C.CompiledField:
    """The compiled twin, whatever SAMBIAS_JIT says in the environment running the tests."""
    return C.CompiledField(f, C.load_module(f.depth, f.algorithm, f.loss))


def numpy_field(p) -> GeneratedField:
    f = GeneratedField(p)
    f._jit = None          # the reference: the numpy path, whatever SAMBIAS_JIT says
    return f


DEFAULT = [("l2-sam", 2, "exp"), ("linf-sam", 3, "logistic"), ("asam", 2, "exp"),
           ("usam", 1, "logistic"), ("k-half-l2", 2, "exp")]
FULL = [(a, L, loss) for a in ("gd", "l2-sam", "linf-sam", "usam", "asam", "k-half-l2")
        for L in (1, 2, 3, 4) for loss in ("exp", "logistic")]


def _check_shape(algorithm, L, loss):
    for n, d, seed in ((1, 3, 11), (4, 5, 12)):
        f = numpy_field(problem(L, d, n, algorithm, loss, seed))
        jit = jit_of(f)
        assert_same(f, jit, seed)


@pytest.mark.parametrize("algorithm, L, loss", DEFAULT)
def test_compiled_equals_numpy_path(algorithm, L, loss):
    _check_shape(algorithm, L, loss)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm, L, loss", [c for c in FULL if c not in DEFAULT])
def test_compiled_equals_numpy_path_full(algorithm, L, loss):
    _check_shape(algorithm, L, loss)


def test_comparison_rejects_a_wrong_kernel():
    """Negative control: the comparison above notices a flow off by one part in 1e12."""
    f = numpy_field(problem(2, 3, 2, "l2-sam", "exp", 5))
    jit = jit_of(f)

    class Off:
        def __getattr__(self, name):
            fn = getattr(jit, name)
            if name != "rescaled_with_grad":
                return fn
            return lambda w, s=None: (lambda o: (o[0] * (1 + 1e-12), o[1], o[2]))(fn(w, s))
    with pytest.raises(AssertionError):
        assert_same(f, Off(), 5)


def test_collapse_is_the_same_error():
    # l2-SAM at W = 0: the normalised gradient is exactly 0 -> its perturbation is undefined
    f = numpy_field(problem(2, 3, 1, "l2-sam", "exp", 3))
    jit = jit_of(f)
    w = np.zeros(f.size)
    for name in ("rescaled", "rescaled_with_grad", "rescaled_jac"):
        with pytest.raises(CollapseError):
            getattr(f, name)(w)
        with pytest.raises(CollapseError):
            getattr(jit, name)(w)


def test_field_switches_to_compiled_code_and_keeps_results(monkeypatch):
    monkeypatch.setenv("SAMBIAS_JIT", "1")
    p = problem(2, 4, 3, "l2-sam", "exp", 8)
    eager = GeneratedField(p)
    ref = numpy_field(p)
    w = np.random.default_rng(1).normal(size=ref.size)
    assert rel_err(ref.physical(w), eager.physical(w)) <= REL
    assert isinstance(eager._jit.compiled, C.CompiledField)


def test_flat_path_and_mp_stay_numpy():
    # a user algorithm without per-coordinate structure: the general flat path, not compiled
    f = GeneratedField(problem(2, 2, 1, "k-coupled", "exp", 4))
    assert f.flat is not None and not C._eligible(f) and f._jit is None and C.compiled_field(f) is None
    g = GeneratedField(problem(2, 2, 1, "l2-sam", "exp", 4), backend="mp")
    assert not C._eligible(g) and g._jit is None and C.compiled_field(g) is None


def test_jit_off_is_the_numpy_path(monkeypatch):
    monkeypatch.setenv("SAMBIAS_JIT", "0")
    assert C.jit_mode() == "off"
    p = problem(2, 3, 2, "linf-sam", "exp", 9)
    f = GeneratedField(p)
    assert f._jit is None and C.compiled_field(f) is None
    w = np.random.default_rng(2).normal(size=f.size)
    out, log_S, grad = f.rescaled_with_grad(w)
    assert out.shape == (f.size,) and np.isfinite(log_S) and grad.shape == (f.size,)


def test_auto_mode_loads_a_cached_module_once_the_shape_is_busy(monkeypatch):
    C.load_module(2, "l2-sam", "exp")            # in the disk cache from now on
    monkeypatch.setenv("SAMBIAS_JIT", "auto")
    monkeypatch.setattr(C, "_DEMAND", {})
    monkeypatch.setattr(C, "PROBE_CALLS", 3)
    monkeypatch.setattr(C, "COMPILE_CALLS", 10**9)
    f = GeneratedField(problem(2, 3, 2, "l2-sam", "exp", 10))
    w = np.ones(f.size)
    f.rescaled(w)
    f.rescaled_jac(w)
    assert f._jit.compiled is None and f._jit.demand.calls == 2
    f.rescaled_with_grad(w)
    assert isinstance(f._jit.compiled, C.CompiledField)
    # demand is per shape: a second field of it starts compiled
    g = GeneratedField(problem(2, 5, 1, "l2-sam", "exp", 11))
    g.rescaled(np.ones(g.size))
    assert g._jit.compiled is not None


def test_auto_mode_does_not_compile_a_short_run(monkeypatch, tmp_path):
    monkeypatch.setenv("SAMBIAS_CACHE_DIR", str(tmp_path))     # empty: nothing cached
    monkeypatch.setenv("SAMBIAS_JIT", "auto")
    monkeypatch.setattr(C, "_DEMAND", {})
    monkeypatch.setattr(C, "PROBE_CALLS", 2)
    f = GeneratedField(problem(2, 3, 1, "gd", "exp", 10))
    for _ in range(5):
        f.rescaled(np.ones(f.size))
    assert f._jit.compiled is None and f._jit.demand.probed


# --- the disk cache -----------------------------------------------------------------------
@pytest.fixture()
def private_cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("SAMBIAS_CACHE_DIR", str(root))
    return root


def test_cache_dir_is_private_and_rejects_a_shared_one(private_cache, tmp_path, monkeypatch):
    d = C.kernel_dir()
    assert d == private_cache / "kernels"
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("SAMBIAS_CACHE_DIR", str(shared))
    other = C.kernel_dir()
    assert not str(other).startswith(str(shared)) and stat.S_IMODE(other.stat().st_mode) == 0o700


def test_cache_files_are_verified_and_corrupt_ones_purged(private_cache):
    C.load_module.cache_clear()
    try:
        mod = C.load_module(1, "gd", "exp")
    finally:
        C.load_module.cache_clear()
    assert not mod.from_cache
    directory, name = mod.path.parent, mod.path.stem
    source = C.module_source(1, "gd", "exp")
    assert name == C._PREFIX + C.cache_key(source)
    assert C._cache_state(directory, name, source) == "ok" and C.is_cached(1, "gd", "exp")
    files = C._numba_files(directory, name)
    assert files and C._manifest_path(directory, name).exists()
    # a flipped byte in numba's compiled code: rejected and deleted, never unpickled
    blob = bytearray(files[-1].read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    files[-1].write_bytes(bytes(blob))
    assert C._cache_state(directory, name, source) == "bad"
    assert C.validate_cache(directory, name, source) is False
    assert C._numba_files(directory, name) == [] and not C._manifest_path(directory, name).exists()
    # an edited module text: rewritten from the generated source
    mod.path.write_text(source.replace("return h", "return -h"))
    assert C._cache_state(directory, name, source) == "bad"
    C.validate_cache(directory, name, source)
    assert mod.path.read_text() == source
    # a file the manifest does not list
    (directory / "__pycache__").mkdir(exist_ok=True)
    stray = directory / "__pycache__" / f"{name}.evaluate-1.py311.nbi"
    stray.write_bytes(b"not numba's")
    assert C._cache_state(directory, name, source) == "bad"


_CHILD = textwrap.dedent("""
    import json, time, numpy as np
    from sambias import Init, Problem
    from sambias.symbolic import GeneratedField
    from sambias.symbolic import compiled as C
    p = Problem(depth=2, algorithm="l2-sam", rho=0.5, X=[[3.0, 2.0, 1.0], [1.0, -2.0, 0.5]], y=[1, 1],
                init=Init(scale=0.2))
    f = GeneratedField(p)
    t = time.perf_counter()
    mod = C.load_module(2, "l2-sam", "exp")
    took = time.perf_counter() - t
    jit = C.CompiledField(f, mod)
    w = np.linspace(-1, 1, 6)
    f._jit = None
    err = float(np.max(np.abs(f.rescaled_with_grad(w)[2] - jit.rescaled_with_grad(w)[2])))
    print(json.dumps({"from_cache": mod.from_cache, "seconds": took, "err": err}))
""")


def _child(env) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_second_process_loads_from_disk_and_corrupt_cache_recompiles(private_cache):
    env = dict(os.environ, SAMBIAS_CACHE_DIR=str(private_cache))
    first, second = _child(env), _child(env)
    assert not first["from_cache"] and second["from_cache"]
    assert second["seconds"] < first["seconds"] / 3
    assert first["err"] < 1e-12 and second["err"] < 1e-12
    print(f"compile {first['seconds']:.2f} s, load {second['seconds']:.2f} s")
    directory = private_cache / "kernels"
    for p in (directory / "__pycache__").iterdir():
        if p.suffix == ".nbc":
            p.write_bytes(b"\x80\x04garbage")
    third = _child(env)
    assert not third["from_cache"] and third["err"] < 1e-12


def test_numba_cache_elsewhere_is_not_used(tmp_path, monkeypatch):
    """With NUMBA_CACHE_DIR pointing away from the verified directory, nothing is loaded from disk."""
    import importlib.util

    import numba
    from numba.core.caching import NullCache
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path / "elsewhere"))
    src = tmp_path / "sk_probe.py"
    src.write_text("from numba import njit\n\n@njit(cache=True)\ndef f(x):\n    return x + 1.0\n")
    spec = importlib.util.spec_from_file_location("sk_probe", src)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert C._numba_caches_in(module, tmp_path / "__pycache__") is False
    assert isinstance(module.f._cache, NullCache)
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    spec.loader.exec_module(module)
    assert C._numba_caches_in(module, tmp_path / "__pycache__") is True
