"""The run database: every analysis in SQLite, scalars in plain tables, tensors as safetensors blobs.

Layout (see STEPS for the exact schema):
- ``runs``: one row per analysis, with what listing and filtering need (model, text, created_at,
  per-label token counts, owner and shared flag) and the metadata that rebuilds the Analysis
  (settings as JSON, tokens...).
- ``run_tokens`` / ``run_heads``: the per-token and per-(layer, head) summary rows, so charts and
  filters query them without decoding a blob (``run_details``).
- ``run_blobs``: ``arrays`` (every per-token / per-head array, float32, bit-exact) and one
  ``maps/{layer}`` blob per layer (that layer's H x T x T attention, float16), so one head's map
  is read without decoding the other layers.
- ``corpora`` / ``corpus_runs``: named groups of runs made by ``sinkfix batch`` (one run per input
  line) and each corpus's summary as JSON (see sinkfix.corpus).

Attention maps are stored as float16. Corrected maps are not stored when they are exactly
``redistribute(maps, sink_mask(sink_indices), beta)`` (what ``analyze()`` produces): ``get()``
recomputes them from the float16 maps, which halves the storage. Anything else is stored as
``corrected/{layer}`` float16 blobs.

Every read takes the ``viewer`` (``sinkfix.policy.ownership``): a run they may not read is missing.
The cache is per owner: ``reuse`` serves a viewer their own run of a request, or a copy of one they
may read, never another owner's private run (the caller computes it afresh).
"""
from __future__ import annotations

import json

from sinkfix.analysis.result import Analysis
from sinkfix.errors import RunNotFoundError, StoreError
from sinkfix.policy.ownership import Viewer
from sinkfix.store import codec
from sinkfix.store.database import Connection, dicts, write
from sinkfix.store.keys import key_of_analysis
from sinkfix.store.run_rows import (
    CHILD_TABLES, copy_run, encode_run, filters, insert_encoded, not_found, visible_run,
)

ORDERS = {"newest": "created_at DESC, id DESC", "oldest": "created_at ASC, id ASC"}
LIST_COLUMNS = ("id, created_at, model, text, n_tokens, n_beneficial, n_detrimental, n_neutral, has_maps, "
                "owner, shared")


