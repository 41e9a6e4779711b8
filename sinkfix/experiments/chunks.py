"""One chunk of text through the model: chunking, the forward, and the clean run scored against interventions.

Long texts are split into chunks of at most ``max_tokens`` tokens (special tokens included). A
``ChunkRun`` keeps a chunk's clean forward (hidden states, log-probabilities, the statistics the
intervention plans need), so any number of interventions can be scored against it: cosine of the
final hidden states, and with an LM head the NLL before and after, KL and top-1 agreement per
position (next-token for causal LMs; pseudo-log-likelihood for masked LMs, each position masked in turn).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sinkfix.capture.attention import observing
from sinkfix.errors import InputError, SettingsError
from sinkfix.experiments.intervene import BatchStats, Intervention, Plan, intervene, make_plan, stats_for
from sinkfix.models import LoadedModel, devices, model_inputs

DEFAULT_MAX_TOKENS = 512
PLL_BATCH = 32  # masked copies per forward when scoring an MLM


@dataclass(frozen=True)
class Chunk:
    text_index: int
    ids: tuple[int, ...]


def special_affixes(tokenizer: object) -> tuple[list[int], list[int]]:
    """The special ids a tokenizer puts before and after a text ([CLS] ... [SEP]; nothing for SmolLM2)."""
    probe = "hello"
    full = tokenizer(probe)["input_ids"]
    body = tokenizer(probe, add_special_tokens=False)["input_ids"]
    for start in range(len(full) - len(body) + 1):
        if full[start : start + len(body)] == body:
            return full[:start], full[start + len(body) :]
    return [], []


def chunk_text(loaded: LoadedModel, texts: Sequence[str], max_tokens: int = DEFAULT_MAX_TOKENS) -> list[Chunk]:
    """Split each text into chunks of at most ``max_tokens`` tokens, special tokens included."""
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise InputError("the text is empty: give at least one word to evaluate")
    limit = min(int(max_tokens), loaded.max_tokens)
    before, after = special_affixes(loaded.tokenizer)
    body = limit - len(before) - len(after)
    if body < 2:
        raise SettingsError(f"max_tokens must leave room for at least 2 tokens, got {max_tokens}")
    chunks = []
    for index, text in enumerate(texts):
        ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
        for start in range(0, len(ids), body):
            piece = before + ids[start : start + body] + after
            if len(piece) >= 2:  # a causal LM needs one token to predict another
                chunks.append(Chunk(index, tuple(piece)))
    if not chunks:
        raise InputError("the text is too short to evaluate: it needs at least 2 tokens")
    return chunks


@dataclass
class Outputs:
    hidden: torch.Tensor  # [B, T, D] final hidden states
    logits: torch.Tensor | None  # [B, T, V]


def forward(loaded: LoadedModel, ids: torch.Tensor, mask: torch.Tensor, plan: Plan | None = None,
            stats: BatchStats | None = None) -> Outputs:
    """One forward of a right-padded batch, optionally observed (``stats``) and/or intervened (``plan``).

    Query blocks follow the caller's ``capture.blocking(n)`` context (the CLI's --query-block), as
    in ``analyze()``. Inputs go to the model's (first) device; outputs come back to the CPU.
    """
    device = devices.input_device(loaded.model)
    inputs = model_inputs(loaded.model, {"input_ids": ids.to(device), "attention_mask": mask.to(device)})
    with torch.inference_mode(), intervene(plan):
        if stats is not None:
            with observing(stats):
                out = loaded.model(**inputs, output_hidden_states=loaded.lm_kind is not None)
        else:
            out = loaded.model(**inputs, output_hidden_states=loaded.lm_kind is not None)
    if loaded.lm_kind is None:
        return Outputs(out.last_hidden_state.cpu(), None)
    return Outputs(out.hidden_states[-1].cpu(), out.logits.cpu())


# ---------------------------------------------------------------- one chunk, clean and intervened


@dataclass(frozen=True)
class ChunkScores:
    """Per-position numbers for one chunk under one intervention."""

    targets: list[int]
    cosine: np.ndarray  # [T]
    base_nll: np.ndarray | None  # [P]
    nll: np.ndarray | None  # [P]
    kl: np.ndarray | None  # [P]
    agree: np.ndarray | None  # [P] bool
    positions: list[int]  # which token each of the P scores belongs to
    target_mass: float | None = None
    achieved_mass: float | None = None


class ChunkRun:
    """The clean forward of one chunk, kept so any number of interventions can be scored against it."""

    def __init__(self, loaded: LoadedModel, chunk: Chunk, norm_layer: int | None = None) -> None:
        self.loaded = loaded
        self.chunk = chunk
        self.ids = torch.tensor([chunk.ids])
        self.mask = torch.ones_like(self.ids)
        self.stats = stats_for(self.mask, loaded.layer_numbers, norm_layer)
        clean = forward(loaded, self.ids, self.mask, stats=self.stats)
        self.hidden = clean.hidden[0]
        self.positions = self._positions()
        self.base_logp = self._logp(clean, None)

    def _positions(self) -> list[int]:
        n = len(self.chunk.ids)
        if self.loaded.lm_kind == "causal":
            return list(range(n - 1))  # position i predicts token i + 1
        if self.loaded.lm_kind == "masked":
            special = set(self.loaded.tokenizer.all_special_ids)
            return [i for i, token in enumerate(self.chunk.ids) if token not in special]
        return list(range(n))

    def _logp(self, outputs: Outputs, plan: Plan | None) -> torch.Tensor | None:
        """Log-probabilities [P, V] of the predictions scored at ``self.positions``."""
        if self.loaded.lm_kind == "causal":
            return torch.log_softmax(outputs.logits[0, :-1].float(), dim=-1)
        if self.loaded.lm_kind == "masked":
            return self._pll_logp(plan)
        return None

    def _pll_logp(self, plan: Plan | None) -> torch.Tensor:
        """Mask each scored position in turn (batched copies); the sink set stays the original input's."""
        mask_id = self.loaded.tokenizer.mask_token_id
        if mask_id is None:
            raise SettingsError(f"{self.loaded.name} has a masked-LM head but its tokenizer has no mask token")
        rows = []
        for start in range(0, len(self.positions), PLL_BATCH):
            where = self.positions[start : start + PLL_BATCH]
            ids = self.ids.repeat(len(where), 1)
            ids[torch.arange(len(where)), torch.tensor(where)] = mask_id
            out = forward(self.loaded, ids, self.mask.repeat(len(where), 1), plan=plan)
            rows.append(torch.log_softmax(out.logits[torch.arange(len(where)), torch.tensor(where)].float(), dim=-1))
        return torch.cat(rows)

    def plan(self, intervention: Intervention) -> Plan:
        return make_plan(intervention, self.stats, self.mask.bool(), self.loaded.layer_numbers, self.loaded.n_heads, self.ids)

    def score(self, plan: Plan) -> ChunkScores:
        # An empty sink set moves nothing, so the outputs are the clean ones: skip the forward.
        empty = not bool(plan.sinks.any())
        modified = None if empty else forward(self.loaded, self.ids, self.mask, plan=plan)
        hidden = self.hidden if modified is None else modified.hidden[0]
        cosine = torch.nn.functional.cosine_similarity(self.hidden.float(), hidden.float(), dim=-1)
        mass = {}
        if plan.target_mass is not None:
            mass = {"target_mass": float(plan.target_mass[0]), "achieved_mass": float(plan.achieved_mass[0])}
        if self.base_logp is None:
            return ChunkScores(plan.target_tokens()[0], cosine.numpy(), None, None, None, None, self.positions, **mass)
        logp = self.base_logp if modified is None else self._logp(modified, plan)
        targets = torch.tensor(self.chunk.ids)[self._target_positions()]
        base_nll = -self.base_logp.gather(1, targets[:, None])[:, 0]
        nll = -logp.gather(1, targets[:, None])[:, 0]
        kl = (self.base_logp.exp() * (self.base_logp - logp)).sum(dim=-1).clamp(min=0)
        agree = self.base_logp.argmax(dim=-1) == logp.argmax(dim=-1)
        return ChunkScores(
            plan.target_tokens()[0], cosine.numpy(), base_nll.numpy(), nll.numpy(), kl.numpy(), agree.numpy(),
            self.positions, **mass,
        )

    def _target_positions(self) -> list[int]:
        """Which token each scored prediction should put its mass on."""
        if self.loaded.lm_kind == "causal":
            return [i + 1 for i in self.positions]
        return list(self.positions)

    def top_k(self, plan: Plan | None, position: int, k: int = 5) -> list[tuple[str, float]]:
        """The top-k predictions at scored ``position`` (an index into the chunk's tokens)."""
        if self.base_logp is None:
            return []
        if position not in self.positions:
            raise SettingsError(f"position {position} has no prediction here (scored: {self.positions[0]}..{self.positions[-1]})")
        logp = self.base_logp if plan is None else self._logp(forward(self.loaded, self.ids, self.mask, plan=plan), plan)
        values, ids = logp[self.positions.index(position)].exp().topk(k)
        tokens = self.loaded.tokenizer.convert_ids_to_tokens(ids.tolist())
        return [(token, float(p)) for token, p in zip(tokens, values)]
