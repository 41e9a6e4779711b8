"""`make gpu-check`: issue 20's table in one run on a CUDA device (bfloat16, the fused Triton path).

Rows, each analyze() against a bare SDPA forward of the same weights on the same input (times by
CUDA events, peak GPU memory above the loaded weights):
- exactness: float32 triton vs float32 blocked (<= 1e-5 of each array's max), and bfloat16 triton
  vs float32 blocked on the CPU (att_received within 2e-3), SmolLM2 at 256 tokens;
- SmolLM2 (the embedded weights) at 8,192 tokens;
- SmolLM2's shape with random weights at 16,384, 32,768, 65,536 and 131,072 tokens;
- Llama-3.2-1B's shape (16 layers, 32 heads, 8 KV heads, head dim 64), random weights, at 32,768;
- the eager peer at 8,192: eager attention with output_attentions=True and a sum on the GPU;
- batched throughput: 512 SmolLM2 texts of 128 tokens, analyze_many beside a bare forward of the
  same padded batches;
- a device_map split (half the layers on the CPU): the fused path falls back and says why.
Random weights come from configs (no model hub); SmolLM2 from its embedded package; the texts are
built here (no data files). The JSON (``$OUT/gpu_check.json`` when OUT is set, else
cache/gpu_check.json) is rewritten after every row, so a run cut short keeps what it measured.

Without CUDA it exits 1 with one line. ``--cpu-smoke`` runs every row at toy sizes on the CPU through
Triton's interpreter (random shapes with 2 layers), so a test exercises this script's code paths.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

if "--cpu-smoke" in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before any kernel module is imported
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.gpu_report import table, write  # noqa: E402

PARAGRAPH = ("Attention sinks are tokens that draw a large share of attention without adding much to the "
             "output. The first token of a causal language model is the usual example, and punctuation, "
             "separators and line breaks often join it. A study of sinks reads, for every layer and head, "
             "how much attention each token receives and how large its value vector is. ")
LLAMA_1B = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                num_key_value_heads=8, head_dim=64, vocab_size=128256, rope_theta=500000.0, tie_word_embeddings=True,
                rms_norm_eps=1e-5)


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


FULL = Scale("cuda", "bfloat16", 256, 8192, (16384, 32768, 65536, 131072), 32768, 8192, 512, 128, 256)
SMOKE = Scale("cpu", "float32", 40, 48, (64,), 64, 48, 4, 24, 2, layers=2, head_dim=16)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="toy sizes on the CPU through the Triton interpreter")
    args = parser.parse_args(argv)
    if not args.cpu_smoke and not torch.cuda.is_available():
        print("gpu-check: no CUDA device is available here; run it on a machine with an NVIDIA GPU", file=sys.stderr)
        return 1
    scale = SMOKE if args.cpu_smoke else FULL
    report = {"device": _device_name(scale), "scale": "cpu-smoke" if args.cpu_smoke else "full",
              "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "rows": []}
    out = _output_path()
    import sinkfix

    with tempfile.TemporaryDirectory() as folder:
        small = _base_model(sinkfix, scale, Path(folder))
        steps: list[tuple[str, Callable[[], list[dict]]]] = [
            ("exactness", lambda: _exactness(sinkfix, small, scale)),
            ("smollm2", lambda: [_long(sinkfix, small, "SmolLM2" if scale.layers is None else
                                       f"SmolLM2 shape, {scale.layers} random layers", scale.smollm2_t, scale)]),
            *[(f"smollm2-shape-{t}", lambda t=t: [_random_long(sinkfix, small, "smollm2", t, scale, Path(folder))])
              for t in scale.shape_ts],
            ("llama-1b-shape", lambda: [_random_long(sinkfix, small, "llama", scale.llama_t, scale, Path(folder))]),
            ("eager-peer", lambda: [_eager_peer(sinkfix, small, scale)]),
            ("batched", lambda: [_batched(sinkfix, small, scale)]),
            ("device-map", lambda: [_split(sinkfix, small, scale)]),
        ]
        for name, step in steps:
            try:
                report["rows"].extend(step())
            except Exception as error:  # noqa: BLE001 - one failed row (out of memory, say) must not lose the rest
                report["rows"].append({"row": name, "error": f"{type(error).__name__}: {error}"[:500],
                                       "trace": traceback.format_exc()[-2000:]})
            write(out, report)
            _free()
    print(table(report))
    print(f"wrote {out}")
    return 0 if all("error" not in row and row.get("ok", True) for row in report["rows"]) else 2


def _device_name(scale: Scale) -> str:
    return torch.cuda.get_device_name(0) if scale.device == "cuda" else "cpu (Triton interpreter)"


def _output_path() -> Path:
    if os.environ.get("OUT"):
        return Path(os.environ["OUT"]) / "gpu_check.json"
    from sinkfix import paths

    return paths.cache_dir() / "gpu_check.json"


def _free() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


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


def _base_model(sinkfix, scale: Scale, folder: Path):
    """SmolLM2 (the embedded weights); for the smoke run its shape cut to a few random layers."""
    if scale.layers is None:
        return sinkfix.get_model("smollm2-135m", device=scale.device, dtype=scale.dtype)
    embedded = sinkfix.get_model("smollm2-135m", device="cpu", dtype="float32")
    return sinkfix.load_model(str(_random_model(embedded, "smollm2", embedded.max_tokens, scale, folder)),
                              device=scale.device, dtype=scale.dtype)


def _exactness(sinkfix, small, scale: Scale) -> list[dict]:
    body = text(scale.exact_t)
    same = small if scale.dtype == "float32" else sinkfix.get_model("smollm2-135m", device=scale.device, dtype="float32")
    fused = sinkfix.analyze(body, same, _settings(sinkfix, scale.exact_t, "triton"))
    blocked = sinkfix.analyze(body, same, replace(_settings(sinkfix, scale.exact_t, "blocked"), query_block=64))
    worst = max(float(np.abs(getattr(fused, f) - getattr(blocked, f)).max() / np.abs(getattr(blocked, f)).max())
                for f in ("att_received_head", "entropy", "alpha", "contribution"))
    cpu = small if scale.device == "cpu" else sinkfix.get_model("smollm2-135m", device="cpu", dtype="float32")
    reference = sinkfix.analyze(body, cpu, _settings(sinkfix, scale.exact_t, "blocked"))
    half = sinkfix.analyze(body, small, _settings(sinkfix, scale.exact_t, "triton"))
    diff = float(np.abs(half.att_received - reference.att_received).max())
    return [{"row": "float32 triton vs float32 blocked", "tokens": fused.n_tokens, "max_relative": worst,
             "tolerance": 1e-5, "ok": worst <= 1e-5},
            {"row": f"{scale.dtype} triton vs float32 blocked on the CPU", "tokens": half.n_tokens,
             "max_abs_diff_att_received": diff, "tolerance": 2e-3, "ok": diff <= 2e-3}]


def _sdpa_twin(loaded, scale: Scale):
    """The same weights under transformers' SDPA attention: the bare forward every ratio is taken against."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(loaded.source, attn_implementation="sdpa",
                                                dtype=getattr(torch, scale.dtype)).to(scale.device).eval()


