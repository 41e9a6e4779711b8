"""The run database: every analysis in SQLite, scalars in plain tables, tensors as safetensors blobs.

Layout (see STEPS for the exact schema):
- ``runs``: one row per analysis, with what listing and filtering need (model, text, created_at,
  per-label token counts) and the metadata that rebuilds the Analysis (settings as JSON, tokens...).
- ``run_tokens`` / ``run_heads``: the per-token and per-(layer, head) summary rows, so charts and
  filters query them without decoding a blob.
- ``run_blobs``: ``arrays`` (every per-token / per-head array, float32, bit-exact) and one
  ``maps/{layer}`` blob per layer (that layer's H x T x T attention, float16), so one head's map
  is read without decoding the other layers.
- ``corpora`` / ``corpus_runs``: named groups of runs made by ``sinkfix batch`` (one run per input
  line) and each corpus's summary as JSON (see sinkfix.corpus).

Attention maps are stored as float16. Corrected maps are not stored when they are exactly
``redistribute(maps, sink_mask(sink_indices), beta)`` (what ``analyze()`` produces): ``get()``
recomputes them from the float16 maps, which halves the storage. Anything else is stored as
``corrected/{layer}`` float16 blobs.

Robustness: WAL and a busy timeout; one connection per thread (Streamlit reruns on other threads);
every run is written in one ``BEGIN IMMEDIATE`` transaction; a file that is not a SinkFix database,
or one written by a newer SinkFix, is refused before anything is written to it.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from . import classify, paths, tensorio
from .analysis import Analysis
from .errors import CorpusNotFoundError, RunNotFoundError, StoreError
from .redistribute import redistribute, sink_mask
from .settings import AnalysisSettings

SQLITE_HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 30_000
MIGRATION_SET = "sinkfix"
MAPS_DTYPE = np.float16
ORDERS = {"newest": "created_at DESC, id DESC", "oldest": "created_at ASC, id ASC"}

# The per-token and per-head arrays of an Analysis, stored float32 in the "arrays" blob.
ARRAY_FIELDS = (
    "att_received", "att_received_layer", "att_received_head", "alpha", "sink_rate", "entropy",
    "value_norm", "value_norm_layer", "value_norm_head", "contribution",
)


# ---------------------------------------------------------------- schema
# Each step is a function of a sqlite_utils Database, applied once, in list order, inside one
# transaction with the others pending. To change the schema, APPEND a step to STEPS; never edit
# or reorder a released step (a database records the names of the steps it has applied, and
# one that names a step this code does not know is refused as "from a newer SinkFix").


def _execute_all(db: Database, statements: list[str]) -> None:
    # Not executescript(): it would COMMIT the surrounding transaction.
    for statement in statements:
        db.execute(statement)


def m001_runs(db: Database) -> None:
    """The first schema: runs, their per-token and per-head rows, and their tensor blobs."""
    _execute_all(db, [
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            created_at TEXT NOT NULL,
            cache_key TEXT,
            model TEXT NOT NULL,
            model_id TEXT NOT NULL,
            model_type TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            is_causal INTEGER NOT NULL,
            n_layers INTEGER NOT NULL,
            n_heads INTEGER NOT NULL,
            n_kv_heads INTEGER NOT NULL,
            n_tokens INTEGER NOT NULL,
            text TEXT NOT NULL,
            tokens TEXT NOT NULL,
            token_ids TEXT NOT NULL,
            rule TEXT NOT NULL,
            sink_indices TEXT NOT NULL,
            settings TEXT NOT NULL,
            warnings TEXT NOT NULL,
            timings TEXT NOT NULL,
            truncated INTEGER NOT NULL,
            version TEXT NOT NULL,
            has_maps INTEGER NOT NULL,
            maps_dtype TEXT,
            corrected_stored INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX runs_created_at ON runs (created_at)",
        "CREATE INDEX runs_model ON runs (model, created_at)",
        "CREATE INDEX runs_cache_key ON runs (cache_key)",
        """CREATE TABLE run_tokens (
            run_id INTEGER NOT NULL,
            idx INTEGER NOT NULL,
            token TEXT NOT NULL,
            att_received REAL NOT NULL,
            value_norm REAL NOT NULL,
            sink_rate REAL NOT NULL,
            label TEXT NOT NULL,
            PRIMARY KEY (run_id, idx)
        ) WITHOUT ROWID""",
        """CREATE TABLE run_heads (
            run_id INTEGER NOT NULL,
            layer INTEGER NOT NULL,
            head INTEGER NOT NULL,
            top_token INTEGER NOT NULL,
            top_token_text TEXT NOT NULL,
            top_alpha REAL NOT NULL,
            entropy REAL NOT NULL,
            token0_share REAL NOT NULL,
            top_contribution_share REAL,
            PRIMARY KEY (run_id, layer, head)
        ) WITHOUT ROWID""",
        """CREATE TABLE run_blobs (
            run_id INTEGER NOT NULL,
            name TEXT NOT NULL,
            data BLOB NOT NULL,
            PRIMARY KEY (run_id, name)
        )""",
    ])


def m002_label_counts(db: Database) -> None:
    """Per-run label counts as columns, so listing with a label filter never scans run_tokens."""
    for label in classify.LABELS:
        db.execute(f"ALTER TABLE runs ADD COLUMN n_{label} INTEGER NOT NULL DEFAULT 0")
        db.execute(
            f"UPDATE runs SET n_{label} = "
            f"(SELECT COUNT(*) FROM run_tokens t WHERE t.run_id = runs.id AND t.label = ?)",
            [label],
        )


def m003_corpora(db: Database) -> None:
    """Corpora: named groups of runs (one per input line) made by ``sinkfix batch``, with their summary."""
    _execute_all(db, [
        """CREATE TABLE corpora (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            model TEXT NOT NULL,
            settings TEXT NOT NULL,
            source TEXT NOT NULL,
            created_at TEXT NOT NULL,
            summary TEXT,
            summary_at TEXT
        )""",
        """CREATE TABLE corpus_runs (
            corpus_id INTEGER NOT NULL,
            line_no INTEGER NOT NULL,
            run_id INTEGER NOT NULL,
            PRIMARY KEY (corpus_id, line_no)
        ) WITHOUT ROWID""",
        "CREATE INDEX corpus_runs_run ON corpus_runs (run_id)",
    ])


def m004_evaluations(db: Database) -> None:
    """Intervention results (``sinkfix evaluate`` / ``sts``) and named calibrated head sets
    (``sinkfix calibrate``). Scalars that lists and charts need are columns; the full result is JSON.
    ``run_id`` links an evaluation to the analysis run it was made from, when there is one."""
    _execute_all(db, [
        """CREATE TABLE evaluations (
            id INTEGER PRIMARY KEY,
            created_at TEXT NOT NULL,
            kind TEXT NOT NULL,
            model TEXT NOT NULL,
            target TEXT NOT NULL,
            beta REAL NOT NULL,
            heads TEXT,
            run_id INTEGER,
            baseline REAL,
            intervened REAL,
            delta REAL,
            ci_low REAL,
            ci_high REAL,
            result TEXT NOT NULL
        )""",
        "CREATE INDEX evaluations_model ON evaluations (model, created_at)",
        "CREATE INDEX evaluations_run ON evaluations (run_id)",
        """CREATE TABLE calibrations (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            model TEXT NOT NULL,
            task TEXT NOT NULL,
            metric TEXT NOT NULL,
            kept_heads TEXT NOT NULL,
            dev_baseline REAL,
            heldout_delta REAL,
            result TEXT NOT NULL
        )""",
    ])


STEPS: list[Callable[[Database], None]] = [m001_runs, m002_label_counts, m003_corpora, m004_evaluations]


def migrations(steps: list[Callable[[Database], None]] | None = None) -> Migrations:
    """The sqlite-utils Migrations for ``steps`` (default: all of STEPS), in order."""
    result = Migrations(MIGRATION_SET)
    for step in STEPS if steps is None else steps:
        result()(step)
    return result


# ---------------------------------------------------------------- the store


class Store:
    """A SinkFix run database. Safe to share across threads: each thread gets its own connection."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else paths.db_path()
        self._local = threading.local()
        self._check_file()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"cannot create the folder for the database {self.path}: {error.strerror}") from None
        try:
            with self._sql_errors():
                db = self._db()
                self._check_schema(db)
                self._migrate(db)
        except StoreError:
            self.close()  # leave a refused file exactly as it was
            raise

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # ------------------------------------------------------------ opening

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

    def _check_schema(self, db: Database) -> None:
        """Read-only checks: only an empty database or one SinkFix knows is opened for writing."""
        tables = {name for name in db.table_names() if not name.startswith("sqlite_")}
        if not tables:
            return
        if Migrations.migrations_table not in tables:
            raise StoreError(f"{self.path} is a SQLite database but not a SinkFix one; SinkFix left it untouched")
        applied = [m.name for m in migrations().applied(db)]
        if not applied:
            raise StoreError(f"{self.path} is a SQLite database but not a SinkFix one; SinkFix left it untouched")
        known = {step.__name__ for step in STEPS}
        unknown = [name for name in applied if name not in known]
        if unknown:
            raise StoreError(
                f"{self.path} was written by a newer SinkFix (schema step {unknown[0]} is unknown here); "
                "upgrade SinkFix to open it. The file was left untouched"
            )

    def _migrate(self, db: Database) -> None:
        if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            db.execute("PRAGMA journal_mode=WAL")
        plan = migrations()
        if not plan.pending(db):
            return
        # One IMMEDIATE transaction: a second process opening a fresh file waits, then finds
        # nothing pending, instead of racing to create the same tables.
        with _write(db.conn):
            plan.apply(db)

    def _db(self) -> Database:
        """This thread's connection (sqlite3 connections must not cross threads)."""
        db = getattr(self._local, "db", None)
        if db is None:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves (see _write).
            conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            # In WAL mode NORMAL is crash-safe for the application; only an OS crash may lose the last commits.
            conn.execute("PRAGMA synchronous=NORMAL")
            db = Database(conn)
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
            raise StoreError(f"database {self.path}: {error}") from None

    def schema_version(self) -> int:
        """How many schema steps this database has applied (1 = the first schema)."""
        with self._sql_errors():
            return len(migrations().applied(self._db()))

    # ------------------------------------------------------------ writing

    def save(self, analysis: Analysis, cache_key: str | None = None) -> int:
        """Store ``analysis`` in one transaction and return its run id.

        ``cache_key`` defaults to the key of the analysis's own request (see sinkfix.cache), so
        any saved run can serve a later identical request. An empty ``created_at`` is stamped now.
        """
        from .cache import key_of_analysis  # cache imports store

        key = cache_key if cache_key is not None else key_of_analysis(analysis)
        created_at = analysis.created_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
        # Encode (the slow, CPU-bound part) before taking the write lock.
        blobs, corrected_stored = _encode_blobs(analysis)
        row = _run_row(analysis, key, created_at, corrected_stored)
        tokens = [(r["index"], r["token"], r["att_received"], r["value_norm"], r["sink_rate"], r["label"])
                  for r in analysis.token_table()]
        heads = [(r["layer"], r["head"], r["top_token"], r["top_token_text"], r["top_alpha"], r["entropy"],
                  r["token0_share"], r["top_contribution_share"]) for r in analysis.head_table()]
        with self._sql_errors():
            conn = self._db().conn
            with _write(conn):
                run_id = _insert_run(conn, row)
                _insert_tokens(conn, run_id, tokens)
                _insert_heads(conn, run_id, heads)
                _insert_blobs(conn, run_id, blobs)
        return run_id

    def delete(self, run_id: int) -> None:
        with self._sql_errors():
            conn = self._db().conn
            with _write(conn):
                if conn.execute("DELETE FROM runs WHERE id = ?", [run_id]).rowcount == 0:
                    raise RunNotFoundError(self._not_found(run_id))
                for table in ("run_tokens", "run_heads", "run_blobs"):
                    conn.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])

    # ------------------------------------------------------------ reading

    def find(self, cache_key: str) -> int | None:
        """The newest run stored under ``cache_key``, or None."""
        with self._sql_errors():
            row = self._db().execute(
                "SELECT id FROM runs WHERE cache_key = ? ORDER BY id DESC LIMIT 1", [cache_key]
            ).fetchone()
        return None if row is None else int(row[0])

    def get(self, run_id: int) -> Analysis:
        """Rebuild the stored Analysis: float32 arrays bit-exact, maps exact at float16."""
        with self._sql_errors():
            db = self._db()
            row = self._run_row(db, run_id)
            labels = [r[0] for r in db.execute(
                "SELECT label FROM run_tokens WHERE run_id = ? ORDER BY idx", [run_id])]
            blobs = dict(db.execute("SELECT name, data FROM run_blobs WHERE run_id = ?", [run_id]).fetchall())
        return _rebuild(row, labels, blobs)

    def head_map(self, run_id: int, layer: int, head: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(original, corrected) T x T float32 maps of one head, decoding only that layer's blob.

        None when the run kept no maps (its text was above the map limit).
        """
        with self._sql_errors():
            db = self._db()
            row = self._run_row(db, run_id)
            if not row["has_maps"]:
                return None
            if not (0 <= layer < row["n_layers"] and 0 <= head < row["n_heads"]):
                raise StoreError(
                    f"run {run_id} has layers 0..{row['n_layers'] - 1} and heads 0..{row['n_heads'] - 1}; "
                    f"got layer {layer}, head {head}"
                )
            names = [f"maps/{layer}"] + ([f"corrected/{layer}"] if row["corrected_stored"] else [])
            marks = ",".join("?" * len(names))
            blobs = dict(db.execute(
                f"SELECT name, data FROM run_blobs WHERE run_id = ? AND name IN ({marks})", [run_id, *names]
            ).fetchall())
        original = tensorio.loads(blobs[f"maps/{layer}"])["maps"][head].astype(np.float32)
        if row["corrected_stored"]:
            corrected = tensorio.loads(blobs[f"corrected/{layer}"])["maps"][head].astype(np.float32)
        else:
            corrected = _corrected(original, json.loads(row["sink_indices"]), _settings(row).beta)
        return original, corrected

    def list(self, model: str | None = None, text_contains: str | None = None, since: str | None = None,
             label: str | None = None, limit: int = 50, offset: int = 0, order: str = "newest") -> list[dict]:
        """Light rows for a history page; reads only the ``runs`` table, never a blob."""
        if order not in ORDERS:
            raise StoreError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
        where, params = _filters(model, text_contains, since, label)
        sql = (
            "SELECT id, created_at, model, text, n_tokens, n_beneficial, n_detrimental, n_neutral, has_maps "
            f"FROM runs {where} ORDER BY {ORDERS[order]} LIMIT ? OFFSET ?"
        )
        with self._sql_errors():
            cursor = self._db().execute(sql, [*params, int(limit), int(offset)])
            columns = [c[0] for c in cursor.description]
            rows = [dict(zip(columns, values)) for values in cursor.fetchall()]
        for row in rows:
            row["has_maps"] = bool(row["has_maps"])
        return rows

    def count(self, model: str | None = None, text_contains: str | None = None, since: str | None = None,
              label: str | None = None) -> int:
        """How many runs ``list`` would page through with the same filters."""
        where, params = _filters(model, text_contains, since, label)
        with self._sql_errors():
            return int(self._db().execute(f"SELECT COUNT(*) FROM runs {where}", params).fetchone()[0])

    def models(self) -> list[str]:
        """Distinct model names, for filter widgets."""
        with self._sql_errors():
            return [r[0] for r in self._db().execute("SELECT DISTINCT model FROM runs ORDER BY model")]

    def token_rows(self, run_id: int) -> list[dict]:
        with self._sql_errors():
            db = self._db()
            self._run_row(db, run_id)
            return _dicts(db.execute(
                "SELECT idx AS \"index\", token, att_received, value_norm, sink_rate, label "
                "FROM run_tokens WHERE run_id = ? ORDER BY idx", [run_id]))

    def head_rows(self, run_id: int) -> list[dict]:
        with self._sql_errors():
            db = self._db()
            self._run_row(db, run_id)
            return _dicts(db.execute(
                "SELECT layer, head, top_token, top_token_text, top_alpha, entropy, token0_share, "
                "top_contribution_share FROM run_heads WHERE run_id = ? ORDER BY layer, head", [run_id]))

    # ------------------------------------------------------------ corpora (sinkfix.batch, sinkfix.corpus)

    def open_corpus(self, name: str, model: str, settings: dict, source: str) -> int:
        """The id of corpus ``name``, created if new. An existing corpus must have the same model and
        settings: a corpus summarises one model under one set of settings."""
        with self._sql_errors():
            conn = self._db().conn
            with _write(conn):
                row = conn.execute("SELECT id, model, settings FROM corpora WHERE name = ?", [name]).fetchone()
                if row is None:
                    return int(conn.execute(
                        "INSERT INTO corpora (name, model, settings, source, created_at) VALUES (?, ?, ?, ?, ?)",
                        [name, model, _json(settings), source, _now()]).lastrowid)
        if row[1] != model or json.loads(row[2]) != settings:
            raise StoreError(
                f"corpus '{name}' was built with model {row[1]} and settings {row[2]}; "
                "give another --corpus name to analyse with a different model or settings"
            )
        return int(row[0])

    def add_corpus_run(self, corpus_id: int, line_no: int, run_id: int) -> None:
        """Line ``line_no`` of the corpus is run ``run_id`` (replacing what the line held before)."""
        with self._sql_errors():
            conn = self._db().conn
            with _write(conn):
                conn.execute("INSERT OR REPLACE INTO corpus_runs (corpus_id, line_no, run_id) VALUES (?, ?, ?)",
                             [corpus_id, line_no, run_id])

    def trim_corpus(self, corpus_id: int, line_nos: list[int]) -> int:
        """Drop the corpus's lines not in ``line_nos`` (the file changed); returns how many were dropped."""
        keep = set(line_nos)
        with self._sql_errors():
            conn = self._db().conn
            with _write(conn):
                stale = [n for (n,) in conn.execute(
                    "SELECT line_no FROM corpus_runs WHERE corpus_id = ?", [corpus_id]) if n not in keep]
                conn.executemany("DELETE FROM corpus_runs WHERE corpus_id = ? AND line_no = ?",
                                 [(corpus_id, n) for n in stale])
        return len(stale)

    def save_corpus_summary(self, corpus_id: int, summary_json: str | None) -> None:
        """Store the summary; None marks it out of date (a batch is running or was interrupted)."""
        with self._sql_errors():
            conn = self._db().conn
            with _write(conn):
                conn.execute("UPDATE corpora SET summary = ?, summary_at = ? WHERE id = ?",
                             [summary_json, _now(), corpus_id])

    def corpora(self) -> list[dict]:
        """Every corpus with its number of lines (runs still stored), newest first; no summaries."""
        with self._sql_errors():
            return _dicts(self._db().execute(
                "SELECT c.id, c.name, c.model, c.source, c.created_at, c.summary_at, "
                "(SELECT COUNT(*) FROM corpus_runs cr JOIN runs r ON r.id = cr.run_id "
                " WHERE cr.corpus_id = c.id) AS n_runs "
                "FROM corpora c ORDER BY c.created_at DESC, c.id DESC"))

    def corpus(self, name: str) -> dict:
        """One corpus: its row with ``settings`` decoded and ``summary`` as stored JSON text (or None)."""
        with self._sql_errors():
            rows = _dicts(self._db().execute("SELECT * FROM corpora WHERE name = ?", [name]))
        if not rows:
            raise CorpusNotFoundError(f"no corpus named '{name}' in {self.path}")
        row = rows[0]
        row["settings"] = json.loads(row["settings"])
        return row

    def delete_corpus(self, name: str) -> None:
        """Forget the corpus (its runs stay in the history)."""
        corpus_id = self.corpus(name)["id"]
        with self._sql_errors():
            conn = self._db().conn
            with _write(conn):
                conn.execute("DELETE FROM corpus_runs WHERE corpus_id = ?", [corpus_id])
                conn.execute("DELETE FROM corpora WHERE id = ?", [corpus_id])

    def corpus_runs(self, corpus_id: int) -> list[dict]:
        """The corpus's lines in file order, with light run columns (as ``list`` gives)."""
        with self._sql_errors():
            return _dicts(self._db().execute(
                "SELECT cr.line_no, r.id AS run_id, r.created_at, r.text, r.n_tokens, r.n_beneficial, "
                "r.n_detrimental, r.n_neutral FROM corpus_runs cr JOIN runs r ON r.id = cr.run_id "
                "WHERE cr.corpus_id = ? ORDER BY cr.line_no", [corpus_id]))

    def corpus_head_rows(self, corpus_id: int) -> list[dict]:
        """(line_no, layer, head, top_alpha) of every run in the corpus, for the summary."""
        with self._sql_errors():
            return _dicts(self._db().execute(
                "SELECT cr.line_no, h.layer, h.head, h.top_alpha FROM corpus_runs cr "
                "JOIN run_heads h ON h.run_id = cr.run_id WHERE cr.corpus_id = ? "
                "ORDER BY cr.line_no, h.layer, h.head", [corpus_id]))

    def corpus_token_rows(self, corpus_id: int) -> list[dict]:
        """(line_no, idx, token, value_norm, sink_rate, label) of every run in the corpus, for the summary."""
        with self._sql_errors():
            return _dicts(self._db().execute(
                "SELECT cr.line_no, t.idx, t.token, t.value_norm, t.sink_rate, t.label FROM corpus_runs cr "
                "JOIN run_tokens t ON t.run_id = cr.run_id WHERE cr.corpus_id = ? "
                "ORDER BY cr.line_no, t.idx", [corpus_id]))

    # ------------------------------------------------------------ evaluations and calibrations

    def save_evaluation(self, kind: str, result: dict, run_id: int | None = None) -> int:
        """Store one ``Evaluation.to_json()`` (kind "evaluate") or ``StsResult.to_json()`` (kind "sts")."""
        if kind == "sts":
            scalars = (result.get("baseline_spearman"), result.get("intervened_spearman"), result.get("delta_spearman"),
                       result.get("delta_ci95"))
        else:
            scalars = (result.get("baseline_nll"), result.get("intervened_nll"), result.get("delta_nll"),
                       result.get("delta_nll_ci95"))
        baseline, intervened, delta, ci = scalars
        heads = result.get("heads")
        row = [_now(), kind, result.get("model", ""), result.get("target") or "", result.get("beta") or 0.0,
               None if heads is None else _json(heads), run_id, baseline, intervened, delta,
               None if ci is None else ci[0], None if ci is None else ci[1], _json(result)]
        with self._sql_errors():
            conn = self._db().conn
            with _write(conn):
                cursor = conn.execute(
                    "INSERT INTO evaluations (created_at, kind, model, target, beta, heads, run_id, baseline, "
                    "intervened, delta, ci_low, ci_high, result) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
                return int(cursor.lastrowid)

    def evaluations(self, model: str | None = None, run_id: int | None = None, limit: int = 200) -> list[dict]:
        """Stored evaluations, newest first, with ``result`` decoded."""
        where, params = [], []
        if model is not None:
            where.append("model = ?")
            params.append(model)
        if run_id is not None:
            where.append("run_id = ?")
            params.append(run_id)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        with self._sql_errors():
            rows = _dicts(self._db().execute(
                f"SELECT * FROM evaluations {clause}ORDER BY created_at DESC, id DESC LIMIT ?", [*params, limit]))
        for row in rows:
            row["result"] = json.loads(row["result"])
            row["heads"] = None if row["heads"] is None else json.loads(row["heads"])
        return rows

    def save_calibration(self, name: str, calibration: dict) -> int:
        """Store a ``Calibration.to_json()`` under ``name``, replacing an older one of that name."""
        target = (calibration.get("heldout") or {}).get("target") or {}
        delta = target.get("delta_spearman", target.get("delta_nll"))
        row = [name, _now(), calibration["model"], calibration["task"], calibration["metric"],
               _json(calibration["kept_heads"]), calibration.get("dev_baseline"), delta, _json(calibration)]
        with self._sql_errors():
            conn = self._db().conn
            with _write(conn):
                conn.execute("DELETE FROM calibrations WHERE name = ?", [name])
                cursor = conn.execute(
                    "INSERT INTO calibrations (name, created_at, model, task, metric, kept_heads, dev_baseline, "
                    "heldout_delta, result) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
                return int(cursor.lastrowid)

    def calibration(self, name: str) -> dict | None:
        """The stored calibration JSON of that name, or None."""
        with self._sql_errors():
            found = self._db().execute("SELECT result FROM calibrations WHERE name = ?", [name]).fetchone()
        return None if found is None else json.loads(found[0])

    def calibrations(self, model: str | None = None) -> list[dict]:
        """Stored calibrations, newest first: the light columns (kept heads decoded), not the per-head trials."""
        clause, params = ("WHERE model = ? ", [model]) if model is not None else ("", [])
        with self._sql_errors():
            rows = _dicts(self._db().execute(
                "SELECT id, name, created_at, model, task, metric, kept_heads, dev_baseline, heldout_delta "
                f"FROM calibrations {clause}ORDER BY created_at DESC, id DESC", params))
        for row in rows:
            row["kept_heads"] = json.loads(row["kept_heads"])
        return rows

    def _run_row(self, db: Database, run_id: int) -> dict:
        cursor = db.execute("SELECT * FROM runs WHERE id = ?", [run_id])
        values = cursor.fetchone()
        if values is None:
            raise RunNotFoundError(self._not_found(run_id))
        return dict(zip([c[0] for c in cursor.description], values))

    def _not_found(self, run_id: object) -> str:
        return f"no run with id {run_id} in {self.path}"


# ---------------------------------------------------------------- helpers


@contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[None]:
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


def _run_row(analysis: Analysis, key: str, created_at: str, corrected_stored: bool) -> dict:
    counts = analysis.label_counts()
    return {
        "created_at": created_at,
        "cache_key": key,
        "model": analysis.model_name,
        "model_id": analysis.model_id,
        "model_type": analysis.model_type,
        "fingerprint": analysis.fingerprint,
        "is_causal": int(analysis.is_causal),
        "n_layers": analysis.n_layers,
        "n_heads": analysis.n_heads,
        "n_kv_heads": analysis.n_kv_heads,
        "n_tokens": analysis.n_tokens,
        "text": analysis.text,
        "tokens": _json(analysis.tokens),
        "token_ids": _json([int(i) for i in analysis.token_ids]),
        "rule": analysis.rule,
        "sink_indices": _json([int(i) for i in analysis.sink_indices]),
        "settings": _json(analysis.settings.to_dict()),
        "warnings": _json(analysis.warnings),
        "timings": _json(analysis.timings),
        "truncated": int(analysis.truncated),
        "version": analysis.version,
        "has_maps": int(analysis.maps is not None),
        "maps_dtype": None if analysis.maps is None else np.dtype(MAPS_DTYPE).name,
        "corrected_stored": int(corrected_stored),
        **{f"n_{label}": counts.get(label, 0) for label in classify.LABELS},
    }


def _insert_run(conn: sqlite3.Connection, row: dict) -> int:
    columns = ", ".join(row)
    marks = ", ".join("?" * len(row))
    return int(conn.execute(f"INSERT INTO runs ({columns}) VALUES ({marks})", list(row.values())).lastrowid)


def _insert_tokens(conn: sqlite3.Connection, run_id: int, rows: list[tuple]) -> None:
    conn.executemany(
        "INSERT INTO run_tokens (run_id, idx, token, att_received, value_norm, sink_rate, label) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)", [(run_id, *r) for r in rows])


def _insert_heads(conn: sqlite3.Connection, run_id: int, rows: list[tuple]) -> None:
    conn.executemany(
        "INSERT INTO run_heads (run_id, layer, head, top_token, top_token_text, top_alpha, entropy, "
        "token0_share, top_contribution_share) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(run_id, *r) for r in rows])


def _insert_blobs(conn: sqlite3.Connection, run_id: int, blobs: dict[str, bytes]) -> None:
    conn.executemany("INSERT INTO run_blobs (run_id, name, data) VALUES (?, ?, ?)",
                     [(run_id, name, data) for name, data in blobs.items()])


def _encode_blobs(analysis: Analysis) -> tuple[dict[str, bytes], bool]:
    """The blobs of one run, and whether the corrected maps had to be stored (not recomputable)."""
    arrays = {name: np.asarray(getattr(analysis, name), dtype=np.float32)
              for name in ARRAY_FIELDS if getattr(analysis, name) is not None}
    blobs = {"arrays": tensorio.dumps(arrays, compress=True)}
    if analysis.maps is None:
        return blobs, False
    maps16 = analysis.maps.astype(MAPS_DTYPE)
    for layer in range(analysis.n_layers):
        blobs[f"maps/{layer}"] = tensorio.dumps({"maps": maps16[layer]}, compress=True)
    corrected_stored = not _recomputable(analysis)
    if corrected_stored and analysis.corrected_maps is not None:
        corrected16 = analysis.corrected_maps.astype(MAPS_DTYPE)
        for layer in range(analysis.n_layers):
            blobs[f"corrected/{layer}"] = tensorio.dumps({"maps": corrected16[layer]}, compress=True)
    return blobs, corrected_stored


def _recomputable(analysis: Analysis) -> bool:
    """True when corrected_maps is exactly ACT applied to maps, as analyze() makes it."""
    if analysis.corrected_maps is None:
        return False
    expected = _corrected(analysis.maps, analysis.sink_indices, analysis.settings.beta)
    return bool(np.array_equal(expected, analysis.corrected_maps))


def _corrected(maps: np.ndarray, sink_indices: list[int], beta: float) -> np.ndarray:
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    mask = sink_mask(sink_indices, maps.shape[-1])
    if not mask.any():
        return maps  # ACT with an empty sink set is exactly the identity: skip the pass over L x H x T x T
    return redistribute(torch.from_numpy(maps), mask, beta).numpy()


def _rebuild(row: dict, labels: list[str], blobs: dict[str, bytes]) -> Analysis:
    arrays = tensorio.loads(blobs["arrays"])
    settings = _settings(row)
    sink_indices = json.loads(row["sink_indices"])
    maps = corrected = None
    if row["has_maps"]:
        maps = np.stack([tensorio.loads(blobs[f"maps/{layer}"])["maps"] for layer in range(row["n_layers"])])
        maps = maps.astype(np.float32)
        if row["corrected_stored"]:
            if "corrected/0" in blobs:
                corrected = np.stack([tensorio.loads(blobs[f"corrected/{layer}"])["maps"]
                                      for layer in range(row["n_layers"])]).astype(np.float32)
        else:
            corrected = _corrected(maps, sink_indices, settings.beta)
    return Analysis(
        text=row["text"],
        tokens=json.loads(row["tokens"]),
        token_ids=json.loads(row["token_ids"]),
        model_name=row["model"],
        model_id=row["model_id"],
        model_type=row["model_type"],
        fingerprint=row["fingerprint"],
        is_causal=bool(row["is_causal"]),
        n_layers=row["n_layers"],
        n_heads=row["n_heads"],
        n_kv_heads=row["n_kv_heads"],
        settings=settings,
        **{name: arrays.get(name) for name in ARRAY_FIELDS},
        labels=labels,
        rule=row["rule"],
        sink_indices=sink_indices,
        maps=maps,
        corrected_maps=corrected,
        version=row["version"],
        timings=json.loads(row["timings"]),
        warnings=json.loads(row["warnings"]),
        truncated=bool(row["truncated"]),
        created_at=row["created_at"],
        run_id=row["id"],
    )


def _settings(row: dict) -> AnalysisSettings:
    return AnalysisSettings.from_dict(json.loads(row["settings"]))


def _filters(model: str | None, text_contains: str | None, since: str | None,
             label: str | None) -> tuple[str, list]:
    clauses: list[str] = []
    params: list = []
    if model:
        clauses.append("model = ?")
        params.append(model)
    if text_contains:
        clauses.append("text LIKE ? ESCAPE '\\'")
        escaped = text_contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params.append(f"%{escaped}%")
    if since:
        clauses.append("created_at >= ?")
        params.append(_utc_iso(since))
    if label:
        if label not in classify.LABELS:
            raise StoreError(f"label must be one of {', '.join(classify.LABELS)}, got {label!r}")
        clauses.append(f"n_{label} > 0")
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def _utc_iso(value: str) -> str:
    """An ISO date or datetime as the UTC text runs.created_at uses (naive means UTC)."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise StoreError(f"since must be an ISO date or datetime such as 2025-01-31, got {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _dicts(cursor: sqlite3.Cursor) -> list[dict]:
    columns = [c[0] for c in cursor.description]
    return [dict(zip(columns, values)) for values in cursor.fetchall()]
