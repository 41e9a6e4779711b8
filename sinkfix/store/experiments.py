"""Experiments: long-context (streaming windows, KV quantisation) and mechanism (sink-rate protocol,
massive activations) results. ``headline`` is the one number a list shows; ``result`` the full JSON."""
from __future__ import annotations

import json

from sinkfix.store.database import Connection, dicts, now, to_json, write
from sinkfix.store.results import StoredResult


class ExperimentsTable(Connection):
    def save_experiment(self, kind: str, result: dict, label: str = "", headline: float | None = None,
                        model: str | None = None) -> int:
        """Store one experiment result and return its id. The model column is ``model``, else the
        result's own ``model`` (a lab sweep trains its models, so it names them in ``model``)."""
        row = [now(), kind, model if model is not None else result.get("model", ""), label, headline, to_json(result)]
        with self._sql_errors():
            conn = self._db().conn
            with write(conn):
                cursor = conn.execute(
                    "INSERT INTO experiments (created_at, kind, model, label, headline, result) "
                    "VALUES (?, ?, ?, ?, ?, ?)", row)
                return int(cursor.lastrowid)

    def experiments(self, kind: str | None = None, model: str | None = None, limit: int = 200) -> list[dict]:
        """Stored experiments, newest first, without their results (light rows for lists)."""
        where, params = [], []
        for column, value in (("kind", kind), ("model", model)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        with self._sql_errors():
            return dicts(self._db().execute(
                f"SELECT id, created_at, kind, model, label, headline FROM experiments {clause}"
                "ORDER BY created_at DESC, id DESC LIMIT ?", [*params, limit]))

    def experiment(self, experiment_id: int) -> dict | None:
        """One stored experiment with ``result`` decoded, or None."""
        with self._sql_errors():
            rows = dicts(self._db().execute("SELECT * FROM experiments WHERE id = ?", [experiment_id]))
        if not rows:
            return None
        rows[0]["result"] = json.loads(rows[0]["result"])
        return StoredResult(rows[0])
