"""The committed canonical report (reports/canonical/, made by `sambias report --canonical`):
its files exist and hang together, and its structure is what the report code makes today."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from sambias.cli import main
from sambias.reports import canonical, gallery, report
from sambias.reports.canonical import outline

ROOT = Path(__file__).resolve().parents[1]
CANON = ROOT / "reports" / "canonical"
PNG = b"\x89PNG\r\n\x1a\n"
# Every caption states problem, precision, tolerances and horizon.
CAPTION_WORDS = (("problem", re.compile(r"x = \(|μ = \(|n = \d+ examples")),
                 ("precision", re.compile(r"float64|mp:\d+")), ("tolerance", re.compile(r"rtol")),
                 ("horizon", re.compile(r"horizon|τ = \d|τ ≤ \d")))


def expected_sections() -> list[str]:
    """The headings the report code writes when it is given the basin store, in order."""
    basin = next(title for name, title, _ in report.PHASE_STORES if name == "basin")
    return (["sambias verification report", "Verdicts", "Figures"] + [s.title for s in gallery.GALLERY]
            + [f"Phase diagram: {basin}", "Real data: two digit classes",
               "Where the outcome differs from the paper's claims", "Derivations (sambias.symbolic)"])


def expected_figures() -> list[str]:
    return [f"{s.stem}.png" for s in gallery.GALLERY] + ["phase-basin.png", "digits.png"]


def missing_caption_words(caption: str) -> list[str]:
    return [what for what, pattern in CAPTION_WORDS if not pattern.search(caption)]


def structure_problems(o: canonical.Outline, claim_ids: list[str]) -> list[str]:
    """Everything in which a report's outline departs from what the code makes (empty: none)."""
    problems = []
    if list(o.sections) != expected_sections():
        problems.append(f"sections {list(o.sections)} != {expected_sections()}")
    if list(o.claim_ids) != claim_ids:
        problems.append(f"claims {list(o.claim_ids)} != {claim_ids}")
    if list(o.figure_files) != expected_figures():
        problems.append(f"figures {list(o.figure_files)} != {expected_figures()}")
    for name, caption in o.figures:
        if missing := missing_caption_words(caption):
            problems.append(f"{name}: caption lacks {missing}")
    return problems


