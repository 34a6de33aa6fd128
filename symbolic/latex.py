"""LaTeX rendering of a derived system: an ``align`` block, or a complete document.

The block follows how a paper prints the flow: the model, the gradient, the
perturbation and perturbed point, the physical and the rescaled-time flow for a
generic coordinate ``j`` and every layer ``l``; then the explicit equation of every
layer and coordinate when the system is small (``L d <= 16``), the reductions and the
invariants.  Notation: ``w^{(l)}_j``, ``\\tilde w`` for the perturbed point, ``\\odot``,
``\\operatorname{sign}``, ``\\lVert\\cdot\\rVert``.  Everything is produced from the
package's own expressions (no user text reaches the output except numbers).

>>> from sambias.symbolic import derive_flow
>>> tex = derive_flow(2, 2, 1, "l2-sam", "exp").to_latex()
>>> tex.lstrip().startswith("%") and "\\\\begin{align}" in tex and "\\\\end{align}" in tex
True
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.latex import LatexPrinter

from .notation import latex_name



def algorithm_title(name: str, latex: bool = False) -> str:
    r"""The algorithm's display name, from its definition (``ℓ2-SAM``; LaTeX ``$\ell_2$-SAM``)."""
    from .algorithms import get_algorithm
    a = get_algorithm(name)
    return a.title_latex if latex else a.title


class _Titles:
    """``ALGORITHM_NAMES[name]``, read from the definitions (kept for callers of the old dicts)."""

    def __init__(self, latex: bool) -> None:
        self._latex = latex

    def __getitem__(self, name: str) -> str:
        return algorithm_title(name, self._latex)


ALGORITHM_NAMES = _Titles(False)
ALGORITHM_LATEX = _Titles(True)
LOSS_NAMES = {"exp": "exponential", "logistic": "logistic"}

TAU_TEX = r"\tau"

#: explicit per-layer, per-coordinate equations are printed up to this many weights
EXPLICIT_LIMIT = 16


class _Printer(LatexPrinter):
    def _print_Symbol(self, expr, style="plain"):
        return latex_name(expr)



def latex_expr(expr) -> str:
    """One expression in the package's notation."""
    return _Printer({"mul_symbol": None}).doprint(expr)


# --- display forms -------------------------------------------------------------------------------
_X_J = sp.Symbol("x_j", real=True)
_Y = sp.Symbol("y", real=True)


def display_flow(system, expr):
    """A generic-coordinate expression with the coupling written in the data: for one
    example ``g~_j = -y x_j`` (``g_j`` likewise); for several it stays ``g~_j``."""
    cf = system.coordinate
    if system.n == 1:
        return expr.xreplace({cf.gt: -_Y * _X_J, cf.g: -_Y * _X_J})
    return expr


def display_perturbation(system, text: bool = False) -> str:
    """The definition of ``eps(w)``, in words of the gradient (the algorithm's own formula, or
    its generic-coordinate entries for a definition that states none)."""
    a = system.definition
    formula = a.formula if text else a.formula_latex
    if formula is not None:
        return formula
    cf = system.coordinate
    if text:
        head = f"ε(w) = perturbation of {a.name!r} (user-defined)"
        if cf.perturbation is None:
            return head + ", coupling coordinates beyond global sums (--latex prints every entry)"
        sup = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
        return head + ":  " + ",  ".join(f"ε⁽{str(l + 1).translate(sup)}⁾ⱼ = {_text(display_flow(system, e))}"
                                         for l, e in enumerate(cf.perturbation))
    head = rf"\varepsilon(w) &= \text{{perturbation of }} {a.title_latex} \text{{ (user-defined)}}"
    if cf.perturbation is None:
        return head
    return head + ", \\quad " + ", \\ ".join(
        rf"\varepsilon^{{({l + 1})}}_j = {latex_expr(display_flow(system, e))}" for l, e in enumerate(cf.perturbation))


def _text(expr) -> str:
    from .text import text_expr
    return text_expr(expr)


