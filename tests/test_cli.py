"""The command line end to end: help, derive, simulate (schema), verify --list, report."""

from __future__ import annotations

import json
import math
import subprocess
import sys
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
