"""Evidence for the KV-cache eviction experiments (issue 31): the default sweep's time and results, the
dense accuracy of every task, and H2O's memory at T = 8,192. Not part of the test suite.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/evidence_evict.py dense   [--threads 1]   # every task, dense
    PYTHONPATH=$PWD .venv/bin/python benchmarks/evidence_evict.py sweep   [--threads 1] [--out PATH]
    PYTHONPATH=$PWD .venv/bin/python benchmarks/evidence_evict.py memory  [--tokens 8192]
    PYTHONPATH=$PWD .venv/bin/python benchmarks/evidence_evict.py report  [PATH]    # the docs' tables
    PYTHONPATH=$PWD .venv/bin/python benchmarks/evidence_evict.py per-prompt [--threads 1]  # a quick estimate

``sweep`` runs the issue's default (passkey, lengths 1,024 and 2,048, five depths, four seeds, seven
presses x ratios 0.5, 0.75 x protection none, first:4, detected) and prints its wall time and the
tables docs/experiments/eviction.md quotes. ``memory`` runs each measurement in a fresh process: the
peak resident memory a forward adds over the loaded model (Linux ``VmHWM`` after ``clear_refs``), for
a plain forward that fills the KV cache (SDPA, as it runs and with the eviction prefill's malloc setting,
and SinkFix's own attention with transformers' eager [1, 1, T, T] mask) and for the eviction prefill that keeps every press's statistics, then H2O's selection.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASK_LENGTHS = {"passkey": "1024,2048", "needle": "1024,2048", "multikey": "1024,2048", "vartrack": "1024,2048",
                "ppl": "1024,2048"}


def _rss() -> tuple[int, int]:
    """(current, peak) resident memory of this process in bytes."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


def measure(kind: str, tokens: int) -> dict:
    """One measurement, in this (fresh) process."""
    import torch
    from transformers import DynamicCache

    import sinkfix
    from sinkfix.experiments.evict import capture, compress

    torch.set_num_threads(int(os.environ.get("EVICT_THREADS", "2")))
    if kind.endswith("-mmap"):  # the same forward with the eviction prefill's malloc setting (sinkfix.analysis.memory)
        from sinkfix.analysis.memory import fix_mmap_threshold

        fix_mmap_threshold()
    loaded = sinkfix.get_model("smollm2-135m")
    ids = torch.randint(100, 40000, (1, tokens), generator=torch.Generator().manual_seed(0))
    Path("/proc/self/clear_refs").write_text("5")  # the peak restarts from here: the model's load is not counted
    before, _ = _rss()
    started = time.perf_counter()
    with torch.inference_mode():
        if kind.startswith("plain-sdpa"):
            loaded.model.config._attn_implementation = "sdpa"
            loaded.base(input_ids=ids, cache=DynamicCache(config=loaded.model.config), use_cache=True)
        elif kind == "plain-sinkfix":
            loaded.base(input_ids=ids, cache=DynamicCache(config=loaded.model.config), use_cache=True)
        else:
            pre = capture.prefill(loaded, ids[0].tolist())
            compress.compress(pre, "h2o", 0.5, "detected")
    seconds = time.perf_counter() - started
    _, peak = _rss()
    return {"kind": kind, "tokens": tokens, "extra_peak_mb": (peak - before) / 2**20, "seconds": seconds,
            "threads": torch.get_num_threads()}


