"""Big outputs: a corpus as Parquet shards (``batch --parquet DIR``), and back (``corpora import DIR``).

A folder holds:
- ``corpus.json``: the corpus name, model, settings and source;
- ``texts-NNNNN.parquet``: one row per input line: ``line_no``, ``run_id`` (in the database that
  wrote it) and the text's reductions as ``engines.rows`` lays them out (tokens, labels, flattened
  float32 arrays...), which is enough to rebuild the summary-only run exactly;
- ``heads-NNNNN.parquet``: one row per (line, layer, head): the per-head table (top sink, its α,
  entropy, token-0 share, contribution share), for pandas / DuckDB / Spark.

Shards hold at most ``SHARD_ROWS`` texts each, so no reader needs the whole corpus in memory.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from sinkfix.analysis.result import Analysis
from sinkfix.engines.common import SUMMARY_SUFFIX, BatchResult, CorpusLine, finish
from sinkfix.engines.rows import from_row, summary_only, to_row, schema
from sinkfix.errors import InputError
from sinkfix.settings import AnalysisSettings
from sinkfix.policy.ownership import Viewer
from sinkfix.store import Store
from sinkfix.store.keys import key_of_analysis

SHARD_ROWS = 10_000
META = "corpus.json"
HEAD_COLUMNS = ("layer", "head", "top_token", "top_token_text", "top_alpha", "entropy", "token0_share",
                "top_contribution_share")


class ParquetSink:
    """Buffers rows and writes a shard every ``SHARD_ROWS`` texts. Old shards in the folder are
    removed first, so a resumed batch rewrites the whole corpus once."""

    def __init__(self, folder: str | Path, name: str, model: str, settings: AnalysisSettings, source: str = ""):
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise InputError(f"cannot create the Parquet folder {self.folder}: {error.strerror}") from None
        for old in [*self.folder.glob("texts-*.parquet"), *self.folder.glob("heads-*.parquet")]:
            old.unlink()
        meta = {"format": 1, "name": name, "model": model, "settings": settings.to_dict(), "source": source}
        (self.folder / META).write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
        self.texts: list[dict] = []
        self.heads: list[dict] = []
        self.shard = 0

    def write(self, items: Iterable[tuple[CorpusLine, int, Analysis]]) -> None:
        for line, run_id, analysis in items:
            self.texts.append({"line_no": line.line_no, "run_id": run_id, **to_row(analysis)})
            self.heads += [{"line_no": line.line_no, **{k: row[k] for k in HEAD_COLUMNS}}
                           for row in analysis.head_table()]
            if len(self.texts) >= SHARD_ROWS:
                self.flush()

    def write_stored(self, store: Store, stored: list[tuple[CorpusLine, int]], viewer: Viewer) -> None:
        """Lines an earlier batch already stored: read back from the database (arrays only, no maps)."""
        for line, run_id in stored:
            self.write([(line, run_id, summary_only(store.get(run_id, viewer=viewer)))])

    def flush(self) -> None:
        if not self.texts:
            return
        pq.write_table(pa.Table.from_pylist(self.texts, schema=schema(self.texts[0])),
                       self.folder / f"texts-{self.shard:05d}.parquet")
        pq.write_table(pa.Table.from_pylist(self.heads), self.folder / f"heads-{self.shard:05d}.parquet")
        self.texts, self.heads = [], []
        self.shard += 1

    def close(self) -> None:
        self.flush()


def import_corpus(folder: str | Path, store: Store, name: str | None = None, *, viewer: Viewer) -> BatchResult:
    """Load a ``--parquet`` folder into ``store`` as ``viewer``'s corpus of summary-only runs, then summarise it.

    A text whose run is already stored (same cache key) is linked, not stored again, so importing
    twice stores nothing new.
    """
    folder = Path(folder)
    meta_path = folder / META
    if not meta_path.is_file():
        raise InputError(f"{folder} is not a SinkFix Parquet corpus: {META} is missing")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    shards = sorted(folder.glob("texts-*.parquet"))
    if not shards:
        raise InputError(f"{folder} holds no texts-*.parquet shards")
    settings = AnalysisSettings.from_dict(meta["settings"])
    name = name or meta["name"]
    corpus_id = store.open_corpus(name, meta["model"], settings.to_dict(), meta.get("source", ""), viewer=viewer)
    store.save_corpus_summary(corpus_id, None)
    lines: list[CorpusLine] = []
    analysed = cached = 0
    for shard in shards:
        links = []
        for row in pq.read_table(shard).to_pylist():
            analysis = from_row(row)
            key = key_of_analysis(analysis) + SUMMARY_SUFFIX
            run_id = store.reuse(key, viewer=viewer)
            if run_id is None:
                run_id = store.save(analysis, key, viewer=viewer)
                analysed += 1
            else:
                cached += 1
            links.append((int(row["line_no"]), run_id))
            lines.append(CorpusLine(int(row["line_no"]), analysis.text))
        store.add_corpus_runs(corpus_id, links)
    return finish(store, corpus_id, name, lines, settings.epsilon, analysed, cached, viewer)
