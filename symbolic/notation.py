"""The symbols of the derivation and how a paper prints them.

Every symbol the package creates has a machine name of the form
``KIND_INDEX_INDEX`` (``w_2_3`` is ``w^{(2)}_3``: layer 2, coordinate 3; indices are
1-based, as in the mathematics; ``j`` stands for a generic coordinate).  The
names are valid Python identifiers, so generated code can use them verbatim, and
:func:`latex_name` / :func:`text_name` turn them into paper notation.  Names are
produced here from integers only -- nothing a user types becomes a symbol name.

>>> weight(2, 3), latex_name(weight(2, 3)), text_name(weight(2, 3))
(w_2_3, 'w^{(2)}_{3}', 'w⁽²⁾₃')
"""

from __future__ import annotations

import sympy as sp

#: real-valued symbols keep sympy from inventing conjugates and complex branches
_REAL = {"real": True}

_SUP = str.maketrans("0123456789()+-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁽⁾⁺⁻")
_SUB = str.maketrans("0123456789ijklr", "₀₁₂₃₄₅₆₇₈₉ᵢⱼₖₗᵣ")


def _idx(value: int | str) -> str:
    if isinstance(value, str):
        if not (len(value) == 1 and value.isalpha()):
            raise ValueError(f"generic index must be one letter, got {value!r}")
        return value
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"indices are 1-based integers, got {value!r}")
    return str(int(value))


# --- factories -------------------------------------------------------------------------
def weight(layer: int, coord: int | str) -> sp.Symbol:
    """``w^{(layer)}_{coord}``; ``coord`` may be ``"j"`` (a generic coordinate)."""
    return sp.Symbol(f"w_{_idx(layer)}_{_idx(coord)}", **_REAL)


def perturbed(layer: int, coord: int | str) -> sp.Symbol:
    """``\\tilde w^{(layer)}_{coord}`` -- the weight at the perturbed point ``w + eps(w)``."""
    return sp.Symbol(f"wt_{_idx(layer)}_{_idx(coord)}", **_REAL)


def switching(layer: int, coord: int | str) -> sp.Symbol:
    """``\\sigma^{(layer)}_{coord}``: the sign linf-SAM puts in its perturbation."""
    return sp.Symbol(f"sigma_{_idx(layer)}_{_idx(coord)}", **_REAL)


def data_x(example: int | str, coord: int | str) -> sp.Symbol:
    return sp.Symbol(f"x_{_idx(example)}_{_idx(coord)}", **_REAL)


def data_y(example: int | str) -> sp.Symbol:
    return sp.Symbol(f"y_{_idx(example)}", **_REAL)


def margin(example: int | str, tilde: bool = False) -> sp.Symbol:
    return sp.Symbol(f"{'zt' if tilde else 'z'}_{_idx(example)}", **_REAL)


def softmax_weight(example: int | str, tilde: bool = False) -> sp.Symbol:
    """``q_i = |l'(z_i)| / sum_k |l'(z_k)|`` (positive)."""
    return sp.Symbol(f"{'qt' if tilde else 'q'}_{_idx(example)}", positive=True)


def coupling(tilde: bool = False) -> sp.Symbol:
    """``g_j = -sum_i q_i y_i x_ij`` of a generic coordinate (``\\tilde g_j`` at ``w~``)."""
    return sp.Symbol("gt_j" if tilde else "g_j", **_REAL)


def coordinate_variable(kind: str, coord: int | str = "j") -> sp.Symbol:
    """Variables of the reductions: ``p_j``, ``q_j``, ``a_j`` (and ``x_j`` positive data)."""
    if kind not in ("p", "q", "a", "xpos"):
        raise ValueError(f"unknown coordinate variable {kind!r}")
    if kind == "xpos":
        return sp.Symbol(f"xpos_{_idx(coord)}", positive=True)
    return sp.Symbol(f"{kind}_{_idx(coord)}", **_REAL)


