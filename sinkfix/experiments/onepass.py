"""One forward of a batch of equal-length sequences, and everything the 2025 findings read from it.

Attention comes from an observer on SinkFix's attention function, hidden states from forward hooks on
each decoder layer's output (``capture.residual``, reduced at once so nothing of size L x T x d is kept).
Both happen in the same forward, so a text costs one pass. Layer l is the output of decoder layer l
(0-based), the layers ``residual.recording`` hooks; the embeddings are not a layer here.

What is kept per attention layer: ``first`` [B, H, T], the probability A[i, 0] each query row i gives
token 0, and optionally ``sums`` [B, H, T], each key's column sum over all rows. ``first`` gives α of
token 0 for *every prefix* of a causal model at no extra cost: query i of a causal model sees keys
0..i only, so the first T rows of a long forward are exactly the forward of its first T tokens, and
α[l, h, 0] on that prefix is the mean of A[i, 0] over its rows (sinkfix.experiments.lengths relies on
this; tests/unit/test_findings_core.py checks it against separate forwards).

Probabilities are observed before any intervention, as every observer sees them (capture.attention).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sinkfix.analysis import metrics
from sinkfix.analysis.representation import representation_entropies
from sinkfix.capture import residual
from sinkfix.capture.attention import intervening, observing
from sinkfix.capture.observers import add_columns
from sinkfix.experiments.intervene import Intervention, make_plan
from sinkfix.experiments.massive import ABS_THRESHOLD, RATIO_THRESHOLD
from sinkfix.models import LoadedModel, devices, model_inputs


class FirstKeyObserver:
    """Per layer: A[b, h, i, 0] for every query row i, and (``columns``) every key's column sum."""

    def __init__(self, columns: bool = False) -> None:
        self.columns = columns
        self.first: dict[int, torch.Tensor] = {}
        self.sums: dict[int, torch.Tensor] = {}

    def observe(self, layer: int | None, probs: torch.Tensor, value: torch.Tensor, scores: torch.Tensor,
                start: int = 0, sink_mass: torch.Tensor | None = None) -> None:
        if layer is None:
            raise RuntimeError("attention module has no layer index; load the model with sinkfix.load_model")
        batch, heads, rows = probs.shape[:3]
        if start == 0:
            n = value.shape[-2]
            self.first[layer] = torch.zeros(batch, heads, n, dtype=torch.float32)
            if self.columns:
                self.sums[layer] = torch.zeros(batch, heads, n, dtype=torch.float32)
        self.first[layer][:, :, start:start + rows] = probs[..., 0].float().cpu()
        if self.columns:
            add_columns(self.sums[layer], probs.float().sum(dim=-2).cpu())