def memory(tokens: int) -> None:
    rows = []
    for kind in ("plain-sdpa", "plain-sdpa-mmap", "plain-sinkfix", "evict-h2o"):
        out = subprocess.run([sys.executable, __file__, "_measure", kind, str(tokens)], capture_output=True, text=True,
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    sdpa, sdpa_mmap, own, evict = (row["extra_peak_mb"] for row in rows)
    print(f"T = {tokens}: eviction prefill + h2o adds {evict:.0f} MB at peak; a plain forward adds {sdpa:.0f} MB "
          f"(SDPA), {sdpa_mmap:.0f} MB (SDPA, same malloc setting), {own:.0f} MB (SinkFix attention, eager T x T mask): "
          f"{evict / sdpa:.2f}x / {evict / sdpa_mmap:.2f}x / {evict / own:.2f}x")


def per_prompt(threads: int) -> None:
    """Seconds for one default-sweep prompt at each default length (the sweep is 20 of each), a quick estimate."""
    import torch

    import sinkfix
    from sinkfix.experiments.evict import sweep
    from sinkfix.experiments.evict.tasks import prompts

    torch.set_num_threads(threads)
    loaded = sinkfix.get_model("smollm2-135m")
    total = 0.0
    for length in sweep.DEFAULT_LENGTHS:
        item = prompts(loaded.tokenizer, "passkey", [length], [0.5], 1)[0]
        started = time.perf_counter()
        sweep.run_prompt(loaded, item, sweep.SweepSettings())
        seconds = time.perf_counter() - started
        total += 20 * seconds
        print(f"T = {length}: {seconds:.1f} s per prompt ({threads} thread(s))", flush=True)
    print(f"estimated default sweep: {total / 60:.1f} min", flush=True)


def report(path: str) -> None:
    """The markdown tables docs/experiments/eviction.md quotes, from a sweep's JSON."""
    data = json.loads(Path(path).read_text())
    protections = list(next(iter(next(iter(data["results"].values())).values())))
    print(f"Dense: {data['dense']['accuracy']['mean']:.2f} over {len(data['prompts'])} prompts. "
          f"{data['timing']['seconds']:.0f} s, {data['timing']['threads']} thread(s).\n")
    print("| press | ratio | token 0 kept (none) | " + " | ".join(f"accuracy {p}" for p in protections)
          + " | ΔNLL none | ΔNLL first:4 | protected (detected) |")
    print("|---|---|---|" + "---|" * len(protections) + "---|---|---|")
    for press, by_ratio in data["results"].items():
        for ratio, cells in by_ratio.items():
            acc = [f"{c['accuracy']['mean']:.2f} [{c['accuracy']['ci95'][0]:.2f}, {c['accuracy']['ci95'][1]:.2f}]"
                   for c in cells.values()]
            print(f"| {press} | {ratio} | {cells['none']['token0_kept']:.2f} | " + " | ".join(acc)
                  + f" | {cells['none']['nll_delta']['mean']:+.2f} | {cells.get('first:4', cells['none'])['nll_delta']['mean']:+.2f}"
                  f" | {cells.get('detected', cells['none'])['protected']:.1f} |")
    pairs = list(next(iter(next(iter(data["paired"].values())).values())))
    print("\n| press | ratio | " + " | ".join(pairs) + " |")
    print("|---|---|" + "---|" * len(pairs))
    for press, by_ratio in data["paired"].items():
        for ratio, cells in by_ratio.items():
            print(f"| {press} | {ratio} | " + " | ".join(
                f"{c['mean']:+.3f} [{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}]" for c in cells.values()) + " |")


def _cli(args: list[str], threads: int | None) -> None:
    command = [sys.executable, "-m", "sinkfix", "evict", *args] + ([] if threads is None else ["--threads", str(threads)])
    print("$", " ".join(command[1:]), flush=True)
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    print(f"wall time {time.perf_counter() - started:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("dense", "sweep", "memory", "report", "per-prompt", "_measure"))
    parser.add_argument("rest", nargs="*")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--out", default="/tmp/evict_default.json")
    args = parser.parse_args()
    if args.what == "_measure":
        print(json.dumps(measure(args.rest[0], int(args.rest[1]))))
    elif args.what == "per-prompt":
        per_prompt(args.threads or 1)
    elif args.what == "report":
        report(args.rest[0] if args.rest else args.out)
    elif args.what == "memory":
        memory(args.tokens)
    elif args.what == "dense":
        for task, lengths in TASK_LENGTHS.items():
            _cli(["--dense-only", "--task", task, "--lengths", lengths, "--json", f"/tmp/evict_dense_{task}.json"],
                 args.threads)
    else:
        _cli(["--json", args.out], args.threads)


if __name__ == "__main__":
    main()
