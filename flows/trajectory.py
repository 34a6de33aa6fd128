"""The result of a simulation: a :class:`Trajectory`.

A trajectory holds the saved states of a flow together with both clocks (rescaled
time ``tau`` and ``log10 t``; physical time can leave float64's range, so it is only
ever held as a logarithm), the loss as ``log10``, the list of changes of the leading
coordinate, and how it was computed.  It serialises to the ``sambias.trajectory/1``
JSON of CONTRACT.md and saves to / loads from ``.npz`` + JSON metadata, never pickle.

>>> import numpy as np
>>> from sambias import Problem, Init
>>> p = Problem(depth=1, algorithm="gd", X=[[1.0, 0.5]], y=[1], init=Init(scale=0.0))
>>> tr = Trajectory(problem=p, tau=np.array([0.0, 1.0]), log10_t=np.array([-np.inf, 0.0]),
...                 weights=np.array([[[0.0, 0.0]], [[1.0, 0.5]]]), log10_loss=np.array([0.0, -0.54]))
>>> tr.direction_final.round(3).tolist()
[0.894, 0.447]
"""

from __future__ import annotations

# Status conventions shared by the float64 and mp drivers (issue 10.3; F2 please follow):
# "ok" | "collapse: ..." (collapse.collapse_status(log10_t, tau, w, problem): with w and the
# problem it names columns that never move) | "stationary: ..." (W frozen at a point with a
# margin <= 0 while beta != 0) | "underflow: ..." (the start underflows in float64) |
# "overflow: ..." | "max_steps: ..." | "chattering: ..." | "failed: ..." (the solver gave up)
# | "solver: ..." (a solver raised; never a traceback) | "event: ...".
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = "sambias.trajectory/1"
MAX_SAMPLES = 300


@dataclass(frozen=True)
class DominantSwitch:
    """``index`` becomes ``argmax_j |beta_j|`` at time ``log10_t`` (rescaled time ``tau``)."""

    index: int
    log10_t: float
    tau: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"index": int(self.index), "log10_t": _json_float(self.log10_t), "tau": _json_float(self.tau)}


