"""Batch analysis of a corpus in this process: padded batches through ``analyze_many``, resumable.

The file is plain text with one input per line, or JSONL with a ``text`` field per line (see
``engines.common.read_corpus``). Line numbers are the file's own (1-based).

Resuming costs nothing extra: a line whose request is already stored (see ``engines.common``
for the keys of summary-only runs) is linked to its run and never analysed again. Lines are taken
in windows of ``WINDOW`` batches; inside a window they are sorted by length so a batch pads little,
and each batch is written as soon as its forward pass is done, in one transaction. So an
interrupt loses at most the batch in progress, and nothing is stored twice.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sinkfix.analysis.pipeline import analyze_many, default_batch_size
from sinkfix.engines.common import (
    BatchResult, CorpusLine, CorpusWriter, ModelIdentity, check_keep, chunks, interrupted, progress_bar,
    read_corpus, request_key_of, restamp, split_stored, without_maps, wrap_up,
)
from sinkfix.engines.parquet import ParquetSink
from sinkfix.errors import SettingsError
from sinkfix.models import LoadedModel
from sinkfix.settings import AnalysisSettings
from sinkfix.policy.ownership import Viewer
from sinkfix.store import Store

__all__ = ["BatchResult", "CorpusLine", "read_corpus", "run_batch", "batch_order"]

WINDOW = 8  # batches per length-sorted window


def batch_order(lines: list[CorpusLine], batch_size: int) -> list[list[CorpusLine]]:
    """The batches to run, in order: windows of ``WINDOW * batch_size`` lines in file order, each
    sorted by length (a cheap stand-in for token count) and cut into batches. Batch size 1 keeps
    file order exactly."""
    if batch_size == 1:
        return [[line] for line in lines]
    batches = []
    for window in chunks(lines, WINDOW * batch_size):
        batches += list(chunks(sorted(window, key=lambda line: len(line.text)), batch_size))
    return batches


def run_batch(
    lines: list[CorpusLine],
    model: LoadedModel,
    settings: AnalysisSettings | None,
    store: Store,
    name: str,
    source: str = "",
    progress: bool = True,
    on_line: Callable[[CorpusLine, int, bool], None] | None = None,
    batch_size: int | None = None,
    keep: str = "summary",
    parquet: str | Path | None = None,
    *,
    viewer: Viewer,
) -> BatchResult:
    """Analyse (or fetch) every line into corpus ``name``, then compute and store its summary.

    ``keep="summary"`` stores no maps (the default for corpora); ``"maps"`` keeps them under the
    map limit. ``parquet`` also writes the per-text and per-head tables there as Parquet shards.
    ``on_line(line, run_id, was_cached)`` is called after each line is stored. The corpus and its runs
    are ``viewer``'s; a line they already stored (or may read) is not analysed again.
    """
    check_keep(keep)
    size = default_batch_size(model) if batch_size is None else batch_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise SettingsError(f"--batch-size must be a whole number >= 1, got {size!r}")
    resolved = (settings or AnalysisSettings()).resolved(model.n_layers, getattr(model, "attention_layers", None))
    identity = ModelIdentity.of(model)

    def key_of(text: str) -> str:
        return request_key_of(identity, text, resolved)

    corpus_id = store.open_corpus(name, model.name, resolved.to_dict(), source, viewer=viewer)
    store.save_corpus_summary(corpus_id, None)  # out of date until this batch completes
    stored, todo, repeats = split_stored(lines, store, keep, key_of, viewer)
    store.add_corpus_runs(corpus_id, [(line.line_no, run_id) for line, run_id in stored])
    if on_line is not None:
        for line, run_id in stored:
            on_line(line, run_id, True)
    writer = CorpusWriter(store, corpus_id, keep, key_of)
    sink = None if parquet is None else ParquetSink(parquet, name, model.name, resolved, source)
    compute = resolved if keep == "maps" else without_maps(resolved)
    analysed = 0
    bar = progress_bar(len(lines), name, progress, initial=len(stored))
    try:
        for batch in batch_order(todo, size):
            results = analyze_many([line.text for line in batch], model, compute, batch_size=size)
            results = [restamp(result, resolved) for result in results]
            ids = writer.write(list(zip(batch, results)))
            analysed += len(ids)
            bar.advance(len(ids))
            if on_line is not None:
                for line, run_id in zip(batch, ids):
                    on_line(line, run_id, False)
            if sink is not None:
                sink.write(zip(batch, ids, results))
    except KeyboardInterrupt:
        bar.close()
        interrupted(analysed + len(stored), len(lines))
        raise
    return wrap_up(store, corpus_id, name, lines, resolved.epsilon, analysed=analysed, stored=stored,
                   repeats=repeats, keep=keep, key_of=key_of, bar=bar, sink=sink, viewer=viewer)
