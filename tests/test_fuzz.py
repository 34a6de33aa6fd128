"""Fuzzing the problem parser and the command line (issue 10, item 6).

Every case must end in one of three ways, within a time bound: success (exit 0), a run
that stopped early (exit 1, one stderr line saying why), or bad input (exit 2, exactly one
stderr line) -- never a traceback, never a hang.  The inputs are random mutations of the
shipped example files, random bytes, problems with extreme numbers in every field, and
random option values.  The CLI runs in-process (``sambias.cli.main``) for speed, with a
handful of cases through a real subprocess.  The default suite runs a few hundred
derandomized cases; ``pytest -m slow tests/test_fuzz.py`` runs thousands of random ones.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sambias.cli import main
from sambias.errors import ProblemError
from sambias.examples import example_names, example_path
from sambias.horizon import parse_horizon

BOUND_S = 20.0  # a case slower than this is a hang (a refusal takes milliseconds)
HORIZON = "1e-3"  # short runs: the fuzz is after the input handling, not the dynamics

EXAMPLES = {name: example_path(name).read_text() for name in example_names()}
EXTREMES = ["0", "-0.0", "1e308", "-1e308", "1.7976931348623157e308", "5e-324", "1e-320", "1e400",
            "-1e400", "1e-400", "nan", "inf", "-inf", "1e300", "1e150", "1e75", "1e-300",
            "12345678901234567890123", "9" * 40, "-1", "0.5", "1001", "2", "true", '"x"', "[]",
            "[[]]", "[[1.0]]", "{}", '""', "1e99999999999999999999"]
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")

DEFAULT = settings(max_examples=45, deadline=None, derandomize=True, database=None,
                   suppress_health_check=list(HealthCheck))
LONG = settings(max_examples=1000, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str
    seconds: float


class _Hang(BaseException):  # flows turn an Exception into a status; a hang must surface
    pass


def run_cli(argv: list[str]) -> Outcome:
    """``main(argv)`` in-process with captured streams and a hang alarm."""
    def alarm(signum, frame):
        raise _Hang(f"no answer within {BOUND_S} s: {argv}")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, BOUND_S)
    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse's own usage errors
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return Outcome(code, out.getvalue(), err.getvalue(), time.perf_counter() - start)


def check(outcome: Outcome, command: str) -> None:
    """The contract: exit 0; or 1 with one 'stopped early' line; or 2 with one error line."""
    lines = outcome.err.strip().splitlines()
    assert "Traceback" not in outcome.err, outcome.err
    assert outcome.seconds < BOUND_S
    if outcome.code == 0:
        return
    assert len(lines) == 1, (outcome.code, outcome.err)
    if outcome.code == 2:
        assert lines[0].startswith(("sambias " + command + ": error: ", "sambias: error: ")), lines[0]
    elif outcome.code == 1:
        assert lines[0].startswith("sambias " + command + ": stopped early: "), lines[0]
    else:
        raise AssertionError(f"exit status {outcome.code}: {outcome.err}")


def simulate_file(tmp: Path, content: str | bytes, suffix: str) -> Outcome:
    path = tmp / f"case{suffix}"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    outcome = run_cli(["simulate", str(path), "--horizon", HORIZON])
    check(outcome, "simulate")
    return outcome


# --- strategies ------------------------------------------------------------------------
@st.composite
def mutated_example(draw) -> tuple[str, str]:
    """A shipped example with one to three textual mutations; returns (text, suffix)."""
    name = draw(st.sampled_from(sorted(EXAMPLES)))
    text = EXAMPLES[name]
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["number", "number", "number", "delete-line", "duplicate-line",
                                     "splice", "truncate", "insert"]))
        lines = text.splitlines(keepends=True)
        if kind == "number":
            spans = [m.span() for m in NUMBER.finditer(text)]
            if spans:
                a, b = draw(st.sampled_from(spans))
                text = text[:a] + draw(st.sampled_from(EXTREMES)) + text[b:]
        elif kind == "delete-line" and lines:
            i = draw(st.integers(0, len(lines) - 1))
            text = "".join(lines[:i] + lines[i + 1:])
        elif kind == "duplicate-line" and lines:
            i = draw(st.integers(0, len(lines) - 1))
            text = "".join(lines[:i + 1] + [lines[i]] + lines[i + 1:])
        elif kind == "splice":
            a = draw(st.integers(0, len(text)))
            text = text[:a] + draw(st.text(max_size=8)) + text[a + draw(st.integers(0, 8)):]
        elif kind == "truncate":
            text = text[:draw(st.integers(0, len(text)))]
        elif kind == "insert":
            a = draw(st.integers(0, len(text)))
            text = text[:a] + draw(st.sampled_from(["[", "]", "{", "}", ",", "=", '"', "\n", "[[", "#"])) + text[a:]
    suffix = ".json" if name.endswith("points") and EXAMPLES[name].lstrip().startswith("{") else ".toml"
    return text, suffix


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**30, 10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(min_value=-1e308, max_value=1e308),
    st.sampled_from([0.0, -0.0, 5e-324, 1e-300, 1e300, 1e308, 1e150, 1e75, 0.5, 1.0, -1.0]),
    st.text(max_size=6))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=12)
_reals = st.one_of(st.floats(min_value=-1e308, max_value=1e308),
                   st.sampled_from([0.0, 5e-324, 1e-300, 1e300, 1e308, 1e150, 1e75, -1e300]))


# The flows compile a kernel per (depth, algorithm, loss) -- seconds each, then cached --
# so the default run keeps to a few of them and the long run takes them all.  Valid depths
# stay small: a deep problem is slow to compile, which is the dynamics' cost, not input handling.
BAD_DEPTHS = [0, -1, 1001, 10**22]
FEW = dict(depths=[1, 2], algorithms=["gd", "l2-sam", "linf-sam", "adam", ""], losses=["exp", "hinge"])
ALL = dict(depths=[1, 2, 3, 4], algorithms=["gd", "l2-sam", "linf-sam", "usam", "asam", "adam", ""],
           losses=["exp", "logistic", "hinge"])


@st.composite
def extreme_problem(draw, depths, algorithms, losses) -> dict:
    """A well-formed problem dict, then some fields replaced by extreme or ill-typed values."""
    d = draw(st.integers(1, 4))
    n = draw(st.integers(1, 3))
    depth = draw(st.sampled_from(depths + BAD_DEPTHS))
    problem = {
        "depth": depth,
        "algorithm": draw(st.sampled_from(algorithms)),
        "rho": draw(_reals), "loss": draw(st.sampled_from(losses)),
        "X": draw(st.lists(st.lists(_reals, min_size=d, max_size=d), min_size=n, max_size=n)),
        "y": draw(st.lists(st.sampled_from([1, -1, 1, -1, 0, 2]), min_size=n, max_size=n)),
        "init": {"scale": draw(_reals)},
    }
    if draw(st.booleans()) and isinstance(depth, int) and 1 <= depth <= 4:
        problem["init"] = {"layers": draw(st.lists(st.lists(_reals, min_size=d, max_size=d),
                                                   min_size=depth, max_size=depth))}
    for key in draw(st.lists(st.sampled_from(["depth", "algorithm", "rho", "loss", "X", "y", "init",
                                              "data", "name", "colour"]), max_size=2)):
        problem[key] = draw(_values)
    return problem


_horizons = st.one_of(st.text(max_size=12), st.sampled_from(
    ["0", "-1", "nan", "inf", "1e400", "1e-400", "1e-3", "1e300", "1e-3 ", "1_0", "0x10", "1e", "",
     "1e99999999999999999999", "9" * 5000, "-0", "1e-999999"]))
_precisions = st.one_of(st.text(max_size=8), st.sampled_from(
    # no valid mp:DIGITS: an mp run takes ~15 s even to t = 1e-3
    ["float64", "float64", "float64", "mp:9", "mp:301", "mp:100000", "mp:", "mp:x", "mp:-5", "mp:1e3",
     "mp:٣٠", "MP:20"]))


@st.composite
def simulate_argv(draw) -> list[str]:
    time_kind = draw(st.sampled_from(["physical", "rescaled", "both", "bogus"]))
    horizon = draw(_horizons)
    try:
        h = parse_horizon(horizon, time=time_kind if time_kind == "rescaled" else "physical")
        # a valid horizon is kept short: the dynamics are not what is fuzzed here
        horizon = horizon if h.log10 <= -2 else HORIZON
    except ProblemError:
        pass
    argv = ["simulate", draw(st.sampled_from(["example:gd-depth2", "example:linf-sam-depth3",
                                              "example:l1-l2sam-points", "example:nope"])),
            "--horizon", horizon, "--time", time_kind, "--precision", draw(_precisions)]
    for option, values in [("--rtol", ["1e-6", "0", "-1", "nan", "1e400", "x"]),
                           ("--atol", ["1e-12", "0", "inf"]),
                           ("--method", ["auto", "BDF", "Radau", "Euler", "rk45", ""])]:
        if draw(st.booleans()):
            argv += [option, draw(st.sampled_from(values))]
    return argv


# --- the fuzz tests ----------------------------------------------------------------------
def _mutations(tmp_path_factory, case) -> None:
    text, suffix = case
    simulate_file(tmp_path_factory.mktemp("fz"), text, suffix)


def _bytes(tmp_path_factory, blob, suffix) -> None:
    simulate_file(tmp_path_factory.mktemp("fz"), blob, suffix)


def _structured(tmp_path_factory, problem) -> None:
    text = json.dumps(problem)  # NaN/Infinity appear as JSON's non-standard constants
    outcome = simulate_file(tmp_path_factory.mktemp("fz"), text, ".json")
    if outcome.code == 2:
        assert "case.json" in outcome.err or "precision" in outcome.err or "horizon" in outcome.err


def _arguments(argv) -> None:
    check(run_cli(argv), "simulate")


@DEFAULT
@given(case=mutated_example())
def test_fuzz_mutated_examples(tmp_path_factory, case):
    _mutations(tmp_path_factory, case)


@settings(DEFAULT, max_examples=40)
@given(blob=st.binary(max_size=300), suffix=st.sampled_from([".toml", ".json", ".txt"]))
def test_fuzz_random_bytes(tmp_path_factory, blob, suffix):
    _bytes(tmp_path_factory, blob, suffix)


@settings(DEFAULT, max_examples=70)
@given(problem=extreme_problem(**FEW))
def test_fuzz_extreme_problems(tmp_path_factory, problem):
    _structured(tmp_path_factory, problem)


@settings(DEFAULT, max_examples=50)
@given(argv=simulate_argv())
def test_fuzz_simulate_arguments(argv):
    _arguments(argv)


def test_fuzz_examples_unmutated_still_run(tmp_path):
    """Control: the unmutated examples succeed through the same harness, so a harness that
    refused everything would not pass the fuzz tests by accident."""
    for name, text in EXAMPLES.items():
        suffix = ".json" if text.lstrip().startswith("{") else ".toml"
        assert simulate_file(tmp_path, text, suffix).code == 0, name


def test_check_rejects_contract_breaches():
    """Negative control for `check`: a traceback, two lines, a bare exit 1 and a hang fail."""
    bad = [Outcome(2, "", "sambias simulate: error: a\nsecond line\n", 0.1),
           Outcome(2, "", "Traceback (most recent call last):\n", 0.1),
           Outcome(1, "", "", 0.1),
           Outcome(3, "", "sambias simulate: error: x\n", 0.1),
           Outcome(0, "", "", BOUND_S + 1)]
    for outcome in bad:
        with pytest.raises(AssertionError):
            check(outcome, "simulate")
    check(Outcome(2, "", "sambias simulate: error: one line\n", 0.1), "simulate")


SUBPROCESS_CASES = [
    ('{"depth": 2, "algorithm": "gd", "X": ' + "[" * 50_000 + "]" * 50_000 + "}", ".json"),
    ("\x00\xff\xfe garbage", ".toml"),
    ('{"depth": 1, "depth": 2, "algorithm": "gd", "X": [[1.0]], "y": [1], "init": {"scale": 0.1}}', ".json"),
    (EXAMPLES["gd-depth2"].replace("scale = 0.2", "scale = 1e300"), ".toml"),
]


@pytest.mark.parametrize("text, suffix", SUBPROCESS_CASES, ids=["nested", "bytes", "duplicate", "huge-init"])
def test_fuzz_through_a_subprocess(tmp_path, text, suffix):
    path = tmp_path / f"case{suffix}"
    path.write_text(text, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "sambias", "simulate", str(path), "--horizon", HORIZON],
                          capture_output=True, text=True, timeout=BOUND_S + 30)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("sambias simulate: error: ")


# --- the long run ------------------------------------------------------------------------
@pytest.mark.slow
@LONG
@given(case=mutated_example())
def test_fuzz_long_mutated_examples(tmp_path_factory, case):
    _mutations(tmp_path_factory, case)


@pytest.mark.slow
@LONG
@given(blob=st.binary(max_size=2000), suffix=st.sampled_from([".toml", ".json"]))
def test_fuzz_long_random_bytes(tmp_path_factory, blob, suffix):
    _bytes(tmp_path_factory, blob, suffix)


@pytest.mark.slow
@LONG
@given(problem=extreme_problem(**ALL))
def test_fuzz_long_extreme_problems(tmp_path_factory, problem):
    _structured(tmp_path_factory, problem)


@pytest.mark.slow
@LONG
@given(argv=simulate_argv())
def test_fuzz_long_simulate_arguments(argv):
    _arguments(argv)