def _long(sinkfix, loaded, label: str, n: int, scale: Scale) -> dict:
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
            sdpa.base_model(**inputs)

    bare_s, bare_b = measure(bare, scale.device)
    del sdpa
    return {"row": f"{label}, {analysis.n_tokens}", "kernel": analysis.kernel, "kernel_reason": analysis.kernel_reason,
            "analyze_s": ours_s, "forward_s": analysis.timings.get("forward_s"), "sdpa_s": bare_s,
            "ratio": ours_s / bare_s, "analyze_peak_mb": _mb(ours_b), "sdpa_peak_mb": _mb(bare_b),
            "memory_ratio": None if ours_b is None else ours_b / max(bare_b, 1)}


def _mb(value: int | None) -> float | None:
    return None if value is None else value / 2**20


def _random_long(sinkfix, small, shape: str, n: int, scale: Scale, folder: Path) -> dict:
    """A random-weight model of SmolLM2's or Llama-3.2-1B's shape with n positions, saved and loaded back."""
    loaded = sinkfix.load_model(str(_random_model(small, shape, n, scale, folder)), device=scale.device, dtype=scale.dtype)
    label = "SmolLM2 shape (random weights)" if shape == "smollm2" else "Llama-3.2-1B shape (random weights)"
    return _long(sinkfix, loaded, label, n, scale)


