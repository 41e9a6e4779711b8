"""The rows of issue 20's GPU table, shared by `make gpu-check` (gpu_check.py) and the time-limited first
GPU run (gpu_run.py): each row is analyze() against a bare SDPA forward of the same weights on the same
input (CUDA events; peak GPU memory above what was allocated before).

Every row returns records with ``row`` and ``T``, and where they apply ``analyze_s``, ``sdpa_s``,
``ratio``, ``peak_mb``, ``sdpa_peak_mb``, ``tokens_per_s``, ``kernel`` and ``ok``. The base model is
SmolLM2 (the embedded weights) or, where no weights are at hand (the GPU machines), a random-weight
model of its shape (``benchmarks/shapes.py``): the same shapes, so the same times.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from benchmarks import shapes

PARAGRAPH = ("Attention sinks are tokens that draw a large share of attention without adding much to the "
             "output. The first token of a causal language model is the usual example, and punctuation, "
             "separators and line breaks often join it. A study of sinks reads, for every layer and head, "
             "how much attention each token receives and how large its value vector is. ")
LLAMA_1B = shapes.LLAMA_1B


@dataclass(frozen=True)
class Scale:
    device: str
    dtype: str
    exact_t: int
    smollm2_t: int
    shape_ts: tuple[int, ...]
    llama_t: int
    eager_t: int
    batch_texts: int
    batch_t: int
    batch_size: int
    layers: int | None = None  # random shapes: keep the model's own depth (None) or cut it (smoke)
    head_dim: int | None = None  # random Llama shape: keep 64 (None) or shrink it (smoke)
    synthetic: bool = False  # the base model: random weights of SmolLM2's shape instead of the embedded weights


FULL = Scale("cuda", "bfloat16", 256, 8192, (16384, 32768, 65536, 131072), 32768, 8192, 512, 128, 256)
SMOKE = Scale("cpu", "float32", 40, 48, (64,), 64, 48, 4, 24, 2, layers=2, head_dim=16)


def text(n_tokens: int, prefix: str = "") -> str:
    """A text of at least ``n_tokens`` tokens for any English tokenizer (analyses cut it with max_tokens)."""
    return prefix + PARAGRAPH * (n_tokens // 40 + 2)


def measure(fn: Callable[[], object], device: str) -> tuple[float, int | None]:
    """Seconds (CUDA events on a GPU) and peak bytes above what was allocated before; on a GPU one warm-up
    call first (Triton compiles each kernel variant on its first launch)."""
    if device != "cuda":  # the smoke run: one call, wall time
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started, None
    fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1000, torch.cuda.max_memory_allocated() - before


def _settings(sinkfix, n: int, kernel: str = "triton"):
    """No maps (they need the blocked path); triton forced, so a case it cannot run fails its row loudly."""
    return sinkfix.AnalysisSettings(max_tokens=n, map_token_limit=0, kernel=kernel)


def base_model(sinkfix, scale: Scale, folder: Path):
    """SmolLM2 (the embedded weights), or random weights of its shape (the smoke run cuts it to a few layers)."""
    if scale.synthetic:
        cut = {} if scale.layers is None else dict(num_hidden_layers=scale.layers, intermediate_size=64, vocab_size=4096)
        n = max(scale.exact_t, scale.smollm2_t, scale.eager_t, scale.batch_t + 8)
        built = shapes.build(folder / "smollm2-base", "smollm2", n, scale.dtype, scale.device,
                             words=PARAGRAPH.split(), **cut)
        return sinkfix.load_model(str(built), device=scale.device, dtype=scale.dtype)
    if scale.layers is None:
        return sinkfix.get_model("smollm2-135m", device=scale.device, dtype=scale.dtype)
    embedded = sinkfix.get_model("smollm2-135m", device="cpu", dtype="float32")
    return sinkfix.load_model(str(_random_model(embedded, "smollm2", embedded.max_tokens, scale, folder)),
                              device=scale.device, dtype=scale.dtype)


def _same_weights(sinkfix, small, device: str, dtype: str):
    """The base model's weights again, on ``device`` in ``dtype`` (or the base itself when it is that)."""
    if str(small.device_name).startswith(device) and small.dtype_name == dtype:
        return small
    return sinkfix.load_model(str(small.source), device=device, dtype=dtype)


