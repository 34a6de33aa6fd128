"""The problem description: data, network depth, algorithm, loss and initialisation.

A :class:`Problem` is the first stage of the toolkit's data path
(problem → derived system → trajectory → verdict → report).  It is built from a
TOML or JSON file (:func:`load_problem`) or directly in Python, and it is validated
on construction, so every later stage may assume a well-formed, linearly separable
problem.

>>> p = Problem(depth=2, algorithm="l2-sam", rho=0.5, X=[[3.0, 2.0, 1.0]], y=[1],
...             init=Init(scale=0.2))
>>> p.initial_weights().shape
(2, 3)
"""

from __future__ import annotations

import dataclasses
import json
import math
import stat
import tomllib
import zipfile
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .errors import ProblemError

ALGORITHMS = ("gd", "l2-sam", "linf-sam", "usam")
LOSSES = ("exp", "logistic")

# --- limits ----------------------------------------------------------------------
# What a 2-core, 24 GiB machine can carry; each is checked before the work it guards and
# named in the error.  The vector field and its Jacobian-vector products cost O(n d + L d)
# memory (symbolic/large.py: no n x n array), but the implicit integrators still factorise
# a dense (L*d) x (L*d) Jacobian: L*d = 6000 (L = 6, d = 1000, issue 12.5) is 288 MiB per
# copy and ~7e10 flops per LU; d = 10^6 would need 7 TiB.  Depth costs little
# numerically (L = 10^4 runs in 0.2 s) but 1000 layers is far past any claim's use and
# keeps |w|^L products meaningful.  X may be larger than the weights (one float64 per
# entry; the LP and the vector field are linear in n*d); reading 10^6 entries from text
# takes ~5 s, 2x10^5 rows from an .npz ~3 s.
MAX_DEPTH = 1000
MAX_WEIGHTS = 6000            # depth * d
MAX_ENTRIES = 10_000_000      # n * d (n = 10^4, d = 10^3: 80 MB of float64)
MAX_FILE_BYTES = 64 * 2**20   # a problem file's text (10^6 numbers in JSON/TOML fit; more: data = "x.npz")
# The perturbed weights (|w0| + rho)^L are squared inside the SAM normalisations; past
# 1e150 the squares leave float64 and the integrators crawl or overflow at t = 0.
MAX_LOG10_START = 150.0

# Keys a problem file may hold; everything else is rejected by name.
_TOP_KEYS = {"depth", "algorithm", "rho", "loss", "X", "y", "data", "init", "name", "description"}
_INIT_KEYS = {"scale", "layers"}


@dataclass(frozen=True, eq=False)
class Init:
    """Initial weights: exactly one of ``scale`` (every layer ``scale * ones(d)``) or
    ``layers`` (``L`` rows of ``d`` numbers)."""

    scale: float | None = None
    layers: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self) -> None:
        if (self.scale is None) == (self.layers is None):
            raise ProblemError("init: give exactly one of 'scale' or 'layers'")
        if self.scale is not None:
            object.__setattr__(self, "scale", _finite_float(self.scale, "init.scale"))
        else:
            rows = _matrix(self.layers, "init.layers", max_entries=MAX_WEIGHTS, limit_name="depth*d")
            object.__setattr__(self, "layers", tuple(tuple(r) for r in rows.tolist()))

    def to_dict(self) -> dict[str, Any]:
        if self.scale is not None:
            return {"scale": self.scale}
        return {"layers": [list(r) for r in self.layers]}


