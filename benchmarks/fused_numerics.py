"""How far the fused Triton path is from the blocked path and from eager attention (docs/gpu.md).

On the CPU in float32, through Triton's interpreter (TRITON_INTERPRET=1, set here), SmolLM2 at T
tokens (default 260, beyond one query block):
1. statistics: kernel="triton" against kernel="blocked" (64-row blocks), per array the largest
   difference divided by the array's largest value;
2. layer outputs: hidden states and logits of a fused forward (each layer's output from pass 1)
   and of torch SDPA, against eager attention (SinkFix's attention in one block, bit for bit eager).

    python benchmarks/fused_numerics.py [T]
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

FIELDS = ("att_received", "att_received_head", "alpha", "entropy", "value_norm_head", "contribution")


def main(n: int = 260) -> None:
    import sinkfix
    from benchmarks.gpu_rows import text

    loaded = sinkfix.get_model("smollm2-135m", device="cpu", dtype="float32")
    body = text(n)
    settings = dict(max_tokens=n, map_token_limit=0)
    blocked = sinkfix.analyze(body, loaded, sinkfix.AnalysisSettings(**settings, kernel="blocked", query_block=64))
    fused = sinkfix.analyze(body, loaded, sinkfix.AnalysisSettings(**settings, kernel="triton"))
    print(f"SmolLM2, T = {fused.n_tokens}, float32, CPU (Triton interpreter); kernel={fused.kernel}")
    print("| statistic | max abs difference | relative to the array's max |")
    print("|---|---:|---:|")
    for name in FIELDS:
        diff = np.abs(getattr(fused, name) - getattr(blocked, name))
        print(f"| {name} | {diff.max():.2e} | {diff.max() / np.abs(getattr(blocked, name)).max():.2e} |")
    print()
    outputs(loaded, body, n)


def outputs(loaded, body: str, n: int) -> None:
    from transformers import AutoModelForCausalLM

    from sinkfix.capture import attention as capture
    from sinkfix.capture import fast_path
    from sinkfix.capture.observers import SinkObserver
    from sinkfix.models import model_inputs

    encoded = loaded.tokenizer(body, return_tensors="pt", truncation=True, max_length=n)
    inputs = model_inputs(loaded.model, dict(encoded))
    length = inputs["input_ids"].shape[1]
    with torch.inference_mode():
        with capture.blocking(10**9):  # one block: eager attention op for op
            eager = loaded.model(**inputs, output_hidden_states=True)
        with fast_path.fused(SinkObserver(False, [length]), [length], forced=True):
            fused = loaded.model(**inputs, output_hidden_states=True)
        sdpa_model = AutoModelForCausalLM.from_pretrained(loaded.source, attn_implementation="sdpa",
                                                          dtype=torch.float32).eval()
        sdpa = sdpa_model(**inputs, output_hidden_states=True)
    print("| against eager | hidden states, worst layer (max abs / max) | last layer | logits, max abs | top-1 agreement |")
    print("|---|---:|---:|---:|---:|")
    for name, other in (("fused (output from pass 1)", fused), ("torch SDPA", sdpa)):
        per_layer = [float((a - b).abs().max() / b.abs().max())
                     for a, b in zip(other.hidden_states[1:], eager.hidden_states[1:])]
        logits = float((other.logits - eager.logits).abs().max())
        agree = float((other.logits.argmax(-1) == eager.logits.argmax(-1)).float().mean())
        print(f"| {name} | {max(per_layer):.2e} | {per_layer[-1]:.2e} | {logits:.2e} | {agree:.4f} |")
    print(f"(largest |logit| {float(eager.logits.abs().max()):.1f})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 260)
