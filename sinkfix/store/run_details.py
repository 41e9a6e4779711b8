"""A stored run's parts, read without rebuilding the whole Analysis: one head's maps (one layer's blob),
the per-token rows and the per-(layer, head) rows. Each read checks first that the viewer may read the run."""
from __future__ import annotations

import json

import numpy as np

from sinkfix import layers
from sinkfix.errors import StoreError
from sinkfix.policy.ownership import Viewer
from sinkfix.store import codec, tensorio
from sinkfix.store.database import Connection, dicts
from sinkfix.store.run_rows import visible_run


class RunDetails(Connection):
    TOKEN_COLUMNS = ("index", "token", "att_received", "value_norm", "sink_rate", "label")

    def head_map(self, run_id: int, layer: int, head: int, *, viewer: Viewer | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """(original, corrected) T x T float32 maps of one head, decoding only that layer's blob.

        None when the run kept no maps (its text was above the map limit).
        """
        viewer = self._viewer(viewer)
        with self._sql_errors():
            db = self._db()
            row = visible_run(db, run_id, viewer, self.path)
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

    def token_rows(self, run_id: int, *, viewer: Viewer | None = None) -> list[dict]:
        viewer = self._viewer(viewer)
        with self._sql_errors():
            db = self._db()
            visible_run(db, run_id, viewer, self.path)
            return dicts(db.execute(
                "SELECT idx AS \"index\", token, att_received, value_norm, sink_rate, label "
                "FROM run_tokens WHERE run_id = ? ORDER BY idx", [run_id]))

    def token_records(self, run_id: int, start: int = 0, end: int | None = None, *, viewer: Viewer | None = None) -> list[tuple]:
        """The per-token rows ``start <= index < end`` as plain tuples in ``TOKEN_COLUMNS`` order: one
        SELECT on the primary key, no dict per row (``pandas.DataFrame.from_records`` takes them as they are)."""
        viewer = self._viewer(viewer)
        with self._sql_errors():
            db = self._db()
            visible_run(db, run_id, viewer, self.path)
            return db.execute("SELECT idx, token, att_received, value_norm, sink_rate, label FROM run_tokens "
                              "WHERE run_id = ? AND idx >= ? AND idx < ? ORDER BY idx",
                              [run_id, int(start), 2**62 if end is None else int(end)]).fetchall()

    def token_strengths(self, run_id: int, *, viewer: Viewer | None = None) -> list[tuple]:
        """(att_received, sink_rate, label rank) of every token, in order, with the rank 2 for detrimental,
        1 for beneficial, 0 for neutral: numbers only, so a 32k-token run's whole-text strip reads fast."""
        viewer = self._viewer(viewer)
        with self._sql_errors():
            db = self._db()
            visible_run(db, run_id, viewer, self.path)
            return db.execute("SELECT att_received, sink_rate, CASE label WHEN 'detrimental' THEN 2 "
                              "WHEN 'beneficial' THEN 1 ELSE 0 END FROM run_tokens WHERE run_id = ? ORDER BY idx",
                              [run_id]).fetchall()

    def head_rows(self, run_id: int, *, viewer: Viewer | None = None) -> list[dict]:
        viewer = self._viewer(viewer)
        with self._sql_errors():
            db = self._db()
            visible_run(db, run_id, viewer, self.path)
            return dicts(db.execute(
                "SELECT layer, head, top_token, top_token_text, top_alpha, entropy, token0_share, "
                "top_contribution_share, gate FROM run_heads WHERE run_id = ? ORDER BY layer, head", [run_id]))
