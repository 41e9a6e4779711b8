"""Evaluations (``sinkfix evaluate`` / ``sts``) and named calibrated head sets (``sinkfix calibrate``).

Both have an owner and a shared flag. A calibration's name is unique per owner; looked up by name, the
viewer's own calibration comes first, then the newest one shared with them (any, for an administrator).
"""
from __future__ import annotations

import json

from sinkfix.policy.ownership import Viewer
from sinkfix.store.database import Connection, dicts, now, to_json, write
from sinkfix.store.results import StoredResult


class EvaluationsTable(Connection):
    def save_evaluation(self, kind: str, result: dict, run_id: int | None = None, *, viewer: Viewer | None = None) -> int:
        """Store one ``Evaluation.to_json()`` (kind "evaluate") or ``StsResult.to_json()`` (kind "sts") as ``viewer``'s."""
        viewer = self._viewer(viewer)
        if kind == "sts":
            scalars = (result.get("baseline_spearman"), result.get("intervened_spearman"), result.get("delta_spearman"),
                       result.get("delta_ci95"))
        else:
            scalars = (result.get("baseline_nll"), result.get("intervened_nll"), result.get("delta_nll"),
                       result.get("delta_nll_ci95"))
        baseline, intervened, delta, ci = scalars
        heads = result.get("heads")
        row = [now(), kind, result.get("model", ""), result.get("target") or "", result.get("beta") or 0.0,
               None if heads is None else to_json(heads), run_id, baseline, intervened, delta,
               None if ci is None else ci[0], None if ci is None else ci[1], to_json(result), viewer.name]
        with self._sql_errors():
            conn = self._db().conn
            with write(conn):
                cursor = conn.execute(
                    "INSERT INTO evaluations (created_at, kind, model, target, beta, heads, run_id, baseline, "
                    "intervened, delta, ci_low, ci_high, result, owner, shared) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)", row)
                return int(cursor.lastrowid)

    def evaluations(self, model: str | None = None, run_id: int | None = None, limit: int = 200, *,
                    viewer: Viewer | None = None) -> list[dict]:
        """Stored evaluations the viewer may read, newest first, with ``result`` decoded."""
        viewer = self._viewer(viewer)
        readable, params = viewer.readable_sql()
        where = [readable]
        for column, value in (("model", model), ("run_id", run_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        with self._sql_errors():
            rows = dicts(self._db().execute(
                f"SELECT * FROM evaluations WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC LIMIT ?",
                [*params, limit]))
        return [_decoded(row) for row in rows]

    def evaluation(self, evaluation_id: int, *, viewer: Viewer | None = None) -> dict | None:
        """One stored evaluation (``result`` and ``heads`` decoded), or None (unknown, or not the viewer's to read)."""
        viewer = self._viewer(viewer)
        readable, params = viewer.readable_sql()
        with self._sql_errors():
            rows = dicts(self._db().execute(f"SELECT * FROM evaluations WHERE id = ? AND {readable}",
                                            [int(evaluation_id), *params]))
        return StoredResult(_decoded(rows[0])) if rows else None

    def save_calibration(self, name: str, calibration: dict, *, viewer: Viewer | None = None) -> int:
        """Store a ``Calibration.to_json()`` under ``name`` as ``viewer``'s, replacing their older one of that name."""
        viewer = self._viewer(viewer)
        owner = viewer.name
        target = (calibration.get("heldout") or {}).get("target") or {}
        delta = target.get("delta_spearman", target.get("delta_nll"))
        row = [owner, name, now(), calibration["model"], calibration["task"], calibration["metric"],
               to_json(calibration["kept_heads"]), calibration.get("dev_baseline"), delta, to_json(calibration)]
        with self._sql_errors():
            conn = self._db().conn
            with write(conn):
                conn.execute("DELETE FROM calibrations WHERE owner = ? AND name = ?", [owner, name])
                cursor = conn.execute(
                    "INSERT INTO calibrations (owner, shared, name, created_at, model, task, metric, kept_heads, "
                    "dev_baseline, heldout_delta, result) VALUES (?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
                return int(cursor.lastrowid)

    def calibration(self, name: str, *, viewer: Viewer | None = None) -> dict | None:
        """The stored calibration JSON of that name the viewer may read (their own first), or None."""
        viewer = self._viewer(viewer)
        readable, params = viewer.readable_sql()
        with self._sql_errors():
            found = self._db().execute(
                f"SELECT result FROM calibrations WHERE name = ? AND {readable} "
                "ORDER BY owner = ? DESC, created_at DESC, id DESC LIMIT 1", [name, *params, viewer.name]).fetchone()
        return None if found is None else json.loads(found[0])

    def calibrations(self, model: str | None = None, *, viewer: Viewer | None = None) -> list[dict]:
        """Stored calibrations the viewer may read, newest first: the light columns (kept heads decoded), not
        the per-head trials."""
        viewer = self._viewer(viewer)
        readable, params = viewer.readable_sql()
        where = [readable] + (["model = ?"] if model is not None else [])
        params += [model] if model is not None else []
        with self._sql_errors():
            rows = dicts(self._db().execute(
                "SELECT id, name, created_at, model, task, metric, kept_heads, dev_baseline, heldout_delta, owner, "
                f"shared FROM calibrations WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC", params))
        for row in rows:
            row["kept_heads"] = json.loads(row["kept_heads"])
            row["shared"] = bool(row["shared"])
        return rows


def _decoded(row: dict) -> dict:
    row["result"] = json.loads(row["result"])
    row["heads"] = None if row["heads"] is None else json.loads(row["heads"])
    row["shared"] = bool(row["shared"])
    return row
