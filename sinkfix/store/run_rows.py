"""How one run becomes rows (``runs``, ``run_tokens``, ``run_heads``, ``run_blobs``) and how a stored run is
found, filtered and copied; the SQL that ``RunsTable``, ``RunDetails`` and ``CorporaTable`` share.

Every read of a run goes through ``visible_run`` (or a WHERE clause from the viewer), so a run the
viewer may not read is missing for them, whatever the route.
"""
from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

import numpy as np

from sinkfix.analysis import classify
from sinkfix.analysis.result import Analysis
from sinkfix.errors import RunNotFoundError, StoreError
from sinkfix.policy.ownership import Viewer, check_viewer
from sinkfix.store import codec
from sinkfix.store.database import now, to_json

# A run's row, token rows, head rows and blobs, as RunsTable.save writes them.
EncodedRun = tuple[dict, list, list, dict]
CHILD_TABLES = ("run_tokens", "run_heads", "run_blobs")


def encode_run(analysis: Analysis, key: str, parent_run_id: int | None = None) -> EncodedRun:
    """What ``RunsTable.save`` writes for one run, encoded before the write lock is taken (the slow part).
    The owner is set when it is inserted (``insert_encoded``)."""
    blobs, corrected_stored = codec.encode_blobs(analysis)
    row = run_row_of(analysis, key, analysis.created_at or now(), corrected_stored)
    row["parent_run_id"] = parent_run_id if parent_run_id is not None else analysis.parent_run_id
    tokens = [(r["index"], r["token"], r["att_received"], r["value_norm"], r["sink_rate"], r["label"])
              for r in analysis.token_table()]
    return row, tokens, head_rows_of(analysis), blobs


def insert_encoded(conn: sqlite3.Connection, run: EncodedRun, owner: str) -> int:
    row, tokens, heads, blobs = run
    run_id = insert_run(conn, {**row, "owner": owner, "shared": 0})
    insert_tokens(conn, run_id, tokens)
    insert_heads(conn, run_id, heads)
    insert_blobs(conn, run_id, blobs)
    return run_id


def run_row_of(analysis: Analysis, key: str, created_at: str, corrected_stored: bool) -> dict:
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


def insert_run(conn: sqlite3.Connection, row: dict) -> int:
    columns = ", ".join(row)
    marks = ", ".join("?" * len(row))
    return int(conn.execute(f"INSERT INTO runs ({columns}) VALUES ({marks})", list(row.values())).lastrowid)


def insert_tokens(conn: sqlite3.Connection, run_id: int, rows: list[tuple]) -> None:
    conn.executemany(
        "INSERT INTO run_tokens (run_id, idx, token, att_received, value_norm, sink_rate, label) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)", [(run_id, *r) for r in rows])


def head_rows_of(analysis: Analysis) -> list[tuple]:
    """The run_heads rows of ``analysis`` (model layer numbers), in ``insert_heads``'s column order."""
    return [(r["layer"], r["head"], r["top_token"], r["top_token_text"], r["top_alpha"], r["entropy"],
             r["token0_share"], r["top_contribution_share"], r["gate"]) for r in analysis.head_table()]


def insert_heads(conn: sqlite3.Connection, run_id: int, rows: list[tuple]) -> None:
    conn.executemany(
        "INSERT INTO run_heads (run_id, layer, head, top_token, top_token_text, top_alpha, entropy, "
        "token0_share, top_contribution_share, gate) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(run_id, *r) for r in rows])


def insert_blobs(conn: sqlite3.Connection, run_id: int, blobs: dict[str, bytes]) -> None:
    conn.executemany("INSERT INTO run_blobs (run_id, name, data) VALUES (?, ?, ?)",
                     [(run_id, name, data) for name, data in blobs.items()])


def copy_run(conn: sqlite3.Connection, run_id: int, owner: str, parent_run_id: int | None) -> int:
    """A copy of run ``run_id`` owned by ``owner`` (unshared, stamped now), with its rows and blobs: the
    stored result serves a new owner without a forward pass, and either copy can be deleted alone."""
    fixed = {"id", "owner", "shared", "created_at", "parent_run_id"}
    kept = [c for c in _columns(conn, "runs") if c not in fixed]
    listed = ", ".join(kept)
    new_id = int(conn.execute(
        f"INSERT INTO runs ({listed}, owner, shared, created_at, parent_run_id) "
        f"SELECT {listed}, ?, 0, ?, ? FROM runs WHERE id = ?", [owner, now(), parent_run_id, run_id]).lastrowid)
    for table in CHILD_TABLES:
        rest = ", ".join(c for c in _columns(conn, table) if c != "run_id")
        conn.execute(f"INSERT INTO {table} (run_id, {rest}) SELECT ?, {rest} FROM {table} WHERE run_id = ?",
                     [new_id, run_id])
    return new_id


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def visible_run(db, run_id: int, viewer: Viewer, path: object) -> dict:
    """The ``runs`` row of ``run_id`` if ``viewer`` may read it; RunNotFoundError otherwise (the same
    answer for a run that does not exist and one that is not theirs)."""
    where, params = check_viewer(viewer).readable_sql()
    cursor = db.execute(f"SELECT * FROM runs WHERE id = ? AND {where}", [run_id, *params])
    values = cursor.fetchone()
    if values is None:
        raise RunNotFoundError(not_found(run_id, path))
    return dict(zip([c[0] for c in cursor.description], values))


def not_found(run_id: object, path: object) -> str:
    return f"no run with id {run_id} in {path}"


def filters(viewer: Viewer, model: str | None, text_contains: str | None, since: str | None,
            label: str | None) -> tuple[str, list]:
    """The WHERE clause of a run listing: what the viewer may read, then the page's filters."""
    readable, params = check_viewer(viewer).readable_sql()
    clauses: list[str] = [readable]
    if model:
        clauses.append("model = ?")
        params.append(model)
    if text_contains:
        clauses.append("text LIKE ? ESCAPE '\\'")
        escaped = text_contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params.append(f"%{escaped}%")
    if since:
        clauses.append("created_at >= ?")
        params.append(utc_iso(since))
    if label:
        if label not in classify.LABELS:
            raise StoreError(f"label must be one of {', '.join(classify.LABELS)}, got {label!r}")
        clauses.append(f"n_{label} > 0")
    return "WHERE " + " AND ".join(clauses), params


def utc_iso(value: str) -> str:
    """An ISO date or datetime as the UTC text runs.created_at uses (naive means UTC)."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise StoreError(f"since must be an ISO date or datetime such as 2025-01-31, got {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")
