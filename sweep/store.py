"""The results store: one SQLite file in WAL mode, one transaction per finished point.

The file holds the sweep definition, its fingerprint and the package version (table
``meta``), one row per finished point (table ``records``, see
:data:`~sambias.sweep.record.FIELDS`) and, apart from the records, what each point cost
(table ``timings``: wall time, executor) -- timings differ between runs, records must not.
A point's record and timing are written in one transaction with ``synchronous=FULL``, so
a crash, ``kill -9`` or Ctrl-C loses no finished point and never leaves half a record.

>>> import tempfile, os
>>> from sambias.sweep.spec import sweep_from_dict
>>> s = sweep_from_dict({"problem": {"depth": 1, "algorithm": "gd", "X": [[1.0]], "y": [1],
...     "init": {"scale": 0.0}}, "horizon": "1", "axes": {"init.scale": [0.0, 0.1]}})
>>> path = os.path.join(tempfile.mkdtemp(), "s.sqlite")
>>> with Store.create(path, s) as store:
...     store.done_indices()
set()
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from sambias.errors import SambiasError

from .record import FIELDS, Record

STORE_SCHEMA = "sambias.sweepstore/1"

_DDL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE records (
    idx INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, "values" TEXT NOT NULL, status TEXT NOT NULL,
    "limit" INTEGER, leaders TEXT NOT NULL, log10_t_final REAL, tau_final REAL,
    log10_norm_beta_final REAL, log10_loss_final REAL, collapsed INTEGER NOT NULL, direction TEXT,
    dominant TEXT NOT NULL, predicted INTEGER, agree INTEGER);
CREATE TABLE timings (idx INTEGER PRIMARY KEY REFERENCES records(idx), wall_s REAL NOT NULL,
    executor TEXT NOT NULL, finished_utc TEXT NOT NULL);
"""


class StoreError(SambiasError):
    """A store that cannot be used as asked (the CLI prints the one-line message)."""


class Store:
    """An open results store; use :meth:`create` or :meth:`open` (context managers)."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    # --- opening ---------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, sweep, version: str = "") -> "Store":
        """A new store for ``sweep`` at ``path`` (which must not exist yet)."""
        path = Path(path)
        if path.exists():
            raise StoreError(f"{path}: already exists (pass --resume to continue it, or choose another --store)")
        try:
            conn = _connect(path)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot create the store ({exc})") from None
        meta = {"schema": STORE_SCHEMA, "sweep": json.dumps(sweep.definition(), sort_keys=True),
                "fingerprint": sweep.fingerprint(), "version": version, "points": str(len(sweep.points())),
                "created_utc": _now()}
        conn.execute("BEGIN IMMEDIATE")
        for stmt in filter(str.strip, _DDL.split(";")):
            conn.execute(stmt)
        conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        conn.execute("COMMIT")
        return cls(conn, path)

    @classmethod
    def open(cls, path: str | Path) -> "Store":
        """An existing store (checked to be a sambias sweep store)."""
        path = Path(path)
        if not path.is_file():
            raise StoreError(f"{path}: no such store")
        try:
            conn = _connect(path)
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.Error:
            raise StoreError(f"{path}: not a sambias sweep store (not an SQLite database with a meta table)") from None
        if row is None or row[0] != STORE_SCHEMA:
            conn.close()
            raise StoreError(f"{path}: not a {STORE_SCHEMA} store")
        return cls(conn, path)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- reading ----------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        return dict(self._conn.execute("SELECT key, value FROM meta"))

    def definition(self) -> dict:
        """The stored sweep definition."""
        return json.loads(self.meta()["sweep"])

    def done_indices(self) -> set[int]:
        return {r[0] for r in self._conn.execute("SELECT idx FROM records")}

    def records(self) -> list[Record]:
        """Every record, by point index."""
        cols = ", ".join(f'"{f}"' for f in FIELDS)
        rows = self._conn.execute(f"SELECT {cols} FROM records ORDER BY idx")
        return [_record(r) for r in rows]

    def timings(self) -> list[tuple[int, float, str, str]]:
        return list(self._conn.execute("SELECT idx, wall_s, executor, finished_utc FROM timings ORDER BY idx"))

    def __len__(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]

    # --- writing ----------------------------------------------------------------------
    def add(self, record: Record, wall_s: float, executor: str) -> bool:
        """Write one finished point (record + timing) in one transaction.

        Returns False, writing nothing, when the point is already there (a resubmitted
        task computes the same record, so the first copy stands).
        """
        placeholders = ", ".join("?" for _ in FIELDS)
        cols = ", ".join(f'"{f}"' for f in FIELDS)
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            if self._conn.execute("SELECT 1 FROM records WHERE idx = ?", (record.idx,)).fetchone():
                self._conn.execute("ROLLBACK")
                return False
            self._conn.execute(f"INSERT INTO records ({cols}) VALUES ({placeholders})", _row(record))
            self._conn.execute("INSERT INTO timings VALUES (?, ?, ?, ?)", (record.idx, wall_s, executor, _now()))
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        return True


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: transactions are opened and closed explicitly, one per point.
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def _row(record: Record) -> tuple:
    row = list(record.row())
    i = FIELDS.index
    row[i("collapsed")] = int(record.collapsed)
    row[i("agree")] = None if record.agree is None else int(record.agree)
    return tuple(row)


def _record(row: tuple) -> Record:
    values = dict(zip(FIELDS, row))
    values["collapsed"] = bool(values["collapsed"])
    values["agree"] = None if values["agree"] is None else bool(values["agree"])
    return Record(**values)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")

