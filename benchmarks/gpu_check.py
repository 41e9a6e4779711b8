"""`make gpu-check`: SinkFix on a CUDA device, against the CPU and against a bare SDPA forward.

1. SmolLM2 in bfloat16 on CUDA: att_received within 2e-2 of the float32 CPU result.
2. T = 8192 (SmolLM2's own context) and T = 32768 (a random-weight model of SmolLM2's shape with
   32k positions): analyze() time and peak GPU memory above the loaded model, against a bare
   SDPA forward of the same weights on the same input.
3. One device_map split: "auto" over every GPU when there are several, else a forced 2-way split
   of one GPU and the CPU through max_memory; att_received must match the one-device result.

Without a CUDA device it exits with status 1 and one line saying so. Results: a table on stdout
and cache/gpu_check.json.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

TOLERANCE = 2e-2
SHORT_TOKENS = 256


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device is available here; run it on a machine with an NVIDIA GPU", file=sys.stderr)
        return 1
    import sinkfix
    from benchmarks.common import text_of_tokens
    from sinkfix import paths

    rows: list[dict] = []
    cpu = sinkfix.load_model("smollm2-135m", device="cpu", dtype="float32")
    gpu = sinkfix.load_model("smollm2-135m", device="cuda", dtype="bfloat16")
    rows.append(_agreement(sinkfix, cpu, gpu, text_of_tokens(cpu.tokenizer, SHORT_TOKENS)))
    del cpu
    rows.append(_long(sinkfix, gpu, gpu.source, text_of_tokens(gpu.tokenizer, 8192), 8192))
    with tempfile.TemporaryDirectory() as folder:
        wide = _random_smollm2_shape(gpu, Path(folder), 32768)
        big = sinkfix.load_model(str(wide), device="cuda", dtype="bfloat16")
        rows.append(_long(sinkfix, big, str(wide), text_of_tokens(gpu.tokenizer, 32768), 32768))
        del big
    rows.append(_split(sinkfix, gpu, text_of_tokens(gpu.tokenizer, SHORT_TOKENS)))
    report = {"device": torch.cuda.get_device_name(0), "gpus": torch.cuda.device_count(), "rows": rows}
    out = paths.cache_dir() / "gpu_check.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"device: {report['device']} x {report['gpus']}")
    for row in rows:
        print(json.dumps(row))
    print(f"wrote {out}")
    return 0 if all(row.get("ok", True) for row in rows) else 2


def _agreement(sinkfix, cpu, gpu, text: str) -> dict:
    full = sinkfix.analyze(text, cpu)
    half = sinkfix.analyze(text, gpu)
    diff = float(np.abs(full.att_received - half.att_received).max())
    return {"check": "bfloat16 cuda vs float32 cpu", "tokens": full.n_tokens, "max_abs_diff_att_received": diff,
            "tolerance": TOLERANCE, "ok": diff <= TOLERANCE}


def _peak_above(fn) -> tuple[float, int]:
    """Seconds and peak GPU bytes above what was allocated before (the loaded weights)."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    started = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - started, torch.cuda.max_memory_allocated() - before


def _long(sinkfix, loaded, source: str, text: str, n: int) -> dict:
    from transformers import AutoModelForCausalLM

    from sinkfix.models import model_inputs

    settings = sinkfix.AnalysisSettings(max_tokens=n)
    result = sinkfix.analyze(text, loaded, settings)  # warm-up (kernels, allocator), and the length check
    ours_s, ours_b = _peak_above(lambda: sinkfix.analyze(text, loaded, settings))
    device = loaded.model.get_input_embeddings().weight.device
    sdpa = AutoModelForCausalLM.from_pretrained(source, attn_implementation="sdpa", dtype=torch.bfloat16).to(device).eval()
    encoded = loaded.tokenizer(text, return_tensors="pt", truncation=True, max_length=n)
    inputs = {k: v.to(device) for k, v in model_inputs(sdpa, encoded).items()}

    def bare() -> None:
        with torch.inference_mode():
            sdpa.base_model(**inputs)

    bare()
    bare_s, bare_b = _peak_above(bare)
    del sdpa
    torch.cuda.empty_cache()
    return {"check": f"analyze vs sdpa at T={result.n_tokens}", "model": source, "analyze_s": round(ours_s, 2),
            "sdpa_s": round(bare_s, 2), "time_ratio": round(ours_s / bare_s, 2),
            "analyze_peak_mb": round(ours_b / 2**20), "sdpa_peak_mb": round(bare_b / 2**20),
            "memory_ratio": round(ours_b / max(bare_b, 1), 2)}


def _random_smollm2_shape(loaded, folder: Path, positions: int) -> Path:
    """SmolLM2's shape (30 layers, 9 heads, 3 KV heads) with random weights and ``positions`` positions."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(loaded.source)
    config.max_position_embeddings = positions
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    loaded.tokenizer.model_max_length = positions
    loaded.tokenizer.save_pretrained(folder)
    return folder


def _split(sinkfix, single, text: str) -> dict:
    """device_map="auto" over the GPUs, or (one GPU) half the layers on it and the rest on the CPU."""
    if torch.cuda.device_count() > 1:
        max_memory = None
    else:
        weights = sum(p.numel() * p.element_size() for p in single.model.parameters())
        max_memory = {0: int(weights * 0.5), "cpu": 64 * 2**30}
    split = sinkfix.load_model("smollm2-135m", dtype="bfloat16", device_map="auto", max_memory=max_memory)
    a, b = sinkfix.analyze(text, split), sinkfix.analyze(text, single)
    diff = float(np.abs(a.att_received - b.att_received).max())
    return {"check": "device_map split", "devices": split.device_name, "max_abs_diff_att_received": diff,
            "tolerance": TOLERANCE, "ok": diff <= TOLERANCE and "," in split.device_name}


if __name__ == "__main__":
    sys.exit(main())
