"""The canonical report: one command makes everything a reader of the repository sees.

``sambias report --canonical`` (run from the repository root) runs the built-in l-inf SAM
basin sweep (:data:`sambias.reports.phases.SWEEPS`) into ``reports/canonical/phases/``,
then writes the full report -- the catalogue's verdicts with rivals and controls, the
derivations, every figure of the gallery, the basin phase diagram and the digits
experiment -- into ``reports/canonical/`` (``report.md``, ``report.tex``, ``report.pdf``,
PNG and PDF figures, ``verdicts.json``).  ``--quick`` makes the same document on a budget
(the quick catalogue, shorter runs); its *structure* must equal the committed one's,
which :func:`outline` reads off a ``report.md``.

>>> o = outline("# A\\n\\n| `c1` | s |\\n\\n![f](f.png)\\n\\n*Figure: problem x*\\n")
>>> o.sections, o.claim_ids, o.figures
(('A',), ('c1',), (('f.png', 'problem x'),))
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

CANONICAL_DIR = Path("reports") / "canonical"
PHASES = "phases"   # beside the report: the sweep store its phase diagram is drawn from


@dataclass(frozen=True)
class Outline:
    """What a report holds, independent of its numbers: section headings in order, the
    claim ids of the verdict table, and ``(figure file, caption)`` pairs in order."""

    sections: tuple[str, ...]
    claim_ids: tuple[str, ...]
    figures: tuple[tuple[str, str], ...]

    @property
    def figure_files(self) -> tuple[str, ...]:
        return tuple(f for f, _ in self.figures)


_HEADING = re.compile(r"^(#{1,6}) (.+)$")
_CLAIM_ROW = re.compile(r"^\| `([^`]+)` \|")
_IMAGE = re.compile(r"^!\[[^\]]*\]\(([^)]+)\)$")
_CAPTION = re.compile(r"^\*Figure: (.*)\*$")


def outline(markdown: str) -> Outline:
    """The :class:`Outline` of a ``report.md`` text (every image must be followed by its
    ``*Figure: ...*`` caption line; a figure without one has the caption ``""``)."""
    sections, claims, figures = [], [], []
    lines = [line for line in markdown.splitlines() if line.strip()]
    inside_code = False
    for k, line in enumerate(lines):
        if line.startswith("```"):
            inside_code = not inside_code
            continue
        if inside_code:
            continue
        if m := _HEADING.match(line):
            sections.append(m.group(2).strip())
        elif m := _CLAIM_ROW.match(line):
            claims.append(m.group(1))
        elif m := _IMAGE.match(line):
            nxt = _CAPTION.match(lines[k + 1]) if k + 1 < len(lines) else None
            figures.append((m.group(1), nxt.group(1) if nxt else ""))
    return Outline(tuple(sections), tuple(claims), tuple(figures))


def basin_sweep(quick: bool = False):
    """The built-in basin sweep: 12 x 12 points (36 s on 2 loaded cores, so ``--quick``
    runs it whole too; ``quick=True`` here gives the 3 x 3 version, for tests)."""
    import tomllib

    from sambias.sweep import sweep_from_dict

    from .phases import SWEEPS

    sweep = sweep_from_dict(tomllib.loads(SWEEPS["basin"]))
    return sweep.quick() if quick else sweep


def run_phase_sweeps(phases_dir: Path, *, quick: bool = False, workers: int | None = None,
                     progress: bool = True) -> Path:
    """Run the basin sweep afresh into ``phases_dir/basin.sqlite`` (the store a previous run
    left there is replaced: the phase diagram must come from this code's flows)."""
    from sambias.sweep import make_executor, run_sweep
    from sambias.sweep.command import _version

    phases_dir.mkdir(parents=True, exist_ok=True)
    store = phases_dir / "basin.sqlite"
    for stale in (store, store.with_name(store.name + "-journal"), store.with_name(store.name + "-wal")):
        stale.unlink(missing_ok=True)
    run_sweep(basin_sweep(quick), store, executor=make_executor(workers), progress=progress,
              version=_version())
    return store


def make_canonical(out_dir: Path = CANONICAL_DIR, *, quick: bool = False, progress: bool = True,
                   workers: int | None = None, pdf: bool = True, claim_workers: int = 2):
    """Run the phase sweep and write the whole report into ``out_dir`` (full mode unless
    ``quick``); returns the :class:`~sambias.reports.report.ReportResult`.  ``workers``:
    the sweep's processes (default: every core); ``claim_workers``: processes that run the
    claims while this one draws the figures.

    >>> make_canonical(Path("reports/canonical"))       # doctest: +SKIP
    """
    from sambias.verify import catalogue

    from .report import check_out_dir, write_report

    out_dir = check_out_dir(Path(out_dir))
    # Every claim by id: without ids the quick catalogue keeps only the claims marked quick,
    # and the quick report must list the same claims as the full one.
    claim_ids = [c.id for c in catalogue()]
    if progress:
        print(f"sambias report --canonical: the basin sweep into {out_dir / PHASES}", file=sys.stderr)
    run_phase_sweeps(out_dir / PHASES, workers=workers, progress=progress)
    command = "sambias report --canonical" + (" --quick" if quick else "")
    return write_report(out_dir, claim_ids=claim_ids, quick=quick, progress=progress, pdf=pdf,
                        phases=out_dir / PHASES, command=command, claim_workers=claim_workers)
