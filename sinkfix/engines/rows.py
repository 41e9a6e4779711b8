"""A summary-only Analysis as one Arrow-friendly row, and back, exactly (float32 survives the trip).

Ray workers send these rows to the driver (reductions, never maps), and ``--parquet`` writes the
same rows as its per-text table, so ``corpora import`` rebuilds the very runs the batch stored.
Arrays are flattened into ``list<float>`` columns; their shapes follow from ``n_layers``,
``n_heads``, ``n_kv_heads`` and the number of tokens (a hybrid's per-layer arrays have one row per
entry of ``attention_layers``), so no shape needs storing.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow as pa

from sinkfix.analysis.result import Analysis
from sinkfix.settings import AnalysisSettings

# Per-token / per-head arrays, and the shape of each as a function of (L, H, H_kv, T).
ARRAYS = {
    "att_received": lambda L, H, K, T: (T,),
    "att_received_layer": lambda L, H, K, T: (L, T),
    "att_received_head": lambda L, H, K, T: (L, H, T),
    "alpha": lambda L, H, K, T: (L, H, T),
    "sink_rate": lambda L, H, K, T: (T,),
    "entropy": lambda L, H, K, T: (L, H),
    "value_norm": lambda L, H, K, T: (T,),
    "value_norm_layer": lambda L, H, K, T: (L, T),
    "value_norm_head": lambda L, H, K, T: (L, K, T),
    "contribution": lambda L, H, K, T: (L, H, T),
    "learned_sink_mass": lambda L, H, K, T: (L, H),
    "attention_gate": lambda L, H, K, T: (L, H),
}
SCALARS = ("text", "model_name", "model_id", "model_type", "fingerprint", "is_causal", "n_layers", "n_heads",
           "n_kv_heads", "rule", "version", "truncated", "created_at", "device", "dtype")


def summary_only(analysis: Analysis) -> Analysis:
    """The same run without its L x H x T x T maps (what a corpus stores by default)."""
    return dataclasses.replace(analysis, maps=None, corrected_maps=None, corrected_from_rule=False)


def to_row(analysis: Analysis) -> dict:
    """One text's reductions as plain Python values (lists, strings, numbers): Arrow infers the types."""
    row = {name: getattr(analysis, name) for name in SCALARS}
    row.update(
        tokens=list(analysis.tokens), token_ids=[int(i) for i in analysis.token_ids], labels=list(analysis.labels),
        sink_indices=[int(i) for i in analysis.sink_indices],
        offsets=None if analysis.offsets is None else [[int(a), int(b)] for a, b in analysis.offsets],
        settings=json.dumps(analysis.settings.to_dict()), warnings=json.dumps(analysis.warnings),
        timings=json.dumps(analysis.timings),
        attention_layers=None if analysis.attention_layers is None else [int(i) for i in analysis.attention_layers],
    )
    for name in ARRAYS:
        value = getattr(analysis, name)
        row[name] = None if value is None else np.asarray(value, dtype=np.float32).ravel().tolist()
    return row


def from_row(row: dict) -> Analysis:
    """The summary-only Analysis of ``to_row``; float32 arrays bit-exact."""
    attending = row.get("attention_layers")  # a hybrid's rows are its attention layers
    rows = row["n_layers"] if attending is None else len(attending)
    shape_args = (rows, row["n_heads"], row["n_kv_heads"], len(row["tokens"]))
    arrays = {name: None if row.get(name) is None
              else np.asarray(row[name], dtype=np.float32).reshape(shape(*shape_args))
              for name, shape in ARRAYS.items()}
    offsets = row.get("offsets")
    return Analysis(
        **{name: row[name] for name in SCALARS},
        tokens=list(row["tokens"]), token_ids=[int(i) for i in row["token_ids"]], labels=list(row["labels"]),
        sink_indices=[int(i) for i in row["sink_indices"]],
        offsets=None if offsets is None else [(int(a), int(b)) for a, b in offsets],
        settings=AnalysisSettings.from_dict(json.loads(row["settings"])),
        warnings=json.loads(row["warnings"]), timings=json.loads(row["timings"]),
        maps=None, corrected_maps=None, **arrays,
        attention_layers=None if attending is None else [int(i) for i in attending],
    )


def table(rows: list[dict]) -> pa.Table:
    """Rows as an Arrow table (array columns are list<float32>, even when a batch has no value)."""
    return pa.Table.from_pylist(rows, schema=schema(rows[0]) if rows else None)


def schema(sample: dict) -> pa.Schema:
    """A fixed schema, so shards and batches with an all-null column still concatenate."""
    types = {name: pa.list_(pa.float32()) for name in ARRAYS}  # the values are float32: exact, half the bytes
    types.update(tokens=pa.list_(pa.string()), token_ids=pa.list_(pa.int64()), labels=pa.list_(pa.string()),
                 sink_indices=pa.list_(pa.int64()), offsets=pa.list_(pa.list_(pa.int64())),
                 attention_layers=pa.list_(pa.int64()),
                 is_causal=pa.bool_(), truncated=pa.bool_(), n_layers=pa.int64(), n_heads=pa.int64(),
                 n_kv_heads=pa.int64())
    fields = []
    for name, value in sample.items():
        kind = types.get(name)
        if kind is None:
            kind = pa.int64() if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else pa.string()
        fields.append(pa.field(name, kind))
    return pa.schema(fields)
