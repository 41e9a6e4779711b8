"""Aligning runs of one text across tokenizers by character spans, on hand-made offsets."""
from __future__ import annotations

import numpy as np
import pytest

from sinkfix.analysis.align import AlignmentError, align, retokenized_offsets

TEXT = "The cat's mat."
# WordPiece-like: [CLS] the cat ' s mat . [SEP]
BERT_TOKENS = ["[CLS]", "the", "cat", "'", "s", "mat", ".", "[SEP]"]
BERT_SPANS = [(0, 0), (0, 3), (4, 7), (7, 8), (8, 9), (10, 13), (13, 14), (0, 0)]
# Byte-level-BPE-like, spans with the leading space: The Ġcat 's Ġmat .
BPE_TOKENS = ["The", "Ġcat", "'s", "Ġmat", "."]
BPE_SPANS = [(0, 3), (3, 7), (7, 9), (9, 13), (13, 14)]


def test_words_line_up_and_specials_are_their_own_rows() -> None:
    alignment = align(TEXT, [BERT_SPANS, BPE_SPANS], [BERT_TOKENS, BPE_TOKENS])
    rows = [(row.kind, row.label, row.members) for row in alignment.rows]
    assert rows == [
        ("special", "[CLS]", ((0,), ())),
        ("word", "The", ((1,), (0,))),
        ("word", "cat's", ((2, 3, 4), (1, 2))),
        ("word", "mat.", ((5, 6), (3, 4))),
        ("special", "[SEP]", ((7,), ())),
    ]


def test_aggregate_sums_shares_and_leaves_gaps_empty() -> None:
    alignment = align(TEXT, [BERT_SPANS, BPE_SPANS], [BERT_TOKENS, BPE_TOKENS])
    bert = np.array([0.5, 0.1, 0.05, 0.05, 0.05, 0.1, 0.05, 0.1])
    bpe = np.array([0.6, 0.1, 0.1, 0.1, 0.1])
    table = alignment.aggregate([bert, bpe], "sum")
    expected = np.array([[0.5, np.nan], [0.1, 0.6], [0.15, 0.2], [0.15, 0.2], [0.1, np.nan]])
    assert np.allclose(table, expected, equal_nan=True)
    # Word shares still add up to each run's total (1 for att_received).
    assert np.nansum(table, axis=0) == pytest.approx([1.0, 1.0])
    assert alignment.aggregate([bert, bpe], "max")[2].tolist() == [0.05, 0.1]


def test_a_token_crossing_a_space_merges_the_words() -> None:
    text = "New York is big"
    one = [(0, 3), (4, 8), (9, 11), (12, 15)]
    two = [(0, 8), (8, 11), (11, 15)]  # "New York", "Ġis", "Ġbig"
    alignment = align(text, [one, two])
    assert [r.label for r in alignment.rows] == ["New York", "is", "big"]
    assert alignment.rows[0].members == ((0, 1), (0,))


def test_whitespace_only_tokens_join_the_next_word_and_inner_specials_keep_their_place() -> None:
    text = "a  b"
    spans = [(0, 1), (1, 2), (0, 0), (2, 4)]  # a, Ġ (a lone space), [SEP] in the middle, Ġb
    alignment = align(text, [spans], [["a", "Ġ", "[SEP]", "Ġb"]])
    assert [(r.label, r.members) for r in alignment.rows] == [("a", ((0,),)), ("[SEP]", ((2,),)), ("b", ((1, 3),))]


def test_spans_outside_the_text_are_refused() -> None:
    with pytest.raises(AlignmentError):
        align("abc", [[(0, 9)]])


class FakeFast:
    is_fast = True

    def __call__(self, text, return_offsets_mapping=True):
        return {"input_ids": [1, 7, 8], "offset_mapping": [(0, 0), (0, 3), (4, 7)]}


def test_retokenized_offsets_accept_only_matching_ids() -> None:
    assert retokenized_offsets("The cat", [1, 7, 8], FakeFast()) == [(0, 0), (0, 3), (4, 7)]
    assert retokenized_offsets("The cat", [7, 8], FakeFast()) == [(0, 3), (4, 7)]  # BOS dropped
    assert retokenized_offsets("The cat", [9, 1, 7, 8], FakeFast()) == [(0, 0), (0, 0), (0, 3), (4, 7)]
    assert retokenized_offsets("The cat", [1, 7], FakeFast()) is None  # truncated: cannot trust spans