class RunsTable(Connection):
    def save(self, analysis: Analysis, cache_key: str | None = None, parent_run_id: int | None = None, *,
             viewer: Viewer | None = None) -> int:
        """Store ``analysis`` as ``viewer``'s run, in one transaction, and return its run id.

        ``cache_key`` defaults to the key of the analysis's own request (see sinkfix.cache), so
        any saved run can serve a later identical request. An empty ``created_at`` is stamped now.
        """
        viewer = self._viewer(viewer)
        owner = viewer.name
        # Encode (the slow, CPU-bound part) before taking the write lock.
        encoded = encode_run(analysis, cache_key if cache_key is not None else key_of_analysis(analysis),
                             parent_run_id)
        with self._sql_errors():
            conn = self._db().conn
            with write(conn):
                return insert_encoded(conn, encoded, owner)

    def delete(self, run_id: int, *, viewer: Viewer | None = None) -> None:
        """Delete the viewer's own run: another owner's run is missing, or (shared) not theirs to delete."""
        viewer = self._viewer(viewer)
        with self._sql_errors():
            conn = self._db().conn
            with write(conn):
                row = visible_run(conn, run_id, viewer, self.path)
                viewer.check_write(row["owner"], f"run {run_id}")
                conn.execute("DELETE FROM runs WHERE id = ?", [run_id])
                for table in CHILD_TABLES:
                    conn.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])

    # ------------------------------------------------------------ the cache

    def find(self, cache_key: str, *, viewer: Viewer | None = None) -> int | None:
        """The viewer's own newest run stored under ``cache_key``, or None."""
        viewer = self._viewer(viewer)
        with self._sql_errors():
            row = self._db().execute("SELECT id FROM runs WHERE cache_key = ? AND owner = ? ORDER BY id DESC LIMIT 1",
                                     [cache_key, viewer.name]).fetchone()
        return None if row is None else int(row[0])

    def reuse(self, cache_key: str, parent_run_id: int | None = None, *, viewer: Viewer | None = None) -> int | None:
        """The run that serves the viewer's request ``cache_key`` without a forward pass, or None.

        Their own run when they have one; else a copy, made theirs, of the newest run of that key they may
        read (a shared one; any, for an administrator). Another owner's private run is never used: the
        caller computes afresh, so neither the answer nor its speed says that someone else asked the same.
        A read-only database cannot copy, so there only the viewer's own run serves."""
        viewer = self._viewer(viewer)
        own = self.find(cache_key, viewer=viewer)
        if own is not None or self.read_only:
            return own
        where, params = viewer.readable_sql()
        with self._sql_errors():
            conn = self._db().conn
            with write(conn):
                found = conn.execute(f"SELECT id FROM runs WHERE cache_key = ? AND {where} ORDER BY id DESC LIMIT 1",
                                     [cache_key, *params]).fetchone()
                return None if found is None else copy_run(conn, int(found[0]), viewer.name, parent_run_id)

    # ------------------------------------------------------------ reading

    def get(self, run_id: int, *, viewer: Viewer | None = None) -> Analysis:
        """Rebuild the stored Analysis: float32 arrays bit-exact, maps exact at float16."""
        viewer = self._viewer(viewer)
        with self._sql_errors():
            db = self._db()
            row = visible_run(db, run_id, viewer, self.path)
            labels = [r[0] for r in db.execute(
                "SELECT label FROM run_tokens WHERE run_id = ? ORDER BY idx", [run_id])]
            blobs = dict(db.execute("SELECT name, data FROM run_blobs WHERE run_id = ?", [run_id]).fetchall())
        return codec.rebuild(row, labels, blobs)

    def list(self, model: str | None = None, text_contains: str | None = None, since: str | None = None,
             label: str | None = None, limit: int = 50, offset: int = 0, order: str = "newest", *,
             viewer: Viewer | None = None) -> list[dict]:
        """Light rows for a history page (the runs the viewer may read); reads only ``runs``, never a blob."""
        viewer = self._viewer(viewer)
        if order not in ORDERS:
            raise StoreError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
        where, params = filters(viewer, model, text_contains, since, label)
        sql = f"SELECT {LIST_COLUMNS} FROM runs {where} ORDER BY {ORDERS[order]} LIMIT ? OFFSET ?"
        with self._sql_errors():
            rows = dicts(self._db().execute(sql, [*params, int(limit), int(offset)]))
        for row in rows:
            row["has_maps"], row["shared"] = bool(row["has_maps"]), bool(row["shared"])
        return rows

    def count(self, model: str | None = None, text_contains: str | None = None, since: str | None = None,
              label: str | None = None, *, viewer: Viewer | None = None) -> int:
        """How many runs ``list`` would page through with the same filters."""
        viewer = self._viewer(viewer)
        where, params = filters(viewer, model, text_contains, since, label)
        with self._sql_errors():
            return int(self._db().execute(f"SELECT COUNT(*) FROM runs {where}", params).fetchone()[0])

    def models(self, *, viewer: Viewer | None = None) -> list[str]:
        """Distinct model names of the runs the viewer may read, for filter widgets."""
        viewer = self._viewer(viewer)
        where, params = viewer.readable_sql()
        with self._sql_errors():
            return [r[0] for r in self._db().execute(
                f"SELECT DISTINCT model FROM runs WHERE {where} ORDER BY model", params)]

    def info(self, run_id: int, *, viewer: Viewer | None = None) -> dict:
        """A run's own row, no blob and no per-token row read: model, sizes, text, tokens, settings (an
        AnalysisSettings), provenance, owner. Pages that must open fast on a 32k-token run (the dashboard's
        long-run view) describe it from this. Raises RunNotFoundError for an id the viewer may not read."""
        viewer = self._viewer(viewer)
        with self._sql_errors():
            row = visible_run(self._db(), run_id, viewer, self.path)
        row["settings"] = codec.settings_of(row)
        row["shared"] = bool(row["shared"])
        for name in ("tokens", "token_ids", "sink_indices", "warnings", "timings"):
            row[name] = json.loads(row[name]) if row.get(name) else []
        return row

    def created_at(self, run_id: int, *, viewer: Viewer | None = None) -> str:
        """When the run was stored: with its id, what tells a cached copy of it from a newer run."""
        viewer = self._viewer(viewer)
        where, params = viewer.readable_sql()
        with self._sql_errors():
            row = self._db().execute(f"SELECT created_at FROM runs WHERE id = ? AND {where}",
                                     [run_id, *params]).fetchone()
        if row is None:
            raise RunNotFoundError(not_found(run_id, self.path))
        return str(row[0])