def peaks(hidden: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Each token's largest |h| over feature dims [T], and the median |h| of the whole [T, d] state.

    Sun et al.'s rule flags an entry with |h| > 100 and > 1000 x that median (``massive.massive_mask``);
    a token holds such an entry exactly when its peak passes both (``Pass.massive``)."""
    magnitude = hidden.abs().float()
    return magnitude.amax(dim=-1), float(np.median(magnitude.numpy()))


def _hidden_reducer(entropy: bool, massive: bool):
    """What each layer's output [B, T, d] is reduced to as it is produced."""

    def reduce(hidden: torch.Tensor) -> dict[str, torch.Tensor]:
        h = hidden.detach().float()
        out = {"norms": h.norm(dim=-1).cpu()}  # [B, T]
        if entropy:
            out["entropy"] = representation_entropies(h)  # [B]
        if massive:
            found = [peaks(z.cpu()) for z in h]
            out["peak"] = torch.stack([p for p, _ in found])  # [B, T]
            out["median_abs"] = torch.tensor([m for _, m in found])  # [B]
        return out

    return reduce


@dataclass(frozen=True)
class Pass:
    """One batch's forward, reduced. Attention tensors are keyed by model layer number (a hybrid's
    attention layers only); hidden-state tensors have one row per decoder layer."""

    first: dict[int, torch.Tensor]  # layer -> [B, H, T]: A[i, 0] per query row
    sums: dict[int, torch.Tensor]  # layer -> [B, H, T]: column sums over query rows (empty unless asked)
    norms: torch.Tensor  # [L, B, T] L2 norm of each token's hidden state at each layer output
    entropy: torch.Tensor | None  # [L, B] representation entropy, nats
    peak: torch.Tensor | None  # [L, B, T] each token's largest |h| over feature dims
    median_abs: torch.Tensor | None  # [L, B] the median |h| over the sequence's T x d entries
    last_hidden: torch.Tensor  # [B, T, d] the transformer's final hidden states (for NLL)
    is_causal: bool

    @property
    def attention_layers(self) -> list[int]:
        return sorted(self.first)

    def token0_alpha(self, length: int | None = None) -> torch.Tensor:
        """α[l, b, h] of token 0 over the first ``length`` query rows -> [La, B, H].

        Causal: that is α on the sequence's first ``length`` tokens (see the module docstring). A
        bidirectional model's α is a mean over all T rows, so it takes only the full length."""
        n = self.norms.shape[-1]
        length = n if length is None else length
        if not self.is_causal and length != n:
            raise ValueError("a bidirectional model's prefix is not a forward of its own: run that length")
        return torch.stack([self.first[layer][..., :length].mean(dim=-1) for layer in self.attention_layers])

    def peak_ratio(self) -> torch.Tensor:
        """Each token's largest |h| over its layer's median |h| -> [L, B, T] (needs ``massive``)."""
        if self.peak is None or self.median_abs is None:
            raise ValueError("this pass kept no activation peaks: run it with massive=True")
        return self.peak / self.median_abs[..., None].clamp_min(1e-30)

    def massive(self, abs_threshold: float = ABS_THRESHOLD, ratio: float = RATIO_THRESHOLD) -> torch.Tensor:
        """[L, B, T] bool: the token holds an entry massive by Sun et al.'s rule at that layer."""
        return (self.peak > abs_threshold) & (self.peak_ratio() > ratio)

    def alpha(self) -> torch.Tensor:
        """The visible-query mean α for every key -> [La, B, H, T] (needs ``columns``)."""
        if not self.sums:
            raise ValueError("this pass kept no column sums: run it with columns=True")
        received = torch.stack([self.sums[layer] for layer in self.attention_layers]) / self.norms.shape[-1]
        return metrics.visible_query_mean(received, self.is_causal)


def first_layers_masked(loaded: LoadedModel, from_layer: int = 1) -> Intervention:
    """Token 0 removed from every query's softmax in layers ``from_layer``.. (ACT with β = 0 on token 0:
    the row is renormalised over the other keys, which is what masking the key before the softmax gives).
    Query 0, which sees only token 0, keeps it (a row whose visible keys are all targets is left as is)."""
    layers = tuple(layer for layer in loaded.layer_numbers if layer >= from_layer)
    return Intervention(target="first", beta=0.0, layers=layers)


def run(loaded: LoadedModel, sequences: Sequence[Sequence[int]], entropy: bool = False, massive: bool = False,
        columns: bool = False, intervention: Intervention | None = None) -> Pass:
    """One forward of the transformer body (no LM head) on equal-length id sequences."""
    ids = torch.tensor([list(s) for s in sequences], dtype=torch.long)
    device = devices.input_device(loaded.model)
    inputs = model_inputs(loaded.model, {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
                                         "use_cache": False})
    plan = None
    if intervention is not None:
        plan = make_plan(intervention, None, torch.ones_like(ids, dtype=torch.bool), loaded.layer_numbers,
                         loaded.n_heads)
    observer = FirstKeyObserver(columns)
    with torch.inference_mode(), observing(observer), intervening(plan), \
            residual.recording(loaded.model, _hidden_reducer(entropy, massive)) as record:
        out = loaded.base(**inputs)
    layers = [record[layer] for layer in sorted(record)]
    return Pass(
        first=observer.first, sums=observer.sums,
        norms=torch.stack([r["norms"] for r in layers]),
        entropy=torch.stack([r["entropy"] for r in layers]) if entropy else None,
        peak=torch.stack([r["peak"] for r in layers]) if massive else None,
        median_abs=torch.stack([r["median_abs"] for r in layers]) if massive else None,
        last_hidden=out.last_hidden_state.detach().cpu(), is_causal=loaded.is_causal,
    )