RHO = sp.Symbol("rho", nonnegative=True)
#: ``N = ||F(w)||_2``, the norm in l2-SAM's perturbation (positive wherever it is defined)
NORM = sp.Symbol("N", positive=True)
#: ``S = sum_i |l'(z_i)|`` at ``w`` and at ``w~``
SPEED = sp.Symbol("S", positive=True)
SPEED_T = sp.Symbol("St", positive=True)
Z = sp.Symbol("z", **_REAL)
#: the loss ``L(w)`` as one symbol, for statements about it
LOSS = sp.Symbol("Loss", real=True)
#: ``gamma_j = y x_j > 0`` in one-example statements (so ``g_j = -gamma_j``)
GAMMA = sp.Symbol("gamma_j", positive=True)
TAU = sp.Symbol("tau", nonnegative=True)
T = sp.Symbol("t", nonnegative=True)

# --- printing ------------------------------------------------------------------------------
_LATEX_SCALARS = {"Loss": r"\mathcal{L}(w)", "gamma_j": r"\gamma_j", "rho": r"\rho", "N": "N", "S": "S", "St": r"\tilde{S}", "z": "z", "tau": r"\tau",
                  "t": "t", "g_j": "g_j", "gt_j": r"\tilde{g}_j"}
_TEXT_SCALARS = {"Loss": "𝓛(w)", "gamma_j": "γⱼ", "rho": "ρ", "N": "N", "S": "S", "St": "S̃", "z": "z", "tau": "τ", "t": "t",
                 "g_j": "gⱼ", "gt_j": "g̃ⱼ"}


def _split(name: str) -> tuple[str, list[str]] | None:
    parts = name.split("_")
    if len(parts) < 2 or not all(p.isdigit() or (len(p) == 1 and p.isalpha()) for p in parts[1:]):
        return None
    return parts[0], parts[1:]


def _sub_latex(idx: list[str]) -> str:
    sep = "," if any(len(i) > 1 for i in idx) else ""
    return "{" + sep.join(idx) + "}"


def latex_name(sym: sp.Symbol) -> str:
    """The LaTeX a paper uses for one of the package's symbols."""
    name = sym.name
    if name in _LATEX_SCALARS:
        return _LATEX_SCALARS[name]
    split = _split(name)
    if split is None:
        return name
    kind, idx = split
    if kind in ("w", "wt", "sigma"):
        base = {"w": "w", "wt": r"\tilde{w}", "sigma": r"\sigma"}[kind]
        return f"{base}^{{({idx[0]})}}_{{{idx[1]}}}"
    if kind == "x":
        return "x_" + _sub_latex(idx)
    if kind == "xpos":
        return "x_" + _sub_latex(idx)
    base = {"y": "y", "z": "z", "zt": r"\tilde{z}", "q": "q", "qt": r"\tilde{q}", "p": "p",
            "a": "a", "lam": r"\lambda", "lamt": r"\tilde{\lambda}", "b": r"\beta"}.get(kind, kind)
    return base + "_" + _sub_latex(idx)


def _sub_text(idx: list[str]) -> str:
    sep = "," if any(len(i) > 1 for i in idx) else ""
    return sep.join(i.translate(_SUB) for i in idx)


def text_name(sym: sp.Symbol) -> str:
    """A unicode rendering of one of the package's symbols, for the terminal."""
    name = sym.name
    if name in _TEXT_SCALARS:
        return _TEXT_SCALARS[name]
    split = _split(name)
    if split is None:
        return name
    kind, idx = split
    if kind in ("w", "wt", "sigma"):
        base = {"w": "w", "wt": "w̃", "sigma": "σ"}[kind]
        return f"{base}{('(' + idx[0] + ')').translate(_SUP)}{_sub_text(idx[1:])}"
    base = {"xpos": "x", "zt": "z̃", "qt": "q̃", "lam": "λ", "lamt": "λ̃", "b": "β"}.get(kind, kind)
    return base + _sub_text(idx)


def latex_symbol_names(expr: sp.Basic) -> dict:
    """``symbol_names`` for :func:`sympy.latex` covering every symbol of ``expr``."""
    return {s: latex_name(s) for s in expr.free_symbols if isinstance(s, sp.Symbol)}
