"""symbolic/: generated kernels against the hand-written numpy field, and LaTeX that compiles."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from sambias import Init, Problem
try:  # the hand-written field lives on as an independent oracle in tests/ (issue 9)
    from tests.oracles.field import NumpyField
except ImportError:
    from sambias.flows import NumpyField
from sambias.symbolic import derive

ALGORITHMS = ["gd", "l2-sam", "linf-sam", "usam"]
LOSSES = ["exp", "logistic"]


def _problem(rng, L, d, n, algorithm, loss):
    X = rng.normal(size=(n, d))
    y = np.sign(X @ rng.normal(size=d))
    y[y == 0] = 1.0
    return Problem(depth=L, algorithm=algorithm, rho=0.3, loss=loss, X=X, y=y, init=Init(scale=0.5))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("loss", LOSSES)
def test_generated_field_equals_numpy_field(algorithm, loss):
    rng = np.random.default_rng(abs(hash((algorithm, loss))) % 2**32)
    for L, d, n in [(1, 3, 2), (2, 4, 1), (3, 2, 3), (4, 5, 2), (5, 1, 1)]:
        p = _problem(rng, L, d, n, algorithm, loss)
        ref, gen = NumpyField(p), derive(p).compile()
        w = rng.normal(size=L * d)
        dw_ref, ls_ref = ref.rescaled(w)
        dw_gen, ls_gen = gen.rescaled(w)
        np.testing.assert_allclose(dw_gen, dw_ref, rtol=1e-10, atol=1e-12)
        assert ls_gen == pytest.approx(ls_ref, rel=1e-10, abs=1e-12)
        np.testing.assert_allclose(gen.rescaled_jac(w), ref.rescaled_jac(w), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(gen.physical(w), ref.physical(w), rtol=1e-10, atol=1e-12)


def test_wrong_field_is_detected():
    """Negative control: the comparison above must see a change of rho."""
    rng = np.random.default_rng(1)
    p = _problem(rng, 2, 3, 2, "l2-sam", "exp")
    w = rng.normal(size=6)
    gen = derive(p.replace(rho=0.31)).compile()
    assert not np.allclose(gen.rescaled(w)[0], NumpyField(p).rescaled(w)[0], rtol=1e-10, atol=1e-12)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (CI installs TeX Live)")
def test_standalone_latex_compiles_for_every_case(tmp_path):
    from sambias.symbolic import standalone_document  # noqa: F401 - public API present

    bodies = []
    for L in range(1, 5):
        for algorithm in ALGORITHMS:
            for loss in LOSSES:
                p = Problem(depth=L, algorithm=algorithm, rho=0.5, loss=loss, X=[[3.0, 2.0]], y=[1],
                            init=Init(scale=1.0))
                doc = derive(p).to_latex(standalone=True)
                assert "\\begin{align" in doc and "w^{(" in doc
                bodies.append((f"L{L}-{algorithm}-{loss}", doc))
    for name, doc in bodies:
        (tmp_path / f"{name}.tex").write_text(doc)
        run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", f"{name}.tex"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, (name, run.stdout[-1500:])
