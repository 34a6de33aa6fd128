"""Sweep files: a base problem, axes over its fields, the horizon and what to record.

A sweep file (TOML or JSON, see CONTRACT.md) is read into a frozen :class:`Sweep` that is
validated on construction, like a problem file: an unknown key, an empty axis or a bad
range is a :class:`~sambias.errors.ProblemError` with one line naming it.  The sweep's
points come in a fixed order with fixed keys (grid order = the axes' order in the file,
last axis fastest; samples in draw order), so every executor fills the same records.

>>> s = sweep_from_dict({"problem": {"depth": 2, "algorithm": "linf-sam", "rho": 0.5,
...     "X": [[3.0, 2.0]], "y": [1], "init": {"scale": 0.3}}, "horizon": "5", "time": "rescaled",
...     "axes": {"init.layers.0.0": [0.2, 0.8], "rho": {"linspace": [0.25, 0.5, 2]}}})
>>> [p.key for p in s.points()]
['init.layers.0.0=0.2;rho=0.25', 'init.layers.0.0=0.2;rho=0.5', 'init.layers.0.0=0.8;rho=0.25', 'init.layers.0.0=0.8;rho=0.5']
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from sambias.errors import ProblemError
from sambias.horizon import parse_horizon
from sambias.problem import LOSSES, load_problem, problem_from_dict, read_document

SCHEMA = "sambias.sweep/1"
_TOP_KEYS = {"problem", "horizon", "time", "precision", "method", "rtol", "atol", "axes", "sample",
             "data", "name", "description", "limit_tol", "predict", "quick"}
_SAMPLE_KEYS = {"n", "seed"}
_DATA_KEYS = {"n", "d", "seed"}
_QUICK_KEYS = {"horizon", "per_axis", "n"}
_RANGE_KINDS = ("linspace", "logspace")
_METHODS = ("auto", "radau", "bdf", "lsoda", "dop853", "rk45")
# Axis paths that are not numbers, or are integers; every other path is a real number.
# Algorithms may be registered at run time (sambias.register_algorithm): each point's Problem checks them.
_STRING_PATHS = {"algorithm": None, "loss": LOSSES}
_INT_PATHS = {"depth", "data.seed", "data.n", "data.d"}
_PATH_RE = re.compile(r"^(depth|algorithm|loss|rho|init\.scale|init\.layers\.(\d+|\*)\.\d+|X\.\d+\.\d+|y\.\d+"
                      r"|data\.(seed|n|d))$")


class SweepError(ProblemError):
    """A bad sweep file: the message is one line naming the fault."""


@dataclass(frozen=True)
class Axis:
    """One swept field: its dotted ``path``, the grid ``values`` and, for ranges, the
    bounds a ``[sample]`` draws from (``log=True``: log-uniform)."""

    path: str
    values: tuple
    kind: str = "list"
    bounds: tuple[float, float] | None = None

    @property
    def log(self) -> bool:
        return self.kind == "logspace"


@dataclass(frozen=True)
class Point:
    """One point of a sweep: its position ``idx`` and the axes' ``values`` (path, value)."""

    idx: int
    values: tuple[tuple[str, Any], ...]

    @property
    def key(self) -> str:
        """A canonical text key (floats by ``repr``, which round-trips exactly)."""
        return ";".join(f"{p}={_text(v)}" for p, v in self.values)


@dataclass(frozen=True)
class Sample:
    """``n`` seeded random points inside the axes' ranges instead of a grid."""

    n: int
    seed: int


