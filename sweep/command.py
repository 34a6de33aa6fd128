"""``sambias sweep``: run a sweep file into a store, or summarise a store (``--show``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from sambias.errors import SambiasError


def default_store(sweep_file: str | Path, quick: bool = False) -> Path:
    """``NAME.sqlite`` beside the sweep file (``NAME.quick.sqlite`` with ``--quick``), where
    ``NAME`` is the file name without ``.sweep.toml`` / ``.toml`` / ``.json``.

    >>> default_store("runs/linf-basin.sweep.toml", quick=True).as_posix()
    'runs/linf-basin.quick.sqlite'
    """
    path = Path(sweep_file)
    name = path.name
    for suffix in (".sweep.toml", ".sweep.json", ".toml", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return path.with_name(f"{name}{'.quick' if quick else ''}.sqlite")


def command(sweep_file: str | None, *, store: str | None = None, workers: int | None = None,
            dask: str | None = None, dask_local: int | None = None, resume: bool = False, quick: bool = False,
            show: str | None = None, csv: str | None = None, parquet: str | None = None,
            progress: bool = True, out: TextIO = sys.stdout, ensemble: bool = True) -> int:
    """The ``sweep`` command; returns the exit status (bad input raises ``SambiasError``)."""
    from . import export
    from .store import Store

    if show is not None:
        if sweep_file is not None:
            raise SambiasError("give either SWEEP.toml or --show STORE, not both")
        with Store.open(show) as st:
            out.write(export.summary(st) + "\n")
            if csv:
                n = export.write_csv(st, csv)
                out.write(f"wrote {n} records to {csv}\n")
            if parquet:
                n = export.write_parquet(st, parquet)
                out.write(f"wrote {n} records to {parquet}\n")
        return 0
    if sweep_file is None:
        raise SambiasError("give a sweep file (SWEEP.toml) or --show STORE")
    if csv or parquet:
        raise SambiasError("--csv/--parquet go with --show STORE")
    for name, value in (("--workers", workers), ("--dask-local", dask_local)):
        if value is not None and value < 1:
            raise SambiasError(f"{name}: must be >= 1, got {value}")
    if dask is not None and not dask.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        raise SambiasError(f"--dask: expected a scheduler address such as tcp://HOST:PORT, got {dask!r}")
    from .run import make_executor, run_sweep
    from .spec import load_sweep

    sweep = load_sweep(sweep_file)
    if quick:
        sweep = sweep.quick()
    store_path = Path(store) if store else default_store(sweep_file, quick)
    result = run_sweep(sweep, store_path, executor=make_executor(workers, dask, dask_local), resume=resume,
                       progress=progress, version=_version(), ensemble=ensemble)
    out.write(f"{result.computed} points computed ({result.done_before} already in the store) in "
              f"{result.wall_s:.1f} s on {result.executor}: {result.points_per_s:.3g} points/s\n")
    with Store.open(store_path) as st:
        out.write(export.summary(st) + "\n")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sambias")
    except PackageNotFoundError:  # pragma: no cover - a source tree without install
        return "unknown"
