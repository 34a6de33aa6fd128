"""One sweep point: simulate it and reduce the trajectory to a :class:`Record`.

:func:`evaluate` is a pure function of a :class:`Task` (plain, picklable data), so a
serial loop, a process pool and a Dask worker all compute the same record for the same
point.  Wall time is returned beside the record, never inside it: records must be
identical whatever ran them.

>>> task = Task(idx=0, key="rho=0.5", values=(("rho", 0.5),), problem={"depth": 1,
...     "algorithm": "gd", "rho": 0.0, "X": [[2.0, 1.0]], "y": [1], "init": {"scale": 0.0}},
...     horizon="3", options={"time": "rescaled"})
>>> evaluate(task)[0].limit          # L = 1 GD: the l2 max-margin (2, 1)/|.|, no basis vector
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sambias.errors import SambiasError

# Record columns in store order; "values" holds the axes' values (JSON).
FIELDS = ("idx", "key", "values", "status", "limit", "leaders", "log10_t_final", "tau_final",
          "log10_norm_beta_final", "log10_loss_final", "collapsed", "direction", "dominant",
          "predicted", "agree")


@dataclass(frozen=True)
class Task:
    """What a worker needs for one point: the problem dict and the simulate options."""

    idx: int
    key: str
    values: tuple
    problem: dict
    horizon: str
    options: dict = field(default_factory=dict)
    limit_tol: float = 1e-3
    predict: str | None = None


@dataclass(frozen=True)
class Record:
    """The summary of one point (floats exact; ``None`` where undefined).

    ``limit``: index of the limit basis vector, ``-1`` for collapse, ``None`` when the
    final direction is farther than ``limit_tol`` from every basis vector.
    ``leaders``: the leader changes as ``"2>3>0"``; ``dominant``: the same with times
    (JSON list of ``[index, log10_t, tau]``).  ``predicted``/``agree``: the sweep's
    predictor's limit and whether the observed limit matches it (:func:`judge`).
    """

    idx: int
    key: str
    values: str
    status: str
    limit: int | None
    leaders: str
    log10_t_final: float | None
    tau_final: float | None
    log10_norm_beta_final: float | None
    log10_loss_final: float | None
    collapsed: bool
    direction: str | None
    dominant: str
    predicted: int | None
    agree: bool | None

    def row(self) -> tuple:
        return tuple(getattr(self, f) for f in FIELDS)


def evaluate(task: Task) -> tuple[Record, float]:
    """Simulate ``task`` and return its record and the wall time in seconds.

    A point the simulator refuses (``SambiasError``) is recorded with status
    ``"error: ..."`` rather than raised, so one bad point does not stop a sweep and a
    resumed sweep does not retry it forever.
    """
    from sambias.flows import simulate
    from sambias.problem import problem_from_dict

    start = time.perf_counter()
    problem = problem_from_dict(task.problem)
    predicted = _predict(task.predict, problem)
    try:
        traj = simulate(problem, task.horizon, **task.options)
    except SambiasError as exc:
        record = Record(task.idx, task.key, _values_json(task.values), f"error: {exc}", None, "", None, None,
                        None, None, False, None, "[]", predicted, None)
        return record, time.perf_counter() - start
    return _record(task, traj, predicted), time.perf_counter() - start


#: options the ensemble path takes (anything else, e.g. mp precision, runs point by point)
_ENSEMBLE_OPTIONS = {"time", "rtol", "atol"}


def evaluate_batch(tasks) -> list[tuple[Record, float]]:
    """:func:`evaluate` for many points at once: points of one shape (depth, d, n, algorithm,
    loss) and the same horizon and options go through the ensemble path
    (:func:`sambias.flows.ensemble.simulate_ensemble`, which hands what it does not cover to
    the single driver); the rest, and any batch the ensemble refuses, point by point.  Each
    point's wall time is its share of its batch's.

    >>> task = Task(idx=0, key="a", values=(), problem={"depth": 1, "algorithm": "gd", "rho": 0.0,
    ...     "X": [[2.0, 1.0]], "y": [1], "init": {"scale": 0.0}}, horizon="3", options={"time": "rescaled"})
    >>> [r.status for r, _ in evaluate_batch([task, task])]
    ['ok', 'ok']
    """
    from sambias.flows.ensemble import simulate_ensemble
    from sambias.problem import problem_from_dict

    out: dict[int, tuple[Record, float]] = {}
    groups: dict[tuple, list] = {}
    for k, task in enumerate(tasks):
        opts = dict(task.options)
        batchable = opts.pop("precision", "float64") == "float64" and opts.pop("method", "auto") == "auto" \
            and set(opts) <= _ENSEMBLE_OPTIONS
        try:
            problem = problem_from_dict(task.problem) if batchable else None
        except SambiasError:
            problem = None
        if problem is None:
            out[k] = evaluate(task)
            continue
        from sambias.flows.batch_field import shape_key
        key = (shape_key(problem), str(task.horizon), tuple(sorted(opts.items())))
        groups.setdefault(key, []).append((k, task, problem, opts))
    for (_, horizon, _), members in groups.items():
        start = time.perf_counter()
        try:
            trajs = simulate_ensemble([m[2] for m in members], horizon, **members[0][3])
        except SambiasError:
            for k, task, _, _ in members:
                out[k] = evaluate(task)
            continue
        wall = (time.perf_counter() - start) / len(members)
        for (k, task, problem, _), traj in zip(members, trajs):
            out[k] = (_record(task, traj, _predict(task.predict, problem)), wall)
    return [out[k] for k in range(len(tasks))]


def _record(task: Task, traj, predicted: int | None) -> Record:
    """The record of a finished trajectory (the same for either path)."""
    limit = limit_index(traj.direction_final, traj.beta_collapsed, task.limit_tol)
    direction = traj.direction_final
    return Record(
        idx=task.idx, key=task.key, values=_values_json(task.values), status=str(traj.status), limit=limit,
        leaders=">".join(str(int(s.index)) for s in traj.dominant),
        log10_t_final=_real(traj.log10_t_final), tau_final=_real(traj.tau_final),
        log10_norm_beta_final=_real(traj.log10_norm_beta_final),
        log10_loss_final=_real(traj.log10_loss_final), collapsed=bool(traj.beta_collapsed),
        direction=None if direction is None else json.dumps([float(v) for v in direction]),
        dominant=json.dumps([[int(s.index), _real(s.log10_t), _real(getattr(s, "tau", math.nan))]
                             for s in traj.dominant]),
        predicted=predicted, agree=judge(predicted, limit))


def judge(predicted: int | None, limit: int | None) -> bool | None:
    """Whether the observed limit bears the prediction out: None (undecided) without a
    prediction or while the direction has not settled on a basis vector (a horizon too
    short is no evidence against the prediction), else ``predicted == limit``.

    >>> judge(1, 1), judge(1, 0), judge(1, None), judge(None, 0)
    (True, False, None, None)
    """
    if predicted is None or limit is None:
        return None
    return predicted == limit


def limit_index(direction, collapsed: bool, tol: float) -> int | None:
    """``-1`` for collapse, ``k`` when ``|direction - e_k| <= tol`` (up to sign), else None.

    >>> limit_index([0.0, 0.9999999, 0.0004], False, 1e-3), limit_index([0.6, 0.8], False, 1e-3)
    (1, None)
    """
    if collapsed or direction is None:
        return -1
    d = np.abs(np.asarray(direction, float))
    k = int(np.argmax(d))
    e = np.zeros_like(d)
    e[k] = 1.0
    return k if float(np.linalg.norm(d - e)) <= tol else None


def _predict(name: str | None, problem) -> int | None:
    if name is None:
        return None
    from .predict import PREDICTORS

    return PREDICTORS[name](problem)


def _real(value: Any) -> float | None:
    """A float for the store; NaN (undefined) becomes None, +-inf stays."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _values_json(values) -> str:
    return json.dumps([[p, v] for p, v in values])