def _random_model(small, shape: str, n: int, scale: Scale, folder: Path) -> Path:
    """Save a random-weight model of the shape (SmolLM2's config from the embedded model) and SmolLM2's tokenizer."""
    import copy

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


def _eager_peer(sinkfix, small, scale: Scale) -> dict:
    """What a user writes instead: eager attention, output_attentions=True, the mean over layers, heads, queries."""
    from transformers import AutoModelForCausalLM

    n = scale.eager_t
    eager = AutoModelForCausalLM.from_pretrained(small.source, attn_implementation="eager",
                                                 dtype=getattr(torch, scale.dtype)).to(scale.device).eval()
    ids = small.tokenizer(text(n), return_tensors="pt", truncation=True, max_length=n)["input_ids"].to(scale.device)

    def peer() -> torch.Tensor:
        with torch.inference_mode():
            maps = eager.base_model(input_ids=ids, output_attentions=True).attentions
            return torch.stack([m.float().mean(dim=(1, 2)) for m in maps]).mean(dim=0).cpu()

    seconds, peak = measure(peer, scale.device)
    ours_s, ours_b = measure(lambda: sinkfix.analyze(text(n), small, _settings(sinkfix, n)), scale.device)
    return {"row": f"eager peer, {ids.shape[1]}", "eager_s": seconds, "eager_peak_mb": _mb(peak),
            "analyze_s": ours_s, "analyze_peak_mb": _mb(ours_b), "analyze_over_eager": ours_s / seconds}


def _batched(sinkfix, small, scale: Scale) -> dict:
    """analyze_many over many short texts, beside SDPA forwards of the same texts in padded batches."""
    n, settings = scale.batch_t, _settings(sinkfix, scale.batch_t)
    texts = [text(n, prefix=f"Document {i}. ") for i in range(scale.batch_texts)]
    holder: dict = {}
    ours_s, _ = measure(lambda: holder.__setitem__("r", sinkfix.analyze_many(texts, small, settings,
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
                sdpa.base_model(**batch)

    bare_s, _ = measure(bare, scale.device)
    del sdpa
    return {"row": f"batched, {scale.batch_texts} texts x {n} tokens", "kernel": results[0].kernel,
            "texts": len(results), "tokens": tokens, "analyze_s": ours_s, "tokens_per_s": tokens / ours_s,
            "bare_forward_s": bare_s, "bare_tokens_per_s": tokens / bare_s, "ratio": ours_s / bare_s,
            "batches": len(batches)}


def _split(sinkfix, small, scale: Scale) -> dict:
    """Half the layers on the CPU: auto falls back to the blocked path and records why."""
    if scale.device != "cuda":
        return {"row": "device_map split", "skipped": "needs CUDA"}
    weights = sum(p.numel() * p.element_size() for p in small.model.parameters())
    split = sinkfix.load_model("smollm2-135m", dtype=scale.dtype, device_map="auto",
                               max_memory={0: int(weights * 0.5), "cpu": 64 * 2**30})
    body = text(256)
    a = sinkfix.analyze(body, split, _settings(sinkfix, 256, "auto"))
    b = sinkfix.analyze(body, small, _settings(sinkfix, 256))
    diff = float(np.abs(a.att_received - b.att_received).max())
    return {"row": "device_map split", "devices": split.device_name, "kernel": a.kernel, "kernel_reason": a.kernel_reason,
            "max_abs_diff_att_received": diff, "tolerance": 2e-3, "ok": diff <= 2e-3}


if __name__ == "__main__":
    sys.exit(main())
