"""`make gpu-check`: issue 20's table in one run on a CUDA device (bfloat16, the fused Triton path).

Rows (``benchmarks/gpu_rows.py``), each analyze() against a bare SDPA forward of the same weights on the
same input (times by CUDA events, peak GPU memory above the loaded weights):
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
On a machine without SmolLM2's weights, ``benchmarks/gpu_run.sh`` runs the same rows on random weights of
its shape, each under its own time limit.

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
from pathlib import Path

if "--cpu-smoke" in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before any kernel module is imported
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from benchmarks.gpu_report import table, write  # noqa: E402
from benchmarks.gpu_rows import FULL, SMOKE, Scale, base_model, steps  # noqa: E402


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
        small = base_model(sinkfix, scale, Path(folder))
        for name, step in steps(sinkfix, small, scale, Path(folder)):
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


if __name__ == "__main__":
    sys.exit(main())
