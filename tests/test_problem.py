"""Problem files: every bad input is rejected with exit status 2 and one line naming the fault."""

from __future__ import annotations

import json
import textwrap
import time
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


# --- issue 10, item 4: hostile input stays one line, refused before heavy work -----------
GD1 = 'depth = 1\nalgorithm = "gd"\n[init]\nscale = 0.1\n'


def _timed_reject(tmp_path, capsys, text, *needles, name="p.toml", bound=10.0):
    """`_reject`, and it must not hang: a refusal comes well inside `bound` seconds."""
    start = time.perf_counter()
    line = _reject(tmp_path, capsys, text, *needles, name=name)
    assert time.perf_counter() - start < bound, line
    return line


@pytest.mark.parametrize("name, text", [
    ("p.json", '{"depth": 2, "algorithm": "gd", "X": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    ("p.toml", 'depth = 2\nalgorithm = "gd"\nX = ' + "[" * 100_000 + "]" * 100_000 + "\n"),
    ("p.toml", "a = " + "{b = " * 5000 + "1" + "}" * 5000 + "\n"),
])
def test_deeply_nested_file_is_one_line(tmp_path, capsys, name, text):
    _timed_reject(tmp_path, capsys, text, "nested too deeply", name=name)


@pytest.mark.parametrize("name, text", [
    ("p.json", '{"depth": 1, "algorithm": "gd", "X": [[' + "9" * 5000 + ']], "y": [1], "init": {"scale": 0}}'),
    ("p.toml", GD1 + "X = [[" + "9" * 5000 + "]]\ny = [1]\n"),
    ("p.json", '{"depth": 1, "algorithm": "gd", "X": [[1e99999999999999999999999]], "y": [1], "init": {"scale": 0}}'),
])
def test_numbers_the_parser_cannot_hold_are_one_line(tmp_path, capsys, name, text):
    _timed_reject(tmp_path, capsys, text, "number", name=name)


def test_npz_that_is_not_an_archive(tmp_path, capsys):
    (tmp_path / "text.npz").write_text("hello")
    np.save(tmp_path / "plain.npy", np.ones(3))
    (tmp_path / "plain.npy").rename(tmp_path / "npy.npz")  # np.load would happily read it
    for target, needles in [("/dev/null", ("not a regular file",)), (str(tmp_path), ("is a directory",)),
                            ("text.npz", ("not an .npz archive",)), ("npy.npz", ("not an .npz archive",)),
                            ("missing.npz", ("no such file",))]:
        _timed_reject(tmp_path, capsys, f'data = "{target}"\n' + GD1, "data", *needles)


def test_npz_too_large_is_refused_from_its_header(tmp_path, capsys):
    # 10^7 + 1 zeros compress to ~10 KiB: the refusal must come from the declared shape.
    # (broadcast: written in chunks, never 80 MB in memory)
    np.savez_compressed(tmp_path / "big.npz", X=np.broadcast_to(0.0, (1, 10_000_001)), y=np.ones(1))
    _timed_reject(tmp_path, capsys, 'data = "big.npz"\n' + GD1, "data: X", "10000001", "limit of 10000000")


def test_problem_file_that_is_not_a_regular_file(tmp_path, capsys):
    for target, needle in [(tmp_path, "is a directory"), ("/dev/zero", "not a regular file")]:
        assert main(["derive", str(target)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0]


@pytest.mark.parametrize("text, needles", [
    (GOOD.replace("depth = 2", "depth = 12345678901234567890123"), ("depth", "~1.2e22", "limit of 1000")),
    (GOOD.replace("depth = 2", "depth = 1001").replace("scale = 0.1", "scale = 1.0"), ("depth", "limit of 1000")),
    (GOOD.replace("X = [[3.0, 2.0, 1.0]]", "X = [[1.0, 0.5, 0.25, 0.125]]"), ()),  # control: accepted below
    (GOOD.replace("rho = 0.05", "rho = 1e308"), ("init and rho", "1e616", "limit of 1e150")),
    (GOOD.replace("scale = 0.1", "scale = 1e300"), ("init", "1e600", "limit of 1e150")),
])
def test_limits_are_stated(tmp_path, capsys, text, needles):
    if not needles:
        assert main(["simulate", str(_write(tmp_path, text)), "--horizon", "1e-3"]) == 0
        capsys.readouterr()
        return
    _timed_reject(tmp_path, capsys, text, *needles)


def test_size_limits_before_conversion(tmp_path, capsys):
    wide = {"depth": 2, "algorithm": "gd", "X": [[1.0] * 1_000_000], "y": [1], "init": {"scale": 0.1}}
    _timed_reject(tmp_path, capsys, json.dumps(wide), "depth * d = 2 * 1000000", "limit of 6000", name="p.json")
    with pytest.raises(ProblemError, match=r"X: 10000002 numbers is above the limit of 10000000 \(n\*d\)"):
        Problem(depth=1, algorithm="gd", X=np.broadcast_to(1.0, (5_000_001, 2)), y=np.ones(5_000_001),
                init=Init(scale=0.1))
    with pytest.raises(ProblemError, match="limit of 6000"):
        Problem(depth=2, algorithm="gd", X=np.ones((1, 3001)), y=[1], init=Init(scale=0.1))
    # the largest allowed width still loads
    assert Problem(depth=2, algorithm="gd", X=np.ones((1, 3000)), y=[1], init=Init(scale=0.1)).dim == 3000


def test_start_scale_limit_boundary():
    ok = Problem(depth=2, algorithm="l2-sam", rho=0.0, X=[[1.0]], y=[1], init=Init(scale=1e74))
    assert ok.init.scale == 1e74  # (1e74)^2 = 1e148 < 1e150
    with pytest.raises(ProblemError, match="1e152"):
        Problem(depth=2, algorithm="l2-sam", rho=1e76, X=[[1.0]], y=[1], init=Init(scale=0.0))
    # GD never perturbs: its rho does not count
    assert Problem(depth=2, algorithm="gd", rho=1e300, X=[[1.0]], y=[1], init=Init(scale=1.0)).rho == 1e300


def test_many_rows_load_quickly(tmp_path):
    np.savez(tmp_path / "rows.npz", X=np.tile([1.0, 0.5], (200_000, 1)), y=np.ones(200_000))
    start = time.perf_counter()
    p = load_problem(_write(tmp_path, 'data = "rows.npz"\n' + GD1))
    assert p.n == 200_000 and time.perf_counter() - start < 20.0


@pytest.mark.parametrize("text", [
    '{"depth": 2, "depth": 3, "algorithm": "gd", "X": [[1.0]], "y": [1], "init": {"scale": 0.1}}',
    '{"depth": 2, "algorithm": "gd", "X": [[1.0]], "y": [1], "init": {"scale": 0.1, "scale": 0.2}}',
])
def test_json_duplicate_keys(tmp_path, capsys, text):
    _reject(tmp_path, capsys, text, "duplicate key", name="p.json")
    assert json.loads(text)  # control: plain json would have taken the last value silently


def test_toml_duplicate_keys_stay_refused(tmp_path, capsys):
    _reject(tmp_path, capsys, GOOD + "scale = 0.2\n", "not valid TOML")


# --- issue 10, item 5: the separability LP is scale-aware --------------------------------
@pytest.mark.parametrize("X, y", [
    ([[1e300, 1.0]], [1]),
    ([[1e300, 1.0], [1e300, -1.0]], [1, 1]),
    ([[1.0, 1e-20], [-1.0, 1e-20]], [1, 1]),      # only beta_2 >= 1e20 separates
    ([[1e-300, 0.0], [0.0, 1e-300]], [1, -1]),
    ([[1e200, 1e-200], [-1e200, 1e-200]], [1, 1]),
])
def test_separable_at_any_scale(X, y):
    assert is_linearly_separable(np.array(X), np.array(y))
    Problem(depth=1, algorithm="gd", X=X, y=y, init=Init(scale=0.1))


@pytest.mark.parametrize("X, y", [
    ([[1e300, 1.0], [1e300, 1.0]], [1, -1]),
    ([[1e-300, 1e-300], [-1e-300, -1e-300], [1e-300, -1e-300], [-1e-300, 1e-300]], [1, 1, -1, -1]),
    ([[1e300, 1e-300], [-1e300, 1e-300], [0.0, -1e-300]], [1, 1, 1]),
    ([[0.0, 0.0], [1.0, 1.0]], [1, 1]),
])
def test_non_separable_stays_refused_at_any_scale(X, y):
    assert not is_linearly_separable(np.array(X), np.array(y))
    with pytest.raises(ProblemError, match="not linearly separable"):
        Problem(depth=1, algorithm="gd", X=X, y=y, init=Init(scale=0.1))


def test_unscaled_lp_misjudges_the_wide_example():
    """Negative control: the LP without equilibration calls [[1e300, 1]] non-separable, so
    the scale-aware test above does test the equilibration."""
    from scipy.optimize import linprog

    res = linprog(np.zeros(2), A_ub=-np.array([[1e300, 1.0]]), b_ub=[-1.0], bounds=[(None, None)] * 2,
                  method="highs")
    assert res.status != 0


def test_oversized_problem_file_is_refused_unread(tmp_path, capsys):
    path = tmp_path / "huge.toml"
    with open(path, "wb") as f:
        f.truncate(64 * 2**20 + 1)  # sparse: costs no disk, and must not be read
    assert main(["derive", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "above the limit of 67108864" in err[0]


@pytest.mark.slow
def test_many_rows_simulate_ends_with_a_status(tmp_path, capsys):
    """2x10^5 rows (issue 10 found a > 20 s hang): a short run ends, with a status."""
    np.savez(tmp_path / "rows.npz", X=np.tile([1.0, 0.5], (200_000, 1)), y=np.ones(200_000))
    path = _write(tmp_path, 'data = "rows.npz"\n' + GD1)
    start = time.perf_counter()
    assert main(["simulate", str(path), "--horizon", "1"]) in (0, 1)
    assert time.perf_counter() - start < 60.0
    assert "status" in capsys.readouterr().out
