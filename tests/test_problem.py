"""Problem files: every bad input is rejected with exit status 2 and one line naming the fault."""

from __future__ import annotations

import json
import textwrap
from decimal import Decimal

import numpy as np
import pytest

from sambias import Init, Problem, ProblemError, load_problem
from sambias.cli import main
from sambias.examples import example_names, example_path
from sambias.horizon import parse_horizon
from sambias.problem import is_linearly_separable

GOOD = """\
depth = 2
algorithm = "l2-sam"
rho = 0.05
loss = "exp"
X = [[3.0, 2.0, 1.0]]
y = [1]

[init]
scale = 0.1
"""


def _write(tmp_path, text, name="p.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _reject(tmp_path, capsys, text, *needles, name="p.toml"):
    """Run `sambias simulate` on the file: exit 2, one stderr line containing every needle."""
    path = _write(tmp_path, text, name)
    code = main(["simulate", str(path), "--horizon", "10"])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in err
    return lines[0]


def test_good_file_reads_with_defaults(tmp_path):
    p = load_problem(_write(tmp_path, GOOD.replace('loss = "exp"\n', "")))
    assert (p.depth, p.algorithm, p.rho, p.loss, p.n, p.dim) == (2, "l2-sam", 0.05, "exp", 1, 3)
    assert p.initial_weights().tolist() == [[0.1] * 3] * 2
    assert p.to_dict()["loss"] == "exp"


def test_json_and_toml_agree(tmp_path):
    t = load_problem(_write(tmp_path, GOOD))
    j = load_problem(_write(tmp_path, json.dumps(t.to_dict()), name="p.json"))
    assert j.to_dict() == t.to_dict()


def test_npz_data(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.array([[1.0, 2.0], [-1.0, 0.5]]), y=np.array([1, -1]))
    p = load_problem(_write(tmp_path, 'depth = 1\nalgorithm = "gd"\ndata = "d.npz"\n[init]\nscale = 0.0\n'))
    assert p.X.shape == (2, 2) and p.y.tolist() == [1.0, -1.0]


def test_npz_with_pickled_objects_is_refused(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", X=np.array([[1.0], [2.0]], dtype=object), y=np.array([1, 1]))
    _reject(tmp_path, capsys, 'depth = 1\nalgorithm = "gd"\ndata = "d.npz"\n[init]\nscale = 0.0\n',
            "data", "cannot read")


@pytest.mark.parametrize("text, needles", [
    ("depth = 2\nalgorithm = [\n", ("not valid TOML",)),
    ("colour = 1\n" + GOOD, ("unknown key 'colour'",)),
    (GOOD.replace("scale = 0.1", "scale = 0.1\nshape = 2"), ("unknown key 'init.shape'",)),
    (GOOD.replace("depth = 2\n", ""), ("missing key 'depth'",)),
    (GOOD.replace("rho = 0.05\n", ""), ("missing key 'rho'",)),
    (GOOD.replace("X = [[3.0, 2.0, 1.0]]\n", ""), ("missing key 'X'",)),
    (GOOD.replace("depth = 2", 'depth = "two"'), ("depth", "expected an integer")),
    (GOOD.replace("depth = 2", "depth = 2.0"), ("depth", "expected an integer")),
    (GOOD.replace("rho = 0.05", 'rho = "big"'), ("rho", "expected a number")),
    (GOOD.replace("X = [[3.0, 2.0, 1.0]]", "X = [[3.0, 2.0], [1.0]]").replace("y = [1]", "y = [1, 1]"),
     ("X", "ragged")),
    (GOOD.replace("X = [[3.0, 2.0, 1.0]]", "X = []"), ("X", "empty")),
    (GOOD.replace("X = [[3.0, 2.0, 1.0]]", "X = [[]]"), ("X", "empty")),
    (GOOD.replace("X = [[3.0, 2.0, 1.0]]", 'X = [[3.0, "a", 1.0]]'), ("X[0][1]", "expected a number")),
    (GOOD.replace("y = [1]", "y = [2]"), ("y", "-1 or +1")),
    (GOOD.replace("y = [1]", "y = [1, -1]"), ("y", "2 labels", "1 rows")),
    (GOOD.replace("X = [[3.0, 2.0, 1.0]]", "X = [[3.0, nan, 1.0]]"), ("X[0][1]", "finite")),
    (GOOD.replace("X = [[3.0, 2.0, 1.0]]", "X = [[3.0, inf, 1.0]]"), ("X[0][1]", "finite")),
    (GOOD.replace("X = [[3.0, 2.0, 1.0]]", "X = [[3.0, 1e400, 1.0]]"), ("X[0][1]", "float64")),
    (GOOD.replace("rho = 0.05", "rho = nan"), ("rho", "finite")),
    (GOOD.replace("scale = 0.1", "scale = -inf"), ("init.scale", "finite")),
    (GOOD.replace("depth = 2", "depth = 0"), ("depth", ">= 1")),
    (GOOD.replace("rho = 0.05", "rho = -0.1"), ("rho", ">= 0")),
    (GOOD.replace('"l2-sam"', '"adam"'), ("algorithm", "'adam'")),
    (GOOD.replace('"exp"', '"hinge"'), ("loss", "'hinge'")),
    (GOOD.replace("scale = 0.1", "scale = 0.1\nlayers = [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]"),
     ("init", "exactly one")),
    (GOOD.replace("scale = 0.1", ""), ("init", "exactly one")),
    (GOOD.replace("scale = 0.1", "layers = [[1.0, 1.0, 1.0]]"), ("init.layers", "2 rows of 3")),
    (GOOD.replace("scale = 0.1", "layers = [[1.0, 1.0], [1.0, 1.0]]"), ("init.layers", "2 rows of 3")),
    (GOOD.replace("X = [[3.0, 2.0, 1.0]]", "X = [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]")
         .replace("y = [1]", "y = [1, -1]"), ("not linearly separable", "LP")),
    (GOOD.replace("X = [[3.0, 2.0, 1.0]]", "X = [[0.0, 0.0, 0.0]]"), ("not linearly separable",)),
])
def test_bad_problem_file_exits_2_with_one_line(tmp_path, capsys, text, needles):
    line = _reject(tmp_path, capsys, text, *needles)
    assert line.startswith("sambias simulate: error: ")
    assert "p.toml" in line  # the file is named


@pytest.mark.parametrize("text, needles", [
    ('{"depth": 2,', ("not valid JSON",)),
    ('{"depth": 1, "algorithm": "gd", "X": [[NaN]], "y": [1], "init": {"scale": 0}}', ("NaN",)),
    ('[1, 2]', ("table of keys",)),
])
def test_bad_json_file(tmp_path, capsys, text, needles):
    _reject(tmp_path, capsys, text, *needles, name="p.json")


def test_missing_file(tmp_path, capsys):
    assert main(["simulate", str(tmp_path / "nope.toml"), "--horizon", "1"]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("horizon", ["0", "-5", "abc", "nan", "inf", "1e", ""])
def test_bad_horizon(tmp_path, capsys, horizon):
    path = _write(tmp_path, GOOD)
    assert main(["simulate", str(path), "--horizon", horizon]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "horizon" in err[0]


def test_horizon_past_float64_is_exact():
    h = parse_horizon("1e400")
    assert h.value == Decimal("1e400") and h.log10 == 400.0 and h.as_float() == float("inf")
    assert parse_horizon("2.5").log10 == pytest.approx(np.log10(2.5), rel=1e-15)
    assert parse_horizon("1e-3").log10 == pytest.approx(-3.0)


def test_python_api_validates_too():
    with pytest.raises(ProblemError, match="depth: must be >= 1"):
        Problem(depth=0, algorithm="gd", X=[[1.0]], y=[1], init=Init(scale=1.0))
    with pytest.raises(ProblemError, match="not linearly separable"):
        Problem(depth=1, algorithm="gd", X=np.array([[1.0], [1.0]]), y=np.array([1, -1]), init=Init(scale=1.0))
    with pytest.raises(ProblemError, match="NaN or Inf"):
        Problem(depth=1, algorithm="gd", X=np.array([[np.nan]]), y=np.array([1]), init=Init(scale=1.0))
    p = Problem(depth=3, algorithm="usam", rho=0.1, X=[[1.0, -2.0]], y=[-1], init=Init(scale=0.5))
    assert p.replace(init_scale=2.0).initial_weights()[0, 0] == 2.0
    with pytest.raises(ProblemError, match="rho"):
        p.replace(rho=-1.0)


def test_separability_lp():
    assert is_linearly_separable(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([1, -1]))
    # XOR is the classic non-separable set (no bias term here: points through the origin).
    X = np.array([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])
    assert not is_linearly_separable(X, np.array([1, 1, -1, -1]))


def test_every_example_loads_and_covers_every_setting():
    problems = [load_problem(example_path(n)) for n in example_names()]
    settings = {(p.depth, p.algorithm, p.n > 1) for p in problems}
    for required in [(1, "gd", True), (1, "l2-sam", True), (1, "linf-sam", True), (2, "gd", False),
                     (2, "linf-sam", False), (2, "l2-sam", False), (2, "gd", True)]:
        assert required in settings
    linf2 = [p for p in problems if p.depth == 2 and p.algorithm == "linf-sam"]
    sums = {float(p.initial_weights().sum(axis=0).max()) for p in linf2}
    assert min(sums) < 2 * 0.5 < max(sums)  # a small and a large init against 2 rho


def test_example_prefix(capsys):
    assert load_problem("example:gd-depth2").name == "gd-depth2"
    assert main(["simulate", "example:no-such", "--horizon", "1"]) == 2
    assert "no built-in example 'no-such'" in capsys.readouterr().err
