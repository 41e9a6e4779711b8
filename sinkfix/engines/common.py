"""What every engine shares: corpus files, which lines are already stored, and the one store writer.

A corpus run stores **summaries only** by default (``keep="summary"``): the per-token and per-head
rows and the arrays blob, no L x H x T x T maps. Such a run is saved under its request's cache key
plus ``SUMMARY_SUFFIX``, so a later ``analyze_cached`` of the same text (which wants maps) never
gets a map-less run, while a corpus rerun finds it. A run with maps serves both kinds of request.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from sinkfix.analysis.corpus import CorpusSummary, summarize_stored
from sinkfix.analysis.result import Analysis
from sinkfix.engines.rows import summary_only
from sinkfix.errors import InputError, SettingsError
from sinkfix.progress import Progress
from sinkfix.settings import AnalysisSettings
from sinkfix.policy.ownership import Viewer
from sinkfix.store import Store
from sinkfix.store.keys import request_key
from sinkfix.version import __version__

KEEP = ("summary", "maps")
SUMMARY_SUFFIX = "#summary"


@dataclass(frozen=True)
class CorpusLine:
    line_no: int  # 1-based line number in the file
    text: str


@dataclass(frozen=True)
class BatchResult:
    corpus_id: int
    name: str
    n_lines: int
    analysed: int  # lines that needed a forward pass
    cached: int  # lines served from the store
    dropped: int  # corpus lines of an earlier version of the file that are gone now
    summary: CorpusSummary


@dataclass(frozen=True)
class ModelIdentity:
    """What a cache key needs from a model; a Ray driver gets it from a worker, not by loading weights."""

    name: str
    source: str
    fingerprint: str
    n_layers: int
    device: str | None = None
    dtype: str | None = None
    attention_layers: tuple[int, ...] | None = None  # a hybrid's attention layers (settings resolve against them)

    @classmethod
    def of(cls, loaded) -> ModelIdentity:
        attending = getattr(loaded, "attention_layers", None)
        return cls(loaded.name, loaded.source, loaded.fingerprint, loaded.n_layers,
                   getattr(loaded, "device_name", None), getattr(loaded, "dtype_name", None),
                   None if attending is None else tuple(attending))


def check_keep(keep: str) -> str:
    if keep not in KEEP:
        raise SettingsError(f"--keep must be one of {', '.join(KEEP)}, got {keep!r}")
    return keep


def request_key_of(identity: ModelIdentity, text: str, settings: AnalysisSettings) -> str:
    """The cache key of analysing ``text`` (same as ``sinkfix.cache.cache_key``); settings resolved."""
    return request_key(identity.name, identity.source, identity.fingerprint, text, settings.key_dict(),
                       __version__, identity.device, identity.dtype)


def find_stored(store: Store, key: str, keep: str, viewer: Viewer) -> int | None:
    """A stored run that serves this request: one with maps always does; a summary-only one only
    when summaries are all that is asked for. The viewer's own, or their copy of one they may read."""
    run_id = store.reuse(key, viewer=viewer)
    if run_id is None and keep == "summary":
        run_id = store.reuse(key + SUMMARY_SUFFIX, viewer=viewer)
    return run_id


def without_maps(settings: AnalysisSettings) -> AnalysisSettings:
    """Settings that make the forward keep no maps; results are stamped back with the real settings
    (the reductions do not depend on the map limit), so their cache keys are the usual ones."""
    return AnalysisSettings.from_dict({**settings.to_dict(), "map_token_limit": 0})


def restamp(analysis: Analysis, settings: AnalysisSettings) -> Analysis:
    return dataclasses.replace(analysis, settings=settings)


class CorpusWriter:
    """The one writer of a batch: stores each batch of finished texts and links them to their lines.

    A batch is one transaction (whole runs only), so an interrupt keeps every batch finished so far.
    """

    def __init__(self, store: Store, corpus_id: int, keep: str, key_of: Callable[[str], str]):
        self.store, self.corpus_id, self.keep, self.key_of = store, corpus_id, keep, key_of

    def write(self, items: list[tuple[CorpusLine, Analysis]]) -> list[int]:
        """Store ``(line, analysis)`` pairs; returns their run ids, in order."""
        rows = []
        for line, analysis in items:
            key = self.key_of(line.text)
            if self.keep == "summary":
                analysis, key = summary_only(analysis), key + SUMMARY_SUFFIX
            rows.append((line.line_no, analysis, key))
        return self.store.save_corpus_runs(self.corpus_id, rows)


