"""Next-token NLL of a causal LM, position by position, and its summaries with bootstrap CIs.

Shared by the long-context experiments (streaming windows, KV quantisation). The CIs reuse
``evaluate.paired_bootstrap``: the units are blocks of consecutive positions (or chunks of text),
since neighbouring positions are not independent.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sinkfix.errors import InputError, SettingsError
from sinkfix.experiments.effects import paired_bootstrap
from sinkfix.models import LoadedModel, devices

LOGIT_ROWS = 1024  # positions per lm-head call: 1024 x 49k vocab float32 logits are 200 MB


def require_causal(loaded: LoadedModel) -> None:
    if loaded.lm_kind != "causal":
        raise SettingsError(f"{loaded.name} is not a causal LM with an LM head; long-context perplexity needs one "
                            "(try smollm2-135m)")
    if getattr(loaded.model.config, "final_logit_softcapping", None):
        raise SettingsError(f"{loaded.name} soft-caps its logits; the long-context experiments do not model that")


def text_ids(loaded: LoadedModel, text: str, n_tokens: int | None, minimum: int = 2) -> torch.Tensor:
    """The first ``n_tokens`` token ids of ``text`` (the tokenizer's own special tokens included)."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("the text is empty: give a text file with enough tokens")
    if n_tokens is not None and n_tokens < minimum:
        raise SettingsError(f"n_tokens must be at least {minimum}, got {n_tokens}")
    ids = loaded.tokenizer(text, verbose=False)["input_ids"]
    if n_tokens is not None:
        if len(ids) < n_tokens:
            raise InputError(f"the text has {len(ids)} tokens, fewer than the {n_tokens} asked for")
        ids = ids[:n_tokens]
    if len(ids) < minimum:
        raise InputError(f"the text has {len(ids)} tokens; this experiment needs at least {minimum}")
    return torch.tensor(ids, dtype=torch.long)


def token_nll(loaded: LoadedModel, hidden: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """NLL of ``targets`` [n] under the LM head applied to ``hidden`` [n, D], in row chunks."""
    head = loaded.model.get_output_embeddings()
    out = []
    with torch.inference_mode():
        for start in range(0, len(targets), LOGIT_ROWS):
            logits = head(hidden[start : start + LOGIT_ROWS]).float()
            logp = torch.log_softmax(logits, dim=-1)
            picked = logp.gather(1, targets[start : start + LOGIT_ROWS, None].to(logp.device))[:, 0]
            out.append(-picked.cpu().double().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def base_forward(loaded: LoadedModel, ids: torch.Tensor, **kwargs: object) -> torch.Tensor:
    """Final hidden states [T, D] of one sequence through the transformer without its head."""
    device = devices.input_device(loaded.model)
    with torch.inference_mode():
        out = loaded.base(input_ids=ids[None].to(device), **kwargs)
    return out.last_hidden_state[0]


def sequence_nll(loaded: LoadedModel, ids: torch.Tensor) -> np.ndarray:
    """NLL of each next token: entry i is -log p(ids[i+1] | ids[:i+1]), length T - 1."""
    return token_nll(loaded, base_forward(loaded, ids)[:-1], ids[1:])


@dataclass(frozen=True)
class Summary:
    """One setting's NLL over the scored positions, its perplexity, and a CI against a reference."""

    nll: float
    ppl: float
    ppl_ci95: tuple[float, float]
    delta_nll: float | None = None
    delta_nll_ci95: tuple[float, float] | None = None

    def to_json(self) -> dict:
        return {"nll": self.nll, "ppl": self.ppl, "ppl_ci95": list(self.ppl_ci95), "delta_nll": self.delta_nll,
                "delta_nll_ci95": None if self.delta_nll_ci95 is None else list(self.delta_nll_ci95)}


def units(values: np.ndarray, block: int) -> list[np.ndarray]:
    """Consecutive blocks of ``block`` positions: the bootstrap's resampling units."""
    return [values[i : i + block] for i in range(0, len(values), block)]


def summarise(nll: np.ndarray | Sequence[np.ndarray], reference: np.ndarray | Sequence[np.ndarray] | None = None,
              block: int = 256, seed: int = 0) -> Summary:
    """Mean NLL, perplexity with a bootstrap CI, and the paired change against ``reference``.

    ``nll`` is one array cut into blocks of ``block`` positions, or a list of units (chunks) already.
    """
    parts = units(np.asarray(nll), block) if isinstance(nll, np.ndarray) else [np.asarray(p) for p in nll]
    if not parts or sum(len(p) for p in parts) == 0:
        raise InputError("no positions are scored: the text is shorter than the window")
    ref_parts = None
    if reference is not None:
        ref_parts = units(np.asarray(reference), block) if isinstance(reference, np.ndarray) else [np.asarray(r) for r in reference]
    if len(parts) == 1:  # one unit: resample positions instead (and say so through the caller's ci_unit)
        parts = [p[None] for p in parts[0]]
        ref_parts = None if ref_parts is None else [r[None] for r in ref_parts[0]]
    counts = [len(p) for p in parts]
    mean = float(np.concatenate(parts).mean())
    low, high = paired_bootstrap([p.sum() for p in parts], counts, seed=seed) if len(parts) > 1 else (mean, mean)
    delta = delta_ci = None
    if ref_parts is not None:
        diffs = [p - r for p, r in zip(parts, ref_parts)]
        delta = float(np.concatenate(diffs).mean())
        delta_ci = paired_bootstrap([d.sum() for d in diffs], counts, seed=seed) if len(diffs) > 1 else (delta, delta)
    return Summary(mean, _exp(mean), (_exp(low), _exp(high)), delta, delta_ci)


def _exp(x: float) -> float:
    return math.exp(x) if x < 700 else math.inf
