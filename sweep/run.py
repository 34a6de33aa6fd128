"""Running a sweep: executors (serial, local process pool, Dask) feeding the store.

Every executor maps :func:`~sambias.sweep.record.evaluate` over the unfinished points
and yields ``(record, wall_s)`` as points finish, in whatever order; the main process
alone writes to the store, one transaction per point.  Records are keyed by the point's
index, so the order points finish in never shows in the store.

>>> from sambias.sweep.spec import sweep_from_dict
>>> import tempfile, os
>>> s = sweep_from_dict({"problem": {"depth": 1, "algorithm": "gd", "X": [[2.0, 1.0]], "y": [1],
...     "init": {"scale": 0.0}}, "horizon": "2", "time": "rescaled", "axes": {"X.0.1": [0.0, 1.0]}})
>>> out = run_sweep(s, os.path.join(tempfile.mkdtemp(), "s.sqlite"), executor=SerialExecutor(), progress=False)
>>> out.computed, out.total
(2, 2)
"""

from __future__ import annotations

import os
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Iterable, Iterator

from .record import Record, Task, evaluate, evaluate_batch
from .spec import Sweep, check_points
from .store import Store, StoreError


@dataclass(frozen=True)
class RunSummary:
    """What one call of :func:`run_sweep` did."""

    store: str
    total: int
    done_before: int
    computed: int
    executor: str
    wall_s: float

    @property
    def points_per_s(self) -> float:
        return self.computed / self.wall_s if self.wall_s > 0 else float("nan")


class SerialExecutor:
    """Points one after another in this process."""

    name = "serial"

    def __enter__(self) -> "SerialExecutor":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def run(self, tasks: Iterable[Task], fn=evaluate) -> Iterator[tuple[Record, float]]:
        for task in tasks:
            yield fn(task)


