"""Plain-text (unicode) rendering of a derived system, for the terminal.

``sambias derive PROBLEM`` prints :func:`system_text`.  Expressions are printed by a
SymPy ``StrPrinter`` that knows the package's notation (``w⁽¹⁾₂``, ``ρ``, ``·``).

>>> from sambias.symbolic.notation import weight, RHO
>>> text_expr(2 * RHO * weight(1, 2) ** 2)
'2·ρ·(w⁽¹⁾₂)²'
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.str import StrPrinter

from .notation import text_name

_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


class _TextPrinter(StrPrinter):
    def _print_Symbol(self, expr):
        return text_name(expr)

    def _print_Pow(self, expr, rational=False):
        base, e = expr.as_base_exp()
        if e.is_Integer and e > 1:
            b = self._print(base)
            # w⁽¹⁾ⱼ² would read as a superscript of the index: parenthesise indexed symbols
            if not ((base.is_Symbol and "⁽" not in b) or base.is_Function or (base.is_Number and base >= 0)):
                b = f"({b})"
            return b + str(e).translate(_SUPERSCRIPT)
        if e == sp.S.Half:
            return f"√({self._print(base)})"
        return super()._print_Pow(expr, rational)

    def _print_exp(self, expr):
        return f"exp({self._print(expr.args[0])})"

    def _print_softplus(self, expr):
        return f"log(1 + exp({self._print(expr.args[0])}))"

    def _print_logistic(self, expr):
        return f"logistic({self._print(expr.args[0])})"

    def _print_Sum(self, expr):
        (var, lo, hi), = expr.limits
        return f"Σ_{{{self._print(var)}={self._print(lo)}..{self._print(hi)}}} {self.parenthesize(expr.function, 100)}"

    def _print_Mul(self, expr):
        return super()._print_Mul(expr).replace("*", "·")


def text_expr(expr) -> str:
    """One expression in the package's unicode notation."""
    return _TextPrinter({"order": "none", "full_prec": False}).doprint(expr)


def _dt(sym, var="t") -> str:
    return f"d{text_name(sym)}/d{var}"


def _grid(system, rows, fmt) -> list[str]:
    """Per-layer, per-coordinate lines (when the system is as small as the LaTeX prints)."""
    from .latex import EXPLICIT_LIMIT
    L, d = system.depth, system.dim
    lines = []
    if L * d > EXPLICIT_LIMIT or system.n > 4:
        return lines
    for l in range(L):
        for j in range(d):
            lines.append(fmt(l, j, rows[l][j]))
    return lines


def system_text(system) -> str:
    """The derived system as readable plain text (see :meth:`FlowSystem.to_text`)."""
    from .latex import ALGORITHM_NAMES, LOSS_NAMES, display_flow, display_perturbation

    s, cf = system, system.coordinate
    L, d, n = s.depth, s.dim, s.n
    out = [f"{ALGORITHM_NAMES[s.algorithm]} flow — depth L = {L}, d = {d}, n = {n}, "
           f"{LOSS_NAMES[s.loss]} loss"]
    if s.rho_value is not None:
        out.append(f"ρ = {s.rho_value:g}")
    if not s.symbolic_data:
        out.append("data  y·x = " + "; ".join(
            "(" + ", ".join(text_expr(s.y[i] * v) for v in s.X[i]) + ")" for i in range(n)))
    out.append("")
    out.append("Model")
    out.append(f"  β_j = {text_expr(cf.beta)}   (j = 1..{d}; generic coordinate j)")
    for i in range(min(n, 4)):
        out.append(f"  {text_name(s.margins[i])} = {text_expr(s.margin_exprs[i])}")
    if n > 4:
        out.append(f"  … ({n} margins z_i = y_i Σ_j x_ij β_j)")
    out.append(f"  𝓛(w) = Σ_i ℓ(z_i),  ℓ(z) = {text_expr(s.loss_function)},  "
               f"ℓ'(z) = {text_expr(s.loss_derivative)}")
    out.append("")
    out.append("Gradient (SymPy chain rule 𝓛 → z → β → w), generic coordinate j")
    for l, p in enumerate(cf.P):
        out.append(f"  ∂𝓛/∂{text_name(cf.w[l])} = (Σ_i ℓ'(z_i) y_i x_ij) · {text_expr(p)}")
    out.append("  F = ∇𝓛 / S,  S = Σ_i |ℓ'(z_i)|,  so  F⁽ˡ⁾ⱼ = gⱼ ∂βⱼ/∂w⁽ˡ⁾ⱼ,  gⱼ = −Σ_i q_i y_i x_ij,"
               "  q = softmax(log|ℓ'(z)|)")
    out.append("")
    out.append("Perturbation ε(w) and perturbed point w̃ = w + ε")
    out.append("  " + display_perturbation(s, text=True))
    for l, e in enumerate(cf.perturbed_point or ()):
        out.append(f"  {text_name(cf.wt[l])} = {text_expr(display_flow(s, e))}")
    for gs in cf.global_sums:
        total = (text_expr(gs.const) + " + " if gs.const != 0 else "") + f"Σ_j {text_expr(display_flow(s, gs.share))}"
        out.append(f"  {text_name(gs.symbol)} = " + (f"({total})^(1/{gs.power})" if gs.power != 1 else total))
    if s.coordinate.discontinuous:
        out.append("  σ⁽ˡ⁾ⱼ = sign(F⁽ˡ⁾ⱼ(w))  (switching functions; Filippov sliding where F = 0)")
    out.append("")
    out.append("Flow  dw/dt = −∇𝓛(w̃)")
    for l, p in enumerate(cf.P):
        pt = text_expr(p.xreplace(dict(zip(cf.w, cf.wt))))
        out.append(f"  {_dt(cf.w[l])} = −(Σ_i ℓ'(z̃_i) y_i x_ij) · {pt}")
    out.append("")
    out.append("Rescaled time  dτ = Σ_i |ℓ'(z̃_i)| dt  (loss-free flow)")
    for l, e in enumerate(cf.rescaled):
        out.append(f"  {_dt(cf.w[l], 'τ')} = {text_expr(display_flow(s, e))}")
    out.append(f"  dt/dτ = {text_expr(s.time_change)}" + ("" if n == 1 else
               "   (g̃ⱼ = −Σ_i q̃_i y_i x_ij, q̃ = softmax(log|ℓ'(z̃)|))"))
    explicit = _grid(s, s.rescaled_flow, lambda l, j, e: f"  {_dt(s.weights[l][j], 'τ')} = {text_expr(e)}")
    if explicit:
        out.append("")
        out.append("Per coordinate (w̃ = w + ε as above)")
        out.extend(explicit)
    if s.reductions:
        out.append("")
        out.append("Reductions")
        for r in s.reductions:
            out.extend("  " + line for line in r.to_text().splitlines())
    if s.invariants:
        out.append("")
        out.append("Invariants (generic coordinate j; proved by SymPy)")
        for inv in s.invariants:
            out.append("  " + inv.statement)
            if inv.status != "not conserved" or inv.proof_expr == 0:
                out.append(f"      d/dt = {text_expr(inv.proof_expr)}")
    return "\n".join(out) + "\n"
