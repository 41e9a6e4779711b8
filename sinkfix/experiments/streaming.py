"""Window attention with k attention sinks (StreamingLLM, Xiao et al., ICLR 2024), three ways.

- ``masked_window``: one forward per setting over the whole text, with an extra additive mask
  (through ``capture.attention.masking``) so query i sees keys j with i - j < W, plus the first k
  tokens. Positions stay absolute. Works for every causal architecture routed through SinkFix.
- ``stream``: token-by-token decoding with a rolling KV cache (``SinkCache``) that holds the first
  k tokens and the last R, with or without StreamingLLM's position re-assignment (pos_shift).
- ``recompute``: a sliding window re-encoded from scratch for every scored position (stride 1),
  or every ``stride`` positions: the quality reference.

Scored predictions: query position i in [W, T - 1) predicting token i + 1, where W is the window
(the recent size R for streams). Everything is compared with dense attention on the same tokens.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from sinkfix.progress import Step
from sinkfix.capture.attention import masking
from sinkfix.errors import SettingsError
from sinkfix.experiments.perplexity import (Summary, base_forward, require_causal, sequence_nll, summarise,
                                            text_ids, token_nll)
from sinkfix.experiments.sinkcache import RopeShift, SinkCache, WindowMask, additive, visible
from sinkfix.models import LoadedModel


DEFAULT_SINKS = (0, 1, 2, 4, 8)
DEFAULT_BLOCK = 256  # positions per bootstrap unit
DEFAULT_STEP = 64  # tokens per forward when streaming without pos_shift (exact: the mask does the rest)


@dataclass(frozen=True)
class Curve:
    """One setting's per-position NLL over the scored positions."""

    name: str
    nll: np.ndarray
    sinks: int | None = None
    pos_shift: bool | None = None
    stride: int | None = None


@dataclass(frozen=True)
class LongContextResult:
    model: str
    mode: str
    n_tokens: int
    window: int
    dense: Curve | None
    curves: tuple[Curve, ...]
    trained_positions: int | None
    block: int = DEFAULT_BLOCK
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def scored_from(self) -> int:
        return self.window

    def summary(self, curve: Curve, since: int = 0) -> Summary:
        """``since``: only query positions >= since (e.g. past the trained context)."""
        cut = max(0, since - self.scored_from)
        reference = None if self.dense is None else self.dense.nll[cut:]
        return summarise(curve.nll[cut:], reference, self.block)

    def to_json(self) -> dict:
        past = self.trained_positions if self.trained_positions and self.n_tokens - 1 > self.trained_positions else None
        dense = None if self.dense is None else self.summary(self.dense)
        out = {
            "kind": "streaming", "model": self.model, "mode": self.mode, "n_tokens": self.n_tokens,
            "window": self.window, "scored_from": self.scored_from, "n_positions": self.n_tokens - 1 - self.scored_from,
            "trained_positions": self.trained_positions, "ci_unit": (f"block of {self.block} positions" if self.n_tokens - 1 - self.window > self.block
                        else "position"),
            "dense_ppl": None if dense is None else dense.ppl, "dense_nll": None if dense is None else dense.nll,
            "dense_ppl_ci95": None if dense is None else list(dense.ppl_ci95),
            "dense_curve": None if self.dense is None else _rounded(self.dense.nll),
            "settings": [], "notes": list(self.notes),
        }
        if past is not None and dense is not None:
            out["dense_ppl_past_trained"] = self.summary(self.dense, past).ppl
        for curve in self.curves:
            row = {"name": curve.name, "sinks": curve.sinks, "pos_shift": curve.pos_shift, "stride": curve.stride,
                   **self.summary(curve).to_json(), "curve": _rounded(curve.nll)}
            if past is not None:
                row["ppl_past_trained"] = self.summary(curve, past).ppl
            out["settings"].append(row)
        return out

    def headline(self) -> float | None:
        """The best setting's perplexity (what a list of experiments shows)."""
        finite = [self.summary(c).ppl for c in self.curves]
        return min(finite) if finite else None


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 4) for v in values]


def _check(window: int, sinks: Sequence[int]) -> None:
    if window < 1:
        raise SettingsError(f"the window must hold at least 1 token, got {window}")
    if any(k < 0 for k in sinks):
        raise SettingsError(f"sink counts must be 0 or more, got {list(sinks)}")


