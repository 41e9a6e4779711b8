"""The analysis pipeline: ``analyze()`` for one text, ``analyze_many()`` for many in padded batches.

One forward pass per batch, reduced block by block by a ``SinkObserver`` into per-sequence sums.
Batches are right-padded (whatever the tokenizer's own padding side: left padding would shift
the positions of causal models), padding rows are left out of every reduction and padding
columns receive exactly 0 from the mask, so each text's numbers equal those of analysing it alone.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import torch

from sinkfix.analysis import classify, metrics
from sinkfix.analysis.memory import FIX_FROM_TOKENS, fix_mmap_threshold
from sinkfix.analysis.redistribute import redistribute, sink_mask
from sinkfix.analysis.result import Analysis
from sinkfix.analysis.tokens import pop_offsets, tokenize
from sinkfix import layers
from sinkfix.capture import gates
from sinkfix.capture import fast_path
from sinkfix.capture.attention import blocking, observing
from sinkfix.capture.observers import SequenceStats, SinkObserver
from sinkfix.errors import InputError, SettingsError
from sinkfix.models import LoadedModel, devices, get_model, model_inputs
from sinkfix.settings import AnalysisSettings

__all__ = ["Analysis", "Progress", "analyze", "analyze_many", "plan_batches", "validate_text"]

Progress = Callable[[int, int], None]  # (layers done, layers in all): a batch of texts counts its layers once
# A batch holds at most this many tokens (padded batch size x longest text): activations grow with it.
BATCH_TOKEN_BUDGET = 16384
DEFAULT_BATCH_SIZE = {"cpu": 8, "cuda": 32, "mps": 16}


def validate_text(text: object) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InputError("the text is empty: give at least one word to analyse")
    return text


def analyze(text: str, model: LoadedModel | str, settings: AnalysisSettings | None = None,
            progress: Progress | None = None) -> Analysis:
    """Analyse ``text`` on ``model`` (a LoadedModel or a name) in one forward pass."""
    validate_text(text)
    return analyze_many([text], model, settings, batch_size=1, progress=progress)[0]


def analyze_many(texts: Sequence[str], model: LoadedModel | str, settings: AnalysisSettings | None = None,
                 batch_size: int | None = None, progress: Progress | None = None) -> list[Analysis]:
    """Analyse each text; results in input order, each equal (within 1e-5) to ``analyze()`` alone.

    Texts are sorted by length and run in right-padded batches of at most ``batch_size`` texts
    (default: by device) and ``BATCH_TOKEN_BUDGET`` padded tokens, so padding stays small.
    """
    texts = list(texts)
    for text in texts:
        validate_text(text)
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise SettingsError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    loaded = get_model(model) if isinstance(model, str) else model
    settings = (settings or AnalysisSettings()).resolved(loaded.n_layers, getattr(loaded, "attention_layers", None))
    encoded = [_encode(loaded, text, settings) for text in texts]
    size = batch_size or default_batch_size(loaded)
    batches = plan_batches([len(e.ids) for e in encoded], size, settings.map_token_limit)
    per_batch = len(_layer_numbers(loaded))  # a hybrid's attention layers are the ones observed
    total = per_batch * len(batches)
    results: list[Analysis | None] = [None] * len(texts)
    for number, members in enumerate(batches):
        on_layer = None
        if progress is not None:
            progress(number * per_batch, total)
            on_layer = _offset_progress(progress, number * per_batch, total)
        for index, result in zip(members, _run_batch(loaded, settings, [encoded[i] for i in members], on_layer)):
            results[index] = result
    return results  # type: ignore[return-value]


def default_batch_size(loaded: LoadedModel) -> int:
    kind = str(getattr(loaded, "device_name", "cpu")).split(":")[0]
    return DEFAULT_BATCH_SIZE.get(kind, 8)


def plan_batches(lengths: Sequence[int], batch_size: int, map_token_limit: int,
                 token_budget: int = BATCH_TOKEN_BUDGET) -> list[list[int]]:
    """Group text indices into batches: sorted by length, at most ``batch_size`` texts and
    ``token_budget`` padded tokens each (a longer text runs alone), and never mixing texts that
    keep their maps (<= ``map_token_limit`` tokens) with texts that do not."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for index in order:
        current = batches[-1] if batches else None
        fits = (
            current is not None
            and len(current) < batch_size
            and (len(current) + 1) * lengths[index] <= token_budget
            and (lengths[current[0]] <= map_token_limit) == (lengths[index] <= map_token_limit)
        )
        if fits:
            current.append(index)
        else:
            batches.append([index])
    return batches


