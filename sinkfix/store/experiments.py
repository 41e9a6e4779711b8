"""Experiments: long-context (streaming windows, KV quantisation), mechanism (sink-rate protocol, massive
activations), lab sweeps and every later kind, in one table. ``headline`` is the one number a list shows;
``result`` the full JSON. Each row has an owner and a shared flag, whatever its kind."""
from __future__ import annotations

import json

from sinkfix.policy.ownership import Viewer
from sinkfix.store.database import Connection, dicts, now, to_json, write
from sinkfix.store.results import StoredResult


class ExperimentsTable(Connection):
    def save_experiment(self, kind: str, result: dict, label: str = "", headline: float | None = None,
                        model: str | None = None, *, viewer: Viewer | None = None) -> int:
        """Store one experiment result as ``viewer``'s and return its id. The model column is ``model``, else
        the result's own ``model`` (a lab sweep trains its models, so it names them in ``model``)."""
        viewer = self._viewer(viewer)
        row = [now(), kind, model if model is not None else result.get("model", ""), label, headline, to_json(result),
               viewer.name]
        with self._sql_errors():
            conn = self._db().conn
            with write(conn):
                cursor = conn.execute(
                    "INSERT INTO experiments (created_at, kind, model, label, headline, result, owner, shared) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, 0)", row)
                return int(cursor.lastrowid)

    def experiments(self, kind: str | None = None, model: str | None = None, limit: int = 200, *,
                    viewer: Viewer | None = None) -> list[dict]:
        """Stored experiments the viewer may read, newest first, without their results (light rows for lists)."""
        viewer = self._viewer(viewer)
        readable, params = viewer.readable_sql()
        where = [readable]
        for column, value in (("kind", kind), ("model", model)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        with self._sql_errors():
            rows = dicts(self._db().execute(
                f"SELECT id, created_at, kind, model, label, headline, owner, shared FROM experiments "
                f"WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC LIMIT ?", [*params, limit]))
        for row in rows:
            row["shared"] = bool(row["shared"])
        return rows

    def experiment(self, experiment_id: int, *, viewer: Viewer | None = None) -> dict | None:
        """One stored experiment with ``result`` decoded, or None (unknown, or not the viewer's to read)."""
        viewer = self._viewer(viewer)
        readable, params = viewer.readable_sql()
        with self._sql_errors():
            rows = dicts(self._db().execute(f"SELECT * FROM experiments WHERE id = ? AND {readable}",
                                            [experiment_id, *params]))
        if not rows:
            return None
        rows[0]["result"] = json.loads(rows[0]["result"])
        rows[0]["shared"] = bool(rows[0]["shared"])
        return StoredResult(rows[0])
