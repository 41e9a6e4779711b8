"""Store figures: bytes per run, a cache hit, and history with 10,000 stored runs."""
from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path


import sinkfix
from sinkfix.cache import analyze_or_fetch
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store

from .common import interleaved_medians, text_of_tokens

STORAGE_TARGET = 0.30
CACHE_HIT_TARGET_MS = 50
LIST_TARGET_MS = 200
HEAD_MAP_TARGET_MS = 100


def _run_bytes(db_file: Path, run_id: int) -> int:
    """Bytes a run occupies in the database: its row, summary rows and blobs (payload sizes)."""
    with sqlite3.connect(db_file) as conn:
        blob = conn.execute("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM run_blobs WHERE run_id = ?", (run_id,)).fetchone()[0]
        tokens = conn.execute("SELECT COUNT(*) FROM run_tokens WHERE run_id = ?", (run_id,)).fetchone()[0]
        heads = conn.execute("SELECT COUNT(*) FROM run_heads WHERE run_id = ?", (run_id,)).fetchone()[0]
    # Summary rows are a handful of numbers each; count 8 bytes per number plus the token text.
    return int(blob + tokens * 40 + heads * 64)


def _raw_float32(analysis: sinkfix.Analysis) -> int:
    arrays = [analysis.att_received, analysis.att_received_layer, analysis.att_received_head, analysis.alpha,
              analysis.sink_rate, analysis.entropy, analysis.value_norm, analysis.value_norm_layer,
              analysis.value_norm_head, analysis.contribution, analysis.maps, analysis.corrected_maps]
    return sum(a.size * 4 for a in arrays if a is not None)


def storage(workdir: Path) -> list[dict]:
    loaded = sinkfix.get_model("minilm")
    store = Store(workdir / "storage.db")
    rows = []
    for n_tokens in (32, 128, 256):
        text = text_of_tokens(loaded.tokenizer, n_tokens)
        result = sinkfix.analyze(text, loaded)
        run_id = store.save(result, viewer=LOCAL)
        stored, raw = _run_bytes(workdir / "storage.db", run_id), _raw_float32(result)
        share = stored / raw
        rows.append({"benchmark": "stored bytes per run (with maps)", "case": f"minilm T={result.n_tokens}",
                     "stored_kb": round(stored / 1024), "raw_float32_kb": round(raw / 1024),
                     "value": round(share, 3), "unit": "of raw", "target": f"<= {STORAGE_TARGET}",
                     "met": share <= STORAGE_TARGET})
        print(rows[-1], flush=True)
    return rows


def cache_hit(workdir: Path, repeats: int = 7) -> list[dict]:
    loaded = sinkfix.get_model("minilm")
    store = Store(workdir / "cache.db")
    text = text_of_tokens(loaded.tokenizer, 128)
    _, hit = analyze_or_fetch(text, loaded, None, store, viewer=LOCAL)
    assert not hit
    miss = interleaved_medians({"miss": lambda: sinkfix.analyze(text, loaded)}, repeats)["miss"]
    hits = interleaved_medians({"hit": lambda: analyze_or_fetch(text, loaded, None, store, viewer=LOCAL)}, repeats)["hit"]
    assert analyze_or_fetch(text, loaded, None, store, viewer=LOCAL)[1]
    row = {"benchmark": "cache hit (same request stored)", "case": "minilm T=128, run loaded with maps",
           "fresh_analysis_ms": round(miss * 1000, 1), "value": round(hits * 1000, 1), "unit": "ms",
           "target": f"<= {CACHE_HIT_TARGET_MS}", "met": hits * 1000 <= CACHE_HIT_TARGET_MS}
    print(row, flush=True)
    return [row]


def history(workdir: Path, n_runs: int = 10_000, repeats: int = 7) -> list[dict]:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.synthetic import synthetic_analysis

    store = Store(workdir / "history.db")
    templates = [synthetic_analysis(n_layers=6, n_heads=12, n_tokens=24, seed=s, model_name=m)
                 for s, m in enumerate(["minilm", "smollm2-135m", "minilm", "gpt2"])]
    started = time.perf_counter()
    import dataclasses

    for i in range(n_runs):
        base = templates[i % len(templates)]
        day = 1 + i % 28
        store.save(dataclasses.replace(base, text=f"{base.text} #{i}",
                                       created_at=f"2026-{1 + i % 11:02d}-{day:02d}T12:00:00+00:00"), viewer=LOCAL)
    fill_s = time.perf_counter() - started
    middle = store.list(limit=1, offset=n_runs // 2, viewer=LOCAL)[0]["id"]
    medians = interleaved_medians({
        "list_plain": lambda: store.list(limit=50, offset=5000, viewer=LOCAL),
        "list_filtered": lambda: store.list(model="minilm", text_contains="#12", since="2026-03-01",
                                            label="detrimental", limit=50, viewer=LOCAL),
        "count_filtered": lambda: store.count(model="minilm", text_contains="#12", since="2026-03-01",
                                              label="detrimental", viewer=LOCAL),
        "head_map": lambda: store.head_map(middle, 3, 7, viewer=LOCAL),
    }, repeats)
    rows = [
        {"benchmark": "history, 10,000 runs", "case": f"fill through Store.save ({n_runs} runs)",
         "value": round(fill_s, 1), "unit": "s", "target": "", "met": None},
        {"benchmark": "history, 10,000 runs", "case": "list a page of 50 (offset 5000)",
         "value": round(medians["list_plain"] * 1000, 1), "unit": "ms", "target": f"<= {LIST_TARGET_MS}",
         "met": medians["list_plain"] * 1000 <= LIST_TARGET_MS},
        {"benchmark": "history, 10,000 runs", "case": "list a page of 50, filtered (model, text, date, label)",
         "value": round(medians["list_filtered"] * 1000, 1), "unit": "ms", "target": f"<= {LIST_TARGET_MS}",
         "met": medians["list_filtered"] * 1000 <= LIST_TARGET_MS},
        {"benchmark": "history, 10,000 runs", "case": "count with the same filters (for paging)",
         "value": round(medians["count_filtered"] * 1000, 1), "unit": "ms", "target": f"<= {LIST_TARGET_MS}",
         "met": medians["count_filtered"] * 1000 <= LIST_TARGET_MS},
        {"benchmark": "history, 10,000 runs", "case": "one head's drill-down maps (head_map)",
         "value": round(medians["head_map"] * 1000, 2), "unit": "ms", "target": f"<= {HEAD_MAP_TARGET_MS}",
         "met": medians["head_map"] * 1000 <= HEAD_MAP_TARGET_MS},
    ]
    for row in rows:
        print(row, flush=True)
    return rows


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as workdir:
        path = Path(workdir)
        return storage(path) + cache_hit(path) + history(path)
