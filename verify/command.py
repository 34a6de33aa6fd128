"""``sambias verify [CLAIM ...] [--quick] [--json FILE]`` and ``--list`` (CONTRACT.md).

The CLI calls :func:`command`; it prints a table (claim, verdict, instances, negative
controls rejected/run counted over instances, rivals rejected/separated/run, worst
margin), writes the ``sambias.verdicts/1`` JSON and returns
the exit status: 0 when every checked claim holds and every negative control was
rejected, 1 otherwise, 2 on bad input (one line on ``err``, never a traceback).

>>> import io
>>> out = io.StringIO()
>>> command([], quick=True, json_path=None, list_only=True, out=out)
0
>>> "l2sam-depth2-amplification" in out.getvalue()
True
>>> err = io.StringIO()
>>> command(["no-such-claim"], quick=True, json_path=None, list_only=False, err=err)
2
>>> err.getvalue().strip()
"sambias verify: unknown claim 'no-such-claim' (see 'sambias verify --list')"
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

SCHEMA = "sambias.verdicts/1"
EXIT_OK, EXIT_FAIL, EXIT_BAD = 0, 1, 2


def verdicts_document(results: Sequence, *, quick: bool | None = None) -> dict[str, Any]:
    """The ``sambias.verdicts/1`` document for a list of ``ClaimResult`` (``quick``
    defaults to whether the results were run quick)."""
    if quick is None:
        quick = bool(results) and all(r.quick for r in results)
    return {"schema": SCHEMA, "quick": quick, "all_hold": all(r.ok for r in results),
            "claims": [r.to_dict() for r in results]}


def command(claim_ids: list[str], quick: bool, json_path: str | None, list_only: bool,
            out: TextIO = sys.stdout, err: TextIO = sys.stderr, *, simulate: Callable | None = None,
            claims: Sequence | None = None, power: bool = False) -> int:
    """Run ``sambias verify``; returns the exit status (see the module docstring).

    ``claims`` replaces the catalogue and ``simulate`` the integrator (for tests and
    users' own catalogues).  ``power`` also runs the wrong rules of
    :mod:`sambias.verify.power` through every claim's check (exit 1 if one survives; the
    JSON gains ``"power"``)."""
    from .catalogue import catalogue

    pool = list(claims) if claims is not None else list(catalogue())
    by_id = {c.id: c for c in pool}
    for cid in claim_ids:
        if cid not in by_id:
            print(f"sambias verify: unknown claim {cid!r} (see 'sambias verify --list')", file=err)
            return EXIT_BAD
    if list_only:
        chosen = [by_id[i] for i in dict.fromkeys(claim_ids)] if claim_ids else pool
        width = max(len(c.id) for c in chosen)
        for c in chosen:
            print(f"{c.id:<{width}}  {c.statement}", file=out)
        return EXIT_OK
    if json_path is not None:
        problem = _unwritable(json_path)
        if problem:
            print(f"sambias verify: --json {json_path}: {problem}", file=err)
            return EXIT_BAD
    from .claims import run_claims

    progress = bool(getattr(err, "isatty", lambda: False)())
    results = run_claims(claim_ids or None, quick=quick, progress=progress, claims=pool, simulate=simulate)
    print(format_table(results), file=out)
    rows = None
    if power:
        from .power import format_power, power as run_power

        rows = run_power(results)
        print(format_power(rows), file=out)
    if json_path is not None:
        doc = verdicts_document(results, quick=quick)
        if rows is not None:
            doc["power"] = [r.to_dict() for r in rows]
        try:
            Path(json_path).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        except OSError as exc:
            print(f"sambias verify: --json {json_path}: cannot write ({exc.strerror or exc})", file=err)
            return EXIT_BAD
    survived = rows is not None and not all(r.rejected for r in rows)
    return EXIT_OK if results and all(r.ok for r in results) and not survived else EXIT_FAIL


def _unwritable(path: str) -> str | None:
    p = Path(path)
    if p.is_dir():
        return "is a directory"
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        return f"no such directory {parent}"
    if not os.access(parent, os.W_OK):
        return f"directory {parent} is not writable"
    return None


def format_table(results: Sequence) -> str:
    """The terminal table: one row per claim and a summary line."""
    head = ("claim", "verdict", "instances", "controls rejected/run", "rivals rejected/separated/run",
            "worst margin", "seconds")
    rows = []
    for r in results:
        m = r.worst_margin
        rows.append((r.claim.id, r.verdict.outcome + ("" if r.ok or not r.verdict.holds else " (control!)"),
                     str(r.instances), f"{r.negative_controls_rejected}/{r.negative_controls_run}",
                     "{rejected}/{separated}/{run}".format(**r.rivals_summary),
                     "-" if math.isnan(m) else f"{m:+.2f}", f"{r.seconds:.1f}"))
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    bad = [r for r in results if not r.ok]
    for r in bad:
        lines.append(f"  {r.claim.id}: {r.verdict.reason}")
        for c in r.controls:
            if not c.rejected:
                lines.append(f"    negative control {c.control.name!r} not rejected on "
                             f"{c.instances - c.rejected_instances}/{c.instances} instance(s) "
                             f"({c.verdict.outcome}): {c.verdict.reason}")
        for rv in r.rivals:
            if not rv.rejected:
                lines.append(f"    rival {rv.rival.name!r} not rejected: separated on {rv.separated}, "
                             f"rejected on {rv.rejected_on}")
    held = sum(r.verdict.holds for r in results)
    lines.append(f"{held}/{len(results)} claims hold; negative controls rejected "
                 f"{sum(r.negative_controls_rejected for r in results)}/{sum(r.negative_controls_run for r in results)}"
                 " (instances); rivals rejected "
                 f"{sum(r.rivals_summary['rejected'] for r in results)}/{sum(len(r.rivals) for r in results)}"
                 " (margin: decades of slack of the deciding test)")
    return "\n".join(lines)
