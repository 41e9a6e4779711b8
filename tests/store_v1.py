"""A database exactly as the FIRST schema version (step m001_runs) wrote it, for migration tests.

Frozen on purpose: the DDL and the row writer below are copies, not calls into sinkfix.store, so
a later edit of a released step (which migrations forbid) shows up as a failing test.
Helpers adding a schema step: reuse ``build_v1_database`` and check your step on it.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
from safetensors.numpy import save as st_save

from sinkfix.store import tensorio
from sinkfix.analysis.pipeline import Analysis

V1_SCHEMA = [
    """CREATE TABLE "_sqlite_migrations" (
   "id" INTEGER PRIMARY KEY,
   "migration_set" TEXT,
   "name" TEXT,
   "applied_at" TEXT
)""",
    """CREATE UNIQUE INDEX "idx__sqlite_migrations_migration_set_name"
    ON "_sqlite_migrations" ("migration_set", "name")""",
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
]

V1_ARRAYS = ("att_received", "att_received_layer", "att_received_head", "alpha", "sink_rate", "entropy",
             "value_norm", "value_norm_layer", "value_norm_head", "contribution")


def build_v1_database(path: Path, analyses: list[Analysis]) -> None:
    """Write ``analyses`` the way SinkFix with schema v1 did (WAL, maps float16, corrected recomputed)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("BEGIN")
    for statement in V1_SCHEMA:
        conn.execute(statement)
    conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES (?, ?, ?)",
                 ["sinkfix", "m001_runs", "2025-01-01 00:00:00.000000+00:00"])
    for analysis in analyses:
        _write_v1_run(conn, analysis)
    conn.execute("COMMIT")
    conn.close()


def _write_v1_run(conn: sqlite3.Connection, a: Analysis) -> None:
    row = {
        "created_at": a.created_at, "cache_key": None, "model": a.model_name, "model_id": a.model_id,
        "model_type": a.model_type, "fingerprint": a.fingerprint, "is_causal": int(a.is_causal),
        "n_layers": a.n_layers, "n_heads": a.n_heads, "n_kv_heads": a.n_kv_heads, "n_tokens": a.n_tokens,
        "text": a.text, "tokens": json.dumps(a.tokens), "token_ids": json.dumps(a.token_ids), "rule": a.rule,
        "sink_indices": json.dumps(a.sink_indices), "settings": json.dumps(a.settings.to_dict()),
        "warnings": json.dumps(a.warnings), "timings": json.dumps(a.timings), "truncated": int(a.truncated),
        "version": a.version, "has_maps": int(a.maps is not None),
        "maps_dtype": None if a.maps is None else "float16", "corrected_stored": 0,
    }
    run_id = conn.execute(
        f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())
    ).lastrowid
    for r in a.token_table():
        conn.execute("INSERT INTO run_tokens VALUES (?, ?, ?, ?, ?, ?, ?)",
                     [run_id, r["index"], r["token"], r["att_received"], r["value_norm"], r["sink_rate"], r["label"]])
    for r in a.head_table():
        conn.execute("INSERT INTO run_heads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     [run_id, r["layer"], r["head"], r["top_token"], r["top_token_text"], r["top_alpha"],
                      r["entropy"], r["token0_share"], r["top_contribution_share"]])
    # v1 wrote the arrays blob as a plain safetensors container and each layer's maps compressed.
    arrays = {name: getattr(a, name) for name in V1_ARRAYS if getattr(a, name) is not None}
    conn.execute("INSERT INTO run_blobs VALUES (?, ?, ?)", [run_id, "arrays", st_save(arrays)])
    if a.maps is not None:
        for layer in range(a.n_layers):
            blob = tensorio.dumps({"maps": a.maps[layer].astype(np.float16)}, compress=True)
            conn.execute("INSERT INTO run_blobs VALUES (?, ?, ?)", [run_id, f"maps/{layer}", blob])
