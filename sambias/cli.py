"""The ``sambias`` command line: ``derive``, ``simulate``, ``verify``, ``report``.

Every bad input ends in one line on stderr and exit status 2 -- never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Sequence

from .errors import SambiasError

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
EXIT_INTERNAL = 70  # sysexits' EX_SOFTWARE: a bug of ours, not the user's input
EXIT_SIGINT, EXIT_SIGPIPE, EXIT_SIGTERM = 130, 141, 143  # 128 + the signal's number, as shells report

# Measured on this 2-core machine (linf-SAM, L = 3, to t = 1e-3): mp:20 ~16 s, mp:100
# ~22 s, mp:300 over 40 s; past ~308 digits the default tolerance 10^-(digits-5) leaves
# float64's range (mp:400 ends in an OverflowError inside the mp integrator, mp:100000 too).
MAX_MP_DIGITS = 300
MIN_MP_DIGITS = 10
# SymPy prints one equation per coordinate with the data inside; past these sizes the
# derivation takes minutes (depth 32: ~30 s; n*d = 400: ~14 s) and the text is unreadable.
DERIVE_MAX_DEPTH = 24
DERIVE_MAX_ENTRIES = 512


class _Terminated(BaseException):
    """Raised in the main thread by the SIGTERM handler, so cleanup runs and one line is printed.

    A BaseException, like KeyboardInterrupt, so that code catching Exception (a claim
    runner recording a failed instance) cannot swallow it."""


def _one_line(text: str) -> str:
    """A message as one printable line: user text (a key, a path) may carry control characters
    such as \\x1e that terminals and ``str.splitlines`` take for line breaks; they are escaped."""
    text = text.replace("\r\n", " ").replace("\n", " ").replace("\t", " ")
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    while "  " in text:
        text = text.replace("  ", " ")
    return text.strip()


class _Parser(argparse.ArgumentParser):
    """argparse prints a usage block on errors; the contract asks for one line."""

    def error(self, message: str) -> None:  # noqa: D102 - argparse hook
        self.exit(EXIT_USAGE, f"{self.prog}: error: {_one_line(message)}\n")


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
    p.add_argument("--power", action="store_true",
                   help="also run wrong rules (mutants) through each claim's check and report which are rejected")
    p.set_defaults(run=_cmd_verify)

    p = sub.add_parser("report", help="write the verification report",
                       description="Run the claim catalogue and write the verification report "
                                   "(Markdown with figures, plus LaTeX) to DIR.")
    p.add_argument("--out", metavar="DIR", help="output directory (default: report; with --canonical: "
                                                "reports/canonical)")
    p.add_argument("--quick", action="store_true", help="the quick catalogue and short horizons")
    p.add_argument("--canonical", action="store_true",
                   help="the committed canonical report: run the built-in basin sweep into DIR/phases, then "
                        "the whole report (run from the repository root; long: see reports/canonical/README.md)")
    p.add_argument("--phases", metavar="DIR", help="draw phase diagrams from the sweep stores basin.sqlite, "
                                                   "regime.sqlite, depth.sqlite in DIR")
    p.add_argument("claims", nargs="*", metavar="CLAIM", help="claim ids to include (default: all)")
    p.set_defaults(run=_cmd_report)

    p = sub.add_parser("sweep", help="run a problem over axes of its fields into a results store",
                       description="Run the base problem of SWEEP.toml over its axes (grids or seeded "
                                   "samples) and record one row per point in an SQLite store (one "
                                   "transaction per point). --show STORE summarises a store.")
    p.add_argument("sweep", nargs="?", metavar="SWEEP.toml", help="sweep file (.toml or .json)")
    p.add_argument("--store", metavar="PATH", help="results store (default: NAME.sqlite beside the file)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N", help="local process pool of N (default: all cores; 1: serial)")
    where.add_argument("--dask", metavar="ADDRESS", help="a running Dask scheduler, tcp://HOST:PORT")
    where.add_argument("--dask-local", type=int, metavar="N", help="start a Dask LocalCluster of N workers")
    p.add_argument("--resume", action="store_true", help="continue a store, skipping finished points")
    p.add_argument("--quick", action="store_true", help="a few points per axis (store NAME.quick.sqlite)")
    p.add_argument("--show", metavar="STORE", help="summarise STORE instead of running")
    p.add_argument("--csv", metavar="FILE", help="with --show: write every record to FILE (CSV)")
    p.add_argument("--parquet", metavar="FILE", help="with --show: write every record to FILE (needs pyarrow)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--no-ensemble", action="store_true",
                   help="run points one by one (default: points of one shape integrate as a batch)")
    p.set_defaults(run=_cmd_sweep)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sambias`` console script; returns the exit status.

    >>> main(["derive", "example:gd-depth2", "--standalone"])  # one line on stderr
    2
    """
    args = build_parser().parse_args(argv)
    restore = _catch_sigterm()
    try:
        code = int(args.run(args))
        sys.stdout.flush()  # a closed pipe must surface here, not at interpreter exit
        return code
    except SambiasError as exc:
        print(f"sambias {args.command}: error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"sambias {args.command}: interrupted", file=sys.stderr)
        return EXIT_SIGINT
    except _Terminated:
        print(f"sambias {args.command}: terminated", file=sys.stderr)
        return EXIT_SIGTERM
    except BrokenPipeError:
        # The reader went away (`sambias verify --list | head -1`): nothing left to say to it.
        # Point stdout at devnull so the interpreter's final flush cannot raise again.
        _silence_stdout()
        return EXIT_SIGPIPE
    except MemoryError:
        print(f"sambias {args.command}: error: out of memory", file=sys.stderr)
        return EXIT_FAIL
    except Exception as exc:
        # A bug, not bad input: still one line for the user (with a distinct status that
        # tests and scripts can tell apart); SAMBIAS_TRACEBACK=1 shows the traceback.
        if os.environ.get("SAMBIAS_TRACEBACK"):
            raise
        where = _innermost_frame(exc)
        print(f"sambias {args.command}: internal error: {exc.__class__.__name__}: "
              f"{_one_line(str(exc))[:200]} (at {where}; please report it)", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        restore()


def _catch_sigterm():
    """Route SIGTERM to :class:`_Terminated` while a command runs (main thread only: Python
    installs handlers nowhere else); returns a function that puts the old handler back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    # None means a handler installed outside Python; the default is the closest we can restore.
    return lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _innermost_frame(exc: BaseException) -> str:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "?"
    return f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}"


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor (captured)
        pass


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


# --- checks made before any heavy work ---------------------------------------------
def _check_output_file(path: str, option: str) -> None:
    """The file ``path`` can be created: not a directory, and its folder exists."""
    target = Path(path)
    if target.is_dir():
        raise SambiasError(f"{option}: {path} is a directory; give a file name")
    folder = target.parent
    if not folder.is_dir():
        what = "is not a directory" if folder.exists() else "does not exist"
        raise SambiasError(f"{option}: cannot write {path}: the folder {folder} {what}")


def _check_output_dir(path: str, option: str) -> None:
    """``path`` is a directory or can be made one (``mkdir -p``): no file in the way."""
    target = Path(path)
    for folder in (target, *target.parents):
        if folder.exists():
            if not folder.is_dir():
                raise SambiasError(f"{option}: {folder} exists and is not a directory")
            return


def _npz_target(path: str) -> str:
    """The file numpy.savez really writes: it appends '.npz' to a name without it."""
    return path if path.endswith(".npz") else path + ".npz"


def _check_precision(text: str) -> None:
    if text == "float64":
        return
    head, _, digits = text.partition(":")
    if head != "mp" or not digits.isdigit() or not digits.isascii():
        raise SambiasError(f"--precision: expected float64 or mp:DIGITS (e.g. mp:50), got {text!r}")
    if len(digits) > 6 or not MIN_MP_DIGITS <= int(digits) <= MAX_MP_DIGITS:
        raise SambiasError(f"--precision: mp digits must be between {MIN_MP_DIGITS} and {MAX_MP_DIGITS}, "
                           f"got {digits if len(digits) <= 12 else digits[:12] + '...'}")


def _check_derivable(problem) -> None:
    entries = problem.n * problem.dim
    if problem.depth > DERIVE_MAX_DEPTH or entries > DERIVE_MAX_ENTRIES:
        raise SambiasError(
            f"symbolic derivation is limited to depth <= {DERIVE_MAX_DEPTH} and n*d <= "
            f"{DERIVE_MAX_ENTRIES} data entries (this problem: depth {problem.depth}, n*d = {entries}); "
            f"`sambias simulate` takes larger problems")


# --- commands -------------------------------------------------------------------
def _cmd_derive(args: argparse.Namespace) -> int:
    from .problem import load_problem
    from .symbolic import derive

    if args.standalone and not args.latex:
        raise SambiasError("--standalone needs --latex")
    if args.out is not None:
        _check_output_file(args.out, "--out")
    problem = load_problem(args.problem)
    _check_derivable(problem)
    system = derive(problem)
    text = system.to_latex(standalone=args.standalone) if args.latex else system.to_text()
    _write(text, args.out)
    return EXIT_OK


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .horizon import parse_horizon
    from .problem import load_problem

    problem = load_problem(args.problem)
    horizon = parse_horizon(args.horizon, time=args.time)
    _check_precision(args.precision)
    if args.json:
        _check_output_file(args.json, "--json")
    if args.save:
        _check_output_file(args.save, "--save")  # a directory would silently become DIR.npz
        _check_output_file(_npz_target(args.save), "--save")
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
        try:
            trajectory.save(args.save)
        except OSError as exc:
            raise SambiasError(f"--save: cannot write {args.save} ({exc.strerror or exc})") from None
    print(_summary(trajectory, document))
    if not trajectory.ok:
        # CONTRACT.md: a run that stopped early says why on stderr (one line).
        print(f"sambias simulate: stopped early: {' '.join(str(document['status']).split())}", file=sys.stderr)
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
                   out=sys.stdout, err=sys.stderr, power=args.power)


def _cmd_report(args: argparse.Namespace) -> int:
    from .reports import write_report

    out = args.out or ("reports/canonical" if args.canonical else "report")
    _check_output_dir(out, "--out")  # before any claim runs: they take minutes
    if args.canonical:
        from .reports.canonical import make_canonical

        if args.claims or args.phases:
            raise SambiasError("--canonical: makes the whole report with its own sweep; drop CLAIM and --phases")
        result = make_canonical(Path(out), quick=args.quick)
    else:
        result = write_report(Path(out), claim_ids=list(args.claims) or None, quick=args.quick,
                              progress=True, phases=Path(args.phases) if args.phases else None)
    print(f"report written to {result.markdown} ({result.pdf_note})")
    return EXIT_OK if result.all_hold else EXIT_FAIL


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import command

    return command(args.sweep, store=args.store, workers=args.workers, dask=args.dask, dask_local=args.dask_local,
                   resume=args.resume, quick=args.quick, show=args.show, csv=args.csv, parquet=args.parquet,
                   progress=not args.no_progress, out=sys.stdout, ensemble=not args.no_ensemble)