@dataclass(frozen=True, eq=False)
class Problem:
    """A SAM implicit-bias problem on an L-layer linear diagonal network.

    ``X`` is ``n x d``, ``y`` has entries in {-1, +1}; ``rho`` is ignored by GD.
    Construction validates everything (shapes, finiteness, separability) and raises
    :class:`~sambias.errors.ProblemError` with a one-line message on bad input.

    >>> Problem(depth=1, algorithm="gd", X=[[1.0, 2.0]], y=[-1], init=Init(scale=0.0)).n
    1
    """

    depth: int
    algorithm: str
    X: Any
    y: Any
    init: Init
    rho: float = 0.0
    loss: str = "exp"
    name: str = ""
    description: str = ""
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.depth, bool) or not isinstance(self.depth, (int, np.integer)):
            raise ProblemError(f"depth: expected an integer, got {_kind(self.depth)}")
        if self.depth < 1:
            raise ProblemError(f"depth: must be >= 1, got {self.depth}")
        if self.depth > MAX_DEPTH:
            raise ProblemError(f"depth: {_short(self.depth)} is above the limit of {MAX_DEPTH} layers")
        object.__setattr__(self, "depth", int(self.depth))
        if not isinstance(self.algorithm, str) or self.algorithm not in ALGORITHMS:
            # registered and plugin algorithms (sambias.register_algorithm, entry points)
            from sambias.symbolic.algorithms import get_algorithm
            try:
                get_algorithm(self.algorithm)
            except ProblemError as exc:
                raise ProblemError(f"algorithm: {exc}") from None
        if not isinstance(self.loss, str) or self.loss not in LOSSES:
            raise ProblemError(f"loss: unknown loss {self.loss!r}; expected one of {', '.join(LOSSES)}")
        rho = _finite_float(self.rho, "rho")
        if rho < 0:
            raise ProblemError(f"rho: must be >= 0, got {rho:g}")
        object.__setattr__(self, "rho", rho)
        _check_size(self.depth, _rough_shape(self.X))  # before converting a huge X
        X = _matrix(self.X, "X", max_entries=MAX_ENTRIES)
        _check_size(self.depth, X.shape)
        y = _vector(self.y, "y", max_entries=MAX_ENTRIES)
        if y.shape[0] != X.shape[0]:
            raise ProblemError(f"y: has {y.shape[0]} labels but X has {X.shape[0]} rows")
        if not np.all(np.isin(y, (-1.0, 1.0))):
            bad = y[~np.isin(y, (-1.0, 1.0))][0]
            raise ProblemError(f"y: labels must be -1 or +1, got {bad:g}")
        X.setflags(write=False)
        y.setflags(write=False)
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)
        if not isinstance(self.init, Init):
            raise ProblemError(f"init: expected an Init, got {_kind(self.init)}")
        if self.init.layers is not None:
            shape = (len(self.init.layers), len(self.init.layers[0]))
            if shape != (self.depth, self.dim):
                raise ProblemError(
                    f"init.layers: expected {self.depth} rows of {self.dim} numbers (depth x d), got {shape[0]} x {shape[1]}")
        _check_start_scale(self.depth, rho, self.init, self.algorithm)
        if not is_linearly_separable(X, y):
            raise ProblemError("data: not linearly separable (no beta with y_i <beta, x_i> >= 1; HiGHS LP infeasible)")

    # --- derived data ---------------------------------------------------------
    @property
    def n(self) -> int:
        """Number of examples."""
        return int(self.X.shape[0])

    @property
    def dim(self) -> int:
        """Number of coordinates ``d``."""
        return int(self.X.shape[1])

    @property
    def signed_data(self) -> np.ndarray:
        """``A = y[:, None] * X``, so that the margins are ``z = A @ beta``."""
        return self.y[:, None] * self.X

    def initial_weights(self) -> np.ndarray:
        """The ``(depth, d)`` array of initial layer weights."""
        if self.init.scale is not None:
            return np.full((self.depth, self.dim), self.init.scale, dtype=float)
        return np.array(self.init.layers, dtype=float)

    def replace(self, **changes: Any) -> "Problem":
        """A validated copy with some fields changed (``init_scale=`` is a shortcut)."""
        if "init_scale" in changes:
            changes["init"] = Init(scale=changes.pop("init_scale"))
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The problem as read, with defaults filled in (JSON-ready)."""
        out: dict[str, Any] = {
            "depth": self.depth, "algorithm": self.algorithm, "rho": self.rho, "loss": self.loss,
            "X": self.X.tolist(), "y": [int(v) for v in self.y], "init": self.init.to_dict(),
        }
        if self.name:
            out["name"] = self.name
        if self.description:
            out["description"] = self.description
        return out

    def __repr__(self) -> str:
        init = f"scale={self.init.scale:g}" if self.init.scale is not None else "layers"
        return (f"Problem(L={self.depth}, {self.algorithm}, rho={self.rho:g}, loss={self.loss}, "
                f"n={self.n}, d={self.dim}, init {init})")


# --- reading files -------------------------------------------------------------
def load_problem(path: str | Path) -> Problem:
    """Read a problem from a ``.toml`` or ``.json`` file, or a built-in example
    given as ``example:NAME`` (see ``sambias.examples.example_names()``).

    Numbers are parsed as exact decimals first, so a value float64 cannot hold is
    reported rather than silently turned into ``inf``.
    """
    if isinstance(path, str) and path.startswith(EXAMPLE_PREFIX):
        path = _example(path[len(EXAMPLE_PREFIX):])
    path = Path(path)
    raw = read_document(path)
    try:
        return problem_from_dict(raw, base_dir=path.parent, source=str(path))
    except ProblemError as exc:
        raise ProblemError(f"{path}: {exc}") from None


EXAMPLE_PREFIX = "example:"


def _example(name: str) -> Path:
    from sambias.examples import example_names, example_path

    try:
        return example_path(name)
    except KeyError:
        raise ProblemError(f"no built-in example {name!r}; known: {', '.join(example_names())}") from None


def problem_from_dict(raw: Mapping[str, Any], *, base_dir: Path | None = None,
                      source: str | None = None) -> Problem:
    """Build a :class:`Problem` from the mapping a problem file holds."""
    if not isinstance(raw, Mapping):
        raise ProblemError("the file must hold a table of keys")
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise ProblemError(f"unknown key {unknown[0]!r}")
    for key in ("depth", "algorithm", "init"):
        if key not in raw:
            raise ProblemError(f"missing key {key!r}")
    algorithm = raw["algorithm"]
    if "rho" not in raw and algorithm != "gd":
        raise ProblemError(f"missing key 'rho' (required by algorithm {algorithm!r})")
    X, y = _data(raw, base_dir)
    init_raw = raw["init"]
    if not isinstance(init_raw, Mapping):
        raise ProblemError(f"init: expected a table with 'scale' or 'layers', got {_kind(init_raw)}")
    unknown = sorted(set(init_raw) - _INIT_KEYS)
    if unknown:
        raise ProblemError(f"unknown key 'init.{unknown[0]}'")
    init = Init(scale=init_raw.get("scale"), layers=init_raw.get("layers"))
    for key in ("name", "description"):
        if key in raw and not isinstance(raw[key], str):
            raise ProblemError(f"{key}: expected a string, got {_kind(raw[key])}")
    return Problem(depth=raw["depth"], algorithm=algorithm, rho=raw.get("rho", 0.0),
                   loss=raw.get("loss", "exp"), X=X, y=y, init=init,
                   name=raw.get("name", ""), description=raw.get("description", ""), source=source)


def read_document(path: Path, kind: str = "problem file") -> dict:
    """The table of a ``.toml`` or ``.json`` file (problem or sweep), read defensively: an
    ordinary file of sane size, numbers as exact decimals, no NaN/Inf, no repeated JSON key,
    no nesting deep enough to exhaust the stack.  Every fault is one :class:`ProblemError`
    line starting with the path.

    >>> read_document(Path("missing.toml"))
    Traceback (most recent call last):
    ...
    sambias.errors.ProblemError: missing.toml: no such file
    """
    _check_regular_file(path, MAX_FILE_BYTES, "")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProblemError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProblemError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    if path.suffix.lower() == ".json":
        return _parse_json(text, path, kind)
    return _parse_toml(text, path, kind)


def _check_regular_file(path: Path, max_bytes: int, where: str) -> None:
    """Refuse what is not an ordinary file of sane size -- a directory, /dev/zero or a FIFO
    would otherwise fail obscurely or be read forever.  ``where`` prefixes the message
    (``"data: "``); without it the message starts with the path."""
    def fault(text: str) -> ProblemError:
        return ProblemError(f"{where}{path} {text}" if where else f"{path}: {text}")

    try:
        info = path.stat()
    except FileNotFoundError:
        raise (ProblemError(f"{where}no such file {path}") if where else fault("no such file")) from None
    except OSError as exc:
        raise fault(f"cannot be read ({exc.strerror or exc.__class__.__name__})") from None
    if stat.S_ISDIR(info.st_mode):
        raise fault("is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise fault("is not a regular file")
    if info.st_size > max_bytes:
        raise fault(f"has {info.st_size} bytes, above the limit of {max_bytes}")


def _parse_toml(text: str, path: Path, kind: str = "problem file") -> dict:
    try:
        return tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise ProblemError(f"{path}: not valid TOML ({_one_line(exc)})") from None
    except ProblemError:
        raise
    except RecursionError:
        raise ProblemError(f"{path}: not a {kind} (arrays/tables nested too deeply)") from None
    except (ValueError, ArithmeticError) as exc:  # e.g. an integer past Python's 4300 digits
        raise ProblemError(f"{path}: not a usable TOML number ({_one_line(exc)})") from None


def _parse_json(text: str, path: Path, kind: str = "problem file") -> dict:
    def constant(name: str) -> Any:
        raise ProblemError(f"{path}: {name} is not a number (NaN/Inf are not allowed)")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
        # JSON allows a repeated key and keeps the last one; a problem file must not.
        out: dict = {}
        for key, value in pairs:
            if key in out:
                raise ProblemError(f"{path}: duplicate key {key!r}")
            out[key] = value
        return out

    try:
        return json.loads(text, parse_float=Decimal, parse_constant=constant, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise ProblemError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except ProblemError:
        raise
    except RecursionError:
        raise ProblemError(f"{path}: not a {kind} (arrays/objects nested too deeply)") from None
    except (ValueError, ArithmeticError) as exc:  # an integer past 4300 digits, 1e99999999999999999
        raise ProblemError(f"{path}: not a usable JSON number ({_one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _data(raw: Mapping[str, Any], base_dir: Path | None) -> tuple[Any, Any]:
    has_inline = "X" in raw or "y" in raw
    if "data" in raw:
        if has_inline:
            raise ProblemError("give either 'data' or 'X' and 'y', not both")
        ref = raw["data"]
        if not isinstance(ref, str):
            raise ProblemError(f"data: expected a path to an .npz file, got {_kind(ref)}")
        npz = Path(ref) if base_dir is None or Path(ref).is_absolute() else base_dir / ref
        return _read_npz(npz)
    for key in ("X", "y"):
        if key not in raw:
            raise ProblemError(f"missing key {key!r} (or give 'data')")
    return raw["X"], raw["y"]


def _read_npz(npz: Path) -> tuple[np.ndarray, np.ndarray]:
    """X and y from an .npz archive, refusing anything else before loading an array."""
    _check_regular_file(npz, 16 * MAX_ENTRIES + 2**20, "data: ")
    # np.load falls back to .npy and pickle for a file that is not a zip; only a zip is an .npz.
    if not zipfile.is_zipfile(npz):
        raise ProblemError(f"data: {npz} is not an .npz archive (not a zip file)")
    try:
        # allow_pickle=False: a swapped file must never run code.
        with np.load(npz, allow_pickle=False) as archive:
            if "X" not in archive or "y" not in archive:
                raise ProblemError(f"data: {npz} must hold arrays 'X' and 'y'")
            for key in ("X", "y"):
                shape = _npz_member_shape(archive, key)
                _check_entries(math.prod(shape), f"data: {key}", MAX_ENTRIES, "n*d" if key == "X" else "n")
            return archive["X"], archive["y"]
    except ProblemError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, RuntimeError) as exc:
        raise ProblemError(f"data: cannot read {npz} as an .npz of numeric arrays ({_one_line(exc)})") from None


def _npz_member_shape(archive: Any, key: str) -> tuple[int, ...]:
    """The shape an archive member declares in its .npy header, read without the data."""
    with archive.zip.open(f"{key}.npy") as member:
        version = np.lib.format.read_magic(member)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ProblemError(f"data: {key} uses .npy format {version}, expected 1.0 or 2.0")
        shape, _fortran, _dtype = read_header(member)
    return shape


# --- validation helpers ----------------------------------------------------------
def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "a table"
    return type(value).__name__


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, Decimal, np.integer, np.floating))


def _finite_float(value: Any, where: str) -> float:
    if not _is_number(value):
        raise ProblemError(f"{where}: expected a number, got {_kind(value)}")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ProblemError(f"{where}: must be finite, got {value}")
        out = float(value)
        if math.isinf(out):
            raise ProblemError(f"{where}: {value} is outside float64's range")
        return out
    try:
        out = float(value)
    except OverflowError:
        raise ProblemError(f"{where}: {value} is outside float64's range") from None
    if not math.isfinite(out):
        raise ProblemError(f"{where}: must be finite, got {out}")
    return out


def _matrix(value: Any, where: str, *, max_entries: int | None = None,
            limit_name: str = "n*d") -> np.ndarray:
    if max_entries is not None:
        _check_entries(_count_entries(value), where, max_entries, limit_name)
    if isinstance(value, np.ndarray):
        if value.ndim != 2 or value.size == 0:
            raise ProblemError(f"{where}: expected a non-empty 2-D array, got shape {value.shape}")
        if not np.issubdtype(value.dtype, np.number) or np.issubdtype(value.dtype, np.complexfloating):
            raise ProblemError(f"{where}: expected real numbers, got dtype {value.dtype}")
        out = value.astype(float)
        if not np.all(np.isfinite(out)):
            raise ProblemError(f"{where}: contains NaN or Inf")
        return out
    if isinstance(value, (list, tuple)) and value and all(isinstance(r, np.ndarray) for r in value):
        value = [r.tolist() if r.ndim == 1 else r for r in value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ProblemError(f"{where}: expected a non-empty list of rows, got {_kind(value) if value != [] else 'an empty list'}")
    rows = []
    for i, row in enumerate(value):
        if isinstance(row, np.ndarray) and row.ndim == 1:
            row = row.tolist()
        if not isinstance(row, (list, tuple)):
            raise ProblemError(f"{where}: row {i} is {_kind(row)}, expected a list of numbers")
        rows.append([_finite_float(v, f"{where}[{i}][{j}]") for j, v in enumerate(row)])
    width = len(rows[0])
    if width == 0:
        raise ProblemError(f"{where}: rows are empty")
    for i, row in enumerate(rows):
        if len(row) != width:
            raise ProblemError(f"{where}: ragged rows (row 0 has {width} entries, row {i} has {len(row)})")
    return np.array(rows, dtype=float)


def _vector(value: Any, where: str, *, max_entries: int | None = None) -> np.ndarray:
    if max_entries is not None:
        _check_entries(_count_entries(value), where, max_entries, "n")
    if isinstance(value, np.ndarray):
        if value.ndim != 1 or value.size == 0:
            raise ProblemError(f"{where}: expected a non-empty 1-D array, got shape {value.shape}")
        if not np.issubdtype(value.dtype, np.number):
            raise ProblemError(f"{where}: expected numbers, got dtype {value.dtype}")
        out = value.astype(float)
        if not np.all(np.isfinite(out)):
            raise ProblemError(f"{where}: contains NaN or Inf")
        return out
    if not isinstance(value, (list, tuple)) or not value:
        raise ProblemError(f"{where}: expected a non-empty list of numbers, got {_kind(value) if value != [] else 'an empty list'}")
    return np.array([_finite_float(v, f"{where}[{i}]") for i, v in enumerate(value)], dtype=float)


def _count_entries(value: Any) -> int:
    """How many numbers a (possibly ragged) list of rows or an array holds, cheaply."""
    if isinstance(value, np.ndarray):
        return int(value.size)
    if not isinstance(value, (list, tuple)):
        return 0
    return sum(len(r) if isinstance(r, (list, tuple, np.ndarray)) else 1 for r in value)


def _check_entries(count: int, where: str, limit: int, limit_name: str) -> None:
    if count > limit:
        raise ProblemError(f"{where}: {count} numbers is above the limit of {limit} ({limit_name})")


def _rough_shape(value: Any) -> tuple[int, int] | None:
    """``(rows, width of row 0)`` of a matrix-like value, or None when it has no such shape."""
    if isinstance(value, np.ndarray):
        return (value.shape[0], value.shape[1]) if value.ndim == 2 else None
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple, np.ndarray)):
        return len(value), len(value[0])
    return None


def _check_size(depth: int, shape: tuple[int, int] | None) -> None:
    if shape is not None and depth * shape[1] > MAX_WEIGHTS:
        raise ProblemError(
            f"X: depth * d = {depth} * {shape[1]} weights is above the limit of {MAX_WEIGHTS} "
            f"(the integrators factorise a dense (depth*d)^2 Jacobian)")


def _short(value: int) -> str:
    """An integer for an error line: a 23-digit depth is shown as ~1.2e22."""
    text = str(value)
    return text if len(text) <= 12 else f"~{text[0]}.{text[1]}e{len(text) - 1}"


def _check_start_scale(depth: int, rho: float, init: Init, algorithm: str) -> None:
    """Refuse starts whose (perturbed) weights are too large for float64 arithmetic."""
    w0 = np.abs(np.full((1, 1), init.scale) if init.scale is not None else np.array(init.layers))
    r = 0.0 if algorithm == "gd" else rho  # GD never perturbs
    with np.errstate(divide="ignore", over="ignore"):
        per_coord = np.log10(w0 + r)
    # A scalar scale stands for every layer; explicit layers multiply row by row.
    log10_start = float(depth * per_coord.max() if init.scale is not None else per_coord.sum(axis=0).max())
    if log10_start > MAX_LOG10_START:
        what = "init" if r == 0.0 else "init and rho"
        form = "|w0|^depth" if r == 0.0 else "(|w0| + rho)^depth"
        raise ProblemError(
            f"{what}: {form} is 1e{log10_start:.4g} at the start, above the limit of 1e{MAX_LOG10_START:g} "
            f"(the flow squares it; float64 ends near 1e308)")


def is_linearly_separable(X: np.ndarray, y: np.ndarray) -> bool:
    """Whether some ``beta`` has ``y_i <beta, x_i> >= 1`` for all ``i`` (an LP, HiGHS).

    Scale-aware: ``A beta > 0`` is unchanged by positive row and column scalings, so the
    rows and columns of ``A = y x^T`` are equilibrated by powers of two first -- data such
    as ``[[1e300, 1.0]]`` would otherwise defeat the LP's absolute tolerances.

    >>> is_linearly_separable(np.array([[1e300, 1.0]]), np.array([1]))
    True
    """
    from scipy.optimize import linprog

    A = np.asarray(y, float)[:, None] * np.asarray(X, float)
    if np.any(np.all(A == 0.0, axis=1)):
        return False  # 0 >= 1 for that example, whatever beta
    n, d = A.shape
    # A certificate first: any beta with every margin > 0 proves separability.  The mean
    # of the signed examples is one for most real two-class data, and the LP on 10^4 x 10^3
    # data takes minutes (issue 12.5).  (Overflow gives inf/nan: no certificate, the LP decides.)
    if n * d > 10_000:
        with np.errstate(all="ignore"):
            if float(np.min(A @ A.mean(axis=0))) > 0.0:
                return True
    A = _equilibrate(A)
    res = linprog(np.zeros(d), A_ub=-A, b_ub=-np.ones(n), bounds=[(None, None)] * d, method="highs")
    return res.status == 0


def _equilibrate(A: np.ndarray, sweeps: int = 8) -> np.ndarray:
    """Ruiz scaling by powers of two (exact: no rounding) until every row and column has
    largest magnitude in [1/2, 1), or ``sweeps`` run out."""
    A = A.copy()
    for _ in range(sweeps):
        col = np.max(np.abs(A), axis=0)
        col_exp = np.where(col > 0, -np.frexp(np.where(col > 0, col, 1.0))[1], 0)
        A = np.ldexp(A, col_exp[None, :])
        row = np.max(np.abs(A), axis=1)
        row_exp = -np.frexp(row)[1]
        A = np.ldexp(A, row_exp[:, None])
        if not np.any(col_exp) and not np.any(row_exp):
            break
    return A
