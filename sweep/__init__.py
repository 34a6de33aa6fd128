"""Sweeps at scale: a base problem over axes of its fields, run by a serial loop, a local
process pool or Dask, into a transactional SQLite results store.

* :func:`load_sweep` / :class:`Sweep` -- sweep files (CONTRACT.md), validated;
* :func:`run_sweep` with :class:`SerialExecutor`, :class:`PoolExecutor`, :class:`DaskExecutor`;
* :class:`Store` -- one SQLite file, one transaction per finished point;
* :func:`write_csv`, :func:`to_pandas`, :func:`to_xarray`, :func:`write_parquet`, :func:`summary`.

>>> from sambias.sweep import load_sweep, run_sweep, Store, to_pandas   # doctest: +SKIP
>>> sweep = load_sweep("examples/linf-basin.sweep.toml").quick()          # doctest: +SKIP
>>> run_sweep(sweep, "basin.sqlite")                                      # doctest: +SKIP
>>> to_pandas(Store.open("basin.sqlite"))                                 # doctest: +SKIP
"""

from .export import summary, to_pandas, to_xarray, write_csv, write_parquet
from .record import Record, Task, evaluate, limit_index
from .run import DaskExecutor, PoolExecutor, RunSummary, SerialExecutor, make_executor, run_sweep
from .spec import Axis, Point, Sweep, SweepError, load_sweep, sweep_from_dict
from .store import Store, StoreError
from .command import command, default_store

__all__ = ["Axis", "DaskExecutor", "Point", "PoolExecutor", "Record", "RunSummary", "SerialExecutor", "Store",
           "StoreError", "Sweep", "SweepError", "Task", "command", "default_store", "evaluate", "limit_index",
           "load_sweep", "make_executor", "run_sweep", "summary", "sweep_from_dict", "to_pandas", "to_xarray",
           "write_csv", "write_parquet"]
