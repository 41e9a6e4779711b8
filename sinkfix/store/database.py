"""The database connection: file checks, migrations, WAL, one connection per thread, write transactions.

Robustness: WAL and a busy timeout; one connection per thread (Streamlit reruns on other threads);
every write is one ``BEGIN IMMEDIATE`` transaction; a file that is not a SinkFix database, or one
written by a newer SinkFix, is refused before anything is written to it. A file this process may not
write is opened read-only (``mode=ro``): reads work, writes raise StoreReadOnlyError. A full disk
(SQLITE_FULL, also what ``PRAGMA max_page_count`` gives) raises StoreFullError; the failed
transaction is rolled back, so nothing partial is left.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from sqlite_utils import Database as _SqliteUtilsDatabase
from sqlite_utils.migrations import Migrations

from sinkfix import paths
from sinkfix.errors import StoreError, StoreFullError, StoreReadOnlyError
from sinkfix.policy.ownership import LOCAL, Viewer, check_viewer
from sinkfix.store import schema

SQLITE_HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 30_000


class Connection:
    """Owns the database file. The table families (runs, corpora, ...) are mixins over it."""

    def __init__(self, path: str | Path | None = None, read_only: bool | None = None, *,
                 viewer: Viewer | None = LOCAL):
        """``read_only`` None means: read-only exactly when the file exists and this process may not write it.

        ``viewer`` is who reads and writes when a call names no ``viewer=``: ``local`` (the machine's own
        user: a script, a notebook, the CLI) by default. Servers open their stores with ``viewer=None``,
        so every call there must name its visitor and none can read as someone else by omission."""
        self.path = Path(path) if path is not None else paths.db_path()
        self.viewer = None if viewer is None else check_viewer(viewer)
        self._local = threading.local()
        self._check_file()
        self.read_only = _read_only_file(self.path) if read_only is None else read_only
        if self.read_only and not self.path.exists():
            raise StoreError(f"the database {self.path} does not exist, so it cannot be opened read-only")
        if not self.read_only:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StoreError(f"cannot create the folder for the database {self.path}: {error.strerror}") from None
        try:
            with self._sql_errors():
                db = self._db()
                self._check_schema(db)
                if self.read_only:
                    self._check_current(db)
                else:
                    self._migrate(db)
        except StoreError:
            self.close()  # leave a refused file exactly as it was
            raise

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # ------------------------------------------------------------ opening

    def _viewer(self, viewer: Viewer | None) -> Viewer:
        """The call's viewer, else the store's own; a store opened with ``viewer=None`` needs one per call."""
        if viewer is None and self.viewer is None:
            raise TypeError("this Store was opened with viewer=None: pass viewer= to every call")
        return check_viewer(self.viewer if viewer is None else viewer)

    def _check_file(self) -> None:
        """Refuse a file that is not SQLite before sqlite3 touches it."""
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a folder, not a database file")
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with self.path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
        if header != SQLITE_HEADER:
            raise StoreError(f"{self.path} is not a SQLite database; SinkFix left it untouched")

    def _check_schema(self, db: _SqliteUtilsDatabase) -> None:
        """Read-only checks: only an empty database or one SinkFix knows is opened for writing."""
        tables = {name for name in db.table_names() if not name.startswith("sqlite_")}
        if not tables:
            return
        if Migrations.migrations_table not in tables:
            raise StoreError(f"{self.path} is a SQLite database but not a SinkFix one; SinkFix left it untouched")
        applied = [m.name for m in schema.migrations().applied(db)]
        if not applied:
            raise StoreError(f"{self.path} is a SQLite database but not a SinkFix one; SinkFix left it untouched")
        known = {step.__name__ for step in schema.STEPS}
        unknown = [name for name in applied if name not in known]
        if unknown:
            raise StoreError(
                f"{self.path} was written by a newer SinkFix (schema step {unknown[0]} is unknown here); "
                "upgrade SinkFix to open it. The file was left untouched"
            )

    def _check_current(self, db: _SqliteUtilsDatabase) -> None:
        """A read-only file cannot be migrated, and this SinkFix's queries need the current schema."""
        if schema.migrations().pending(db):
            raise StoreError(f"{self.path} is read-only and needs a schema upgrade this SinkFix cannot write; "
                             "open it once with write access")

    def _migrate(self, db: _SqliteUtilsDatabase) -> None:
        _switch_to_wal(db.conn)
        plan = schema.migrations()
        if not plan.pending(db):
            return
        # One IMMEDIATE transaction: a second process opening a fresh file waits, then finds
        # nothing pending, instead of racing to create the same tables.
        with write(db.conn):
            plan.apply(db)

    def _db(self) -> _SqliteUtilsDatabase:
        """This thread's connection (sqlite3 connections must not cross threads)."""
        db = getattr(self._local, "db", None)
        if db is None:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves (see _write).
            # mode=ro: SQLite itself refuses every write on a read-only file (SQLITE_READONLY).
            target = self.path.resolve().as_uri() + "?mode=ro" if self.read_only else str(self.path)
            conn = sqlite3.connect(target, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, uri=self.read_only)
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            # In WAL mode NORMAL is crash-safe for the application; only an OS crash may lose the last commits.
            conn.execute("PRAGMA synchronous=NORMAL")
            db = _SqliteUtilsDatabase(conn)
            self._local.db = db
        return db

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.conn.close()
            self._local.db = None

    @contextmanager
    def _sql_errors(self) -> Iterator[None]:
        """sqlite3 errors become one-line StoreErrors that name the file."""
        try:
            yield
        except sqlite3.Error as error:
            code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF  # the primary result code
            if code == sqlite3.SQLITE_FULL:
                raise StoreFullError(f"database {self.path}: the disk is full, so nothing was saved; "
                                     "free some space and try again") from None
            if code == sqlite3.SQLITE_READONLY:
                raise StoreReadOnlyError(f"database {self.path} is read-only here: stored runs can be read, "
                                         "new ones cannot be saved") from None
            raise StoreError(f"database {self.path}: {error}") from None

    def schema_version(self) -> int:
        """How many schema steps this database has applied (1 = the first schema)."""
        with self._sql_errors():
            return len(schema.migrations().applied(self._db()))


def _switch_to_wal(conn: sqlite3.Connection) -> None:
    """WAL mode, retried while another process holds the lock. Two processes switching a fresh file at
    the same instant both hold a read lock and want the exclusive one; SQLite sees the deadlock and
    answers one of them SQLITE_BUSY at once, without waiting out the busy timeout. Retrying is safe:
    the other process finishes its switch (or its migrations) and lets go."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            busy = (getattr(error, "sqlite_errorcode", 0) or 0) & 0xFF == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _read_only_file(path: Path) -> bool:
    """An existing file this process may not write (a lab's shared archive, a read-only mount)."""
    return path.exists() and not os.access(path, os.W_OK)


@contextmanager
def write(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction. IMMEDIATE takes the write lock up front, so the busy timeout
    applies there instead of failing a deferred transaction that tries to upgrade later."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def to_json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def dicts(cursor: sqlite3.Cursor) -> list[dict]:
    columns = [c[0] for c in cursor.description]
    return [dict(zip(columns, values)) for values in cursor.fetchall()]
