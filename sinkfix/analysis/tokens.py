"""Tokenization for analysis: one pass, truncation with the special tokens kept, BOS handling,
and each token's character span in the text (so runs on different tokenizers can be aligned)."""
from __future__ import annotations

from sinkfix.models import LoadedModel


def tokenize(loaded: LoadedModel, text: str, limit: int, bos: str = "auto") -> tuple[dict, int]:
    """Tokenize once; only a text over the limit is tokenized again, truncated with its special tokens.

    Returns the encoding (``input_ids``, ``attention_mask``, ... as tensors, plus
    ``offset_mapping`` when the tokenizer is a fast one) and the untruncated length.
    """
    kwargs = {"return_tensors": "pt", "return_offsets_mapping": bool(getattr(loaded.tokenizer, "is_fast", False))}
    encoded = loaded.tokenizer(text, **kwargs)
    n_total = encoded["input_ids"].shape[1]
    if n_total > limit:
        encoded = loaded.tokenizer(text, truncation=True, max_length=limit, **kwargs)
    return encoded, n_total


def pop_offsets(encoded: dict) -> list[tuple[int, int]] | None:
    """Remove ``offset_mapping`` from the encoding (models do not take it) and return it as pairs."""
    offsets = encoded.pop("offset_mapping", None)
    return None if offsets is None else [(int(a), int(b)) for a, b in offsets[0].tolist()]
