"""In-forward intervention: ACT redistribution inside SinkFix's attention function, before ``@ V``.

An ``Intervention`` says what to do (target, beta, layers, heads; ``experiments.intervention``, whose
names are importable from here too). A ``Plan`` is that intervention resolved for one padded batch:
a sink set per sequence, and the heads it applies to. ``BatchStats`` is what a clean forward leaves
behind for resolving it (attention received, value norms). The plan is the object the attention
function calls (``capture.intervening``), so it lives in a context variable: thread-safe, and gone
when the ``with`` block ends. Padding is never a target.
"""
from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from sinkfix.capture import attention as capture
from sinkfix.capture.observers import add_columns
from sinkfix.analysis import classify
from sinkfix.errors import SettingsError
from sinkfix.analysis.redistribute import redistribute
from sinkfix.experiments.intervention import (  # noqa: F401  (re-exported: importable from here as before)
    TARGET_KINDS, Head, Intervention, Target, attention_layer_list, format_heads, head_map, needs_stats, parse_heads,
    parse_layers, parse_target, where_attention,
)


# ---------------------------------------------------------------- what a clean forward leaves behind


@dataclass
class BatchStats:
    """Per-sequence statistics of a clean forward over a right-padded batch.

    ``received`` [L, B, H, T]: attention each key gets, averaged over the sequence's real queries.
    ``value_norms[layer]`` [B, T]: raw norm of the full value vector, kept for every layer (cheap),
    so interventions with different ``norm_layer`` settings share one clean forward.
    """

    valid: torch.Tensor  # [B, T] bool
    norm_layer: int  # the default layer for the seed rule's value norms
    received_layers: dict[int, torch.Tensor] = field(default_factory=dict)
    value_norms: dict[int, torch.Tensor] = field(default_factory=dict)
    _sums: dict[int, torch.Tensor] = field(default_factory=dict)  # layers whose query blocks are still arriving

    def observe(self, layer: int | None, probs: torch.Tensor, value: torch.Tensor, scores: torch.Tensor,
                start: int = 0, sink_mass: torch.Tensor | None = None) -> None:
        """Add one block of query rows; a layer is complete (and moved to the CPU) with its last block."""
        if layer is None:
            raise RuntimeError("attention module has no layer index; load the model with sinkfix.load_model")
        keys = value.shape[-2]
        if probs.shape[0] != self.valid.shape[0] or keys != self.valid.shape[1]:
            return  # a forward of another shape (e.g. PLL copies) is not the batch these stats describe
        rows = probs.shape[-2]
        queries = self.valid[:, start:start + rows].to(device=probs.device, dtype=torch.float32)  # [B, q]
        if start == 0:
            self._sums[layer] = torch.zeros(*probs.shape[:2], keys, dtype=torch.float32, device=probs.device)
            self.value_norms[layer] = value.float().norm(dim=-1).square().sum(dim=1).sqrt().cpu()  # [B, T]
        # Padding rows weigh 0; the sum over real rows runs in float32 whatever the model's dtype.
        add_columns(self._sums[layer], torch.matmul(queries[:, None, None, :], probs.float()).squeeze(-2))
        if start + rows >= keys:
            counts = self.valid.sum(dim=-1).clamp(min=1).to(torch.float32)[:, None, None]
            self.received_layers[layer] = self._sums.pop(layer).cpu() / counts

    @property
    def received(self) -> torch.Tensor:
        return torch.stack([self.received_layers[i] for i in sorted(self.received_layers)])

    def att_received(self) -> torch.Tensor:
        """The seed's att_received per sequence [B, T]: mean over layers and heads."""
        return self.received.mean(dim=(0, 2))

    def normalised_value_norm(self, layer: int | None = None) -> torch.Tensor:
        """value_norm per sequence divided by its max over the sequence's real tokens -> [B, T]."""
        layer = self.norm_layer if layer is None else layer
        if layer not in self.value_norms:
            raise SettingsError(f"layer {layer} is out of range: this model has {where_attention(sorted(self.value_norms))}")
        norms = torch.where(self.valid, self.value_norms[layer], 0.0)
        return norms / norms.max(dim=-1, keepdim=True).values.clamp(min=1e-12)

    def seed_labels(self, tau_att: float, tau_norm: float, layer: int | None = None) -> list[list[str]]:
        """The seed rule, applied to each sequence's real tokens (value norms at ``layer``, default L // 2)."""
        rule = classify.SeedRule(tau_att, tau_norm)
        att, norm = self.att_received().numpy(), self.normalised_value_norm(layer).numpy()
        lengths = self.valid.sum(dim=-1).tolist()
        return [rule.labels(att[b, :n], norm[b, :n]) for b, n in enumerate(lengths)]


