"""Reading a store out: the CONTRACT's CSV, pandas / xarray, Parquet and the summary table.

Rows are sorted by the axes' values (in the axes' order), so every export is identical
whatever executor filled the store and in whatever order points finished.  Floats are
written with ``repr``, which round-trips exactly.

>>> csv_columns(["rho"])
['rho', 'status', 'limit', 'leaders', 'log10_t_final', 'tau_final']
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

from .record import FIELDS, Record, judge
from .store import Store, StoreError

CSV_TAIL = ("status", "limit", "leaders", "log10_t_final", "tau_final")


def csv_columns(axes: list[str]) -> list[str]:
    """The CSV header: the axes' paths, then the CONTRACT's record columns."""
    return [*axes, *CSV_TAIL]


def axis_paths(store: Store) -> list[str]:
    return [a["path"] for a in store.definition()["axes"]]


def sorted_records(store: Store) -> list[tuple[dict, Record]]:
    """``(axis values, record)`` pairs sorted by the axes' values."""
    paths = axis_paths(store)
    rows = [(dict(json.loads(r.values)), r) for r in store.records()]
    rows.sort(key=lambda vr: (tuple(vr[0][p] for p in paths), vr[1].idx))
    return rows


def write_csv(store: Store, out: str | Path | io.TextIOBase) -> int:
    """Write every record as CSV (CONTRACT columns); returns the number of rows."""
    paths = axis_paths(store)
    rows = sorted_records(store)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(csv_columns(paths))
    for values, r in rows:
        writer.writerow([*(_cell(values[p]) for p in paths), r.status, _cell(r.limit), r.leaders,
                         _cell(r.log10_t_final), _cell(r.tau_final)])
    if isinstance(out, (str, Path)):
        try:
            Path(out).write_text(buffer.getvalue(), encoding="utf-8")
        except OSError as exc:
            raise StoreError(f"cannot write {out} ({exc.strerror})") from None
    else:
        out.write(buffer.getvalue())
    return len(rows)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def to_pandas(store: Store):
    """Every record as a ``pandas.DataFrame`` (one column per axis, then every record field),
    sorted by the axes."""
    import pandas as pd

    paths = axis_paths(store)
    data = []
    for values, r in sorted_records(store):
        row = {p: values[p] for p in paths}
        row.update({f: getattr(r, f) for f in FIELDS if f != "values"})
        data.append(row)
    frame = pd.DataFrame(data, columns=[*paths, *(f for f in FIELDS if f != "values")])
    for col in ("limit", "predicted"):
        frame[col] = frame[col].astype("Int64")
    frame["agree"] = frame["agree"].astype("boolean")
    return frame


def to_xarray(store: Store):
    """A labeled grid (``xarray.Dataset``, dimensions = the axes) of a grid sweep;
    unfinished points are missing values.  Needs xarray (optional)."""
    try:
        import xarray  # noqa: F401
    except ImportError:
        raise StoreError("xarray is not installed (pip install xarray)") from None
    if store.definition().get("sample") is not None:
        raise StoreError("a sampled sweep has no grid; use to_pandas")
    frame = to_pandas(store).drop(columns=["idx", "key"])
    paths = axis_paths(store)
    return frame.set_index(paths).to_xarray()


def write_parquet(store: Store, out: str | Path) -> int:
    """Write every record as Parquet (needs pyarrow, optional); returns the row count."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise StoreError("Parquet needs pyarrow (pip install pyarrow); --csv works without it") from None
    frame = to_pandas(store)
    frame.to_parquet(out, index=False)
    return len(frame)


def summary(store: Store) -> str:
    """The table ``sambias sweep --show`` prints."""
    meta = store.meta()
    sweep = json.loads(meta["sweep"])
    records = store.records()
    timings = store.timings()
    p = sweep["problem"]
    statuses = Counter(r.status.split(":", 1)[0] for r in records)
    limits = Counter(_limit_name(r.limit) for r in records)
    wall = sum(t[1] for t in timings)
    executors = ", ".join(sorted({t[2] for t in timings})) or "-"
    axes = "; ".join(_axis_line(a) for a in sweep["axes"])
    sample = sweep.get("sample")
    lines = [
        f"store      {store.path}",
        f"sweep      {sweep.get('name') or '-'}{' (quick)' if sweep.get('quick') else ''}, "
        f"sambias {meta.get('version') or '?'}, created {meta.get('created_utc')}",
        f"problem    L={p['depth']} {p['algorithm']}, rho={p['rho']:g}, loss={p['loss']}, "
        f"n={len(p['X'])}, d={len(p['X'][0])}",
        f"axes       {axes}" + (f"  [sample n={sample['n']}, seed={sample['seed']}]" if sample else ""),
        f"horizon    {sweep['time']} {sweep['horizon']}, {sweep['precision']}, method {sweep['method']}, "
        f"rtol {sweep['rtol'] or 'default'}, limit_tol {sweep['limit_tol']:g}",
        f"points     {len(records)} / {meta.get('points', '?')} finished",
        f"status     {_counts(statuses)}",
        f"limit      {_counts(limits)}",
    ]
    if sweep.get("predict"):
        verdicts = [judge(r.predicted, r.limit) for r in records]
        judged = [v for v in verdicts if v is not None]
        unsettled = sum(r.predicted is not None and r.limit is None for r in records)
        lines.append(f"predicted  {sweep['predict']}: {sum(judged)} / {len(judged)} agree "
                     f"({unsettled} not settled on a basis vector, "
                     f"{sum(r.predicted is None for r in records)} without a prediction)")
    if records:
        lines.append(f"time       {wall:.1f} s of compute, {wall / len(records):.3g} s per point; {executors}")
    return "\n".join(lines)


def _limit_name(limit: int | None) -> str:
    return "none" if limit is None else "collapse" if limit == -1 else f"e{limit}"


def _counts(counter: Counter) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counter.items())) or "-"


def _axis_line(axis: dict) -> str:
    values = axis["values"]
    if axis["bounds"] is not None:
        return f"{axis['path']} {axis['kind']} [{axis['bounds'][0]:g}, {axis['bounds'][1]:g}] x {len(values)}"
    return f"{axis['path']} in {{{', '.join(map(str, values))}}}"
