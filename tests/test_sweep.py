"""Sweep files, points, the SQLite store and the `sweep` command's input checks (no simulation here)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sambias import Init, Problem
from sambias.cli import main
from sambias.examples import example_names
from sambias.problem import problem_from_dict
from sambias.sweep import Record, Store, StoreError, SweepError, load_sweep, sweep_from_dict, write_csv
from sambias.sweep.predict import linf_basin, major_coordinate
from sambias.sweep.record import limit_index
from sambias.sweep.spec import apply_values, check_points, generate_data

BASE = {"depth": 2, "algorithm": "linf-sam", "rho": 0.5, "X": [[3.0, 2.0, 1.0]], "y": [1],
        "init": {"layers": [[1.0, 1.0, 0.3], [0.5, 0.5, 0.3]]}}
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "linf-basin.sweep.toml"


def sweep(**over):
    raw = {"problem": BASE, "horizon": "2", "time": "rescaled",
           "axes": {"init.layers.0.0": {"linspace": [0.1, 1.3, 3]}, "rho": [0.25, 0.5]}}
    raw.update(over)
    return sweep_from_dict(raw)


# --- sweep files ---------------------------------------------------------------------------
def test_grid_points_are_the_product_in_file_order_with_exact_keys():
    s = sweep()
    pts = s.points()
    assert len(pts) == 6 and [p.idx for p in pts] == list(range(6))
    assert [dict(p.values)["rho"] for p in pts] == [0.25, 0.5] * 3  # last axis fastest
    assert [dict(p.values)["init.layers.0.0"] for p in pts[::2]] == list(np.linspace(0.1, 1.3, 3))
    # keys carry repr(float): they round-trip to the same double
    for p in pts:
        k = dict(kv.split("=") for kv in p.key.split(";"))
        assert float(k["init.layers.0.0"]) == dict(p.values)["init.layers.0.0"]


def test_logspace_takes_end_values_and_samples_are_seeded_inside_the_ranges():
    s = sweep(axes={"rho": {"logspace": [0.01, 1.0, 3]}})
    assert [dict(p.values)["rho"] for p in s.points()] == pytest.approx([0.01, 0.1, 1.0], rel=1e-12)
    raw = {"init.layers.0.0": {"linspace": [0.1, 1.3, 3]}, "rho": {"logspace": [0.01, 1.0, 3]}}
    a = sweep(axes=raw, sample={"n": 50, "seed": 7}).points()
    b = sweep(axes=raw, sample={"n": 50, "seed": 7}).points()
    c = sweep(axes=raw, sample={"n": 50, "seed": 8}).points()
    assert [p.values for p in a] == [p.values for p in b] != [p.values for p in c]
    rhos = np.array([dict(p.values)["rho"] for p in a])
    u = np.array([dict(p.values)["init.layers.0.0"] for p in a])
    assert rhos.min() >= 0.01 and rhos.max() <= 1.0 and u.min() >= 0.1 and u.max() <= 1.3
    assert (rhos < 0.1).sum() > 10  # log-uniform: a decade each side of 0.1 gets ~half the draws


def test_values_land_on_their_dotted_paths():
    s = sweep(axes={"depth": [2, 3], "init.layers.*.1": [0.7], "rho": [0.3], "loss": ["logistic"]})
    p = s.problem_dict(s.points()[1])
    assert p["depth"] == 3 and p["rho"] == 0.3 and p["loss"] == "logistic"
    assert [row[1] for row in p["init"]["layers"]] == [0.7, 0.7]  # BASE has 2 rows: a depth mismatch
    with pytest.raises(SweepError, match=r"point 1 .*init.layers: expected 3 rows"):
        check_points(s)
    scaled = apply_values({"depth": 3, "X": [[1.0, 2.0]], "init": {"scale": 0.1}}, [("init.layers.*.0", 0.5)])
    assert scaled["init"]["layers"] == [[0.5, 0.1]] * 3
    assert apply_values(BASE, [("X.0.2", 4.0)])["X"] == [[3.0, 2.0, 4.0]]
    assert BASE["X"] == [[3.0, 2.0, 1.0]]  # the base is never mutated


def test_data_seed_axis_generates_separable_seeded_data():
    s = sweep_from_dict({"problem": {"depth": 1, "algorithm": "gd", "init": {"scale": 0.0}},
                         "data": {"n": 5, "d": 3, "seed": 0}, "horizon": "1", "axes": {"data.seed": [1, 2]}})
    p1, p2 = (problem_from_dict(s.problem_dict(p)) for p in s.points())
    assert p1.X.shape == (5, 3) and not np.array_equal(p1.X, p2.X)
    assert np.array_equal(p1.X, problem_from_dict(s.problem_dict(s.points()[0])).X)
    X, y = generate_data(5, 3, 1)
    assert np.array_equal(p1.X, X) and list(p1.y) == y


@pytest.mark.parametrize("change, message", [
    ({"colour": 1}, "unknown key 'colour'"),
    ({"axes": {"rho": []}}, "axes.rho: empty axis"),
    ({"axes": {}}, "axes: expected a non-empty table"),
    ({"axes": {"rho": {"linspace": [0.5, 0.5, 4]}}}, "empty range"),
    ({"axes": {"rho": {"linspace": [0.1, 0.5, 0]}}}, "num must be an integer >= 1"),
    ({"axes": {"rho": {"logspace": [-2, 0, 5]}}}, "logspace takes end values > 0"),
    ({"axes": {"rho": {"range": [0, 1, 2]}}}, "expected a list or"),
    ({"axes": {"init.layers.5.0": [0.1]}}, "outside init.layers"),
    ({"axes": {"init.width": [0.1]}}, "unknown path 'init.width'"),
    ({"axes": {"depth": {"linspace": [1, 3, 3]}}}, "depth takes a list"),
    ({"axes": {"algorithm": [3]}}, "axes.algorithm: expected a name"),
    ({"axes": {"loss": ["hinge"]}}, "axes.loss: expected one of exp, logistic"),
    ({"axes": {"rho": [0.1, 0.1]}}, "repeated value"),
    ({"horizon": "-3"}, "horizon: must be positive"),
    ({"time": "wall"}, "time: expected one of physical, rescaled"),
    ({"precision": "mp:5"}, "precision: expected"),
    ({"sample": {"n": 0, "seed": 1}}, "sample.n: must be >= 1"),
    ({"sample": {"n": 3, "seed": 1}, "axes": {"rho": [0.1, 0.2]}}, "draws inside ranges"),
    ({"quick": {"faster": True}}, "unknown key 'quick.faster'"),
    ({"predict": "oracle"}, "predict: expected one of"),
])
def test_bad_sweeps_are_one_line_errors_naming_the_fault(change, message):
    with pytest.raises(SweepError, match=message.replace("(", r"\(")) as info:
        sweep(**change)
    assert "\n" not in str(info.value)


def test_bad_values_inside_a_good_range_are_caught_before_running():
    with pytest.raises(SweepError, match=r"point 1 \(algorithm=adam\): algorithm: "):
        check_points(sweep(axes={"algorithm": ["gd", "adam"]}))
    with pytest.raises(SweepError, match=r"point 0 \(rho=-0.5\): rho: must be >= 0"):
        check_points(sweep(axes={"rho": {"linspace": [-0.5, 0.5, 3]}}))


def test_quick_thins_every_axis_and_takes_the_quick_horizon():
    s = load_sweep(EXAMPLE)
    q = s.quick()
    assert len(s.points()) == 1024 and len(q.points()) == 9 and q.horizon == "6"
    assert q.fingerprint() != s.fingerprint()
    assert {v for a in q.axes for v in (a.values[0], a.values[-1])} == {0.05, 1.45}


def test_the_example_sweep_ships_as_package_data_and_is_no_problem_example():
    from importlib import resources

    names = [e.name for e in resources.files("sambias.examples").iterdir()]
    assert "linf-basin.sweep.toml" in names
    assert not any(".sweep" in n for n in example_names())


# --- predictions ------------------------------------------------------------------------------
def test_linf_basin_prediction_follows_the_2rho_boundary_and_depth():
    def p(layers, L=2, x=(3.0, 2.0, 1.0)):
        return Problem(depth=L, algorithm="linf-sam", rho=0.5, X=[list(x)], y=[1], init=Init(layers=layers))

    assert linf_basin(p([[0.6, 0.9, 0.3], [0.5, 0.5, 0.3]])) == 0     # both grow: the larger x
    assert linf_basin(p([[0.4, 0.9, 0.3], [0.5, 0.5, 0.3]])) == 1     # only coordinate 1 grows
    assert linf_basin(p([[0.4, 0.4, 0.3], [0.5, 0.5, 0.3]])) == -1    # none grows: collapse
    # L = 3: argmax x_j (alpha_j - rho): 3 * 0.2 < 2 * 0.4, a minor coordinate wins
    assert linf_basin(p([[0.7, 0.9]] * 3, L=3, x=(3.0, 2.0))) == 1
    assert linf_basin(p([[0.9, 0.8]] * 3, L=3, x=(3.0, 2.0))) == 0
    assert linf_basin(p([[0.3, 0.4]] * 3, L=3, x=(3.0, 2.0))) is None  # odd L: beta_j -> rho^L
    assert major_coordinate(p([[0.4, 0.9, 0.3], [0.5, 0.5, 0.3]])) == 0


def test_limit_index_reads_basis_vectors_collapse_and_rejects_mixtures():
    assert limit_index([0.0, -1.0, 1e-9], False, 1e-3) == 1
    assert limit_index(None, True, 1e-3) == -1
    assert limit_index([0.6, 0.8], False, 1e-3) is None
    assert limit_index([0.999, 0.0447], False, 1e-3) is None   # 0.045 away from e_0
    assert limit_index([0.999, 0.0447], False, 0.05) == 0


# --- the store ------------------------------------------------------------------------------
def fake_record(idx: int, s) -> Record:
    point = s.points()[idx]
    return Record(idx=idx, key=point.key, values=json.dumps([list(v) for v in point.values]), status="ok",
                  limit=idx % 3 - 1, leaders="2>0", log10_t_final=0.1 + 0.2 * idx, tau_final=1 / 3,
                  log10_norm_beta_final=float("inf"), log10_loss_final=-1e300, collapsed=idx % 3 == 0,
                  direction=json.dumps([1.0, 0.0, 0.0]), dominant="[[2, -1.5, 0.1]]", predicted=None, agree=None)


def test_store_round_trips_records_exactly_and_refuses_duplicates(tmp_path):
    s = sweep()
    path = tmp_path / "s.sqlite"
    with Store.create(path, s, version="9.9") as store:
        records = [fake_record(i, s) for i in (4, 0, 2)]
        assert all(store.add(r, 0.5, "test") for r in records)
        assert store.add(records[0], 0.7, "test") is False        # a second copy is not written
        assert store.records() == sorted(records, key=lambda r: r.idx)
        assert store.done_indices() == {0, 2, 4} and len(store.timings()) == 3
        meta = store.meta()
        assert meta["version"] == "9.9" and meta["fingerprint"] == s.fingerprint() and meta["points"] == "6"
        assert store.definition() == json.loads(json.dumps(s.definition()))
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT tau_final FROM records WHERE idx = 2").fetchone()[0] == 1 / 3  # exact double
    with pytest.raises(StoreError, match="already exists"):
        Store.create(path, s)


def test_a_failing_write_leaves_no_half_record(tmp_path):
    s = sweep()
    with Store.create(tmp_path / "s.sqlite", s) as store:
        # the timing row fails (wall_s NOT NULL) after the record row went in: both must go
        with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
            store.add(fake_record(1, s), None, "test")
        assert len(store) == 0 and store.timings() == []
        assert store.add(fake_record(1, s), 0.1, "test")


def test_csv_is_sorted_by_the_axes_with_the_contract_columns(tmp_path):
    s = sweep()
    with Store.create(tmp_path / "s.sqlite", s) as store:
        for i in (5, 1, 3, 0):
            store.add(fake_record(i, s), 0.1, "test")
        write_csv(store, tmp_path / "out.csv")
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == "init.layers.0.0,rho,status,limit,leaders,log10_t_final,tau_final"
    rows = [line.split(",") for line in lines[1:]]
    assert [(float(r[0]), float(r[1])) for r in rows] == sorted((float(r[0]), float(r[1])) for r in rows)
    assert [r[3] for r in rows] == ["-1", "0", "-1", "1"]
    assert float(rows[1][6]) == 1 / 3 and rows[1][4] == "2>0"


def test_show_with_parquet_but_no_pyarrow_is_one_line(tmp_path, capsys):
    pytest.importorskip("pandas")
    try:
        import pyarrow  # noqa: F401
        pytest.skip("pyarrow is installed: the error path cannot be reached")
    except ImportError:
        pass
    s = sweep()
    with Store.create(tmp_path / "s.sqlite", s) as store:
        store.add(fake_record(0, s), 0.1, "test")
    assert main(["sweep", "--show", str(tmp_path / "s.sqlite"), "--parquet", str(tmp_path / "x.parquet")]) == 2
    assert capsys.readouterr().err.strip().endswith("Parquet needs pyarrow (pip install pyarrow); --csv works without it")


def test_to_pandas_has_one_column_per_axis(tmp_path):
    pytest.importorskip("pandas")
    from sambias.sweep import to_pandas

    s = sweep()
    with Store.create(tmp_path / "s.sqlite", s) as store:
        for i in range(6):
            store.add(fake_record(i, s), 0.1, "test")
        frame = to_pandas(store)
    assert list(frame.columns[:2]) == ["init.layers.0.0", "rho"] and len(frame) == 6
    assert frame["limit"].tolist() == [-1, 0, 1, -1, 0, 1] and str(frame["limit"].dtype) == "Int64"


# --- the command's input checks ------------------------------------------------------------
def write(tmp_path, text: str) -> Path:
    path = tmp_path / "bad.sweep.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ('problem = "nowhere.toml"\nhorizon = "1"\n[axes]\nrho = [0.1]\n', "nowhere.toml: no such file"),
    ('problem = "example:linf-sam-depth2-mixed"\nhorizon = "1"\n[axes]\nrho = []\n', "axes.rho: empty axis"),
    ('problem = "example:linf-sam-depth2-mixed"\nhorizon = "1"\nspeed = 3\n[axes]\nrho = [0.1]\n',
     "unknown key 'speed'"),
    ('problem = "example:linf-sam-depth2-mixed"\nhorizon = "1"\n[axes]\nrho = { linspace = [1, 1, 3] }\n',
     "empty range"),
    ('problem = "example:linf-sam-depth2-mixed"\nhorizon = \n', "not valid TOML"),
])
def test_cli_bad_sweep_file_exits_2_with_one_line(tmp_path, capsys, text, message):
    assert main(["sweep", str(write(tmp_path, text)), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not list(tmp_path.glob("*.sqlite"))   # nothing created for a bad file


def test_cli_bad_store_and_flag_combinations_exit_2(tmp_path, capsys):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 20)
    for argv, message in [
        (["sweep", "--show", str(junk)], "not a sambias sweep store"),
        (["sweep", "--show", str(tmp_path / "none.sqlite")], "no such store"),
        (["sweep"], "give a sweep file"),
        (["sweep", str(EXAMPLE), "--workers", "0"], "--workers: must be >= 1"),
        (["sweep", str(EXAMPLE), "--dask", "localhost"], "expected a scheduler address"),
        (["sweep", str(EXAMPLE), "--csv", "x.csv"], "--csv/--parquet go with --show"),
        (["sweep", str(EXAMPLE), "--workers", "2", "--dask-local", "2"], "not allowed with argument"),
    ]:
        try:
            status = main(argv)
        except SystemExit as exc:  # argparse's own usage errors
            status = exc.code
        assert status == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)


def test_cli_resume_refuses_a_store_of_another_sweep(tmp_path, capsys):
    s = load_sweep(EXAMPLE).quick()
    path = tmp_path / "other.sqlite"
    Store.create(path, sweep(), version="x").close()
    assert main(["sweep", str(EXAMPLE), "--quick", "--store", str(path), "--resume", "--workers", "1"]) == 2
    assert "holds a different sweep" in capsys.readouterr().err
    assert main(["sweep", str(EXAMPLE), "--quick", "--store", str(path), "--workers", "1"]) == 2
    assert "already exists (pass --resume" in capsys.readouterr().err
    assert s.fingerprint() != sweep().fingerprint()


def test_python_m_sambias_sweep_help_lists_the_contract_options():
    out = subprocess.run([sys.executable, "-m", "sambias", "sweep", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for flag in ("--store", "--workers", "--dask", "--dask-local", "--resume", "--quick", "--show", "--csv"):
        assert flag in out
