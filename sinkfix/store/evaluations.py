"""Evaluations (``sinkfix evaluate`` / ``sts``) and named calibrated head sets (``sinkfix calibrate``)."""
from __future__ import annotations

import json

from sinkfix.store.database import Connection, dicts, now, to_json, write
from sinkfix.store.results import StoredResult


class EvaluationsTable(Connection):
    def save_evaluation(self, kind: str, result: dict, run_id: int | None = None) -> int:
        """Store one ``Evaluation.toto_json()`` (kind "evaluate") or ``StsResult.toto_json()`` (kind "sts")."""
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
               None if ci is None else ci[0], None if ci is None else ci[1], to_json(result)]
        with self._sql_errors():
            conn = self._db().conn
            with write(conn):
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
            rows = dicts(self._db().execute(
                f"SELECT * FROM evaluations {clause}ORDER BY created_at DESC, id DESC LIMIT ?", [*params, limit]))
        for row in rows:
            row["result"] = json.loads(row["result"])
            row["heads"] = None if row["heads"] is None else json.loads(row["heads"])
        return rows

    def evaluation(self, evaluation_id: int) -> dict | None:
        """One stored evaluation (``result`` and ``heads`` decoded), or None for an unknown id."""
        with self._sql_errors():
            rows = dicts(self._db().execute("SELECT * FROM evaluations WHERE id = ?", [int(evaluation_id)]))
        for row in rows:
            row["result"] = json.loads(row["result"])
            row["heads"] = None if row["heads"] is None else json.loads(row["heads"])
        return StoredResult(rows[0]) if rows else None

    def save_calibration(self, name: str, calibration: dict) -> int:
        """Store a ``Calibration.toto_json()`` under ``name``, replacing an older one of that name."""
        target = (calibration.get("heldout") or {}).get("target") or {}
        delta = target.get("delta_spearman", target.get("delta_nll"))
        row = [name, now(), calibration["model"], calibration["task"], calibration["metric"],
               to_json(calibration["kept_heads"]), calibration.get("dev_baseline"), delta, to_json(calibration)]
        with self._sql_errors():
            conn = self._db().conn
            with write(conn):
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
            rows = dicts(self._db().execute(
                "SELECT id, name, created_at, model, task, metric, kept_heads, dev_baseline, heldout_delta "
                f"FROM calibrations {clause}ORDER BY created_at DESC, id DESC", params))
        for row in rows:
            row["kept_heads"] = json.loads(row["kept_heads"])
        return rows