@pytest.fixture(scope="module")
def committed() -> canonical.Outline:
    md = CANON / "report.md"
    assert md.is_file(), "reports/canonical/report.md is missing: run `sambias report --canonical`"
    return outline(md.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def claim_ids() -> list[str]:
    from sambias.verify import catalogue

    return [c.id for c in catalogue()]


def test_committed_report_has_the_structure_the_code_makes(committed, claim_ids):
    problems = structure_problems(committed, claim_ids)
    assert not problems, "reports/canonical/ is stale, remake it with `sambias report --canonical`: " + \
        "; ".join(problems)
    text = (CANON / "report.md").read_text(encoding="utf-8")
    made_by = re.search(r"by `sambias report --canonical( --quick)?`", text)   # the documented command
    assert made_by, "reports/canonical/report.md was not made by `sambias report --canonical`"
    assert ("(quick catalogue)" if made_by.group(1) else "(full catalogue)") in text


def test_structure_check_rejects_a_report_that_lost_a_figure_or_a_section(committed, claim_ids):
    """Negative controls: the check above must notice each kind of loss."""
    lost_figure = canonical.Outline(committed.sections, committed.claim_ids, committed.figures[1:])
    lost_section = canonical.Outline(committed.sections[:-1], committed.claim_ids, committed.figures)
    lost_claim = canonical.Outline(committed.sections, committed.claim_ids[:-1], committed.figures)
    bare = canonical.Outline(committed.sections, committed.claim_ids,
                             ((committed.figures[0][0], "a picture"),) + committed.figures[1:])
    for broken in (lost_figure, lost_section, lost_claim, bare):
        assert structure_problems(broken, claim_ids), broken
    md = (CANON / "report.md").read_text(encoding="utf-8")
    dropped = md.replace("![depth](depth.png)", "")          # the markdown parser sees it too
    assert "depth.png" not in outline(dropped).figure_files


def test_committed_files_exist_and_are_what_they_claim(committed):
    for name, _ in committed.figures:
        assert (CANON / name).read_bytes()[:8] == PNG, name
        assert (CANON / name).with_suffix(".pdf").read_bytes()[:5] == b"%PDF-", name
    tex = (CANON / "report.tex").read_text(encoding="utf-8")
    included = re.findall(r"\\includegraphics\[[^\]]*\]\{([^}]+)\}", tex)
    assert included == [Path(f).with_suffix(".pdf").name for f in committed.figure_files]
    pdf = (CANON / "report.pdf").read_bytes()
    assert pdf[:5] == b"%PDF-" and b"%%EOF" in pdf[-1024:] and len(pdf) > 200_000
    if shutil.which("pdfinfo"):
        info = subprocess.run(["pdfinfo", str(CANON / "report.pdf")], capture_output=True, text=True, timeout=60)
        pages = int(re.search(r"^Pages:\s+(\d+)", info.stdout, flags=re.M).group(1))
        assert pages >= len(committed.figures)                # a figure per page at most
    doc = json.loads((CANON / "verdicts.json").read_text(encoding="utf-8"))
    assert [c["id"] for c in doc["claims"]] == list(committed.claim_ids)
    assert (CANON / "phases" / "basin.sqlite").read_bytes()[:16] == b"SQLite format 3\x00"


def test_canonical_folder_is_no_package():
    """reports/ is the source of sambias.reports: the generated folder must not become a
    subpackage or package data (setup.cfg lists packages and package data explicitly)."""
    assert not (CANON / "__init__.py").exists()
    cfg = (ROOT / "setup.cfg").read_text(encoding="utf-8")
    assert "canonical" not in cfg and "include_package_data" not in cfg
    package_data = cfg.split("[options.package_data]", 1)[1].split("\n[", 1)[0]
    assert "sambias.reports" not in package_data


def test_reordered_flow_is_the_same_flow(tmp_path):
    """The paper figure integrates its coordinates in decreasing order and maps them back:
    the mapped run must equal the run in the given order (where that one finishes)."""
    from sambias.reports.experiments import synthetic_problem

    runner = gallery.Runner()
    p = synthetic_problem("l2-sam", 0.2, mu=(0.5, 1.0, 2.0))
    direct = runner.flow(p, "3", time="rescaled", rtol=1e-7)
    mapped = runner.flow_reordered(p, "3", time="rescaled", rtol=1e-7)
    assert direct.ok and mapped.ok and mapped.problem is p
    rel = np.abs(mapped.beta_final - direct.beta_final) / np.abs(direct.beta_final)
    assert rel.max() < 1e-4
    assert [s.index for s in mapped.dominant] == [s.index for s in direct.dominant]
    raw = runner.flow(gallery.permuted(p, gallery.decreasing_order(p)), "3", time="rescaled", rtol=1e-7)
    assert np.abs(raw.beta_final - direct.beta_final).max() / np.abs(direct.beta_final).max() > 0.1  # control


def test_canonical_refuses_claims_and_a_file_as_out(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(canonical, "run_phase_sweeps", lambda *a, **k: pytest.fail("sweep ran on bad input"))
    monkeypatch.setattr("sambias.verify.run_claims", lambda *a, **k: pytest.fail("claims ran on bad input"))
    target = tmp_path / "taken"
    target.write_text("a file")
    for argv in (["report", "--canonical", "--out", str(target)],
                 ["report", "--canonical", "--out", str(tmp_path / "r"), "l2sam-depth2-limit"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "Traceback" not in err[0], err


@pytest.mark.slow
def test_quick_canonical_report_matches_the_committed_structure(tmp_path, committed, claim_ids, capsys):
    """Regenerates the quick canonical report (several minutes: the quick catalogue, every
    figure, a 3 x 3 basin sweep, the digits runs) and compares it with the committed one."""
    out = tmp_path / "canon"
    code = main(["report", "--canonical", "--quick", "--out", str(out)])
    assert code in (0, 1), capsys.readouterr()
    fresh = outline((out / "report.md").read_text(encoding="utf-8"))
    assert structure_problems(fresh, claim_ids) == []
    assert fresh.sections == committed.sections and fresh.claim_ids == committed.claim_ids
    assert fresh.figure_files == committed.figure_files
    for name in fresh.figure_files:
        assert (out / name).read_bytes()[:8] == PNG
    if shutil.which("pdflatex"):
        assert (out / "report.pdf").read_bytes()[:5] == b"%PDF-"


def test_claims_from_workers_merge_back_in_catalogue_order(claim_ids):
    """The canonical report runs its claims in worker processes, dealt out in turn; the
    table and verdicts.json come back in catalogue order, and one failing share fails all."""
    def table(ids, hold):
        rows = [{"id": i, "ok": hold} for i in ids]
        return rows, {"schema": "sambias.verdicts/1", "quick": False, "all_hold": hold,
                      "claims": [{"id": i} for i in ids]}

    shares = [claim_ids[1::2], claim_ids[0::2]]
    rows, doc = report._merge_tables([table(shares[0], True), table(shares[1], True)])
    assert [r["id"] for r in rows] == claim_ids == [c["id"] for c in doc["claims"]]
    assert doc["all_hold"] is True and doc["schema"] == "sambias.verdicts/1"
    _, doc = report._merge_tables([table(shares[0], True), table(shares[1], False)])
    assert doc["all_hold"] is False
