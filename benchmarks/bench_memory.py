"""Peak memory of analyze() at T = 2048 on SmolLM2, above the loaded model, against a bare forward.

Each side runs in its own fresh process, so neither inherits the other's allocator state.
"""
from __future__ import annotations

import json
import subprocess
import sys

N_TOKENS = 2048
TARGET = 1.5

_CHILD = r"""
import json, sys, torch, sinkfix
from sinkfix.models import model_inputs
from benchmarks.common import peak_rss_above_start, text_of_tokens
mode, n = sys.argv[1], int(sys.argv[2])
loaded = sinkfix.get_model("smollm2-135m")
text = text_of_tokens(loaded.tokenizer, n)
settings = sinkfix.AnalysisSettings(max_tokens=n)
inputs = model_inputs(loaded.model, loaded.tokenizer(text, return_tensors="pt", truncation=True, max_length=n))
def bare():
    loaded.model.config._attn_implementation = "eager"
    with torch.inference_mode():
        loaded.base(**inputs)
    loaded.model.config._attn_implementation = "sinkfix"
fn = (lambda: sinkfix.analyze(text, loaded, settings)) if mode == "analyze" else bare
fn()  # warm-up: one-off allocations (thread pools, caches) are not the run's memory
print(json.dumps({"peak": peak_rss_above_start(fn), "layers": loaded.n_layers, "heads": loaded.n_heads}))
"""


def _measure(mode: str) -> dict:
    completed = subprocess.run([sys.executable, "-c", _CHILD, mode, str(N_TOKENS)], capture_output=True,
                               text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run() -> list[dict]:
    ours = _measure("analyze")
    bare = _measure("bare")
    all_maps = ours["layers"] * ours["heads"] * N_TOKENS * N_TOKENS * 4
    ratio = ours["peak"] / bare["peak"]
    row = {
        "benchmark": "peak memory above loaded model",
        "case": f"smollm2-135m T={N_TOKENS}",
        "analyze_mb": round(ours["peak"] / 2**20),
        "bare_mb": round(bare["peak"] / 2**20),
        "all_layer_maps_mb": round(all_maps / 2**20),
        "value": round(ratio, 2),
        "unit": "x",
        "target": f"<= {TARGET}",
        "met": ratio <= TARGET,
    }
    print(row, flush=True)
    return [row]