def _norm_as_symbol(system, expr):
    """Write each global sum of the perturbation as its symbol (l2-SAM's norm subtree as ``N``,
    both ``N`` and ``1/N`` occur)."""
    sub = {}
    for sym, power, total in system.global_exprs:
        if isinstance(total, sp.Add):  # a constant (depth 1 with numeric data) is already a number
            sub[total] = sym**power
    return expr.xreplace(sub) if sub else expr


def _section(title: str, jupyter: bool) -> str:
    if jupyter:
        return rf"&\text{{{title}}} \nonumber\\"
    return rf"\intertext{{\textbf{{{title}}}}}"


def _dd(sym, var: str) -> str:
    return rf"\frac{{d {latex_name(sym)}}}{{d{var}}}"


def system_latex(system, jupyter: bool = False) -> str:
    """The ``align`` block of :meth:`FlowSystem.to_latex` (``jupyter``: MathJax-safe)."""
    s, cf = system, system.coordinate
    L, d, n = s.depth, s.dim, s.n
    rows: list[str] = []
    sec = lambda t: rows.append(_section(t, jupyter))  # noqa: E731
    eq = lambda lhs, rhs, num=True: rows.append(rf"{lhs} &= {rhs}" + ("" if num else r" \nonumber") + r" \\")  # noqa: E731

    head = [f"% {ALGORITHM_NAMES[s.algorithm].replace('ℓ2', 'l2').replace('ℓ∞', 'linf')} flow of a depth-{L} "
            f"linear diagonal network, d = {d}, n = {n}, {LOSS_NAMES[s.loss]} loss",
            "% derived by sambias.symbolic (SymPy); indices are 1-based"]
    title = (f"{ALGORITHM_LATEX[s.algorithm]} flow: depth $L = {L}$, $d = {d}$, $n = {n}$, "
             f"{LOSS_NAMES[s.loss]} loss")
    if s.rho_value is not None:
        title += rf", $\rho = {s.rho_value:g}$"
    sec(title)
    ell = latex_expr(s.loss_function)
    eq(r"\beta_j", latex_expr(cf.beta) + rf", \qquad z_i = y_i \sum_{{j=1}}^{{{d}}} x_{{ij}}\, \beta_j"
       rf", \qquad \mathcal{{L}}(w) = \sum_{{i=1}}^{{{n}}} \ell(z_i), \quad \ell(z) = {ell}", num=False)
    if not s.symbolic_data and n * d <= 32:
        for i in range(n):
            eq(latex_name(s.margins[i]), latex_expr(s.margin_exprs[i]), num=False)
    sec(r"Gradient (SymPy, chain rule $\mathcal{L} \to z \to \beta \to w$) and normalised gradient "
        r"$F = \nabla\mathcal{L}/S$, $S = \sum_i \lvert\ell'(z_i)\rvert$")
    for l, p in enumerate(cf.P):
        w = latex_name(cf.w[l])
        eq(rf"\frac{{\partial \mathcal{{L}}}}{{\partial {w}}}",
           rf"\Big(\sum_{{i=1}}^{{{n}}} \ell'(z_i)\, y_i x_{{ij}}\Big) {latex_expr(p)}, \qquad "
           rf"F^{{({l + 1})}}_j = g_j\, {latex_expr(p)}")
    eq(r"g_j", rf"-\sum_{{i=1}}^{{{n}}} q_i\, y_i x_{{ij}}, \qquad q = \operatorname{{softmax}}\big(\log\lvert\ell'(z)\rvert\big)"
       rf", \qquad \ell'(z) = {latex_expr(s.loss_derivative)}", num=False)
    sec(r"Perturbation and perturbed point $\tilde w = w + \varepsilon(w)$")
    rows.append(display_perturbation(s) + r" \\")
    for l, e in enumerate(cf.perturbed_point or ()):
        eq(latex_name(cf.wt[l]), latex_expr(display_flow(s, e)))
    for gs in cf.global_sums:
        total = latex_expr(gs.const) + " + " if gs.const != 0 else ""
        eq(latex_name(gs.symbol) + (f"^{gs.power}" if gs.power != 1 else ""),
           rf"{total}\sum_{{j=1}}^{{{d}}} {latex_expr(display_flow(s, gs.share))}", num=False)
    sec(r"Flow $dw/dt = -\nabla\mathcal{L}(\tilde w)$")
    for l, p in enumerate(cf.P):
        pt = latex_expr(p.xreplace(dict(zip(cf.w, cf.wt))))
        eq(_dd(cf.w[l], "t"), rf"-\Big(\sum_{{i=1}}^{{{n}}} \ell'(\tilde z_i)\, y_i x_{{ij}}\Big) {pt}")
    sec(r"Rescaled time $d\tau = \sum_i \lvert\ell'(\tilde z_i)\rvert\, dt$ (loss-free flow)")
    for l, e in enumerate(cf.rescaled):
        eq(_dd(cf.w[l], r"\tau"), latex_expr(display_flow(s, e)))
    extra = "" if n == 1 else (r", \qquad \tilde g_j = -\sum_i \tilde q_i\, y_i x_{ij}, \quad "
                               r"\tilde q = \operatorname{softmax}\big(\log\lvert\ell'(\tilde z)\rvert\big)")
    eq(r"\frac{dt}{d\tau}", latex_expr(s.time_change) + extra)
    if L * d <= EXPLICIT_LIMIT and n <= 4:
        sec("Every layer and coordinate")
        for l in range(L):
            for j in range(d):
                wt = _norm_as_symbol(s, s.perturbed_point[l][j])
                lhs = _dd(s.weights[l][j], TAU_TEX)
                # one column pair only: a second pair would be pushed right of the widest row above
                rows.append(rf"{latex_name(s.perturbed[l][j])} &= {latex_expr(wt)}, \qquad "
                            rf"{lhs} = {latex_expr(s.rescaled_flow[l][j])} \\")
    for r in s.reductions:
        sec(f"Reduction: {r.title_latex} ({r.assumptions_latex})")
        for sym, expr in r.variables:
            eq(latex_name(sym), latex_expr(expr), num=False)
        for sym, rhs in r.equations:
            eq(_dd(sym, r"\tau"), latex_expr(rhs))
        for sym, expr in r.auxiliary:
            eq(latex_expr(sym), latex_expr(expr), num=False)
        checks = "equals the full flow" if r.matches_flow else "does NOT equal the full flow"
        if r.claimed is not None:
            checks += "; matches THEORY.md" if r.matches_claim else "; does NOT match THEORY.md"
        rows.append(rf"&\text{{(checked by SymPy: {checks})}} \nonumber\\")
    if s.invariants:
        sec(r"Invariants (generic coordinate $j$; each settled by SymPy)")
        for inv in s.invariants:
            what = {"conserved": "conserved", "monotone": inv.direction, "not conserved": "not conserved"}[inv.status]
            cond = rf"\text{{({inv.condition_latex})}}" if inv.condition_latex and not jupyter else ""
            if jupyter and inv.condition:
                cond = rf"\text{{({_plain(inv.condition)})}}"
            rows.append(rf"&\text{{{inv.name}: }} {latex_expr(inv.expression)} \ \text{{{what}}}"
                        r" \nonumber\\")
            if inv.status != "not conserved" and sp.count_ops(inv.proof_expr) <= 60:
                rows.append(rf"&\qquad \frac{{d}}{{dt}}(\cdot) = {latex_expr(inv.proof_expr)} \nonumber\\")
            if cond:  # on its own line: conditions are long
                rows.append(rf"&\qquad {cond} \nonumber\\")
    body = "\n".join(rows)
    if body.endswith(r"\\"):
        body = body[:-2].rstrip()
    block = "\\begin{align}\n" + body + "\n\\end{align}\n"
    return block if jupyter else "\n".join(head) + "\n" + block


def _plain(text: str) -> str:
    """A unicode condition as MathJax-safe ``\\text`` content."""
    return text.encode("ascii", "replace").decode().replace("?", "~")


def standalone_document(systems) -> str:
    """A complete document (``article`` + amsmath) holding one or several systems."""
    parts = [r"\documentclass{article}", r"\usepackage[margin=2cm]{geometry}",
             r"\usepackage{amsmath,amssymb}", r"\allowdisplaybreaks", r"\begin{document}"]
    for s in systems:
        parts.append(system_latex(s))
    parts.append(r"\end{document}")
    return "\n".join(parts) + "\n"
