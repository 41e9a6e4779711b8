"""Sink-preserving KV quantisation (after IntactKV and KVSink): how much do sink tokens need full precision?

K and V are fake-quantised (group-wise, symmetric, round to nearest) inside every layer's attention,
through ``capture.attention.transforming_kv``, while a chosen set of tokens stays in full precision:
the first N tokens, or the tokens SinkFix labels as sinks (att_received >= tau_att, or a non-neutral
seed label). The text is cut into chunks of ``max_tokens``; each chunk is one sequence, and the
chunks are the paired-bootstrap units of the perplexity change against the unquantised model.

Granularity, for keys and values separately:
- ``per-token``: each token's head vector is cut into groups of ``group`` channels, each with its own
  scale; a token's outliers only ever widen its own scale;
- ``per-channel`` (KIVI's choice for keys): each channel is cut into groups of ``group`` consecutive
  tokens along the sequence, each with its own scale; one outlier token widens the scale of every
  token in its group. Tokens kept in full precision are left out of the scales they would widen.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sinkfix.progress import Step
from sinkfix.capture.attention import transforming_kv
from sinkfix.errors import SettingsError
from sinkfix.experiments.chunks import ChunkRun, chunk_text
from sinkfix.experiments.perplexity import require_causal, sequence_nll, summarise
from sinkfix.models import LoadedModel
from sinkfix.settings import DEFAULT_TAU_ATT, DEFAULT_TAU_NORM


DEFAULT_BITS = (8, 4, 2)
DEFAULT_KEEP = (0, 1, 4)
DEFAULT_GROUP = 32
DEFAULT_MAX_TOKENS = 512
DEFAULT_MAX_CHUNKS = 16
FULL_PRECISION_BITS = 16  # at or above this, quantisation is the identity (the model's own precision)
GRANULARITIES = ("per-token", "per-channel")


def fake_quantize(x: torch.Tensor, bits: int, group: int = DEFAULT_GROUP, granularity: str = "per-token") -> torch.Tensor:
    """Symmetric round-to-nearest over groups of ``group`` values, back in x's dtype.

    ``x`` is [..., T, d]. Per token, a group is ``group`` channels of one token (the last dim);
    per channel, ``group`` consecutive tokens of one channel (the second-to-last dim; a sequence
    that is not a multiple of ``group`` ends with a shorter group). Levels are -q..q with
    q = 2^(bits-1) - 1 (int2 is ternary: -1, 0, 1), the scale is the group's max |x| / q, so each
    value moves by at most half a scale step.
    """
    if bits >= FULL_PRECISION_BITS:
        return x
    if bits < 2:
        raise SettingsError(f"bits must be 2 or more, got {bits}")
    if granularity == "per-channel":
        return _quantize_last(x.transpose(-1, -2), bits, group, ragged=True).transpose(-1, -2)
    if granularity != "per-token":
        raise SettingsError(f"granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}")
    return _quantize_last(x, bits, group, ragged=False)


def _quantize_last(x: torch.Tensor, bits: int, group: int, ragged: bool) -> torch.Tensor:
    """Group-wise quantisation along the last dim; ``ragged`` lets the last group be shorter."""
    dim = x.shape[-1]
    group = min(group, dim)  # a head (or sequence) narrower than the group is one group
    if group < 1 or (dim % group and not ragged):
        raise SettingsError(f"the group size must divide the head dim ({dim}), got {group}")
    levels = 2 ** (bits - 1) - 1
    padded = -(-dim // group) * group
    values = x.float()
    if padded != dim:  # zeros widen no group's max |x|, and are cut off again below
        values = torch.nn.functional.pad(values, (0, padded - dim))
    grouped = values.reshape(*x.shape[:-1], padded // group, group)
    scale = grouped.abs().amax(dim=-1, keepdim=True) / levels
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    quantised = torch.round(grouped / scale).clamp(-levels, levels) * scale
    return quantised.reshape(*x.shape[:-1], padded)[..., :dim].to(x.dtype)


@dataclass(frozen=True)
class KVQuantizer:
    """The K/V transform: quantise every token but those in ``keep`` (indices along the sequence),
    keys and values each at their own granularity."""

    bits: int
    group: int = DEFAULT_GROUP
    keep: tuple[int, ...] = ()
    keys: str = "per-token"
    values: str = "per-token"

    def __call__(self, layer: int | None, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._one(key, self.keys), self._one(value, self.values)

    def _one(self, x: torch.Tensor, granularity: str) -> torch.Tensor:
        if self.bits >= FULL_PRECISION_BITS:
            return x
        kept = [i for i in self.keep if i < x.shape[-2]]
        if not kept:
            return fake_quantize(x, self.bits, self.group, granularity)
        index = torch.tensor(kept, device=x.device)
        # A kept token stays out of every scale: zeroed before quantising, restored after. Per token
        # this changes nothing for the others; per channel it is what keeping a sink intact buys.
        out = fake_quantize(x.index_fill(-2, index, 0), self.bits, self.group, granularity)
        return out.index_copy(-2, index, x.index_select(-2, index))


def sink_indices(run: ChunkRun, tau_att: float = DEFAULT_TAU_ATT, tau_norm: float = DEFAULT_TAU_NORM) -> tuple[int, ...]:
    """The tokens SinkFix calls sinks in this chunk: att_received >= tau_att or a non-neutral seed label."""
    att = run.stats.att_received()[0]
    labels = run.stats.seed_labels(tau_att, tau_norm)[0]
    return tuple(i for i, label in enumerate(labels) if label != "neutral" or float(att[i]) >= tau_att)


@dataclass(frozen=True)
class Arm:
    bits: int
    keep: int | str  # N first tokens, or "sinks"

    @property
    def name(self) -> str:
        kept = "sinks kept" if self.keep == "sinks" else f"first {self.keep} kept"
        return f"int{self.bits}, {kept}"


@dataclass(frozen=True)
class KVQuantResult:
    model: str
    n_chunks: int
    max_tokens: int
    group: int
    keys: str
    values: str
    baseline: list[np.ndarray]  # per chunk, per position
    arms: tuple[Arm, ...]
    nll: tuple[list[np.ndarray], ...]  # per arm, per chunk
    kept: tuple[float, ...]  # per arm: mean tokens kept per chunk

    def to_json(self) -> dict:
        base = summarise(self.baseline)
        nothing_kept = {arm.bits: nll for arm, nll in zip(self.arms, self.nll) if arm.keep == 0}
        rows = []
        for arm, nll, kept in zip(self.arms, self.nll, self.kept):
            row = {"name": arm.name, "bits": arm.bits, "keep": arm.keep, "kept_tokens": kept,
                   **summarise(nll, self.baseline).to_json()}
            if arm.keep != 0 and arm.bits in nothing_kept:
                # What keeping these tokens buys: the paired change against the same bits with none kept
                # (negative: keeping them helps), with its CI over the same chunks.
                gain = summarise(nll, nothing_kept[arm.bits])
                row["delta_vs_none"], row["delta_vs_none_ci95"] = gain.delta_nll, list(gain.delta_nll_ci95)
            rows.append(row)
        return {"kind": "kvquant", "model": self.model, "n_chunks": self.n_chunks, "max_tokens": self.max_tokens,
                "group": self.group, "keys": self.keys, "values": self.values,
                "n_positions": int(sum(len(b) for b in self.baseline)), "ci_unit": "chunk",
                "dense_ppl": base.ppl, "dense_nll": base.nll, "dense_ppl_ci95": list(base.ppl_ci95), "settings": rows}

    def headline(self) -> float | None:
        """The largest perplexity change (in NLL) among the arms."""
        deltas = [summarise(n, self.baseline).delta_nll for n in self.nll]
        return max(deltas) if deltas else None


def _arms(bits: Sequence[int], keep: Sequence[int | str]) -> tuple[Arm, ...]:
    if not bits or not keep:
        raise SettingsError("give at least one bit width and one keep setting")
    for b in bits:
        if b < 2 or b > FULL_PRECISION_BITS:
            raise SettingsError(f"bits must be between 2 and {FULL_PRECISION_BITS}, got {b}")
    for k in keep:
        if k != "sinks" and (not isinstance(k, int) or k < 0):
            raise SettingsError(f"keep must be a token count (0 or more) or 'sinks', got {k!r}")
    return tuple(Arm(int(b), k) for b in bits for k in keep)


def kv_quant(loaded: LoadedModel, text: str, bits: Sequence[int] = DEFAULT_BITS,
             keep: Sequence[int | str] = DEFAULT_KEEP, group: int = DEFAULT_GROUP,
             max_tokens: int = DEFAULT_MAX_TOKENS, max_chunks: int = DEFAULT_MAX_CHUNKS,
             progress: Step | None = None, keys: str = "per-token", values: str = "per-token") -> KVQuantResult:
    """Each (bits, keep) arm against the unquantised model on the same chunks; ``keys`` and ``values``
    are each quantised ``per-token`` or ``per-channel`` (KIVI: keys per channel, values per token)."""
    require_causal(loaded)
    arms = _arms(bits, keep)
    for name, granularity in (("keys", keys), ("values", values)):
        if granularity not in GRANULARITIES:
            raise SettingsError(f"{name} must be quantised {' or '.join(GRANULARITIES)}, got {granularity!r}")
    if max_chunks < 1:
        raise SettingsError(f"max_chunks must be at least 1, got {max_chunks}")
    chunks = chunk_text(loaded, [text], max_tokens)[:max_chunks]
    baseline: list[np.ndarray] = []
    per_arm: list[list[np.ndarray]] = [[] for _ in arms]
    kept: list[list[int]] = [[] for _ in arms]
    total, done = len(chunks) * (1 + len(arms)), 0
    for chunk in chunks:
        ids = torch.tensor(chunk.ids)
        sinks = None
        if any(a.keep == "sinks" for a in arms):
            run = ChunkRun(loaded, chunk)  # one observed forward labels the chunk's sinks
            sinks = sink_indices(run)
            del run
        baseline.append(sequence_nll(loaded, ids))
        done += 1
        for index, arm in enumerate(arms):
            chosen = sinks if arm.keep == "sinks" else tuple(range(min(int(arm.keep), len(ids))))
            with transforming_kv(KVQuantizer(arm.bits, group, chosen, keys, values)):
                per_arm[index].append(sequence_nll(loaded, ids))
            kept[index].append(len(chosen))
            done += 1
            if progress is not None:
                progress(done, total, arm.name)
    return KVQuantResult(loaded.name, len(chunks), max_tokens, group, keys, values, baseline, arms, tuple(per_arm),
                         tuple(float(np.mean(k)) for k in kept))