def _tick(progress: Step | None, done: int, total: int, what: str) -> None:
    if progress is not None:
        progress(done, total, what)


def _trained(loaded: LoadedModel) -> int | None:
    return getattr(loaded.model.config, "max_position_embeddings", None)


def masked_window(loaded: LoadedModel, text: str, window: int = 256, sinks: Sequence[int] = DEFAULT_SINKS,
                  n_tokens: int | None = 2048, block: int = DEFAULT_BLOCK, progress: Step | None = None) -> LongContextResult:
    """Dense attention and window attention with each number of sinks, one forward each."""
    require_causal(loaded)
    _check(window, sinks)
    ids = text_ids(loaded, text, n_tokens, minimum=window + 2)
    total = 1 + len(sinks)
    _tick(progress, 0, total, "dense")
    dense = sequence_nll(loaded, ids)[window:]
    curves = []
    for done, k in enumerate(sinks, start=1):
        _tick(progress, done, total, f"window {window} + {k} sinks")
        nll = window_nll(loaded, ids, window, k)[window:]
        curves.append(Curve(f"window+{k} sinks" if k else "window", nll, sinks=k))
    _tick(progress, total, total, "done")
    return LongContextResult(loaded.name, "masked", len(ids), window, Curve("dense", dense), tuple(curves),
                             _trained(loaded), block)


def window_nll(loaded: LoadedModel, ids: torch.Tensor, window: int, sinks: int) -> np.ndarray:
    """Per-position NLL (length T - 1) of one forward with window attention and ``sinks`` first tokens."""
    with masking(WindowMask(len(ids), window, sinks)):
        return sequence_nll(loaded, ids)


def stream_nll(loaded: LoadedModel, ids: torch.Tensor, start: int, recent: int, pos_shift: bool = True,
               step: int | None = None, progress: Step | None = None, what: str = "stream") -> np.ndarray:
    """Per-position NLL (length T - 1) of decoding ``ids`` with a cache of the first ``start`` and last
    ``recent`` tokens (the query itself counts among the recent ones).

    With pos_shift the cache slots hold positions 0..n-1 and each new token takes the next one; a
    multi-token step would give later queries in the step other distances to the sinks than a
    token-by-token decode, so pos_shift decodes one token per forward. Without it positions are the
    text's, and ``step`` tokens per forward are exact: the window mask hides what the cache would have
    evicted between them.
    """
    if recent < 1:
        raise SettingsError(f"the recent window must hold at least 1 token, got {recent}")
    step = 1 if pos_shift else (step or DEFAULT_STEP)
    if step < 1:
        raise SettingsError(f"step must be at least 1, got {step}")
    shift = RopeShift.for_model(loaded.model, loaded.model_type) if pos_shift else None
    cache = SinkCache(loaded.model.config, shift)
    n = len(ids)
    out = np.zeros(n - 1)
    # The first ``recent`` tokens see everything before them under any setting: one forward.
    first = min(n, recent)
    cuts = [0, first, *range(first + step, n, step), n] if first < n else [0, n]
    for c0, c1 in zip(cuts[:-1], cuts[1:]):
        cache.keep(start, recent - 1)
        queries = torch.arange(c0, c1)
        keys = torch.cat([cache.positions, queries])
        slots = len(cache.positions)
        positions = torch.arange(slots, slots + len(queries)) if pos_shift else queries
        mask = visible(queries, keys, recent, start)
        causal = keys[None, :] <= queries[:, None]
        extra = None if torch.equal(mask, causal) else additive(mask)
        with masking(extra):
            hidden = base_forward(loaded, ids[c0:c1], position_ids=positions[None], cache=cache, use_cache=True)
        cache.record(queries)
        stop = min(c1, n - 1)
        if stop > c0:
            out[c0:stop] = token_nll(loaded, hidden[: stop - c0], ids[c0 + 1 : stop + 1])
        _tick(progress, c1, n, what)
    return out


