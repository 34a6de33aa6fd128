"""symbolic/latex + text: what the renderings contain, that pdflatex compiles them, and that
nothing the user types is parsed or executed along the way."""

from __future__ import annotations

import ast
import pathlib
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from sambias import Init, Problem
from sambias.symbolic import derive, derive_flow, standalone_document

ALGORITHMS = ["gd", "l2-sam", "linf-sam", "usam"]
LOSSES = ["exp", "logistic"]
SYMBOLIC = pathlib.Path(__file__).resolve().parents[1] / "symbolic"


def problem(L, algorithm, loss, X=((3.0, 2.0, 0.5),), y=(1,)):
    return Problem(depth=L, algorithm=algorithm, rho=0.25, loss=loss, X=[list(r) for r in X], y=list(y),
                   init=Init(scale=0.3))


def test_latex_block_has_the_papers_notation():
    tex = derive(problem(2, "l2-sam", "exp")).to_latex()
    assert tex.count(r"\begin{align}") == 1 and r"\documentclass" not in tex
    for piece in (r"w^{(1)}_{j}", r"\tilde{w}^{(2)}_{j}", r"\lVert", r"\frac{d w^{(1)}_{1}}{d\tau}",
                  r"\frac{dt}{d\tau}", "Reduction", "Invariants", r"\rho = 0.25"):
        assert piece in tex, piece
    linf = derive(problem(2, "linf-sam", "exp")).to_latex()
    assert r"\operatorname{sign}" in linf and r"p_{j}" in linf
    # w^{(l)}_j^{2} would be a double superscript: powers of indexed symbols are parenthesised
    assert "}_{j}^{" not in tex and "}_{j}^{" not in linf


def test_large_systems_print_the_generic_coordinate_only():
    s = derive_flow(3, 64, 2, "usam", "logistic")
    tex = s.to_latex()
    assert "Every layer and coordinate" not in tex and r"w^{(3)}_{64}" not in tex
    assert len(tex) < 20_000
    assert r"\tilde{g}_j" in tex          # several examples: the coupling stays named


def test_jupyter_repr_is_mathjax_safe():
    s = derive(problem(2, "linf-sam", "logistic"))
    rep = s._repr_latex_()
    assert rep.startswith(r"\begin{align}") and r"\intertext" not in rep and r"\textbf" not in rep
    assert all(ord(c) < 128 for c in rep)


def test_text_rendering():
    text = derive(problem(2, "l2-sam", "exp")).to_text()
    for piece in ("dw⁽¹⁾₁/dτ = 3·w̃⁽²⁾₁", "ρ = 0.25", "dt/dτ = exp(z̃₁)", "Reductions", "Invariants",
                  "matches THEORY.md", "is non-increasing"):
        assert piece in text, piece
    assert len(text.splitlines()) > 20


def _compile(tmp, name, doc):
    (tmp / f"{name}.tex").write_text(doc)
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", f"{name}.tex"],
                         cwd=tmp, capture_output=True, text=True, timeout=120)
    return name, run.returncode, run.stdout[-1500:]


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (CI installs TeX Live)")
def test_standalone_documents_compile(tmp_path):
    """Every L = 1..4 x algorithm x loss, one document each, in two pdflatex processes at once.

    Numeric one-example data (reductions and explicit equations shown), plus symbolic data
    with several examples (the softmax-weighted form), so both layouts are compiled."""
    docs = []
    for L in range(1, 5):
        for algorithm in ALGORITHMS:
            for loss in LOSSES:
                numeric = derive(problem(L, algorithm, loss))
                symbolic = derive_flow(L, 2, 2, algorithm, loss)
                docs.append((f"L{L}-{algorithm}-{loss}", numeric.to_latex(standalone=True)))
                docs.append((f"L{L}-{algorithm}-{loss}-symbolic", standalone_document([symbolic])))
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda nd: _compile(tmp_path, *nd), docs))
    failed = [(name, log) for name, rc, log in results if rc != 0]
    assert not failed, failed[0]
    assert all((tmp_path / f"{name}.pdf").stat().st_size > 1000 for name, _, _ in results)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (CI installs TeX Live)")
def test_broken_latex_is_detected(tmp_path):
    """Negative control for the compile test: a double superscript must fail to compile."""
    doc = standalone_document([derive_flow(1, 1, 1, "gd", "exp")]).replace(r"\beta_j &=", r"\beta_j^{1}^{2} &=")
    assert _compile(tmp_path, "broken", doc)[1] != 0


# --- safety --------------------------------------------------------------------------------------


def test_no_parsing_of_text_and_no_pickle():
    """Only codegen compiles code -- text it printed itself -- and nothing parses strings."""
    for path in SYMBOLIC.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
                if name in ("eval", "sympify", "parse_expr", "lambdify"):
                    pytest.fail(f"{path.name}:{node.lineno} calls {name}")
                builtin = isinstance(f, ast.Name)       # re.compile(...) compiles no code
                if builtin and name in ("exec", "compile") and path.name != "codegen.py":
                    pytest.fail(f"{path.name}:{node.lineno} calls {name}")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
                assert not any(n.split(".")[0] in ("pickle", "dill", "marshal") for n in names), path.name


def test_kernel_sources_only_name_package_symbols():
    from sympy import Symbol
    from sambias.symbolic.codegen import KernelSpec, kernel_source

    with pytest.raises(ValueError, match="not one of the package's symbols"):
        kernel_source(KernelSpec("k", (Symbol("__import__('os')"),), (Symbol("x"),)), "float64")
    with pytest.raises(ValueError, match="not among its arguments"):
        kernel_source(KernelSpec("k", (Symbol("x"),), (Symbol("y"),)), "float64")
