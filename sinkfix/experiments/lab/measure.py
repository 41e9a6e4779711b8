"""What a checkpoint measures, with the code that analyses pretrained models.

One forward of the validation batch through SinkFix's attention function, observed by the
analysis observer (``capture.observers.SinkObserver``) and with the residual stream recorded
(``capture.residual``), gives per sequence:
- ``sink_rate``: Gu et al.'s Sink₁^ε of token index 0 (``metrics.visible_query_mean`` and
  ``metrics.sink_rate``, ε = 0.3);
- ``first_token_mass``: α[l, h, 0] averaged over layers and heads, the attention token 0 receives
  (mean over the queries that see it, i.e. all of them);
- ``massive_ratio``: at the layer holding the largest |h|, that |h| over the layer's median |h|
  (``experiments.massive_detect.layer_stats``, as the massive-activation experiment's headline), and
  ``massive_on_token0``: the share of sequences whose largest |h| sits on token 0;
- ``value_norm_ratio``: token 0's value-vector norm (all heads, ``metrics.value_norms``) over the
  median token's, averaged over layers: below 1 is Guo et al.'s value-state drain;
- ``val_loss``: next-token cross-entropy over the scored positions (nats);
- ``learned_sink_mass`` (softmax1, sinklogit): the mass rows give the sink logit;
- ``register_share`` (registers): the mass on the k register columns; ``first_content_mass``: α of
  ``<s>``, the first token after them (with registers, token 0 is the first register).

The unnormalised variants (sigmoid, relu) are measured on each row's shares A[i, j] / (Σ_j A[i, j]
+ 1e-8), as Gu et al.'s code measures them: their raw weights are not a distribution (σ(0) = 0.5 puts
every key above ε). Softpick, softmax1 and sinklogit rows are sub-distributions (they sum to at most
1, the rest going nowhere or to the sink) and are measured as they are. Their raw first-token
weight is kept as ``first_token_weight`` for all variants.
"""
from __future__ import annotations

import numpy as np
import torch

from sinkfix.analysis import metrics
from sinkfix.capture import residual
from sinkfix.capture.attention import observing
from sinkfix.capture.observers import SinkObserver
from sinkfix.experiments.massive_detect import layer_stats
from sinkfix.experiments.lab.tasks import Batch
from sinkfix.settings import DEFAULT_EPSILON

NORMALISED = ("sigmoid", "relu")  # measured on row shares (Gu et al.)
GU_EPS = 1e-8


class LabObserver:
    """Hands the analysis observer the weights (row shares for unnormalised variants) and keeps the
    full value norms [B, T] and the raw first-token weight of each layer."""

    def __init__(self, shares: bool) -> None:
        self.inner = SinkObserver(keep_maps=False)
        self.shares = shares
        self.value_norms: dict[int, torch.Tensor] = {}
        self.first_weight: dict[int, torch.Tensor] = {}  # [B, H] sum over rows of the raw A[i, 0]

    def observe(self, layer: int | None, probs: torch.Tensor, value: torch.Tensor, scores: torch.Tensor,
                start: int = 0, sink_mass: torch.Tensor | None = None) -> None:
        raw = probs.float()
        if start == 0:
            self.value_norms[layer] = metrics.value_norms(value.float())[1].cpu()
            self.first_weight[layer] = torch.zeros(raw.shape[:2])
        self.first_weight[layer] += raw[..., 0].sum(dim=-1).cpu()
        if self.shares:
            raw = raw / (raw.sum(dim=-1, keepdim=True) + GU_EPS)
            scores = raw.log()  # the observer's entropy then reads -sum p ln p of the shares
        self.inner.observe(layer, raw, value, scores, start=start, sink_mass=sink_mass)


def _loss(logits: torch.Tensor, ids: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy per sequence over its scored predictions [B]."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    nll = -logp.gather(-1, ids[:, 1:, None])[..., 0]
    return (nll * scored).sum(dim=1) / scored.sum(dim=1).clamp_min(1)


def _peak(hidden: torch.Tensor) -> tuple[float, int]:
    """[L, T, D] -> (the top |h| over its layer's median |h|, the token holding it), from massive_detect.layer_stats."""
    rows = layer_stats(hidden, [""] * hidden.shape[1])
    top = max(rows, key=lambda row: row["max_abs"])
    return float(top["ratio"]), int(top["token"])


def measure(model: torch.nn.Module, batch: Batch, normaliser: str, n_registers: int,
            epsilon: float = DEFAULT_EPSILON) -> dict[str, float]:
    """One observed forward of ``batch`` through ``model`` (loaded with SinkFix's attention): the
    checkpoint metrics, each a mean over the batch's sequences."""
    device = model.lm_head.weight.device
    ids = torch.as_tensor(batch.ids, device=device)
    scored = torch.as_tensor(batch.scored, device=device, dtype=torch.float32)
    observer = LabObserver(shares=normaliser in NORMALISED)
    with torch.inference_mode(), observing(observer), residual.recording(model) as record:
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    loss = _loss(logits, ids, scored).cpu().numpy()
    copy_loss = None
    if batch.copies is not None and batch.copies.any():
        copies = torch.as_tensor(batch.copies, device=device, dtype=torch.float32)
        copy_loss = float((_loss(logits, ids, copies).cpu().numpy() * batch.copies.sum(1)).sum() / batch.copies.sum())
    layers = sorted(observer.value_norms)
    norms = torch.stack([observer.value_norms[l] for l in layers])  # [L, B, T]
    first_weight = torch.stack([observer.first_weight[l] for l in layers]) / ids.shape[1]  # [L, B, H]
    k = n_registers
    rows: dict[str, list[float]] = {name: [] for name in (
        "sink_rate", "first_token_mass", "massive_ratio", "massive_on_token0", "value_norm_ratio", "first_token_weight",
        "learned_sink_mass", "register_share", "first_content_mass")}
    for b in range(ids.shape[0]):
        stats = observer.inner.sequence(b)
        alpha = metrics.visible_query_mean(stats.received, True)  # [L, H, T]
        rows["sink_rate"].append(float(metrics.sink_rate(alpha, epsilon)[0]))
        rows["first_token_mass"].append(float(alpha[..., 0].mean()))
        rows["first_token_weight"].append(float(first_weight[:, b].mean()))
        rows["first_content_mass"].append(float(alpha[..., k].mean()))
        rows["register_share"].append(float(stats.received[..., :k].sum(dim=-1).mean()) if k else 0.0)
        if stats.learned_sink_mass is not None:
            rows["learned_sink_mass"].append(float(stats.learned_sink_mass.mean()))
        hidden = torch.stack([record[l][b] for l in sorted(record)])  # [L, T, D]
        ratio, token = _peak(hidden)
        rows["massive_ratio"].append(ratio)
        rows["massive_on_token0"].append(float(token == 0))
        v = norms[:, b]  # [L, T]
        rows["value_norm_ratio"].append(float((v[:, 0] / v.median(dim=1).values.clamp_min(1e-12)).mean()))
    out = {name: float(np.mean(values)) for name, values in rows.items() if values}
    out["val_loss"] = float(loss.mean())
    if copy_loss is not None:
        out["copy_loss"] = copy_loss
    return out