def _offset_progress(progress: Progress, base: int, total: int) -> Callable[[int], None]:
    return lambda done: progress(base + done, total)


@dataclass(frozen=True)
class _Encoded:
    text: str
    ids: list[int]
    fields: dict  # input_ids, attention_mask, ... as [1, n] tensors
    offsets: list[tuple[int, int]] | None
    warnings: tuple[str, ...]
    tokenize_s: float


def _encode(loaded: LoadedModel, text: str, settings: AnalysisSettings) -> _Encoded:
    started = time.perf_counter()
    limit = min(loaded.max_tokens, settings.max_tokens or loaded.max_tokens)
    fields, n_total = tokenize(loaded, text, limit, settings.bos)
    offsets = pop_offsets(fields)
    ids = fields["input_ids"][0].tolist()
    warnings = ()
    if n_total > len(ids):
        warnings = (f"text truncated: {n_total} tokens, limit {limit}; analysed the first {len(ids)}",)
    return _Encoded(text, ids, fields, offsets, warnings, time.perf_counter() - started)


def _collate(loaded: LoadedModel, items: list[_Encoded]) -> dict:
    """Right-pad the encodings into one batch: pad id for input ids, 0 for every other field."""
    if len(items) == 1:
        return dict(items[0].fields)
    width = max(len(item.ids) for item in items)
    pad_id = getattr(loaded.tokenizer, "pad_token_id", None) or 0
    batch = {}
    for key, first in items[0].fields.items():
        filled = torch.full((len(items), width), pad_id if key == "input_ids" else 0, dtype=first.dtype)
        for row, item in enumerate(items):
            value = item.fields[key][0]
            filled[row, : value.shape[0]] = value
        batch[key] = filled
    return batch


def _input_device(loaded: LoadedModel) -> torch.device:
    """Where the inputs go: the embeddings' device (the first device of a device_map split)."""
    return devices.input_device(loaded.model)


def _run_batch(loaded: LoadedModel, settings: AnalysisSettings, items: list[_Encoded],
               on_layer: Callable[[int], None] | None) -> list[Analysis]:
    lengths = [len(item.ids) for item in items]
    if len(items) * max(lengths) >= FIX_FROM_TOKENS:
        fix_mmap_threshold()  # long inputs: keep freed activations from piling up in the heap
    gate, observer, choice, forward_s = _forward(loaded, settings, items, on_layer)
    results = []
    for row, item in enumerate(items):
        tick = time.perf_counter()
        result = _assemble(item, loaded, settings, observer.sequence(row), None if gate is None else gate.sequence(row))
        assemble_s = time.perf_counter() - tick
        timings = {
            "tokenize_s": item.tokenize_s, "forward_s": forward_s, "assemble_s": assemble_s,
            "total_s": item.tokenize_s + forward_s + assemble_s, "batch_size": float(len(items)),
        }
        results.append(dataclasses.replace(result, timings=timings, offsets=item.offsets, kernel=choice.kernel,
                                           kernel_reason=choice.reason))
    return results


def _forward(loaded: LoadedModel, settings: AnalysisSettings, items: list[_Encoded],
             on_layer: Callable[[int], None] | None) -> tuple[object, SinkObserver, fast_path.Choice, float]:
    """One forward pass over the batch, observed: (attention gates, observer, kernel that ran, seconds).

    The seconds include waiting for the device: the observer settles (its copies to the CPU, and the
    input device's queue on CUDA) before the clock is read, so a GPU forward's time is not billed to
    the assembly that follows.
    """
    lengths = [len(item.ids) for item in items]
    keep_maps = max(lengths) <= settings.map_token_limit
    device = _input_device(loaded)
    choice = fast_path.choose(settings.kernel, device, keep_maps)  # triton or blocked, before the forward
    fields = dict(_collate(loaded, items), use_cache=False)  # a KV cache would hold 2 x L x T x d for nothing
    inputs = {key: value.to(device) if isinstance(value, torch.Tensor) else value
              for key, value in model_inputs(loaded.model, fields).items()}

    def forward(observer: SinkObserver) -> object:  # fresh contexts each call: a fused run may fall back and rerun
        # query_block None leaves the caller's blocking(n) context (or the automatic size) in force.
        rows = nullcontext() if settings.query_block is None else blocking(settings.query_block)
        gated = gates.recording(getattr(loaded, "gates", None), lengths)  # attention output gates (Qwen3-Next)
        with torch.inference_mode(), observing(observer), rows, gated as gate:
            loaded.base(**inputs)
        return gate

    tick = time.perf_counter()
    gate, observer, choice = fast_path.observed_forward(
        choice, fast_path.requested(settings.kernel) == "triton", lengths,
        lambda: SinkObserver(keep_maps, lengths, loaded.output_grams, on_layer), forward)
    observer.settle(device)
    return gate, observer, choice, time.perf_counter() - tick


