"""`sambias report`: Markdown with figures, the verdicts JSON, and LaTeX that compiles."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from sambias.cli import main


def test_report_end_to_end(tmp_path, capsys):
    out = tmp_path / "rep"
    code = main(["report", "--quick", "--out", str(out), "l2sam-depth2-collapse"])
    assert code == 0, capsys.readouterr()
    md = (out / "report.md").read_text()
    assert "| `l2sam-depth2-collapse` |" in md and "holds" in md
    images = [line for line in md.splitlines() if line.startswith("![")]
    assert len(images) >= 3
    for line in images:
        png = out / line[line.index("(") + 1:-1]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads((out / "verdicts.json").read_text())
    assert doc["schema"] == "sambias.verdicts/1"
    assert [c["id"] for c in doc["claims"]] == ["l2sam-depth2-collapse"]
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed (CI installs TeX Live)")
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
                         cwd=out, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]
    assert (out / "report.pdf").stat().st_size > 10_000


def test_report_unknown_claim(tmp_path, capsys):
    assert main(["report", "--quick", "--out", str(tmp_path), "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0]