@dataclass(frozen=True)
class Sweep:
    """A validated sweep: base problem (as a dict, data inlined), axes, clock and options.

    Build it with :func:`load_sweep` or :func:`sweep_from_dict`.
    """

    base: dict
    axes: tuple[Axis, ...]
    horizon: str
    time: str = "physical"
    precision: str = "float64"
    method: str = "auto"
    rtol: float | None = None
    atol: float | None = None
    sample: Sample | None = None
    data: dict | None = None
    limit_tol: float = 1e-3
    predict: str | None = None
    name: str = ""
    description: str = ""
    quick_options: dict = field(default_factory=dict)
    is_quick: bool = False

    # --- the points ---------------------------------------------------------------
    def points(self) -> list[Point]:
        """Every point, in the sweep's fixed order (``idx`` = position)."""
        paths = [a.path for a in self.axes]
        if self.sample is None:
            combos = itertools.product(*(a.values for a in self.axes))
        else:
            combos = zip(*_draw(self.axes, self.sample))
        return [Point(i, tuple(zip(paths, combo))) for i, combo in enumerate(combos)]

    def problem_dict(self, point: Point) -> dict:
        """The problem (as a problem-file dict) at ``point``."""
        return apply_values(self.base, point.values, self.data)

    def quick(self) -> "Sweep":
        """A small version for a first look: at most ``per_axis`` values per grid axis
        (ends and middle), at most ``n`` samples, and the ``[quick]`` horizon if given."""
        per_axis = self.quick_options.get("per_axis", 3)
        n = self.quick_options.get("n", 8)
        axes = tuple(replace(a, values=_thin(a.values, per_axis)) for a in self.axes)
        sample = None if self.sample is None else Sample(min(self.sample.n, n), self.sample.seed)
        return replace(self, axes=axes, sample=sample, horizon=self.quick_options.get("horizon", self.horizon),
                       is_quick=True)

    # --- identity -------------------------------------------------------------------
    def definition(self) -> dict:
        """The sweep as plain JSON data (stored with its results)."""
        return {
            "schema": SCHEMA, "name": self.name, "description": self.description, "problem": self.base,
            "data": self.data,
            "axes": [{"path": a.path, "kind": a.kind, "values": list(a.values),
                      "bounds": None if a.bounds is None else list(a.bounds)} for a in self.axes],
            "sample": None if self.sample is None else {"n": self.sample.n, "seed": self.sample.seed},
            "horizon": self.horizon, "time": self.time, "precision": self.precision, "method": self.method,
            "rtol": self.rtol, "atol": self.atol, "limit_tol": self.limit_tol, "predict": self.predict,
            "quick": self.is_quick,
        }

    def fingerprint(self) -> str:
        """SHA-256 of the canonical definition: a store only resumes the sweep it holds."""
        text = json.dumps(self.definition(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def simulate_options(self) -> dict:
        """Keyword arguments for ``sambias.flows.simulate``."""
        out = {"time": self.time, "precision": self.precision, "method": self.method}
        out.update({k: v for k, v in (("rtol", self.rtol), ("atol", self.atol)) if v is not None})
        return out


# --- reading --------------------------------------------------------------------------
def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep file (``.toml`` or ``.json``).

    A relative ``problem = "base.toml"`` is resolved beside the sweep file; errors carry
    the file name.
    """
    path = Path(path)
    try:
        raw = read_document(path, "sweep file")
    except ProblemError as exc:
        raise SweepError(str(exc)) from None
    try:
        return sweep_from_dict(raw, base_dir=path.parent)
    except ProblemError as exc:
        raise SweepError(f"{path}: {exc}") from None


def sweep_from_dict(raw: Mapping[str, Any], *, base_dir: Path | None = None) -> Sweep:
    """Build a :class:`Sweep` from the mapping a sweep file holds (validated)."""
    if not isinstance(raw, Mapping):
        raise SweepError("the sweep file must hold a table of keys")
    _no_unknown(raw, _TOP_KEYS, "")
    for key in ("problem", "horizon", "axes"):
        if key not in raw:
            raise SweepError(f"missing key {key!r}")
    data = _data_spec(raw.get("data"))
    base = _base_problem(raw["problem"], base_dir, data)
    horizon = _horizon(raw["horizon"], "horizon")
    time = _choice(raw.get("time", "physical"), "time", ("physical", "rescaled"))
    precision = _precision(raw.get("precision", "float64"))
    method = _choice(raw.get("method", "auto"), "method", _METHODS, fold=True)
    rtol = _positive(raw["rtol"], "rtol") if "rtol" in raw else None
    atol = _positive(raw["atol"], "atol") if "atol" in raw else None
    limit_tol = _positive(raw.get("limit_tol", Decimal("0.001")), "limit_tol")
    if limit_tol >= 1:
        raise SweepError(f"limit_tol: must be < 1, got {limit_tol:g}")
    predict = raw.get("predict")
    if predict is not None:
        from .predict import PREDICTORS

        predict = _choice(predict, "predict", tuple(PREDICTORS))
    sample = _sample(raw["sample"]) if "sample" in raw else None
    axes = _axes(raw["axes"], sample is not None, data)
    quick = _quick(raw.get("quick", {}))
    for key in ("name", "description"):
        if not isinstance(raw.get(key, ""), str):
            raise SweepError(f"{key}: expected a string")
    sweep = Sweep(base=base, axes=axes, horizon=horizon, time=time, precision=precision, method=method,
                  rtol=rtol, atol=atol, sample=sample, data=data, limit_tol=limit_tol, predict=predict,
                  name=raw.get("name", ""), description=raw.get("description", ""), quick_options=quick)
    _check_paths(sweep)
    return sweep


def check_points(sweep: Sweep) -> None:
    """Build every point's problem once, so a bad value (``rho < 0``, a depth that does not
    match ``init.layers``, non-separable data) is reported before anything runs."""
    for point in sweep.points():
        try:
            problem_from_dict(sweep.problem_dict(point))
        except ProblemError as exc:
            raise SweepError(f"point {point.idx} ({point.key}): {exc}") from None


# --- applying values -------------------------------------------------------------------
def apply_values(base: Mapping[str, Any], values, data: Mapping[str, int] | None = None) -> dict:
    """A copy of the problem dict ``base`` with the dotted-path ``values`` set.

    ``init.layers.L.J`` on a problem initialised by ``scale`` first expands the scale to
    ``depth x d`` layers (after any ``depth`` value is applied).

    >>> apply_values({"depth": 2, "X": [[1.0, 2.0]], "init": {"scale": 0.1}}, [("init.layers.1.0", 0.5)])["init"]
    {'layers': [[0.1, 0.1], [0.5, 0.1]]}
    """
    out = json.loads(json.dumps(base))  # a deep copy of plain JSON data
    values = list(values)
    gen = dict(data or {})
    for path, value in values:
        if path.startswith("data."):
            gen[path.split(".")[1]] = value
    if gen:
        out["X"], out["y"] = generate_data(**gen)
    # depth first: layer entries are checked against the new depth
    for path, value in sorted(values, key=lambda pv: pv[0] != "depth"):
        parts = path.split(".")
        if parts[0] == "data":
            continue
        if parts[0] in ("depth", "algorithm", "loss", "rho"):
            out[parts[0]] = value
        elif path == "init.scale":
            out["init"] = {"scale": value}
        elif parts[:2] == ["init", "layers"]:
            init = out["init"]
            if "layers" not in init:
                d = len(out["X"][0])
                init = out["init"] = {"layers": [[init["scale"]] * d for _ in range(out["depth"])]}
            rows = range(len(init["layers"])) if parts[2] == "*" else (int(parts[2]),)
            for row in rows:  # "init.layers.*.J": coordinate J of every layer (a balanced init)
                _set(init["layers"], (row, int(parts[3])), value, path)
        elif parts[0] == "X":
            _set(out["X"], (int(parts[1]), int(parts[2])), value, path)
        elif parts[0] == "y":
            _set(out["y"], (int(parts[1]),), value, path)
    return out


def generate_data(n: int, d: int, seed: int) -> tuple[list[list[float]], list[int]]:
    """A seeded linearly separable data set: ``x_i ~ N(0, I_d)``, ``y_i = sign<w*, x_i>``
    with a seeded ``w* ~ N(0, I_d)``.

    >>> X, y = generate_data(3, 2, 0); len(X), len(X[0]), sorted(set(y)) <= [-1, 1]
    (3, 2, True)
    """
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(d)
    X = rng.standard_normal((n, d))
    y = np.where(X @ w >= 0, 1, -1)
    return X.tolist(), [int(v) for v in y]


def _set(rows: list, index: tuple[int, ...], value: Any, path: str) -> None:
    target = rows
    try:
        for i in index[:-1]:
            target = target[i]
        target[index[-1]]  # noqa: B018 - an IndexError here names a path outside the shape
    except (IndexError, TypeError):
        raise SweepError(f"axes: {path!r} is outside the problem's shape") from None
    target[index[-1]] = value


# --- validation helpers -------------------------------------------------------------------
def _no_unknown(table: Mapping, allowed: set, where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise SweepError(f"unknown key {where + unknown[0]!r}")


def _base_problem(spec: Any, base_dir: Path | None, data: dict | None) -> dict:
    if isinstance(spec, str):
        target = spec if spec.startswith("example:") or base_dir is None or Path(spec).is_absolute() \
            else str(base_dir / spec)
        problem = load_problem(target)
    elif isinstance(spec, Mapping):
        raw = dict(spec)
        if data is not None:
            if "X" in raw or "y" in raw or "data" in raw:
                raise SweepError("problem: give X/y or a [data] generator, not both")
            raw["X"], raw["y"] = generate_data(**data)
        try:
            problem = problem_from_dict(raw, base_dir=base_dir)
        except ProblemError as exc:
            raise SweepError(f"problem: {exc}") from None
    else:
        raise SweepError("problem: expected a problem file name or an inline [problem] table")
    out = problem.to_dict()
    out.pop("description", None)
    return out


def _data_spec(spec: Any) -> dict | None:
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise SweepError("data: expected a table with n, d, seed")
    _no_unknown(spec, _DATA_KEYS, "data.")
    out = {}
    for key in ("n", "d", "seed"):
        if key not in spec:
            raise SweepError(f"missing key 'data.{key}'")
        out[key] = _int(spec[key], f"data.{key}", minimum=0 if key == "seed" else 1)
    return out


def _horizon(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal, float)):
        raise SweepError(f"{where}: expected a positive number such as \"40\" or \"1e400\"")
    try:
        parse_horizon(value)
    except ProblemError as exc:
        raise SweepError(f"{where}: {str(exc).split(': ', 1)[-1]}") from None
    return str(value)


def _choice(value: Any, where: str, allowed: tuple, fold: bool = False) -> str:
    if not isinstance(value, str) or (value.lower() if fold else value) not in allowed:
        raise SweepError(f"{where}: expected one of {', '.join(allowed)}, got {value!r}")
    return value


def _string(value: Any, where: str, allowed: tuple | None) -> str:
    if allowed is not None:
        return _choice(value, where, allowed)
    if not isinstance(value, str) or not value:
        raise SweepError(f"{where}: expected a name, got {value!r}")
    return value


def _precision(value: Any) -> str:
    if value == "float64":
        return value
    if isinstance(value, str) and re.fullmatch(r"mp:\d+", value) and int(value[3:]) >= 10:
        return value
    raise SweepError(f"precision: expected 'float64' or 'mp:DIGITS' with DIGITS >= 10, got {value!r}")


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise SweepError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, Decimal) and not value.is_finite():
        raise SweepError(f"{where}: must be finite, got {value}")
    try:
        out = float(value)
    except OverflowError:
        out = math.inf
    if not math.isfinite(out):
        raise SweepError(f"{where}: {value} is not a finite float64")
    return out


def _positive(value: Any, where: str) -> float:
    out = _number(value, where)
    if out <= 0:
        raise SweepError(f"{where}: must be > 0, got {out:g}")
    return out


def _int(value: Any, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SweepError(f"{where}: expected an integer, got {value!r}")
    if value < minimum:
        raise SweepError(f"{where}: must be >= {minimum}, got {value}")
    return int(value)


def _sample(spec: Any) -> Sample:
    if not isinstance(spec, Mapping):
        raise SweepError("sample: expected a table with n and seed")
    _no_unknown(spec, _SAMPLE_KEYS, "sample.")
    for key in ("n", "seed"):
        if key not in spec:
            raise SweepError(f"missing key 'sample.{key}'")
    return Sample(_int(spec["n"], "sample.n", 1), _int(spec["seed"], "sample.seed", 0))


def _quick(spec: Any) -> dict:
    if not isinstance(spec, Mapping):
        raise SweepError("quick: expected a table (horizon, per_axis, n)")
    _no_unknown(spec, _QUICK_KEYS, "quick.")
    out = {}
    if "horizon" in spec:
        out["horizon"] = _horizon(spec["horizon"], "quick.horizon")
    for key in ("per_axis", "n"):
        if key in spec:
            out[key] = _int(spec[key], f"quick.{key}", 1)
    return out


def _axes(spec: Any, sampled: bool, data: dict | None) -> tuple[Axis, ...]:
    if not isinstance(spec, Mapping) or not spec:
        raise SweepError("axes: expected a non-empty table of dotted paths")
    out = []
    for path, value in spec.items():
        if not _PATH_RE.match(path):
            raise SweepError(f"axes: unknown path {path!r} (depth, algorithm, loss, rho, init.scale, "
                             f"init.layers.L.J, init.layers.*.J, X.I.J, y.I, data.seed|n|d)")
        if path.startswith("data.") and data is None:
            raise SweepError(f"axes: {path!r} needs a [data] table (n, d, seed)")
        axis = _axis(path, value)
        if sampled and axis.kind == "list" and path not in _STRING_PATHS and path not in _INT_PATHS:
            raise SweepError(f"axes.{path}: [sample] draws inside ranges; give linspace or logspace")
        out.append(axis)
    paths = [a.path for a in out]
    if "init.scale" in paths and any(p.startswith("init.layers") for p in paths):
        raise SweepError("axes: 'init.scale' and 'init.layers.*' cannot both be swept")
    return tuple(out)


def _axis(path: str, value: Any) -> Axis:
    where = f"axes.{path}"
    if isinstance(value, Mapping):
        if len(value) != 1 or next(iter(value)) not in _RANGE_KINDS:
            raise SweepError(f"{where}: expected a list or {{ linspace | logspace = [start, stop, num] }}")
        kind, spec = next(iter(value.items()))
        if path in _STRING_PATHS or path in _INT_PATHS:
            raise SweepError(f"{where}: {path} takes a list of values, not a {kind}")
        if not isinstance(spec, list) or len(spec) != 3:
            raise SweepError(f"{where}: {kind} expects [start, stop, num]")
        start, stop = _number(spec[0], f"{where}.{kind}[0]"), _number(spec[1], f"{where}.{kind}[1]")
        num = spec[2]
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise SweepError(f"{where}: {kind} num must be an integer >= 1, got {num!r}")
        if kind == "logspace":
            if start <= 0 or stop <= 0:
                raise SweepError(f"{where}: logspace takes end values > 0 (e.g. [0.01, 1, 10]), got "
                                 f"[{start:g}, {stop:g}]")
            grid = np.geomspace(start, stop, num)
        else:
            grid = np.linspace(start, stop, num)
        if num > 1 and start == stop:
            raise SweepError(f"{where}: empty range (start = stop = {start:g} with num = {num})")
        return Axis(path, tuple(float(v) for v in grid), kind, (start, stop))
    if not isinstance(value, list):
        raise SweepError(f"{where}: expected a list or {{ linspace | logspace = [start, stop, num] }}")
    if not value:
        raise SweepError(f"{where}: empty axis (no values)")
    if path in _STRING_PATHS:
        values = tuple(_string(v, where, _STRING_PATHS[path]) for v in value)
    elif path in _INT_PATHS:
        values = tuple(_int(v, where, 1 if path in ("depth", "data.n", "data.d") else 0) for v in value)
    else:
        values = tuple(_number(v, f"{where}[{i}]") for i, v in enumerate(value))
    if len(set(values)) != len(values):
        raise SweepError(f"{where}: repeated value {next(v for v in values if values.count(v) > 1)!r}")
    return Axis(path, values, "list", None)


def _check_paths(sweep: Sweep) -> None:
    """Every path must fit the base problem's shape (at the largest swept depth)."""
    base = sweep.base
    n, d = len(base["X"]), len(base["X"][0])
    depths = [v for a in sweep.axes if a.path == "depth" for v in a.values] or [base["depth"]]
    for axis in sweep.axes:
        parts = axis.path.split(".")
        if parts[:2] == ["init", "layers"]:
            if (parts[2] != "*" and int(parts[2]) >= min(depths)) or int(parts[3]) >= d:
                raise SweepError(f"axes: {axis.path!r} is outside init.layers (depth {min(depths)} x d {d})")
        elif parts[0] == "X" and (int(parts[1]) >= n or int(parts[2]) >= d) and sweep.data is None:
            raise SweepError(f"axes: {axis.path!r} is outside X ({n} x {d})")
        elif parts[0] == "y" and int(parts[1]) >= n and sweep.data is None:
            raise SweepError(f"axes: {axis.path!r} is outside y ({n} labels)")
        elif parts[0] == "y" and any(v not in (-1.0, 1.0) for v in axis.values):
            raise SweepError(f"axes.{axis.path}: labels must be -1 or +1")


def _draw(axes: tuple[Axis, ...], sample: Sample) -> list[list]:
    """Seeded draws, axis by axis (a fixed order, so a seed fixes every point)."""
    rng = np.random.default_rng(sample.seed)
    columns = []
    for axis in axes:
        if axis.bounds is None:
            picks = rng.integers(0, len(axis.values), sample.n)
            columns.append([axis.values[int(k)] for k in picks])
        elif axis.log:
            lo, hi = np.log(axis.bounds[0]), np.log(axis.bounds[1])
            columns.append([float(v) for v in np.exp(rng.uniform(lo, hi, sample.n))])
        else:
            columns.append([float(v) for v in rng.uniform(axis.bounds[0], axis.bounds[1], sample.n)])
    return columns


def _thin(values: tuple, k: int) -> tuple:
    if len(values) <= k:
        return values
    picks = np.unique(np.linspace(0, len(values) - 1, k).round().astype(int))
    return tuple(values[i] for i in picks)


def _text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)
