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
from datetime import datetime, timezone

import numpy as np

from sinkfix import layers
from sinkfix.analysis import classify
from sinkfix.analysis.result import Analysis
from sinkfix.errors import RunNotFoundError, StoreError
from sinkfix.store import codec, tensorio
from sinkfix.store.database import Connection, dicts, to_json, write
from sinkfix.store.keys import key_of_analysis

ORDERS = {"newest": "created_at DESC, id DESC", "oldest": "created_at ASC, id ASC"}


class RunsTable(Connection):
    def save(self, analysis: Analysis, cache_key: str | None = None, parent_run_id: int | None = None) -> int:
        """Store ``analysis`` in one transaction and return its run id.

        ``cache_key`` defaults to the key of the analysis's own request (see sinkfix.cache), so
        any saved run can serve a later identical request. An empty ``created_at`` is stamped now.
        """
        key = cache_key if cache_key is not None else key_of_analysis(analysis)
        created_at = analysis.created_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
        # Encode (the slow, CPU-bound part) before taking the write lock.
        blobs, corrected_stored = codec.encode_blobs(analysis)
        row = _run_row(analysis, key, created_at, corrected_stored)
        row["parent_run_id"] = parent_run_id if parent_run_id is not None else analysis.parent_run_id
        tokens = [(r["index"], r["token"], r["att_received"], r["value_norm"], r["sink_rate"], r["label"])
                  for r in analysis.token_table()]
        heads = head_rows_of(analysis)
        with self._sql_errors():
            conn = self._db().conn
            with write(conn):
                run_id = _insert_run(conn, row)
                _insert_tokens(conn, run_id, tokens)
                _insert_heads(conn, run_id, heads)
                _insert_blobs(conn, run_id, blobs)
        return run_id

    def delete(self, run_id: int) -> None:
        with self._sql_errors():
            conn = self._db().conn
            with write(conn):
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
        return codec.rebuild(row, labels, blobs)

    def head_map(self, run_id: int, layer: int, head: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(original, corrected) T x T float32 maps of one head, decoding only that layer's blob.

        None when the run kept no maps (its text was above the map limit).
        """
        with self._sql_errors():
            db = self._db()
            row = self._run_row(db, run_id)
            if not row["has_maps"]:
                return None
            attending = codec.attention_layers_of(row)
            if layer not in layers.layer_numbers(row["n_layers"], attending) or not 0 <= head < row["n_heads"]:
                raise StoreError(
                    f"run {run_id} has {layers.describe(row['n_layers'], attending)} and heads 0..{row['n_heads'] - 1}; "
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
            corrected = codec.corrected_maps_of(original, json.loads(row["sink_indices"]), codec.settings_of(row).beta)
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
            return dicts(db.execute(
                "SELECT idx AS \"index\", token, att_received, value_norm, sink_rate, label "
                "FROM run_tokens WHERE run_id = ? ORDER BY idx", [run_id]))

    TOKEN_COLUMNS = ("index", "token", "att_received", "value_norm", "sink_rate", "label")

    def token_records(self, run_id: int, start: int = 0, end: int | None = None) -> list[tuple]:
        """The per-token rows ``start <= index < end`` as plain tuples in ``TOKEN_COLUMNS`` order: one
        SELECT on the primary key, no dict per row (``pandas.DataFrame.from_records`` takes them as they are)."""
        with self._sql_errors():
            db = self._db()
            self._run_row(db, run_id)
            return db.execute("SELECT idx, token, att_received, value_norm, sink_rate, label FROM run_tokens "
                              "WHERE run_id = ? AND idx >= ? AND idx < ? ORDER BY idx",
                              [run_id, int(start), 2**62 if end is None else int(end)]).fetchall()

    def token_strengths(self, run_id: int) -> list[tuple]:
        """(att_received, sink_rate, label rank) of every token, in order, with the rank 2 for detrimental,
        1 for beneficial, 0 for neutral: numbers only, so a 32k-token run's whole-text strip reads fast."""
        with self._sql_errors():
            db = self._db()
            self._run_row(db, run_id)
            return db.execute("SELECT att_received, sink_rate, CASE label WHEN 'detrimental' THEN 2 "
                              "WHEN 'beneficial' THEN 1 ELSE 0 END FROM run_tokens WHERE run_id = ? ORDER BY idx",
                              [run_id]).fetchall()

    def head_rows(self, run_id: int) -> list[dict]:
        with self._sql_errors():
            db = self._db()
            self._run_row(db, run_id)
            return dicts(db.execute(
                "SELECT layer, head, top_token, top_token_text, top_alpha, entropy, token0_share, "
                "top_contribution_share, gate FROM run_heads WHERE run_id = ? ORDER BY layer, head", [run_id]))

    def info(self, run_id: int) -> dict:
        """A run's own row, no blob and no per-token row read: model, sizes, text, tokens, settings (an
        AnalysisSettings), provenance. Pages that must open fast on a 32k-token run (the dashboard's
        long-run view) describe it from this. Raises RunNotFoundError for an unknown id."""
        with self._sql_errors():
            row = self._run_row(self._db(), run_id)
        row["settings"] = codec.settings_of(row)
        for name in ("tokens", "token_ids", "sink_indices", "warnings", "timings"):
            row[name] = json.loads(row[name]) if row.get(name) else []
        return row

    def created_at(self, run_id: int) -> str:
        """When the run was stored: with its id, what tells a cached copy of it from a newer run."""
        with self._sql_errors():
            row = self._db().execute("SELECT created_at FROM runs WHERE id = ?", [run_id]).fetchone()
        if row is None:
            raise RunNotFoundError(self._not_found(run_id))
        return str(row[0])

    def _run_row(self, db, run_id: int) -> dict:
        cursor = db.execute("SELECT * FROM runs WHERE id = ?", [run_id])
        values = cursor.fetchone()
        if values is None:
            raise RunNotFoundError(self._not_found(run_id))
        return dict(zip([c[0] for c in cursor.description], values))

    def _not_found(self, run_id: object) -> str:
        return f"no run with id {run_id} in {self.path}"






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
        "tokens": to_json(analysis.tokens),
        "token_ids": to_json([int(i) for i in analysis.token_ids]),
        "rule": analysis.rule,
        "sink_indices": to_json([int(i) for i in analysis.sink_indices]),
        "settings": to_json(analysis.settings.to_dict()),
        "warnings": to_json(analysis.warnings),
        "timings": to_json(analysis.timings),
        "truncated": int(analysis.truncated),
        "version": analysis.version,
        "has_maps": int(analysis.maps is not None),
        "maps_dtype": None if analysis.maps is None else np.dtype(codec.MAPS_DTYPE).name,
        "corrected_stored": int(corrected_stored),
        "device": analysis.device,
        "offsets": None if analysis.offsets is None else to_json([list(pair) for pair in analysis.offsets]),
        "dtype": analysis.dtype,
        "kernel": analysis.kernel,
        "kernel_reason": analysis.kernel_reason,
        "attention_layers": None if analysis.attention_layers is None else to_json([int(i) for i in analysis.attention_layers]),
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


def head_rows_of(analysis: Analysis) -> list[tuple]:
    """The run_heads rows of ``analysis`` (model layer numbers), in ``_insert_heads``'s column order."""
    return [(r["layer"], r["head"], r["top_token"], r["top_token_text"], r["top_alpha"], r["entropy"],
             r["token0_share"], r["top_contribution_share"], r["gate"]) for r in analysis.head_table()]


def _insert_heads(conn: sqlite3.Connection, run_id: int, rows: list[tuple]) -> None:
    conn.executemany(
        "INSERT INTO run_heads (run_id, layer, head, top_token, top_token_text, top_alpha, entropy, "
        "token0_share, top_contribution_share, gate) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(run_id, *r) for r in rows])


def _insert_blobs(conn: sqlite3.Connection, run_id: int, blobs: dict[str, bytes]) -> None:
    conn.executemany("INSERT INTO run_blobs (run_id, name, data) VALUES (?, ?, ?)",
                     [(run_id, name, data) for name, data in blobs.items()])


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