def _layer_numbers(loaded: LoadedModel) -> list[int]:
    return layers.layer_numbers(loaded.n_layers, getattr(loaded, "attention_layers", None))


def _assemble(item: _Encoded, loaded: LoadedModel, settings: AnalysisSettings, seq: SequenceStats,
              gate: torch.Tensor | None = None) -> Analysis:
    ids = item.ids
    warnings = list(item.warnings)
    received_head = seq.received  # [L, H, T]
    alpha = metrics.visible_query_mean(received_head, loaded.is_causal)
    norm_head = seq.value_norm_head  # [L, H_kv, T]
    norm_layer = norm_head.square().sum(dim=-2).sqrt()  # the full (concatenated) value vector
    # Rows are attention layers; settings.layer is a model layer number (an attention layer, checked in resolved()).
    selected = norm_layer[layers.row_of(settings.layer, loaded.n_layers, getattr(loaded, "attention_layers", None))]
    value_norm = selected / selected.max()
    att_received = received_head.mean(dim=(0, 1))
    rule = classify.SeedRule(settings.tau_att, settings.tau_norm)
    labels = rule.labels(att_received.numpy(), value_norm.numpy())
    sinks = classify.indices_with(labels, classify.DETRIMENTAL)

    maps = corrected = None
    if seq.maps is not None:
        maps = seq.maps
        # With no sink the correction is exactly the identity; skip the pass over L x H x T x T.
        corrected = redistribute(maps, sink_mask(sinks, len(ids)), settings.beta) if sinks else maps
    contribution = None
    if seq.projected is None:
        warnings.append(
            f"norm-based contribution unavailable: no output-projection adapter for {loaded.model_type}"
        )
    else:
        # mean_i ||A[i, j] W_O^h v_j|| = received[h, j] * ||W_O^h v_j|| because A >= 0 (Kobayashi et al.)
        contribution = received_head * seq.projected

    return Analysis(
        text=item.text,
        tokens=loaded.tokenizer.convert_ids_to_tokens(ids),
        token_ids=ids,
        model_name=loaded.name,
        model_id=loaded.source,
        model_type=loaded.model_type,
        fingerprint=loaded.fingerprint,
        is_causal=loaded.is_causal,
        n_layers=loaded.n_layers,
        n_heads=loaded.n_heads,
        n_kv_heads=loaded.n_kv_heads,
        settings=settings,
        att_received=_np(att_received),
        att_received_layer=_np(received_head.mean(dim=1)),
        att_received_head=_np(received_head),
        alpha=_np(alpha),
        sink_rate=_np(metrics.sink_rate(alpha, settings.epsilon)),
        entropy=_np(seq.entropy),
        value_norm=_np(value_norm),
        value_norm_layer=_np(norm_layer),
        value_norm_head=_np(norm_head),
        contribution=None if contribution is None else _np(contribution),
        labels=labels,
        rule=rule.name,
        sink_indices=sinks,
        maps=None if maps is None else _np(maps),
        corrected_maps=None if corrected is None else _np(corrected),
        warnings=warnings,
        truncated=any(w.startswith("text truncated") for w in warnings),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        corrected_from_rule=corrected is not None,
        learned_sink_mass=None if seq.learned_sink_mass is None else _np(seq.learned_sink_mass),
        device=str(getattr(loaded, "device_name", "cpu")),
        dtype=str(getattr(loaded, "dtype_name", "float32")),
        attention_layers=getattr(loaded, "attention_layers", None),
        attention_gate=None if gate is None else _np(gate),
    )


def _np(tensor: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().float().cpu().numpy())