def exactness(sinkfix, small, scale: Scale) -> list[dict]:
    body = text(scale.exact_t)
    same = _same_weights(sinkfix, small, scale.device, "float32")
    fused = sinkfix.analyze(body, same, _settings(sinkfix, scale.exact_t, "triton"))
    blocked = sinkfix.analyze(body, same, replace(_settings(sinkfix, scale.exact_t, "blocked"), query_block=64))
    worst = max(float(np.abs(getattr(fused, f) - getattr(blocked, f)).max() / np.abs(getattr(blocked, f)).max())
                for f in ("att_received_head", "entropy", "alpha", "contribution"))
    cpu = _same_weights(sinkfix, small, "cpu", "float32")
    reference = sinkfix.analyze(body, cpu, _settings(sinkfix, scale.exact_t, "blocked"))
    half = sinkfix.analyze(body, small, _settings(sinkfix, scale.exact_t, "triton"))
    diff = float(np.abs(half.att_received - reference.att_received).max())
    return [{"row": "float32 triton vs float32 blocked", "T": fused.n_tokens, "max_relative": worst,
             "tolerance": 1e-5, "ok": worst <= 1e-5},
            {"row": f"{scale.dtype} triton vs float32 blocked on the CPU", "T": half.n_tokens,
             "max_abs_diff_att_received": diff, "tolerance": 2e-3, "ok": diff <= 2e-3}]


def _sdpa_twin(loaded, scale: Scale):
    """The same weights under transformers' SDPA attention: the bare forward every ratio is taken against."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(loaded.source, attn_implementation="sdpa",
                                                dtype=getattr(torch, scale.dtype)).to(scale.device).eval()


def long(sinkfix, loaded, label: str, n: int, scale: Scale) -> dict:
    from sinkfix.models import model_inputs

    body = text(n)
    settings = _settings(sinkfix, n)
    holder: dict = {}
    ours_s, ours_b = measure(lambda: holder.__setitem__("a", sinkfix.analyze(body, loaded, settings)), scale.device)
    analysis = holder.pop("a")
    sdpa = _sdpa_twin(loaded, scale)
    encoded = loaded.tokenizer(body, return_tensors="pt", truncation=True, max_length=analysis.n_tokens)
    inputs = {k: v.to(scale.device) for k, v in model_inputs(sdpa, encoded).items()}

    def bare() -> None:
        with torch.inference_mode():
            sdpa.base_model(**inputs, use_cache=False)

    bare_s, bare_b = measure(bare, scale.device)
    del sdpa
    return {"row": f"{label}, {analysis.n_tokens}", "T": analysis.n_tokens, "kernel": analysis.kernel,
            "kernel_reason": analysis.kernel_reason, "analyze_s": ours_s, "forward_s": analysis.timings.get("forward_s"),
            "sdpa_s": bare_s, "ratio": ours_s / bare_s, "peak_mb": _mb(ours_b), "sdpa_peak_mb": _mb(bare_b),
            "memory_ratio": None if ours_b is None else ours_b / max(bare_b, 1)}


def _mb(value: int | None) -> float | None:
    return None if value is None else value / 2**20


def random_long(sinkfix, small, shape: str, n: int, scale: Scale, folder: Path) -> dict:
    """A random-weight model of SmolLM2's or Llama-3.2-1B's shape with n positions, saved and loaded back."""
    loaded = sinkfix.load_model(str(_random_model(small, shape, n, scale, folder)), device=scale.device, dtype=scale.dtype)
    label = "SmolLM2 shape (random weights)" if shape == "smollm2" else "Llama-3.2-1B shape (random weights)"
    return long(sinkfix, loaded, label, n, scale)


def _random_model(small, shape: str, n: int, scale: Scale, folder: Path) -> Path:
    """Save a random-weight model of the shape (SmolLM2's config from the base model) and the base's tokenizer."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = copy.deepcopy(small.model.config) if shape == "smollm2" else LlamaConfig(**LLAMA_1B)
    config.max_position_embeddings = n
    if scale.layers is not None:
        config.num_hidden_layers = scale.layers
    if shape == "llama" and scale.head_dim is not None:  # smoke: same heads, narrower
        config.head_dim, config.hidden_size = scale.head_dim, scale.head_dim * config.num_attention_heads
        config.intermediate_size, config.vocab_size = 2 * config.hidden_size, len(small.tokenizer)
    target = folder / f"{shape}-{n}"
    torch.manual_seed(0)
    with torch.device(scale.device):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, scale.dtype))
    model.save_pretrained(target)
    del model
    limit, small.tokenizer.model_max_length = small.tokenizer.model_max_length, n
    small.tokenizer.save_pretrained(target)
    small.tokenizer.model_max_length = limit
    return target


