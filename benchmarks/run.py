"""`make bench`: every performance figure of SinkFix, as a table and as cache/bench.json.

Usage: python benchmarks/run.py [--only analyze,memory,store,load] [--repeats N]
Figures are medians of at least 5 runs after a warm-up; ratios alternate both sides in one run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks import bench_analyze, bench_load, bench_memory, bench_store  # noqa: E402
from benchmarks import bench_throughput  # noqa: E402
from benchmarks import bench_scale  # noqa: E402
from benchmarks.common import machine  # noqa: E402
from sinkfix import paths  # noqa: E402

SUITES = {
    "analyze": lambda repeats: bench_analyze.run(repeats),
    "memory": lambda repeats: bench_memory.run(),
    "store": lambda repeats: bench_store.run(),
    "load": lambda repeats: bench_load.run(repeats),
    "throughput": lambda repeats: bench_throughput.run(repeats),
    # SmolLM2 at T = 1024 / 4096 / 8192 against a bare SDPA forward, query blocks, bfloat16 (slow)
    "scale": lambda repeats: bench_scale.run(repeats),
}


def table(rows: list[dict]) -> str:
    lines = [f"{'benchmark':<34} {'case':<58} {'value':>10} {'unit':<7} {'target':<9} met"]
    for row in rows:
        met = {True: "yes", False: "NO", None: ""}[row["met"]]
        lines.append(f"{row['benchmark'][:34]:<34} {row['case'][:58]:<58} {row['value']:>10} {row['unit']:<7} "
                     f"{row['target']:<9} {met}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SUITES), help="comma-separated suites")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.repeats < 5:
        parser.error("use at least 5 repeats: the figures are medians")
    started = time.time()
    rows: list[dict] = []
    for name in args.only.split(","):
        print(f"== {name}", flush=True)
        rows += SUITES[name](args.repeats)
    report = {"machine": machine(), "seconds": round(time.time() - started), "rows": rows}
    out = paths.cache_dir() / "bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print()
    print(f"machine: {report['machine']}")
    print(table(rows))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