@dataclass(eq=False)
class Trajectory:
    """Saved states of one flow.

    Arrays share their first axis (``m`` saved points, in time order):
    ``tau`` (rescaled time, ``nan`` where not tracked), ``log10_t`` (``-inf`` at
    ``t = 0``), ``weights`` of shape ``(m, L, d)`` and ``log10_loss``.
    ``settings`` records how it was computed (clock, precision, method, tolerances,
    horizon); ``stats`` what it cost (steps, evaluations, wall time, events).
    """

    problem: Any
    tau: np.ndarray
    log10_t: np.ndarray
    weights: np.ndarray
    log10_loss: np.ndarray
    status: str = "ok"
    dominant: tuple[DominantSwitch, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    collapse_tol: float = 1e-12

    def __post_init__(self) -> None:
        self.tau = np.asarray(self.tau, float)
        self.log10_t = np.asarray(self.log10_t, float)
        self.weights = np.asarray(self.weights, float)
        self.log10_loss = np.asarray(self.log10_loss, float)
        m = self.tau.shape[0]
        if self.weights.ndim != 3 or self.weights.shape[0] != m or self.log10_t.shape != (m,) \
                or self.log10_loss.shape != (m,):
            raise ValueError("Trajectory arrays must share their first axis (m points)")
        self.dominant = tuple(self.dominant)

    # --- derived quantities ---------------------------------------------------
    @property
    def beta(self) -> np.ndarray:
        """``(m, d)`` predictor ``beta = prod_l w^(l)`` at every saved point."""
        return np.prod(self.weights, axis=1)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def tau_final(self) -> float:
        return float(self.tau[-1])

    @property
    def log10_t_final(self) -> float:
        return float(self.log10_t[-1])

    @property
    def log10_loss_final(self) -> float:
        return float(self.log10_loss[-1])

    @property
    def beta_final(self) -> np.ndarray:
        return self.beta[-1]

    @property
    def beta_collapsed(self) -> bool:
        """Whether ``beta`` ended at 0 (every coordinate driven to zero)."""
        b = np.abs(self.beta_final)
        return bool(np.all(b <= self.collapse_tol))

    @property
    def log10_norm_beta_final(self) -> float:
        norm = float(_safe_norm(self.beta_final))
        return math.log10(norm) if norm > 0 else -math.inf

    @property
    def direction_final(self) -> np.ndarray | None:
        """``beta / |beta|_2`` at the end, ``None`` when beta collapsed."""
        if self.beta_collapsed:
            return None
        b = self.beta_final
        return b / _safe_norm(b)

    def directions(self) -> np.ndarray:
        """``(m, d)`` unit directions of beta (rows of ``nan`` where beta is 0)."""
        b = self.beta
        norm = _safe_norm(b, axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(norm > 0, b / norm, np.nan)

    def margins(self) -> np.ndarray:
        """``(m, n)`` margins ``y_i <beta, x_i>``."""
        return self.beta @ self.problem.signed_data.T

    def thinned(self, max_rows: int = MAX_SAMPLES) -> np.ndarray:
        """Indices of at most ``max_rows`` saved points spread evenly, first and last kept."""
        m = self.tau.shape[0]
        if m <= max_rows:
            return np.arange(m)
        return np.unique(np.linspace(0, m - 1, max_rows).round().astype(int))

    # --- serialisation --------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The ``sambias.trajectory/1`` document of CONTRACT.md (plus extra fields)."""
        idx = self.thinned()
        direction = self.direction_final
        return {
            "schema": SCHEMA,
            "problem": self.problem.to_dict(),
            "status": self.status,
            "log10_t_final": _json_float(self.log10_t_final),
            "tau_final": _json_float(self.tau_final),
            "direction_final": None if direction is None else [float(v) for v in direction],
            "log10_norm_beta_final": _json_float(self.log10_norm_beta_final),
            "log10_loss_final": _json_float(self.log10_loss_final),
            "beta_collapsed": self.beta_collapsed,
            "beta_final": [float(v) for v in self.beta_final],
            "dominant": [s.to_dict() for s in self.dominant],
            "settings": _jsonable(self.settings),
            "stats": _jsonable(self.stats),
            "samples": {
                "log10_t": [_json_float(v) for v in self.log10_t[idx]],
                "tau": [_json_float(v) for v in self.tau[idx]],
                "log10_loss": [_json_float(v) for v in self.log10_loss[idx]],
                "beta": self.beta[idx].tolist(),
            },
        }

    def save(self, path: str | Path) -> None:
        """Write arrays and metadata to one ``.npz`` (metadata as a JSON string)."""
        meta = {
            "schema": SCHEMA, "problem": self.problem.to_dict(), "status": self.status,
            "dominant": [s.to_dict() for s in self.dominant], "settings": _jsonable(self.settings),
            "stats": _jsonable(self.stats), "collapse_tol": self.collapse_tol,
        }
        np.savez_compressed(Path(path), tau=self.tau, log10_t=self.log10_t, weights=self.weights,
                            log10_loss=self.log10_loss, meta=np.array(json.dumps(meta)))

    @classmethod
    def load(cls, path: str | Path) -> "Trajectory":
        """Read a trajectory written by :meth:`save` (no pickle involved)."""
        from sambias.problem import problem_from_dict

        with np.load(Path(path), allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            if meta.get("schema") != SCHEMA:
                raise ValueError(f"{path}: not a {SCHEMA} file")
            arrays = {k: npz[k] for k in ("tau", "log10_t", "weights", "log10_loss")}
        dominant = tuple(DominantSwitch(d["index"], _from_json(d["log10_t"]), _from_json(d.get("tau")))
                         for d in meta["dominant"])
        return cls(problem=problem_from_dict(meta["problem"]), status=meta["status"], dominant=dominant,
                   settings=meta["settings"], stats=meta["stats"], collapse_tol=meta["collapse_tol"],
                   **arrays)


def _safe_norm(b: np.ndarray, axis: int | None = None, keepdims: bool = False):
    """Euclidean norm that does not overflow when entries reach ~1e300 (their squares would)."""
    b = np.asarray(b, float)
    m = np.max(np.abs(b), axis=axis, keepdims=True) if b.size else np.zeros((1,) * max(b.ndim, 1))
    safe = np.where(m > 0, m, 1.0)
    out = safe * np.sqrt(np.sum((b / safe) ** 2, axis=axis, keepdims=True))
    out = np.where(m > 0, out, 0.0)
    if not keepdims:
        out = np.squeeze(out, axis=axis) if axis is not None else out.reshape(())
    return out


def _json_float(v: Any) -> float | None:
    """A float for JSON: non-finite values (``-inf`` at ``t = 0``, ``nan``) become ``null``."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _from_json(v: Any) -> float:
    return math.nan if v is None else float(v)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _json_float(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    return str(obj)
