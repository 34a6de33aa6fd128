"""`sambias report`: Markdown with figures, the verdicts JSON, LaTeX and (with pdflatex) a PDF."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from sambias.cli import main
from sambias.errors import ProblemError
from sambias.reports import experiments, gallery, report

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def small_report(monkeypatch):
    """The report's plumbing on a budget: the flagship figure only and a tiny digits subset
    (the whole quick gallery is the slow test below)."""
    story = next(s for s in gallery.GALLERY if s.stem == "l2sam-story")
    monkeypatch.setattr(gallery, "GALLERY", (story,))
    tiny = experiments.DigitsSettings(per_class=6, horizon="1e2", steps=300, eta=0.02, rtol=1e-5,
                                      algorithms=(("gd", 0.0), ("l2-sam", 0.3)))
    monkeypatch.setattr(experiments.DigitsSettings, "of", classmethod(lambda cls, quick: tiny))


def _images(md: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^!\[[^\]]*\]\(([^)]+)\)$", md, flags=re.M)]


def test_report_end_to_end(tmp_path, capsys, small_report):
    out = tmp_path / "rep"
    code = main(["report", "--quick", "--out", str(out), "l2sam-depth2-collapse"])
    captured = capsys.readouterr()
    assert code == 0, captured
    assert "sambias report" in captured.err            # the progress bar is on stderr
    md = (out / "report.md").read_text()
    assert "| claim | statement | verdict | instances | negative controls rejected | rivals rejected |" in md
    row = next(line for line in md.splitlines() if line.startswith("| `l2sam-depth2-collapse` |"))
    assert "| holds |" in row and re.search(r"\| \d+/\d+ \| (\d+/\d+|-) \|", row)
    images = _images(md)
    assert images == ["l2sam-story.png", "digits.png"]
    for name in images:
        assert (out / name).read_bytes()[:8] == PNG
        assert (out / name).with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    captions = [line for line in md.splitlines() if line.startswith("*Figure:")]
    assert len(captions) == 2
    for caption in captions:            # problem, precision, tolerances and horizon
        assert "float64" in caption and "rtol" in caption and "horizon" in caption
    # The flagship figure's text says what its runs did: minor coordinates lead, 0 takes over last.
    facts = next(line for line in md.splitlines() if line.startswith("- ℓ2-SAM (α = 0.2): leaders"))
    leaders = [int(k) for k in re.findall(r"(\d) \(τ=", facts)]
    assert leaders[0] != 0 and leaders[-1] == 0 and len(set(leaders)) >= 3
    assert "## Derivations" in md.replace("# Derivations", "## Derivations") and "Rescaled time" in md
    # The differences from the paper are measured on this report's runs, not quoted.
    differs = md.split("# Where the outcome differs from the paper's claims", 1)[1].split("\n# ", 1)[0]
    assert "not monotone from minor to major" in differs and "Digits, ℓ2-SAM ρ=0.3:" in differs
    doc = json.loads((out / "verdicts.json").read_text())
    assert doc["schema"] == "sambias.verdicts/1"
    assert [c["id"] for c in doc["claims"]] == ["l2sam-depth2-collapse"]
    tex = (out / "report.tex").read_text()
    assert r"\includegraphics[width=\textwidth]{l2sam-story.pdf}" in tex and r"\begin{align}" in tex
    assert "[U+" not in tex                 # every character of the text has a LaTeX spelling
    if shutil.which("pdflatex") is None:
        assert not (out / "report.pdf").exists() and "not installed" in captured.out
        pytest.skip("pdflatex not installed (CI installs TeX Live)")
    assert (out / "report.pdf").stat().st_size > 10_000 and "report.pdf built" in captured.out


def test_report_refuses_a_file_as_out_before_any_work(tmp_path, capsys, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("claims ran before --out was checked")

    monkeypatch.setattr("sambias.verify.run_claims", boom)
    target = tmp_path / "taken"
    target.write_text("a file")
    assert main(["report", "--quick", "--out", str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "taken" in err[0] and "Traceback" not in err[0]
    with pytest.raises(ProblemError, match="not a directory"):      # the library refuses it too
        report.write_report(target, quick=True)


def test_report_unknown_claim(tmp_path, capsys):
    assert main(["report", "--quick", "--out", str(tmp_path), "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0]
    assert not (tmp_path / "report.md").exists()


def test_latex_escaping_covers_the_report_text():
    from sambias.reports.tables import tex_escape

    assert tex_escape("‖β‖₁ ∈ [0, 1]") == r"$\Vert\beta\Vert_1$ $\in$ [0, 1]"
    assert tex_escape("--quick |x| < 1") == r"-{}-quick \textbar{}x\textbar{} \textless{} 1"
    assert tex_escape("☃") == "[U+2603]"        # unknown characters are named, not passed to pdflatex


@pytest.mark.slow
def test_quick_report_has_every_figure(tmp_path, capsys):
    out = tmp_path / "rep"
    code = main(["report", "--quick", "--out", str(out)])
    assert code in (0, 1), capsys.readouterr()
    md = (out / "report.md").read_text()
    stems = [s.stem for s in gallery.GALLERY] + ["digits"]
    assert _images(md) == [f"{s}.png" for s in stems]
    assert "## Where the outcome differs" in md.replace("# Where", "## Where")
    if shutil.which("pdflatex"):
        assert (out / "report.pdf").stat().st_size > 100_000


def test_report_refuses_phases_that_are_no_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sambias.verify.run_claims", lambda *a, **k: pytest.fail("claims ran before --phases"))
    assert main(["report", "--quick", "--out", str(tmp_path / "r"), "--phases", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--phases" in err[0]


@pytest.mark.slow
def test_phase_diagrams_from_a_sweep_store(tmp_path):
    from pathlib import Path

    sweep = Path(__file__).resolve().parents[1] / "examples" / "linf-basin.sweep.toml"
    store = tmp_path / "basin.sqlite"
    assert main(["sweep", str(sweep), "--quick", "--store", str(store), "--workers", "1", "--no-progress"]) == 0
    figures: list = []
    blocks = report._phase_blocks(tmp_path, tmp_path, figures)
    assert [b.kind for b in blocks] == ["heading", "figure"]
    assert "agrees on 9 / 9" in figures[0].caption and "rtol" in figures[0].caption
    assert (tmp_path / "phase-basin.png").read_bytes()[:8] == PNG
