"""Timing and memory helpers for the benchmark suite. Medians of repeated runs after a warm-up."""
from __future__ import annotations

import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

SHAKESPEARE = Path(os.environ.get("SINKFIX_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "tinyshakespeare.txt"


def machine() -> dict:
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def seconds(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int = 5) -> dict[str, float]:
    """Run each function once to warm up, then alternate them ``repeats`` times.

    Alternating puts both sides of a ratio under the same background load, which matters on a
    shared 2-core machine more than any single number does.
    """
    for fn in fns.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            samples[name].append(seconds(fn))
    return {name: statistics.median(values) for name, values in samples.items()}


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_above_start(fn: Callable[[], object], interval: float = 0.002) -> int:
    """Peak resident memory while ``fn`` runs, minus the resident memory just before it.

    A sampling thread, because ru_maxrss cannot be reset between measurements in one process.
    """
    import gc

    gc.collect()
    start = rss_bytes()
    peak = start
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_bytes())
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    peak = max(peak, rss_bytes())
    return peak - start


def text_of_tokens(tokenizer: object, n_tokens: int) -> str:
    """Shakespeare cut so that it tokenizes to about ``n_tokens`` tokens including special tokens."""
    raw = SHAKESPEARE.read_text()[: n_tokens * 8]
    special = len(tokenizer("x")["input_ids"]) - len(tokenizer("x", add_special_tokens=False)["input_ids"])
    ids = tokenizer(raw, add_special_tokens=False)["input_ids"][: n_tokens - special]
    return tokenizer.decode(ids)