def eager_peer(sinkfix, small, scale: Scale) -> dict:
    """What a user writes instead: eager attention, output_attentions=True, the mean over layers, heads, queries."""
    from transformers import AutoModelForCausalLM

    n = scale.eager_t
    eager = AutoModelForCausalLM.from_pretrained(small.source, attn_implementation="eager",
                                                 dtype=getattr(torch, scale.dtype)).to(scale.device).eval()
    ids = small.tokenizer(text(n), return_tensors="pt", truncation=True, max_length=n)["input_ids"].to(scale.device)

    def peer() -> torch.Tensor:
        with torch.inference_mode():
            maps = eager.base_model(input_ids=ids, output_attentions=True, use_cache=False).attentions
            return torch.stack([m.float().mean(dim=(1, 2)) for m in maps]).mean(dim=0).cpu()

    seconds, peak = measure(peer, scale.device)
    del eager
    ours_s, ours_b = measure(lambda: sinkfix.analyze(text(n), small, _settings(sinkfix, n)), scale.device)
    return {"row": f"eager peer, {ids.shape[1]}", "T": int(ids.shape[1]), "eager_s": seconds,
            "eager_peak_mb": _mb(peak), "analyze_s": ours_s, "peak_mb": _mb(ours_b), "analyze_over_eager": ours_s / seconds}


def batched(sinkfix, small, scale: Scale) -> dict:
    """analyze_many over many short texts, beside SDPA forwards of the same texts in padded batches."""
    n, settings = scale.batch_t, _settings(sinkfix, scale.batch_t)
    texts = [text(n, prefix=f"Document {i}. ") for i in range(scale.batch_texts)]
    holder: dict = {}
    ours_s, ours_b = measure(lambda: holder.__setitem__("r", sinkfix.analyze_many(texts, small, settings,
                                                                                batch_size=scale.batch_size)), scale.device)
    results = holder.pop("r")
    tokens = sum(r.n_tokens for r in results)
    sdpa = _sdpa_twin(small, scale)
    rows = min(scale.batch_size, max(1, 16384 // n))  # analyze_many's batches: at most 16,384 padded tokens
    batches = [small.tokenizer(texts[i:i + rows], return_tensors="pt", truncation=True, max_length=n, padding=True)
               for i in range(0, len(texts), rows)]
    inputs = [{k: v.to(scale.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
              for batch in batches]

    def bare() -> None:
        with torch.inference_mode():
            for batch in inputs:
                sdpa.base_model(**batch, use_cache=False)

    bare_s, bare_b = measure(bare, scale.device)
    del sdpa
    return {"row": f"batched, {scale.batch_texts} texts x {n} tokens", "T": n, "kernel": results[0].kernel,
            "texts": len(results), "tokens": tokens, "analyze_s": ours_s, "tokens_per_s": tokens / ours_s,
            "sdpa_s": bare_s, "bare_tokens_per_s": tokens / bare_s, "ratio": ours_s / bare_s,
            "peak_mb": _mb(ours_b), "sdpa_peak_mb": _mb(bare_b), "batches": len(batches)}


def split(sinkfix, small, scale: Scale) -> dict:
    """Half the layers on the CPU: auto falls back to the blocked path and records why."""
    if scale.device != "cuda":
        return {"row": "device_map split", "skipped": "needs CUDA"}
    weights = sum(p.numel() * p.element_size() for p in small.model.parameters())
    halves = sinkfix.load_model(str(small.source), dtype=scale.dtype, device_map="auto",
                                max_memory={0: int(weights * 0.5), "cpu": 64 * 2**30})
    body = text(256)
    a = sinkfix.analyze(body, halves, _settings(sinkfix, 256, "auto"))
    b = sinkfix.analyze(body, small, _settings(sinkfix, 256))
    diff = float(np.abs(a.att_received - b.att_received).max())
    return {"row": "device_map split", "T": a.n_tokens, "devices": halves.device_name, "kernel": a.kernel,
            "kernel_reason": a.kernel_reason, "max_abs_diff_att_received": diff, "tolerance": 2e-3, "ok": diff <= 2e-3}


def steps(sinkfix, small, scale: Scale, folder: Path) -> list[tuple[str, Callable[[], list[dict]]]]:
    """The table's rows in order, each a name and a call that returns its records."""
    label = "SmolLM2" if scale.layers is None and not scale.synthetic else "SmolLM2 shape (random weights)"
    return [
        ("exactness", lambda: exactness(sinkfix, small, scale)),
        ("smollm2", lambda: [long(sinkfix, small, label, scale.smollm2_t, scale)]),
        *[(f"smollm2-shape-{t}", lambda t=t: [random_long(sinkfix, small, "smollm2", t, scale, folder)])
          for t in scale.shape_ts],
        ("llama-1b-shape", lambda: [random_long(sinkfix, small, "llama", scale.llama_t, scale, folder)]),
        ("eager-peer", lambda: [eager_peer(sinkfix, small, scale)]),
        ("batched", lambda: [batched(sinkfix, small, scale)]),
        ("device-map", lambda: [split(sinkfix, small, scale)]),
    ]
