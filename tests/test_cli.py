"""The command line end to end: help, derive, simulate (schema), verify --list, report."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sambias.cli import main
from sambias.examples import example_names, example_path

COMMANDS = ["derive", "simulate", "verify", "report"]


def check_trajectory_document(doc: dict, d: int) -> None:
    """Structural check of the ``sambias.trajectory/1`` document of CONTRACT.md."""
    assert doc["schema"] == "sambias.trajectory/1"
    for key in ("problem", "status", "log10_t_final", "tau_final", "direction_final",
                "log10_norm_beta_final", "log10_loss_final", "beta_collapsed", "dominant", "samples"):
        assert key in doc, key
    assert isinstance(doc["status"], str) and doc["status"]
    assert isinstance(doc["beta_collapsed"], bool)
    for key in ("log10_t_final", "tau_final", "log10_loss_final"):
        assert isinstance(doc[key], float) and math.isfinite(doc[key]), key
    if doc["beta_collapsed"]:
        assert doc["direction_final"] is None
    else:
        u = np.array(doc["direction_final"], float)
        assert u.shape == (d,) and abs(np.linalg.norm(u) - 1.0) < 1e-12
    previous = -math.inf
    for switch in doc["dominant"]:
        assert set(switch) >= {"index", "log10_t"}
        assert isinstance(switch["index"], int) and 0 <= switch["index"] < d
        assert switch["log10_t"] >= previous
        previous = switch["log10_t"]
    for a, b in zip(doc["dominant"], doc["dominant"][1:]):
        assert a["index"] != b["index"]
    samples = doc["samples"]
    beta = np.array(samples["beta"], float)
    assert beta.ndim == 2 and beta.shape[1] == d and 2 <= beta.shape[0] <= 300
    assert len(samples["log10_t"]) == beta.shape[0]
    times = [v for v in samples["log10_t"] if v is not None]
    assert times == sorted(times)
    assert doc["problem"]["depth"] >= 1 and "init" in doc["problem"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_command(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: sambias " + command in capsys.readouterr().out


def test_python_dash_m_and_usage_errors():
    out = subprocess.run([sys.executable, "-m", "sambias", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and all(c in out.stdout for c in COMMANDS)
    out = subprocess.run([sys.executable, "-m", "sambias", "simulate"], capture_output=True, text=True)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "--horizon" in out.stderr
    out = subprocess.run([sys.executable, "-m", "sambias", "frobnicate"], capture_output=True, text=True)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", example_names())
def test_simulate_every_example_writes_schema_json(name, tmp_path, capsys):
    out = tmp_path / "out.json"
    code = main(["simulate", str(example_path(name)), "--horizon", "100", "--json", str(out)])
    doc = json.loads(out.read_text())
    d = len(doc["problem"]["X"][0])
    check_trajectory_document(doc, d)
    assert doc["log10_t_final"] == pytest.approx(2.0, abs=1e-6) or not doc["status"] == "ok"
    assert code == (0 if doc["status"] == "ok" else 1)
    assert "status" in capsys.readouterr().out


def test_simulate_past_float64(tmp_path):
    out = tmp_path / "far.json"
    assert main(["simulate", "example:linf-sam-depth2-large", "--horizon", "1e400", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    check_trajectory_document(doc, 4)
    assert doc["log10_t_final"] == pytest.approx(400.0, abs=1e-6)
    assert doc["log10_loss_final"] < -300  # the loss is far below float64's smallest number
    assert np.argmax(np.abs(doc["direction_final"])) == 0


def test_simulate_rejects_bad_options(capsys):
    assert main(["simulate", "example:gd-depth2", "--horizon", "10", "--rtol", "-1"]) == 2
    assert "--rtol" in capsys.readouterr().err
    assert main(["simulate", "example:gd-depth2", "--horizon", "10", "--method", "Euler"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Euler" in err[0]
    assert main(["simulate", "example:gd-depth2", "--horizon", "10", "--precision", "mp:x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "precision" in err[0]


def test_derive_prints_equations(tmp_path, capsys):
    assert main(["derive", "example:l2-sam-depth2"]) == 0
    text = capsys.readouterr().out
    assert "w" in text and len(text.splitlines()) > 3
    assert main(["derive", "example:l2-sam-depth2", "--latex"]) == 0
    latex = capsys.readouterr().out
    assert "\\begin{align" in latex and "\\documentclass" not in latex
    out = tmp_path / "flow.tex"
    assert main(["derive", "example:l2-sam-depth2", "--latex", "--standalone", "--out", str(out)]) == 0
    assert "\\documentclass" in out.read_text() and "\\end{document}" in out.read_text()
    assert main(["derive", "example:l2-sam-depth2", "--standalone"]) == 2


def test_verify_list(capsys):
    assert main(["verify", "--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) >= 8
    assert any("l1" in line for line in lines)


def test_verify_unknown_claim(capsys):
    assert main(["verify", "no-such-claim"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-claim" in err[0]


# --- issue 10, item 4 (CLI) and issue 13: options checked before any work -------------
def _one_error_line(capsys, *needles) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.mark.parametrize("precision, needles", [
    ("mp:100000", ("between 10 and 300", "100000")),
    ("mp:301", ("between 10 and 300",)),
    ("mp:9", ("between 10 and 300",)),
    ("mp:" + "9" * 5000, ("between 10 and 300",)),
    ("mp:-5", ("mp:DIGITS",)),
    ("mp:٣٠", ("mp:DIGITS",)),  # Arabic-Indic digits pass str.isdigit but are not DIGITS
    ("float32", ("mp:DIGITS",)),
])
def test_precision_limits(precision, needles, capsys):
    assert main(["simulate", "example:gd-depth2", "--horizon", "1e-3", "--precision", precision]) == 2
    _one_error_line(capsys, "--precision", *needles)


def test_save_and_json_targets_checked_before_the_run(tmp_path, capsys, monkeypatch):
    import sambias.flows

    def no_run(*args, **kwargs):
        raise AssertionError("the simulation ran before the output path was checked")

    monkeypatch.setattr(sambias.flows, "simulate", no_run)
    cases = [(["--save", str(tmp_path / "missing" / "x.npz")], ("--save", "does not exist")),
             (["--save", str(tmp_path)], ("--save", "is a directory")),
             (["--json", str(tmp_path)], ("--json", "is a directory")),
             (["--json", str(tmp_path / "missing" / "x.json")], ("--json", "does not exist"))]
    (tmp_path / "adir.npz").mkdir()
    cases.append((["--save", str(tmp_path / "adir")], ("--save", "adir.npz is a directory")))
    for extra, needles in cases:
        assert main(["simulate", "example:gd-depth2", "--horizon", "1e-3", *extra]) == 2, extra
        _one_error_line(capsys, *needles)
    monkeypatch.undo()
    # control: a good target is written
    assert main(["simulate", "example:gd-depth2", "--horizon", "1e-3", "--save", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run.npz").is_file() and not (tmp_path / "run").exists()


def test_report_out_naming_a_file_is_refused_before_any_claim(tmp_path, capsys, monkeypatch):
    import sambias.reports

    def no_run(*args, **kwargs):
        raise AssertionError("write_report ran before --out was checked")

    monkeypatch.setattr(sambias.reports, "write_report", no_run)
    existing = tmp_path / "report.md"
    existing.write_text("mine")
    for out in (existing, existing / "sub"):
        assert main(["report", "--out", str(out), "--quick"]) == 2
        _one_error_line(capsys, "--out", "exists and is not a directory")
    assert existing.read_text() == "mine"


def test_derive_size_limit(tmp_path, capsys):
    path = tmp_path / "wide.json"
    path.write_text(json.dumps({"depth": 1, "algorithm": "gd", "X": [[1.0] * 600], "y": [1], "init": {"scale": 0.1}}))
    assert main(["derive", str(path)]) == 2
    _one_error_line(capsys, "n*d <= 512", "n*d = 600", "simulate")
    path.write_text(json.dumps({"depth": 25, "algorithm": "gd", "X": [[1.0]], "y": [1], "init": {"scale": 0.1}}))
    assert main(["derive", str(path)]) == 2
    _one_error_line(capsys, "depth <= 24", "depth 25")
    assert main(["derive", str(path), "--out", str(tmp_path / "no" / "f.txt")]) == 2
    _one_error_line(capsys, "--out", "does not exist")


@pytest.mark.parametrize("horizon", ["1e400", "1e300", "1e99999"])
def test_rescaled_horizon_past_float64_is_one_line(horizon, capsys):
    assert main(["simulate", "example:gd-depth2", "--horizon", horizon, "--time", "rescaled"]) == 2
    _one_error_line(capsys, "rescaled horizon", "below 1e300")


def test_stopped_run_says_why_on_stderr(tmp_path, capsys):
    # l2-SAM from w = 0: the perturbation is 0/0 at once (CONTRACT: "a run that stopped
    # early exits non-zero and says why on stderr").
    path = tmp_path / "zero.toml"
    path.write_text('depth = 2\nalgorithm = "l2-sam"\nrho = 0.05\nX = [[3.0, 2.0]]\ny = [1]\n[init]\nscale = 0.0\n')
    code = main(["simulate", str(path), "--horizon", "10"])
    out = capsys.readouterr()
    status = next(l for l in out.out.splitlines() if l.startswith("status")).split(None, 1)[1]
    assert code == 1 and status != "ok"
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sambias simulate: stopped early: ") and status[:20] in lines[0]


def test_sigterm_exits_143_with_one_line():
    proc = subprocess.Popen([sys.executable, "-m", "sambias", "verify"],  # minutes of claims
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4.0)  # imports done, the claims under way
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert err.strip().splitlines() == ["sambias verify: terminated"]
    assert "Traceback" not in err


def test_closed_stdout_pipe_exits_quietly():
    proc = subprocess.Popen([sys.executable, "-m", "sambias", "verify", "--list"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # `| head -0`: the reader is gone before the first line
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert err == b"" and proc.returncode == 141


def test_main_restores_the_sigterm_handler(capsys):
    before = signal.getsignal(signal.SIGTERM)
    assert main(["verify", "--list"]) == 0
    assert signal.getsignal(signal.SIGTERM) is before
    capsys.readouterr()


def test_an_internal_error_is_one_line_with_its_own_status(capsys, monkeypatch):
    import sambias.flows

    def broken(*args, **kwargs):
        return [][0]  # an IndexError inside the toolkit

    monkeypatch.setattr(sambias.flows, "simulate", broken)
    monkeypatch.delenv("SAMBIAS_TRACEBACK", raising=False)
    assert main(["simulate", "example:gd-depth2", "--horizon", "1e-3"]) == 70
    _one_error_line(capsys, "internal error: IndexError", "test_cli.py", "please report")
    monkeypatch.setenv("SAMBIAS_TRACEBACK", "1")
    with pytest.raises(IndexError):
        main(["simulate", "example:gd-depth2", "--horizon", "1e-3"])


def test_control_characters_in_user_text_stay_on_one_escaped_line(tmp_path, capsys):
    """Found by the slow fuzz run: an unknown key "\\x1e" (a record separator, which
    str.splitlines takes for a line break) was echoed raw into the error line."""
    from sambias.cli import main

    bad = tmp_path / "ctl.json"
    bad.write_text('{"depth": 2, "algorithm": "gd", "X": [[1.0]], "y": [1], "init": {"\\u001e\\u2028": 1}}')
    assert main(["simulate", str(bad), "--horizon", "1"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "\\x1e\\u2028" in err and "unknown key" in err
