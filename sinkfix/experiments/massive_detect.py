"""Massive activations (Sun et al., COLM 2024) found in hidden states: the rule and its summaries.

An entry of a layer's residual-stream output h is *massive* when |h| > 100 and |h| > 1000 x that
layer's median |h|. Per layer: the largest |h| with its token and feature dim, the median and their
ratio; over layers, the top features; and ``top_activation``, the cheap one-forward summary the
dashboard's badge shows. The experiment that intervenes on them is ``experiments.massive``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sinkfix.capture import residual
from sinkfix.models import LoadedModel, model_inputs

ABS_THRESHOLD = 100.0  # Sun et al.: |h| > 100 ...
RATIO_THRESHOLD = 1000.0  # ... and > 1000 x the median |h| of that hidden state
TOP_FEATURES = 10


def massive_mask(hidden: torch.Tensor, abs_threshold: float = ABS_THRESHOLD,
                 ratio: float = RATIO_THRESHOLD) -> torch.Tensor:
    """Sun et al.'s rule on one layer's hidden state [T, D] -> bool [T, D]."""
    magnitude = hidden.abs().float()
    median = float(np.median(magnitude.numpy()))
    return (magnitude > abs_threshold) & (magnitude > ratio * median)


def layer_stats(hidden: torch.Tensor, tokens: Sequence[str], abs_threshold: float = ABS_THRESHOLD,
                ratio: float = RATIO_THRESHOLD) -> list[dict]:
    """Per layer of ``hidden`` [L, T, D]: the largest |h| (token, dim, signed value), median |h|, ratio, flags."""
    rows = []
    for layer, h in enumerate(hidden):
        magnitude = h.abs().float()
        token, dim = divmod(int(magnitude.argmax()), magnitude.shape[1])
        median = float(np.median(magnitude.numpy()))
        peak = float(magnitude[token, dim])
        rows.append({
            "layer": layer, "max_abs": peak, "value": float(h[token, dim]), "token": token,
            "token_text": tokens[token], "dim": dim, "median_abs": median,
            "ratio": peak / median if median > 0 else float("inf"),
            "n_massive": int(massive_mask(h, abs_threshold, ratio).sum()),
        })
    return rows


def top_features(hidden: torch.Tensor, tokens: Sequence[str], k: int = TOP_FEATURES) -> list[dict]:
    """The k largest |h| entries over all layers, one per (token, dim), at the layer where each peaks."""
    magnitude = hidden.abs().float()  # [L, T, D]
    best, layer_of = magnitude.max(dim=0)  # [T, D]
    medians = magnitude.flatten(1).median(dim=1).values  # [L]
    order = best.flatten().argsort(descending=True)[:k]
    rows = []
    for flat in order.tolist():
        token, dim = divmod(flat, best.shape[1])
        layer = int(layer_of[token, dim])
        rows.append({"layer": layer, "token": token, "token_text": tokens[token], "dim": dim,
                     "value": float(hidden[layer, token, dim]), "max_abs": float(best[token, dim]),
                     "ratio": float(best[token, dim] / medians[layer]) if medians[layer] > 0 else float("inf")})
    return rows


def first_massive_layer(hidden: torch.Tensor, abs_threshold: float = ABS_THRESHOLD,
                        ratio: float = RATIO_THRESHOLD) -> int | None:
    for layer, h in enumerate(hidden):
        if bool(massive_mask(h, abs_threshold, ratio).any()):
            return layer
    return None


def _summarise(hidden: torch.Tensor) -> dict:
    """What ``top_activation`` keeps of one layer's output [1, T, D]: a few numbers, not the tensor."""
    magnitude = hidden[0].abs().float()
    token, dim = divmod(int(magnitude.argmax()), magnitude.shape[1])
    first_dim = int(magnitude[0].argmax())
    return {"max_abs": float(magnitude[token, dim]), "value": float(hidden[0, token, dim]), "token": token, "dim": dim,
            "median_abs": float(np.median(magnitude.numpy())), "first_abs": float(magnitude[0, first_dim]),
            "first_value": float(hidden[0, 0, first_dim]), "first_dim": first_dim}


def top_activation(model: LoadedModel, token_ids: Sequence[int], tokens: Sequence[str]) -> dict:
    """The cheap summary for one analysed text: one forward of the transformer body on exactly these ids,
    each layer reduced at once to a few numbers (memory stays flat on long inputs).

    ``top``: the largest |h| over layers (layer, token, dim, value, median, ratio, ``massive`` by Sun et
    al.'s rule); ``token0``: token 0's own peak (layer, dim, value, ratio to that layer's median).
    """
    ids = torch.tensor([list(token_ids)])
    with torch.inference_mode(), residual.recording(model.model, _summarise) as record:
        model.base(**model_inputs(model.model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}))
    layers = [{"layer": layer, **record[layer]} for layer in sorted(record)]
    top = max(layers, key=lambda row: row["max_abs"])
    first = max(layers, key=lambda row: row["first_abs"])

    def ratio(value: float, median: float) -> float:
        return value / median if median > 0 else float("inf")

    return {
        "top": {key: top[key] for key in ("layer", "max_abs", "value", "token", "dim", "median_abs")}
        | {"token_text": tokens[top["token"]], "ratio": ratio(top["max_abs"], top["median_abs"]),
           "massive": top["max_abs"] > ABS_THRESHOLD and top["max_abs"] > RATIO_THRESHOLD * top["median_abs"]},
        "token0": {"layer": first["layer"], "dim": first["first_dim"], "value": first["first_value"],
                   "max_abs": first["first_abs"], "ratio": ratio(first["first_abs"], first["median_abs"]),
                   "token_text": tokens[0]},
        "n_layers": len(layers),
    }
