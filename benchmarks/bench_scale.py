"""Research scale on SmolLM2: analyze() against a bare SDPA forward, query blocks, bfloat16.

Rows (all ratios; each memory figure comes from a fresh process of its own):
- analyze / SDPA forward, peak memory above the loaded model and CPU time of the same run, at
  T = 1024, 4096, 8192; wall time alternating both sides in one process at T = 1024;
- blocked (64-row query blocks) / unblocked (one block) at T = 1024;
- bfloat16 / float32 analyze time on the CPU at T = 512.

The SDPA side loads the same weights with ``attn_implementation="sdpa"`` (PyTorch's fused
attention: no T x T probabilities at all), so it is the floor any attention-observing tool sits on.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

LENGTHS = (1024, 4096, 8192)
MEMORY_TARGET = 2.0
TIME_TARGET = {4096: 3.0}
ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, statistics, sys, time, torch, sinkfix
from transformers import AutoModelForCausalLM
from sinkfix.models import model_inputs
from benchmarks.common import peak_rss_above_start, text_of_tokens
task, n, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
loaded = sinkfix.load_model("smollm2-135m", dtype="bfloat16" if task == "bf16" else "float32")

def sdpa_side():
    model = AutoModelForCausalLM.from_pretrained(loaded.source, attn_implementation="sdpa", dtype=torch.float32).eval()
    def run(text):
        inputs = model_inputs(model, loaded.tokenizer(text, return_tensors="pt", truncation=True, max_length=n))
        with torch.inference_mode():
            model.base_model(**inputs, use_cache=False)  # as analyze() runs it: no KV cache
    return run

def analyze_side(query_block=None):
    return lambda text: sinkfix.analyze(text, loaded, sinkfix.AnalysisSettings(max_tokens=n, query_block=query_block))

text, short = text_of_tokens(loaded.tokenizer, n), text_of_tokens(loaded.tokenizer, 128)
if task in ("mem-analyze", "mem-sdpa"):
    fn = analyze_side() if task == "mem-analyze" else sdpa_side()
    fn(short)  # warm-up: thread pools and one-off buffers are not the run's memory
    clock = {}
    def timed():
        wall, cpu = time.perf_counter(), time.process_time()
        fn(text)
        clock.update(seconds=time.perf_counter() - wall, cpu_seconds=time.process_time() - cpu)
    print(json.dumps({"peak": peak_rss_above_start(timed), **clock}))
    sys.exit()
if task == "time":
    sides = {"ours": analyze_side(), "base": sdpa_side()}
elif task == "blocked":
    sides = {"ours": analyze_side(64), "base": analyze_side(None)}
else:  # bf16: this process holds the bfloat16 model; the float32 one is loaded beside it
    f32 = sinkfix.load_model("smollm2-135m", dtype="float32")
    sides = {"ours": analyze_side(), "base": lambda t: sinkfix.analyze(t, f32, sinkfix.AnalysisSettings(max_tokens=n))}
for fn in sides.values():
    fn(short)
samples = {k: [] for k in sides}
for _ in range(repeats):
    for name, fn in sides.items():
        started = time.perf_counter(); fn(text); samples[name].append(time.perf_counter() - started)
print(json.dumps({k: statistics.median(v) for k, v in samples.items()}))
"""


def _child(task: str, n: int, repeats: int = 1) -> dict:
    completed = subprocess.run([sys.executable, "-c", _CHILD, task, str(n), str(repeats)], capture_output=True,
                               text=True, check=True, cwd=ROOT)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _row(benchmark: str, case: str, value: float, target: float | None, **extra: object) -> dict:
    row = {"benchmark": benchmark, "case": case, **extra, "value": round(value, 2), "unit": "x",
           "target": f"<= {target}" if target else "", "met": None if target is None else value <= target}
    print(row, flush=True)
    return row


def memory_rows(lengths: tuple[int, ...] = LENGTHS) -> list[dict]:
    """Peak memory, and the time of the same single runs: wall (shared machine, noisy) and CPU
    seconds of the process (less sensitive to other processes on the machine)."""
    rows = []
    for n in lengths:
        ours, base = _child("mem-analyze", n), _child("mem-sdpa", n)
        rows.append(_row("peak memory: analyze / SDPA forward", f"smollm2-135m T={n} (fresh process each)",
                         ours["peak"] / base["peak"], MEMORY_TARGET,
                         analyze_mb=round(ours["peak"] / 2**20), sdpa_mb=round(base["peak"] / 2**20)))
        rows.append(_row("CPU time: analyze / SDPA forward", f"smollm2-135m T={n} (same runs)",
                         ours["cpu_seconds"] / base["cpu_seconds"], TIME_TARGET.get(n),
                         analyze_cpu_s=round(ours["cpu_seconds"], 1), sdpa_cpu_s=round(base["cpu_seconds"], 1),
                         analyze_wall_s=round(ours["seconds"], 1), sdpa_wall_s=round(base["seconds"], 1)))
    return rows


def time_rows(lengths: tuple[int, ...] = LENGTHS, repeats: int = 3) -> list[dict]:
    rows = []
    for n in lengths:
        medians = _child("time", n, min(repeats, 3) if n <= 1024 else 1)
        rows.append(_row("time: analyze / SDPA forward", f"smollm2-135m T={n} (alternating)",
                         medians["ours"] / medians["base"], TIME_TARGET.get(n),
                         analyze_s=round(medians["ours"], 2), sdpa_s=round(medians["base"], 2)))
    return rows


def run(repeats: int = 5) -> list[dict]:
    # Alternating wall-clock medians only at T = 1024: at 4096 and 8192 one run of each side takes
    # minutes here, so those time ratios come from the memory runs (CPU seconds, one run each).
    rows = memory_rows() + time_rows((1024,), repeats=repeats)
    blocked = _child("blocked", 1024, min(repeats, 3))
    rows.append(_row("time: 64-row query blocks / one block", "smollm2-135m analyze T=1024",
                     blocked["ours"] / blocked["base"], None,
                     blocked_s=round(blocked["ours"], 2), unblocked_s=round(blocked["base"], 2)))
    dtypes = _child("bf16", 512, min(repeats, 3))
    rows.append(_row("time: bfloat16 / float32 on the CPU", "smollm2-135m analyze T=512",
                     dtypes["ours"] / dtypes["base"], None,
                     bfloat16_s=round(dtypes["ours"], 2), float32_s=round(dtypes["base"], 2)))
    return rows
