"""Tables of verdicts, as Markdown and as LaTeX.

>>> rows = [{"id": "c", "statement": "a < b", "verdict": "holds", "instances": 3,
...          "controls": "2/2", "rivals": "1/1", "source": "paper", "ok": True}]
>>> print(markdown_table(rows).splitlines()[2])
| `c` | a < b | holds | 3 | 2/2 | 1/1 | paper |
"""

from __future__ import annotations

from typing import Any, Sequence

COLUMNS = ("claim", "statement", "verdict", "instances", "negative controls rejected", "rivals rejected",
           "source")


def verdict_rows(results: Sequence[Any]) -> list[dict[str, Any]]:
    """Flatten claim results (``sambias.verify.ClaimResult``) into table rows."""
    rows = []
    for r in results:
        run, rejected = r.negative_controls
        rows.append({
            "id": r.claim.id, "statement": r.claim.statement, "verdict": r.verdict.outcome,
            "instances": r.instances, "controls": f"{rejected}/{run}", "rivals": rivals_cell(r),
            "source": getattr(r.claim, "source", ""),
            "ok": r.verdict.outcome == "holds" and rejected == run,
        })
    return rows


def rivals_cell(result: Any) -> str:
    """``rejected/run`` over the claim's rivals, or ``-`` where it has none (or the verifier
    predates rivals: ``ClaimResult.rivals`` is read defensively)."""
    rivals = list(getattr(result, "rivals", None) or [])
    if not rivals:
        return "-"
    return f"{sum(bool(getattr(r, 'rejected', False)) for r in rivals)}/{len(rivals)}"


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = [f"`{r['id']}`", r["statement"].replace("|", "\\|"), r["verdict"], str(r["instances"]),
                 r["controls"], r.get("rivals", "-"), r["source"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "|": r"\textbar{}", "<": r"\textless{}", ">": r"\textgreater{}"}


def tex_escape(text: str) -> str:
    """Escape text for LaTeX (unicode Greek letters become math)."""
    # "--" would typeset as an en dash: `--quick` must stay two hyphens.
    out = "".join(_TEX_SPECIAL.get(c, c) for c in str(text)).replace("--", "-{}-")
    for uni, tex in (("ρ", r"$\rho$"), ("ℓ", r"$\ell$"), ("∞", r"$\infty$"), ("β", r"$\beta$"),
                     ("→", r"$\to$"), ("≥", r"$\geq$"), ("≤", r"$\leq$"), ("α", r"$\alpha$"),
                     ("τ", r"$\tau$"), ("μ", r"$\mu$"), ("ε", r"$\varepsilon$"), ("−", "-"), ("·", r"$\cdot$"),
                     ("η", r"$\eta$"), ("‖", r"$\Vert$"), ("₁", r"$_1$"), ("₂", r"$_2$"), ("²", r"$^2$"),
                     ("∈", r"$\in$"), ("×", r"$\times$"), ("▶", r"$\blacktriangleright$"), ("≈", r"$\approx$"),
                     ("°", r"$^\circ$"), ("≳", r"$\gtrsim$"), ("′", "'"), ("—", "---"), ("–", "--"),
                     ("z̃", r"$\tilde z$"), ("ℓ", r"$\ell$"), ("σ", r"$\sigma$"), ("γ", r"$\gamma$"), ("Δ", r"$\Delta$")):
        out = out.replace(uni, tex)
    out = out.replace("$$", "")  # adjacent math pieces merge into one
    # Anything else outside ASCII would stop pdflatex; say which character it was instead.
    return "".join(c if ord(c) < 128 else f"[U+{ord(c):04X}]" for c in out)


def latex_document(rows: Sequence[dict[str, Any]], figures: Sequence[tuple[str, str]], stamp: str) -> str:
    """A complete LaTeX document: the verdict table and the figures."""
    body = [r"\documentclass[10pt]{article}", r"\usepackage[margin=2cm]{geometry}",
            r"\usepackage{graphicx}", r"\usepackage{longtable}", r"\usepackage{amsmath}",
            r"\begin{document}", r"\section*{sambias verification report}",
            f"Generated {tex_escape(stamp)}.", "",
            r"\begin{longtable}{p{0.22\textwidth}p{0.40\textwidth}lrll}",
            r"claim & statement & verdict & instances & controls & rivals \\ \hline"]
    for r in rows:
        body.append(f"\\texttt{{{tex_escape(r['id'])}}} & {tex_escape(r['statement'])} & "
                    f"{tex_escape(r['verdict'])} & {r['instances']} & {tex_escape(r['controls'])} & "
                    f"{tex_escape(r.get('rivals', '-'))} \\\\")
    body.append(r"\end{longtable}")
    for path, caption in figures:
        body += [r"\begin{figure}[h]\centering", f"\\includegraphics[width=\\textwidth]{{{path}}}",
                 f"\\caption{{{tex_escape(caption)}}}", r"\end{figure}"]
    body.append(r"\end{document}")
    return "\n".join(body) + "\n"
