"""Batch analysis of a corpus file: one stored run per input line, resumable, then the corpus summary.

The file is plain text with one input per line, or JSONL with a ``text`` field per line. It is
JSONL when its name ends in ``.jsonl`` or its first non-blank line parses as a JSON object.
Blank lines are skipped; line numbers are the file's own (1-based), so a corpus line points
back to the file.

Resuming costs nothing extra: every line goes through the analysis cache, so a rerun after an
interrupt serves the lines already stored from the database and analyses only the rest. Each
run and each corpus line is committed on its own, so an interrupt loses at most the line in
progress, and nothing is stored twice.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from sinkfix.cache import analyze_or_fetch
from sinkfix.analysis.corpus import CorpusSummary, summarize_stored
from sinkfix.errors import InputError
from sinkfix.models import LoadedModel
from sinkfix.settings import AnalysisSettings
from sinkfix.store import Store


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


def run_batch(
    lines: list[CorpusLine],
    model: LoadedModel,
    settings: AnalysisSettings | None,
    store: Store,
    name: str,
    source: str = "",
    progress: bool = True,
    on_line: Callable[[CorpusLine, int, bool], None] | None = None,
) -> BatchResult:
    """Analyse (or fetch) every line into corpus ``name``, then compute and store its summary.

    ``on_line(line, run_id, was_cached)`` is called after each line is stored.
    """
    resolved = (settings or AnalysisSettings()).resolved(model.n_layers)
    corpus_id = store.open_corpus(name, model.name, resolved.to_dict(), source)
    store.save_corpus_summary(corpus_id, None)  # out of date until this batch completes
    analysed = cached = 0
    bar = tqdm(lines, file=sys.stderr, unit="line", desc=f"corpus {name}", disable=not progress, dynamic_ncols=True)
    try:
        for line in bar:
            analysis, hit = analyze_or_fetch(line.text, model, resolved, store)
            store.add_corpus_run(corpus_id, line.line_no, analysis.run_id)
            cached += hit
            analysed += not hit
            bar.set_postfix(analysed=analysed, cached=cached, refresh=False)
            if on_line is not None:
                on_line(line, analysis.run_id, hit)
    except KeyboardInterrupt:
        bar.close()
        print(f"interrupted after {analysed + cached} of {len(lines)} lines (all stored); "
              "rerun the same command to resume", file=sys.stderr)
        raise
    bar.close()
    dropped = store.trim_corpus(corpus_id, [line.line_no for line in lines])
    summary = summarize_stored(store, corpus_id, resolved.epsilon)
    store.save_corpus_summary(corpus_id, summary.to_json())
    return BatchResult(corpus_id, name, len(lines), analysed, cached, dropped, summary)
