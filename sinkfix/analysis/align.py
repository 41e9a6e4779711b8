"""Align runs of one text made by different tokenizers, by the characters each token covers.

Two tokenizers cut the same text differently (``[CLS] the quick`` against ``The Ġquick``), so
position i of one run is not position i of another. Every token has a character span in the text
(the tokenizer's offset mapping; ``(0, 0)`` for a special token). The rows of the alignment are
**words**: whitespace-separated pieces of the text, merged where a token of any run crosses
from one into the next, so every content token of every run falls inside exactly one row.
Special tokens have no characters; each becomes its own row, placed where it sits in its run.

Pure functions of spans and arrays, so tests use hand-made offsets.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sinkfix.errors import SinkFixError

Span = tuple[int, int]


class AlignmentError(SinkFixError):
    """Runs that cannot be aligned (different texts, or a token's span outside the text)."""


@dataclass(frozen=True)
class Row:
    """One aligned row: a word (group of words) of the text, or a special token of some runs."""

    label: str  # the word's text, or the special token
    kind: str  # "word" or "special"
    start: int  # characters in the text; a special row has start == end (where it sits)
    end: int
    members: tuple[tuple[int, ...], ...]  # per run: the token positions in this row


@dataclass(frozen=True)
class Alignment:
    rows: tuple[Row, ...]
    n_runs: int

    def aggregate(self, values: Sequence[np.ndarray], how: str = "sum") -> np.ndarray:
        """[rows, runs]: each run's per-token ``values`` combined over the row's tokens
        (``sum``, ``mean`` or ``max``); NaN where a run has no token in the row."""
        reduce = {"sum": np.sum, "mean": np.mean, "max": np.max}[how]
        out = np.full((len(self.rows), self.n_runs), np.nan)
        for r, row in enumerate(self.rows):
            for run, positions in enumerate(row.members):
                if positions:
                    out[r, run] = float(reduce(np.asarray(values[run], dtype=float)[list(positions)]))
        return out


def is_empty(span: Span) -> bool:
    return span[1] <= span[0]


def align(text: str, spans: Sequence[Sequence[Span]], tokens: Sequence[Sequence[str]] | None = None) -> Alignment:
    """Rows for runs of ``text`` whose tokens cover ``spans`` (one list of (start, end) per run).

    ``tokens`` names the special-token rows (defaults to "special"). A whitespace-only token is
    given to the word after it (byte-level BPE writes a space before the word it starts).
    """
    for run in spans:
        for start, end in run:
            if start < 0 or end > len(text) or (end < start):
                raise AlignmentError(f"a token spans characters {start}..{end}, outside the {len(text)}-character text")
    words = [m.span() for m in re.finditer(r"\S+", text)]
    word_of = np.full(len(text) + 1, -1, dtype=int)
    for index, (start, end) in enumerate(words):
        word_of[start:end] = index
    # Word -> the group it belongs to; a token crossing words merges them (union over a range).
    group = list(range(len(words)))
    token_words: list[list[int | None]] = []
    for run in spans:
        per_token: list[int | None] = []
        for span in run:
            if is_empty(span):
                per_token.append(None)
                continue
            inside = word_of[span[0]:span[1]]
            inside = inside[inside >= 0]
            if len(inside) == 0:  # whitespace only: the next word, else the last one
                later = [i for i, (s, _) in enumerate(words) if s >= span[1]]
                first = last = later[0] if later else len(words) - 1
            else:
                first, last = int(inside.min()), int(inside.max())
            for w in range(first + 1, last + 1):
                _merge(group, first, w)
            per_token.append(first if words else None)
        token_words.append(per_token)
    roots = [_root(group, w) for w in range(len(words))]
    order = sorted(set(roots))
    word_rows: dict[int, list[list[int]]] = {root: [[] for _ in spans] for root in order}
    for run, per_token in enumerate(token_words):
        for position, word in enumerate(per_token):
            if word is not None:
                word_rows[roots[word]][run].append(position)
    rows: list[tuple[float, int, Row]] = []
    for root in order:
        members = [w for w in range(len(words)) if roots[w] == root]
        start, end = words[members[0]][0], words[members[-1]][1]
        rows.append((start, 1, Row(text[start:end], "word", start, end, tuple(map(tuple, word_rows[root])))))
    rows.extend(_special_rows(text, spans, tokens, token_words, words))
    rows.sort(key=lambda item: (item[0], item[1]))
    return Alignment(tuple(row for _, _, row in rows), len(spans))


def _special_rows(text: str, spans, tokens, token_words, words) -> list[tuple[float, int, Row]]:
    """A row per special token; the same token at the same place in several runs shares one row."""
    found: dict[tuple[str, int, int], list[list[int]]] = {}
    for run, run_spans in enumerate(spans):
        for position, span in enumerate(run_spans):
            if not is_empty(span):
                continue
            name = tokens[run][position] if tokens is not None else "special"
            after = next((words[w][0] for w in token_words[run][position + 1:] if w is not None), None)
            # Before the first word it sorts first, after the last one last; else just before the next word.
            place, tie = (len(text), 2) if after is None else (after, 0)
            key = (name, place, tie)
            found.setdefault(key, [[] for _ in spans])[run].append(position)
    return [(place, tie, Row(name, "special", place, place, tuple(map(tuple, members))))
            for (name, place, tie), members in found.items()]


def _root(group: list[int], w: int) -> int:
    while group[w] != w:
        group[w] = group[group[w]]
        w = group[w]
    return w


def _merge(group: list[int], a: int, b: int) -> None:
    ra, rb = _root(group, a), _root(group, b)
    if ra != rb:
        group[max(ra, rb)] = min(ra, rb)


def retokenized_offsets(text: str, token_ids: Sequence[int], tokenizer: object) -> list[Span] | None:
    """Offsets for a stored run made before runs kept them: tokenize ``text`` again with a fast
    tokenizer and accept the spans only when the ids are the run's (a prepended or dropped BOS is
    matched too). None when they differ (the run was truncated or made by another tokenizer)."""
    if not getattr(tokenizer, "is_fast", False):
        return None
    encoded = tokenizer(text, return_offsets_mapping=True)
    ids, offsets = list(encoded["input_ids"]), [tuple(map(int, pair)) for pair in encoded["offset_mapping"]]
    token_ids = list(token_ids)
    if ids == token_ids:
        return offsets
    if ids[1:] == token_ids:  # the run dropped the tokenizer's BOS
        return offsets[1:]
    if ids == token_ids[1:]:  # the run prepended a BOS
        return [(0, 0), *offsets]
    return None
