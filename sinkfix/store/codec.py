"""A run's tensors as blobs, and back: float32 arrays bit-exact, attention maps float16, per layer.

Corrected maps are not stored when they are exactly ``redistribute(maps, sink_mask(sink_indices), beta)``
(what ``analyze()`` produces): they are recomputed from the float16 maps on load.
"""
from __future__ import annotations

import json

import numpy as np
import torch

from sinkfix import layers
from sinkfix.analysis.result import Analysis
from sinkfix.analysis.redistribute import redistribute, sink_mask
from sinkfix.settings import AnalysisSettings
from sinkfix.store import tensorio

MAPS_DTYPE = np.float16

# The per-token and per-head arrays of an Analysis, stored float32 in the "arrays" blob.
ARRAY_FIELDS = (
    "att_received", "att_received_layer", "att_received_head", "alpha", "sink_rate", "entropy",
    "value_norm", "value_norm_layer", "value_norm_head", "contribution", "learned_sink_mass", "attention_gate",
)


def encode_blobs(analysis: Analysis) -> tuple[dict[str, bytes], bool]:
    """The blobs of one run, and whether the corrected maps had to be stored (not recomputable)."""
    arrays = {name: np.asarray(getattr(analysis, name), dtype=np.float32)
              for name in ARRAY_FIELDS if getattr(analysis, name) is not None}
    blobs = {"arrays": tensorio.dumps(arrays, compress=True)}
    if analysis.maps is None:
        return blobs, False
    # Blobs are named by model layer number: a hybrid's rows are its attention layers.
    maps16 = analysis.maps.astype(MAPS_DTYPE)
    for row, layer in enumerate(analysis.layer_numbers):
        blobs[f"maps/{layer}"] = tensorio.dumps({"maps": maps16[row]}, compress=True)
    corrected_stored = not _recomputable(analysis)
    if corrected_stored and analysis.corrected_maps is not None:
        corrected16 = analysis.corrected_maps.astype(MAPS_DTYPE)
        for row, layer in enumerate(analysis.layer_numbers):
            blobs[f"corrected/{layer}"] = tensorio.dumps({"maps": corrected16[row]}, compress=True)
    return blobs, corrected_stored


def _recomputable(analysis: Analysis) -> bool:
    """True when corrected_maps is exactly ACT applied to maps, as analyze() makes it."""
    if analysis.corrected_maps is None:
        return False
    if analysis.corrected_from_rule:
        return True  # analyze() made it so: no need to run the redistribution again to check
    expected = corrected_maps_of(analysis.maps, analysis.sink_indices, analysis.settings.beta)
    return bool(np.array_equal(expected, analysis.corrected_maps))


def corrected_maps_of(maps: np.ndarray, sink_indices: list[int], beta: float) -> np.ndarray:
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    mask = sink_mask(sink_indices, maps.shape[-1])
    if not mask.any():
        return maps  # ACT with an empty sink set is exactly the identity: skip the pass over L x H x T x T
    return redistribute(torch.from_numpy(maps), mask, beta).numpy()


def rebuild(row: dict, labels: list[str], blobs: dict[str, bytes]) -> Analysis:
    arrays = tensorio.loads(blobs["arrays"])
    settings = settings_of(row)
    sink_indices = json.loads(row["sink_indices"])
    attending = attention_layers_of(row)
    numbers = layers.layer_numbers(row["n_layers"], attending)
    maps = corrected = None
    if row["has_maps"]:
        maps = np.stack([tensorio.loads(blobs[f"maps/{layer}"])["maps"] for layer in numbers])
        maps = maps.astype(np.float32)
        if row["corrected_stored"]:
            if f"corrected/{numbers[0]}" in blobs:
                corrected = np.stack([tensorio.loads(blobs[f"corrected/{layer}"])["maps"]
                                      for layer in numbers]).astype(np.float32)
        else:
            corrected = corrected_maps_of(maps, sink_indices, settings.beta)
    return Analysis(
        text=row["text"],
        tokens=json.loads(row["tokens"]),
        token_ids=json.loads(row["token_ids"]),
        model_name=row["model"],
        model_id=row["model_id"],
        model_type=row["model_type"],
        fingerprint=row["fingerprint"],
        is_causal=bool(row["is_causal"]),
        n_layers=row["n_layers"],
        n_heads=row["n_heads"],
        n_kv_heads=row["n_kv_heads"],
        settings=settings,
        **{name: arrays.get(name) for name in ARRAY_FIELDS},
        labels=labels,
        rule=row["rule"],
        sink_indices=sink_indices,
        maps=maps,
        corrected_maps=corrected,
        version=row["version"],
        timings=json.loads(row["timings"]),
        warnings=json.loads(row["warnings"]),
        truncated=bool(row["truncated"]),
        created_at=row["created_at"],
        run_id=row["id"],
        device=row.get("device") or "cpu",
        dtype=row.get("dtype") or "float32",
        kernel=row.get("kernel") or "blocked",  # runs stored before migration 6 were all blocked
        kernel_reason=row.get("kernel_reason"),
        parent_run_id=row.get("parent_run_id"),
        offsets=None if row.get("offsets") is None else [tuple(pair) for pair in json.loads(row["offsets"])],
        corrected_from_rule=corrected is not None and not row["corrected_stored"],
        attention_layers=attending,
    )


def attention_layers_of(row: dict) -> list[int] | None:
    """A run row's attention layers (None: every layer; also for runs stored before migration 7)."""
    value = row.get("attention_layers")
    return None if value is None else [int(layer) for layer in json.loads(value)]


def settings_of(row: dict) -> AnalysisSettings:
    return AnalysisSettings.from_dict(json.loads(row["settings"]))
