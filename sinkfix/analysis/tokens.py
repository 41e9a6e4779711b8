"""Tokenization for analysis: one pass, truncation with the special tokens kept, BOS handling,
and each token's character span in the text (so runs on different tokenizers can be aligned).

BOS modes (``AnalysisSettings.bos``): ``auto`` keeps what the tokenizer does; ``always`` prepends
the tokenizer's BOS token when it has one and did not put it first (SmolLM2 adds none, so its first
*word* is otherwise the sink); ``never`` removes a BOS the tokenizer added. BERT-style tokenizers
have no BOS token ([CLS] is not one), so both are no-ops there.
"""
from __future__ import annotations

import torch

from sinkfix.models import LoadedModel

# A prepended token has no characters in the text, like any special token a tokenizer adds.
_EMPTY_SPAN = (0, 0)


def tokenize(loaded: LoadedModel, text: str, limit: int, bos: str = "auto") -> tuple[dict, int]:
    """Tokenize once; only a text over the limit is tokenized again, truncated with its special tokens.

    Returns the encoding (``input_ids``, ``attention_mask``, ... as tensors, plus
    ``offset_mapping`` when the tokenizer is a fast one) and the untruncated length (BOS change included).
    """
    tokenizer = loaded.tokenizer
    kwargs = {"return_tensors": "pt", "return_offsets_mapping": bool(getattr(tokenizer, "is_fast", False))}
    encoded = tokenizer(text, **kwargs)
    change = bos_change(tokenizer, encoded["input_ids"][0].tolist(), bos)
    n_total = encoded["input_ids"].shape[1] + change
    if n_total > limit:
        # Leave room for a prepended BOS (or take one more token when the BOS will be dropped).
        encoded = tokenizer(text, truncation=True, max_length=limit - change, **kwargs)
    return apply_bos(encoded, tokenizer, change), n_total


def tokenizer_adds_bos(tokenizer: object) -> bool:
    """Whether the tokenizer itself puts its BOS token first (LLaMA-2, Gemma do; SmolLM2, GPT-2 do not)."""
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos_id is None:
        return False
    with_special = tokenizer("hello")["input_ids"]
    plain = tokenizer("hello", add_special_tokens=False)["input_ids"]
    return bool(with_special) and with_special[0] == bos_id and (not plain or plain[0] != bos_id)


def bos_change(tokenizer: object, ids: list[int], bos: str) -> int:
    """+1 when a BOS must be prepended, -1 when the tokenizer's leading BOS must go, else 0."""
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos == "auto" or bos_id is None or not ids:
        return 0
    if bos == "always":
        return 0 if ids[0] == bos_id else 1
    if bos == "never":
        return -1 if ids[0] == bos_id and tokenizer_adds_bos(tokenizer) else 0
    raise ValueError(f"unknown bos mode {bos!r}")


def apply_bos(encoded: dict, tokenizer: object, change: int) -> dict:
    """Prepend (change = +1) or drop (change = -1) the first position of every per-token field."""
    if change == 0:
        return encoded
    if change < 0:
        return {key: value[:, 1:] for key, value in encoded.items()}
    out = {}
    for key, value in encoded.items():
        if key == "input_ids":
            first = torch.full_like(value[:, :1], int(tokenizer.bos_token_id))
        elif key == "offset_mapping":
            first = torch.tensor([[_EMPTY_SPAN]], dtype=value.dtype).expand(value.shape[0], 1, 2)
        elif key in ("attention_mask", "special_tokens_mask"):
            first = torch.ones_like(value[:, :1])
        else:  # token_type_ids and the like: the BOS belongs to the first segment
            first = value[:, :1]
        out[key] = torch.cat([first, value], dim=1)
    return out


def bos_ids(tokenizer: object, ids: list[int], bos: str) -> list[int]:
    """The same BOS rule on a plain id list (sequences built at the token-id level)."""
    change = bos_change(tokenizer, ids, bos)
    if change > 0:
        return [int(tokenizer.bos_token_id), *ids]
    return ids[1:] if change < 0 else list(ids)


def pop_offsets(encoded: dict) -> list[tuple[int, int]] | None:
    """Remove ``offset_mapping`` from the encoding (models do not take it) and return it as pairs."""
    offsets = encoded.pop("offset_mapping", None)
    return None if offsets is None else [(int(a), int(b)) for a, b in offsets[0].tolist()]