def _ignore_sigint() -> None:
    # Ctrl-C reaches the whole process group; only the parent should react (and keep the
    # finished points), workers would otherwise each print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class PoolExecutor:
    """A local process pool (``spawn``: no state forked from the parent's threads).

    ``workers`` defaults to every core.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.name = f"pool:{self.workers}"
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> "PoolExecutor":
        self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"),
                                         initializer=_ignore_sigint)
        return self

    def __exit__(self, exc_type, *exc) -> None:
        # On an interrupt do not wait for running points: their results would be dropped.
        self._pool.shutdown(wait=exc_type is None, cancel_futures=True)

    def run(self, tasks: Iterable[Task], fn=evaluate) -> Iterator[tuple[Record, float]]:
        futures = [self._pool.submit(fn, t) for t in tasks]
        for future in as_completed(futures):
            yield future.result()


class DaskExecutor:
    """Dask distributed: ``address`` of a running scheduler (``tcp://HOST:PORT``), or a
    ``LocalCluster`` of ``local_workers`` single-threaded workers on loopback
    (``processes=False``: threads in this process, for tests)."""

    def __init__(self, address: str | None = None, local_workers: int | None = None,
                 processes: bool = True) -> None:
        if (address is None) == (local_workers is None):
            raise ValueError("give exactly one of address or local_workers")
        self.address, self.local_workers, self.processes = address, local_workers, processes
        self.name = f"dask:{address}" if address else f"dask-local:{local_workers}"
        self._cluster = self._client = None

    def __enter__(self) -> "DaskExecutor":
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise StoreError("Dask is not installed (pip install 'sambias[sweep]')") from None
        if self.address is None:
            self._cluster = LocalCluster(n_workers=self.local_workers, threads_per_worker=1,
                                         processes=self.processes, protocol="tcp://", host="127.0.0.1",
                                         dashboard_address=None)
            self._client = Client(self._cluster)
        else:
            try:
                self._client = Client(self.address, timeout="10s")
            except (OSError, TimeoutError, ValueError) as exc:
                raise StoreError(f"--dask {self.address}: cannot reach the scheduler ({exc})") from None
        return self

    def __exit__(self, *exc) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()

    def run(self, tasks: Iterable[Task], fn=evaluate) -> Iterator[tuple[Record, float]]:
        from distributed import as_completed as dask_completed

        tasks = list(tasks)
        if not tasks:
            return
        # pure=False: a point is never served from Dask's cache of another run.
        futures = self._client.map(fn, tasks, pure=False)
        for future in dask_completed(futures):
            yield future.result()


def make_executor(workers: int | None = None, dask: str | None = None, dask_local: int | None = None):
    """The executor the command line asks for (default: a pool on every core;
    ``workers=1``: serial, in this process)."""
    if dask is not None:
        return DaskExecutor(address=dask)
    if dask_local is not None:
        return DaskExecutor(local_workers=dask_local)
    if workers == 1:
        return SerialExecutor()
    return PoolExecutor(workers)


def tasks_for(sweep: Sweep, skip: set[int] = frozenset()) -> list[Task]:
    """The unfinished points of ``sweep`` as tasks, in the sweep's order."""
    options = sweep.simulate_options()
    return [Task(idx=p.idx, key=p.key, values=p.values, problem=sweep.problem_dict(p), horizon=sweep.horizon,
                 options=options, limit_tol=sweep.limit_tol, predict=sweep.predict)
            for p in sweep.points() if p.idx not in skip]


def open_for_run(sweep: Sweep, path: str | Path, resume: bool, version: str) -> Store:
    """Create the store, or reopen it for ``--resume`` after checking it holds this sweep."""
    path = Path(path)
    if not (resume and path.exists()):
        return Store.create(path, sweep, version)
    store = Store.open(path)
    meta = store.meta()
    if meta.get("fingerprint") != sweep.fingerprint():
        store.close()
        raise StoreError(f"{path}: holds a different sweep (its stored definition differs from this file); "
                         f"choose another --store")
    if meta.get("version") != version:
        print(f"sambias sweep: warning: {path} was started with sambias {meta.get('version')}, "
              f"this is {version}", file=sys.stderr)
    return store


def chunks_for(tasks: list[Task], workers: int) -> list[list[Task]]:
    """Tasks grouped by problem shape (depth, algorithm, loss, n, d) into chunks for the ensemble
    path: about four chunks per worker and shape (progress and balance), at most 128 points each.

    >>> t = [Task(i, str(i), (), {"depth": 2, "algorithm": "gd", "X": [[1.0]], "y": [1]}, "1") for i in range(9)]
    >>> [len(c) for c in chunks_for(t, 2)]
    [2, 2, 2, 2, 1]
    """
    groups: dict[tuple, list[Task]] = {}
    for task in tasks:
        p = task.problem
        X = p.get("X")
        dims = (len(X), len(X[0]) if X else 0) if isinstance(X, list) else ("data", str(p.get("data")))
        key = (p.get("depth"), p.get("algorithm"), p.get("loss", "exp"), dims)
        groups.setdefault(key, []).append(task)
    out = []
    for members in groups.values():
        size = max(1, min(128, -(-len(members) // (4 * max(1, workers)))))
        out.extend(members[i:i + size] for i in range(0, len(members), size))
    return out


def run_sweep(sweep: Sweep, store_path: str | Path, *, executor=None, resume: bool = False,
              progress: bool = True, version: str = "", ensemble: bool = True) -> RunSummary:
    """Run every unfinished point of ``sweep`` into the store at ``store_path``.

    Bad points are reported before the store is touched; an interrupt (Ctrl-C) keeps
    every finished point and says how to resume.  ``ensemble=True`` runs points of one
    shape in chunks through the ensemble path (:func:`~sambias.sweep.record.evaluate_batch`);
    ``False`` runs them one by one.
    """
    check_points(sweep)
    executor = executor or PoolExecutor()
    start = time.perf_counter()
    # the executor first: a scheduler that cannot be reached must not leave an empty store behind
    with executor, open_for_run(sweep, store_path, resume, version) as store:
        done = store.done_indices()
        tasks = tasks_for(sweep, done)
        total = len(sweep.points())
        computed = 0
        bar = _bar(total, len(done), progress)
        if ensemble:
            workers = getattr(executor, "workers", None) or getattr(executor, "local_workers", None) or 4
            results = (rw for chunk in executor.run(chunks_for(tasks, workers), evaluate_batch) for rw in chunk)
        else:
            results = executor.run(tasks)
        try:
            for record, wall in results:
                computed += store.add(record, wall, executor.name)
                if bar is not None:
                    bar.update(1)
        except KeyboardInterrupt:
            print(f"\nsambias sweep: {len(done) + computed} of {total} points are in {store_path}; "
                  f"continue with --resume", file=sys.stderr)
            raise
        finally:
            if bar is not None:
                bar.close()
    return RunSummary(str(store_path), total, len(done), computed, executor.name, time.perf_counter() - start)


def _bar(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, file=sys.stderr, unit="pt", desc="sweep", dynamic_ncols=True)