def stats_for(valid: torch.Tensor, n_layers: int | Sequence[int], norm_layer: int | None) -> BatchStats:
    """``n_layers``: the depth or a hybrid's attention layers; the default norm layer is the middle one."""
    attending = attention_layer_list(n_layers)
    layer = attending[len(attending) // 2] if norm_layer is None else norm_layer
    if layer not in attending:
        raise SettingsError(f"layer {layer} is out of range: this model has {where_attention(attending)}")
    return BatchStats(valid=valid.to(torch.bool), norm_layer=layer)


# ---------------------------------------------------------------- the plan the attention function runs


@dataclass(frozen=True)
class Plan:
    """An intervention resolved for one batch. ``sinks`` [B, T] (B may be 1 and broadcast)."""

    sinks: torch.Tensor
    beta: float
    heads: dict[int, tuple[int, ...] | None]
    target_mass: torch.Tensor | None = None  # [B] (random only: the mass it tried to match)
    achieved_mass: torch.Tensor | None = None  # [B]

    def apply(self, layer: int | None, probs: torch.Tensor) -> torch.Tensor:
        if layer not in self.heads:
            return probs
        if probs.shape[-1] > self.sinks.shape[-1]:
            raise RuntimeError(f"plan covers {self.sinks.shape[-1]} tokens but attention sees {probs.shape[-1]}")
        if self.sinks.shape[0] not in (1, probs.shape[0]):
            raise RuntimeError(f"plan covers {self.sinks.shape[0]} sequences but the batch has {probs.shape[0]}")
        # A block may see only the first k keys (causal blocks skip the rest): the plan's first k columns.
        mask = self.sinks[:, None, None, :probs.shape[-1]]
        heads = self.heads[layer]
        if heads is None:
            return redistribute(probs, mask, self.beta)
        out = probs.clone()
        index = list(heads)
        out[:, index] = redistribute(probs[:, index], mask, self.beta)
        return out

    def with_beta(self, beta: float) -> Plan:
        return dataclasses.replace(self, beta=beta)

    def target_tokens(self) -> list[list[int]]:
        return [torch.nonzero(row).flatten().tolist() for row in self.sinks]


def make_plan(
    intervention: Intervention,
    stats: BatchStats | None,
    valid: torch.Tensor,
    n_layers: int | Sequence[int],
    n_heads: int,
    token_ids: torch.Tensor | None = None,
) -> Plan:
    """Resolve ``intervention`` for a right-padded batch. ``valid`` [B, T] marks real tokens.

    ``stats`` (from a clean forward) is needed for ``detrimental`` and ``random``.
    ``token_ids`` seeds the random control per sequence, so a sequence gets the same draw in any batch.
    """
    valid = valid.to(torch.bool)
    heads = head_map(intervention, n_layers, n_heads)
    target = intervention.parsed_target
    if target.kind == "random":
        if stats is None:
            raise RuntimeError("the random control needs the statistics of a clean forward")
        reference = _target_mask(parse_target(intervention.match), intervention, stats, valid)
        sinks, wanted, got = _matched_random(intervention, stats, valid, reference, heads, token_ids)
        return Plan(sinks, intervention.beta, heads, wanted, got)
    return Plan(_target_mask(target, intervention, stats, valid), intervention.beta, heads)


def _target_mask(target: Target, intervention: Intervention, stats: BatchStats | None, valid: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros_like(valid)
    if target.kind == "first":
        mask[:, 0] = True
    elif target.kind == "tokens":
        for index in target.indices:
            if index >= valid.shape[1] or not valid[:, index].any():
                raise SettingsError(f"token index {index} is past the end of every input (longest: {int(valid.sum(1).max())} tokens)")
            mask[:, index] = True
        mask[:, 0] = target.include_first
    elif target.kind == "detrimental":
        if stats is None:
            raise RuntimeError("the detrimental target needs the statistics of a clean forward")
        labels_per_sequence = stats.seed_labels(intervention.tau_att, intervention.tau_norm, intervention.norm_layer)
        for b, labels in enumerate(labels_per_sequence):
            for index in classify.indices_with(labels, classify.DETRIMENTAL):
                mask[b, index] = True
        mask[:, 0] = False  # the seed rule never says so, but token 0 is protected regardless
    return mask & valid  # padding is never a target


def head_mass(stats: BatchStats, heads: dict[int, tuple[int, ...] | None]) -> torch.Tensor:
    """Attention each token receives, averaged over the intervened heads only -> [B, T]."""
    parts = []
    for layer, chosen in heads.items():
        received = stats.received_layers[layer]  # [B, H, T]
        parts.append(received if chosen is None else received[:, list(chosen)])
    return torch.cat(parts, dim=1).mean(dim=1)


def _matched_random(
    intervention: Intervention,
    stats: BatchStats,
    valid: torch.Tensor,
    reference: torch.Tensor,
    heads: dict[int, tuple[int, ...] | None],
    token_ids: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per sequence: shuffle the non-sink tokens with a fixed seed, then add each one whose mass
    brings the running total closer to the reference set's mass. A token left out would have
    overshot by more than it helped, so the miss is at most half the smallest such token's mass,
    unless the candidates run out first.
    """
    mass = head_mass(stats, heads)
    att = stats.att_received()
    sinks = torch.zeros_like(valid)
    wanted = (mass * reference).sum(dim=-1)
    for b in range(valid.shape[0]):
        candidates = valid[b] & ~reference[b] & (att[b] < intervention.tau_att)
        candidates[0] = False
        order = torch.nonzero(candidates).flatten().numpy()
        rng = np.random.default_rng([intervention.seed, _sequence_key(token_ids, b)])
        total = 0.0
        goal = float(wanted[b])
        for index in rng.permutation(order):
            value = float(mass[b, index])
            if abs(total + value - goal) < abs(total - goal):
                sinks[b, index] = True
                total += value
    return sinks, wanted, (mass * sinks).sum(dim=-1)


def _sequence_key(token_ids: torch.Tensor | None, row: int) -> int:
    if token_ids is None:
        return row
    return zlib.crc32(np.asarray(token_ids[row].tolist(), dtype=np.int64).tobytes())


@contextmanager
def intervene(plan: Plan | None) -> Iterator[Plan | None]:
    """Run forwards inside this block with ``plan`` applied before ``@ V``; None means no change."""
    with capture.intervening(plan):
        yield plan
