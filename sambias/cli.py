"""The ``sambias`` command line: ``derive``, ``simulate``, ``verify``, ``report``.

Every bad input ends in one line on stderr and exit status 2 -- never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Sequence

from .errors import SambiasError

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse prints a usage block on errors; the contract asks for one line."""

    def error(self, message: str) -> None:  # noqa: D102 - argparse hook
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sambias", description=(
        "Check theorems about the implicit bias of Sharpness-Aware Minimization on "
        "L-layer linear diagonal networks numerically."))
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("derive", help="print the flow equations of a problem",
                       description="Derive the gradient-flow equations of PROBLEM symbolically "
                                   "(per layer and coordinate, the perturbation, the rescaled-time "
                                   "form, reductions and conserved quantities).")
    p.add_argument("problem", metavar="PROBLEM", help="problem file (.toml or .json)")
    p.add_argument("--latex", action="store_true", help="print LaTeX (an align block)")
    p.add_argument("--standalone", action="store_true",
                   help="with --latex: a complete document that compiles with pdflatex")
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    p.set_defaults(run=_cmd_derive)

    p = sub.add_parser("simulate", help="integrate the flow of a problem",
                       description="Integrate the flow of PROBLEM up to physical time T (or rescaled "
                                   "time with --time rescaled). T may lie past float64's range, "
                                   "e.g. 1e400.")
    p.add_argument("problem", metavar="PROBLEM", help="problem file (.toml or .json)")
    p.add_argument("--horizon", required=True, metavar="T", help="end time, e.g. 100 or 1e400")
    p.add_argument("--time", choices=("physical", "rescaled"), default="physical",
                   help="which clock T refers to (default: physical)")
    p.add_argument("--precision", default="float64", metavar="P",
                   help="float64 (default) or mp:DIGITS, e.g. mp:50")
    p.add_argument("--method", default="auto", metavar="NAME",
                   help="auto, Radau, BDF, LSODA, DOP853 or RK45 (default: auto)")
    p.add_argument("--rtol", type=float, default=None, metavar="R", help="relative tolerance")
    p.add_argument("--atol", type=float, default=None, metavar="A", help="absolute tolerance")
    p.add_argument("--json", metavar="FILE", help="write the sambias.trajectory/1 document to FILE")
    p.add_argument("--save", metavar="FILE", help="also save the whole trajectory (.npz)")
    p.add_argument("--progress", action="store_true", help="show progress on stderr")
    p.set_defaults(run=_cmd_simulate)

    p = sub.add_parser("verify", help="check claims from the catalogue",
                       description="Check claims of the catalogue (all by default). Exit status 0 "
                                   "when every checked claim holds and every negative control was "
                                   "rejected, 1 otherwise, 2 on bad input.")
    p.add_argument("claims", nargs="*", metavar="CLAIM", help="claim ids (see --list)")
    p.add_argument("--quick", action="store_true", help="shorter horizons, fewer instances")
    p.add_argument("--json", metavar="FILE", help="write the sambias.verdicts/1 document to FILE")
    p.add_argument("--list", action="store_true", help="list claim ids with one-line statements")
    p.set_defaults(run=_cmd_verify)

    p = sub.add_parser("report", help="write the verification report",
                       description="Run the claim catalogue and write the verification report "
                                   "(Markdown with figures, plus LaTeX) to DIR.")
    p.add_argument("--out", default="report", metavar="DIR", help="output directory (default: report)")
    p.add_argument("--quick", action="store_true", help="the quick catalogue and short horizons")
    p.add_argument("claims", nargs="*", metavar="CLAIM", help="claim ids to include (default: all)")
    p.set_defaults(run=_cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sambias`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except SambiasError as exc:
        print(f"sambias {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"sambias {args.command}: interrupted", file=sys.stderr)
        return 130


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sambias")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _write(text: str, out: str | None) -> None:
    if out is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    try:
        Path(out).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise SambiasError(f"cannot write {out} ({exc.strerror})") from None


# --- commands -------------------------------------------------------------------
def _cmd_derive(args: argparse.Namespace) -> int:
    from .problem import load_problem
    from .symbolic import derive

    if args.standalone and not args.latex:
        raise SambiasError("--standalone needs --latex")
    system = derive(load_problem(args.problem))
    text = system.to_latex(standalone=args.standalone) if args.latex else system.to_text()
    _write(text, args.out)
    return EXIT_OK


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .horizon import parse_horizon
    from .problem import load_problem

    problem = load_problem(args.problem)
    horizon = parse_horizon(args.horizon)
    for name in ("rtol", "atol"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise SambiasError(f"--{name}: must be a positive number, got {value}")
    options = {k: getattr(args, k) for k in ("rtol", "atol") if getattr(args, k) is not None}
    from .flows import simulate  # after validation: bad input is reported before heavy imports

    trajectory = simulate(problem, horizon, time=args.time, precision=args.precision,
                          method=args.method, progress=args.progress, **options)
    document = trajectory.to_json()
    if args.json:
        _write(json.dumps(document, indent=1), args.json)
    if args.save:
        trajectory.save(args.save)
    print(_summary(trajectory, document))
    return EXIT_OK if trajectory.ok else EXIT_FAIL


def _summary(trajectory, document: dict) -> str:
    direction = document["direction_final"]
    shown = "collapsed to 0" if direction is None else "[" + ", ".join(f"{v:.6g}" for v in direction) + "]"
    lead = " -> ".join(str(s["index"]) for s in document["dominant"]) or "-"
    settings = trajectory.settings
    return "\n".join([
        f"status          {document['status']}",
        f"log10 t         {_fmt(document['log10_t_final'])}   (tau {_fmt(document['tau_final'])})",
        f"log10 loss      {_fmt(document['log10_loss_final'])}",
        f"log10 |beta|    {_fmt(document['log10_norm_beta_final'])}",
        f"direction       {shown}",
        f"leader changes  {lead}",
        f"integrator      {settings.get('method', '?')}, {settings.get('precision', '?')}, "
        f"rtol {settings.get('rtol', '?')}, atol {settings.get('atol', '?')}",
    ])


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.6g}"


def _cmd_verify(args: argparse.Namespace) -> int:
    from .verify import command

    return command(list(args.claims), quick=args.quick, json_path=args.json, list_only=args.list,
                   out=sys.stdout, err=sys.stderr)


def _cmd_report(args: argparse.Namespace) -> int:
    from .reports import write_report

    result = write_report(Path(args.out), claim_ids=list(args.claims) or None, quick=args.quick)
    print(f"report written to {result.markdown}")
    return EXIT_OK if result.all_hold else EXIT_FAIL