def split_stored(lines: list[CorpusLine], store: Store, keep: str, key_of: Callable[[str], str], viewer: Viewer
                 ) -> tuple[list[tuple[CorpusLine, int]], list[CorpusLine], list[CorpusLine]]:
    """(lines already stored with their run ids, lines to analyse, repeats of a line to analyse),
    each in file order. A text repeated in the file is analysed once; ``link_repeats`` links the rest."""
    stored, todo, repeats = [], [], []
    pending: set[str] = set()
    for line in lines:
        run_id = find_stored(store, key_of(line.text), keep, viewer)
        if run_id is not None:
            stored.append((line, run_id))
        elif line.text in pending:
            repeats.append(line)
        else:
            pending.add(line.text)
            todo.append(line)
    return stored, todo, repeats


def link_repeats(store: Store, corpus_id: int, repeats: list[CorpusLine], keep: str,
                 key_of: Callable[[str], str], viewer: Viewer) -> list[tuple[CorpusLine, int]]:
    """Link each repeated line to the run its first occurrence stored; returns (line, run_id) pairs."""
    pairs = [(line, find_stored(store, key_of(line.text), keep, viewer)) for line in repeats]
    store.add_corpus_runs(corpus_id, [(line.line_no, run_id) for line, run_id in pairs])
    return pairs


def progress_bar(total: int, name: str, enabled: bool, initial: int = 0) -> Progress:
    """The corpus's lines, ``initial`` of them already stored; it stays on a terminal when done."""
    return Progress(f"corpus {name}", total, unit="line", initial=initial, enabled=enabled, leave=True)


def interrupted(done: int, total: int) -> None:
    print(f"interrupted after {done} of {total} lines (all stored); rerun the same command to resume",
          file=sys.stderr)


def finish(store: Store, corpus_id: int, name: str, lines: list[CorpusLine], epsilon: float,
           analysed: int, cached: int, viewer: Viewer) -> BatchResult:
    """Drop lines no longer in the file, then compute and store the corpus summary."""
    dropped = store.trim_corpus(corpus_id, [line.line_no for line in lines])
    summary = summarize_stored(store, corpus_id, epsilon, viewer=viewer)
    store.save_corpus_summary(corpus_id, summary.to_json())
    return BatchResult(corpus_id, name, len(lines), analysed, cached, dropped, summary)


def wrap_up(store: Store, corpus_id: int, name: str, lines: list[CorpusLine], epsilon: float, *,
            analysed: int, stored: list[tuple[CorpusLine, int]], repeats: list[CorpusLine], keep: str,
            key_of: Callable[[str], str], bar: Progress, sink: object | None, viewer: Viewer) -> BatchResult:
    """What every engine does once its batches are stored: link repeated lines, finish the Parquet
    shards, drop lines no longer in the file, and store the corpus summary."""
    linked = link_repeats(store, corpus_id, repeats, keep, key_of, viewer)
    bar.advance(len(linked))
    bar.close()
    stored = stored + linked
    if sink is not None:
        sink.write_stored(store, stored, viewer)
        sink.close()
    return finish(store, corpus_id, name, lines, epsilon, analysed, len(stored), viewer)


def chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# ---------------------------------------------------------------- corpus files


def read_corpus(path: str | Path) -> list[CorpusLine]:
    """The non-blank inputs of a text or JSONL file. Raises InputError for an unreadable or empty file."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"corpus file not found: {path}") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a folder; give a text or JSONL file with one input per line") from None
    except UnicodeDecodeError as error:
        raise InputError(f"{path} is not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror}") from None
    numbered = [(n, line) for n, line in enumerate(raw.splitlines(), start=1) if line.strip()]
    reader = _jsonl_line if is_jsonl(path, numbered[0][1] if numbered else "") else _text_line
    lines = [line for line in (reader(path, n, text) for n, text in numbered) if line is not None]
    if not lines:
        raise InputError(f"{path} has no inputs: every line is blank")
    return lines


def is_jsonl(path: Path, first_line: str) -> bool:
    if path.suffix.lower() == ".jsonl":
        return True
    try:
        return isinstance(json.loads(first_line), dict)
    except ValueError:
        return False


def _text_line(path: Path, line_no: int, line: str) -> CorpusLine:
    return CorpusLine(line_no, line.strip())


def _jsonl_line(path: Path, line_no: int, line: str) -> CorpusLine | None:
    try:
        record = json.loads(line)
    except ValueError as error:
        raise InputError(f"{path}, line {line_no}: not valid JSON ({error.msg})") from None
    if not isinstance(record, dict) or "text" not in record:
        raise InputError(f"{path}, line {line_no}: a JSONL corpus needs an object with a \"text\" field per line")
    text = record["text"]
    if not isinstance(text, str):
        raise InputError(f"{path}, line {line_no}: \"text\" must be a string, got {type(text).__name__}")
    return CorpusLine(line_no, text.strip()) if text.strip() else None