def recompute_nll(loaded: LoadedModel, ids: torch.Tensor, window: int, stride: int = 1,
                  progress: Step | None = None) -> np.ndarray:
    """NLL of query positions i in [window, T - 1), each from a fresh forward over at most ``window``
    tokens ending at i (positions restart at 0). With ``stride`` s, one forward scores s positions,
    whose contexts then hold window - s + 1 .. window tokens."""
    if stride < 1 or stride > window:
        raise SettingsError(f"stride must be between 1 and the window ({window}), got {stride}")
    n = len(ids)
    out = []
    ends = list(range(window + stride - 1, n - 1, stride))
    if not ends or ends[-1] != n - 2:
        ends.append(n - 2)
    done = window - 1
    for end in ends:
        segment = ids[end - window + 1 : end + 2]  # the window plus the target of its last query
        hidden = base_forward(loaded, segment[:-1])
        count = end - done
        out.append(token_nll(loaded, hidden[-count:], segment[-count:]))
        done = end
        _tick(progress, end, n - 2, "recompute")
    return np.concatenate(out)


def stream(loaded: LoadedModel, text: str, start: int = 4, recent: int = 1020, pos_shift: bool = True,
           n_tokens: int | None = None, step: int | None = None, block: int = DEFAULT_BLOCK, dense: bool = True,
           progress: Step | None = None) -> LongContextResult:
    """One streaming setting beside dense attention on the same tokens."""
    return stream_many(loaded, text, recent, [start], [pos_shift], n_tokens, step, block, dense, progress=progress)


def stream_many(loaded: LoadedModel, text: str, recent: int = 1020, sinks: Sequence[int] = (0, 4),
                pos_shifts: Sequence[bool] = (True, False), n_tokens: int | None = None, step: int | None = None,
                block: int = DEFAULT_BLOCK, dense: bool = True, recompute_stride: int | None = None,
                progress: Step | None = None) -> LongContextResult:
    """Streams for every (sinks, pos_shift) pair, optionally the recompute reference, and dense."""
    require_causal(loaded)
    _check(recent, sinks)
    ids = text_ids(loaded, text, n_tokens, minimum=recent + 2)
    notes = []
    dense_curve = None
    if dense:
        _tick(progress, 0, 1, "dense")
        dense_curve = Curve("dense", sequence_nll(loaded, ids)[recent:])
    curves = []
    for k in sinks:
        for shift in pos_shifts:
            name = f"stream {k} sinks + {recent} recent, pos_shift {'on' if shift else 'off'}"
            nll = stream_nll(loaded, ids, k, recent, shift, step, progress, name)
            curves.append(Curve(name, nll[recent:], sinks=k, pos_shift=shift))
    if recompute_stride:
        curves.append(Curve("recompute", recompute_nll(loaded, ids, recent, recompute_stride, progress),
                            stride=recompute_stride))
        if recompute_stride > 1:
            notes.append(f"recompute scores {recompute_stride} positions per forward: contexts hold "
                         f"{recent - recompute_stride + 1}..{recent} tokens, not exactly {recent}")
    trained = _trained(loaded)
    if trained and len(ids) > trained:
        notes.append(f"the text ({len(ids)} tokens) runs past the model's {trained} trained positions")
    return LongContextResult(loaded.name, "stream", len(ids), recent, dense_curve, tuple(curves), trained, block,
                             tuple(notes))


def recompute(loaded: LoadedModel, text: str, window: int = 1024, stride: int = 1, n_tokens: int | None = None,
              block: int = DEFAULT_BLOCK, dense: bool = True, progress: Step | None = None) -> LongContextResult:
    """The sliding window with recompute beside dense attention."""
    require_causal(loaded)
    _check(window, [])
    ids = text_ids(loaded, text, n_tokens, minimum=window + 2)
    dense_curve = Curve("dense", sequence_nll(loaded, ids)[window:]) if dense else None
    curve = Curve("recompute", recompute_nll(loaded, ids, window, stride, progress), stride=stride)
    notes = () if stride == 1 else (f"stride {stride}: contexts hold {window - stride + 1}..{window} tokens",)
    return LongContextResult(loaded.name, "recompute", len(ids), window, dense_curve, (curve,), _trained(loaded),
                             block, notes)


def ppl(nll: np.ndarray) -> float:
    return math.exp(float(np.mean(nll)))
