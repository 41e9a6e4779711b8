"""The one token display: every tokenizer's codes made readable, control characters escaped, and the
charts and tables that show tokens all use it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sinkfix.plots import analysis as charts, evaluation as eval_charts
from sinkfix.analysis.display import is_special, position_labels, show_token


@pytest.mark.parametrize(("token", "shown"), [
    ("Ġthe", "␣the"),  # byte-level BPE: a leading space
    ("Ċ", "↵"), ("ĊĊ", "↵↵"), ("ĉx", "⇥x"),  # newline, tab
    ("âĢĻ", "’"),  # the three UTF-8 bytes of ’, decoded
    ("Ã©", "é"),
    ("▁word", "␣word"),  # SentencePiece word start
    ("##ing", "·ing"),  # WordPiece continuation
    ("##", "##"),  # the token "##" itself is not a continuation
    ("[CLS]", "[CLS]"), ("<|endoftext|>", "<|endoftext|>"), ("<0x0A>", "<0x0A>"),  # specials stay
    ("a\x07b", "a\\x07b"), ("x\u200by", "x\\u200by"), ("a\x00", "a\\x00"),  # control characters escaped
    ("café", "café"), ("ł", "ł"),  # ordinary non-ASCII text is left alone
])
def test_show_token(token: str, shown: str) -> None:
    assert show_token(token) == shown


def test_show_token_cuts_long_tokens_and_labels_keep_positions() -> None:
    assert show_token("Ġextraordinarily", 8) == "␣extrao…"
    assert position_labels(["[MASK]", "[MASK]", "Ġx"]) == ["0 [MASK]", "1 [MASK]", "2 ␣x"]
    assert is_special("[SEP]") and not is_special("the")


def test_tables_and_charts_use_the_one_display() -> None:
    tokens = ["<|endoftext|>", "Ġthe", "Ċ", "##s"]
    frame = charts.token_frame(tokens, ["beneficial", "neutral", "neutral", "neutral"], np.full(4, 0.25), np.ones(4))
    assert list(frame["token"]) == ["<|endoftext|>", "␣the", "↵", "·s"]
    assert list(frame["position"]) == ["0 <|endoftext…", "1 ␣the", "2 ↵", "3 ·s"]  # axis labels are cut
    strip = charts.token_strip(tokens, list(frame["label"]))
    assert list(strip.data["shown"]) == ["<|endoft…", "␣the", "↵", "·s"]
    preds = eval_charts.predictions_frame([("Ġcat", 0.5)], [("Ċ", 0.4)])
    assert preds.loc[0, ["before", "after"]].tolist() == ["␣cat", "↵"]


def test_classification_plane_names_only_the_tokens_that_matter() -> None:
    n = 40
    att = np.full(n, 0.01)
    att[[0, 7, 9, 30]] = [0.3, 0.2, 0.15, 0.05]
    labels = ["neutral"] * n
    labels[0], labels[30] = "beneficial", "detrimental"
    sink_rate = np.zeros(n)
    sink_rate[12] = 0.6
    frame = charts.token_frame([f"t{i}" for i in range(n)], labels, att, np.linspace(0.1, 1, n), sink_rate)
    names = pd.concat([layer.data for layer in charts.classification_plane(frame, 0.04, 0.5).layer[5:]])
    names = frame[frame["position"].isin(names["position"])]  # the name layers carry positions; map back
    # Beneficial and detrimental, the 3 largest by att_received (0, 7, 9) and the sink of half the heads (12).
    assert sorted(names["index"]) == [0, 7, 9, 12, 30]


def test_token_bars_with_a_learned_sink_put_it_first_and_apart() -> None:
    frame = charts.token_frame(["a", "b"], ["beneficial", "neutral"], [0.6, 0.4], [1.0, 0.5])
    chart = charts.token_bars(frame, "att_received", "t", 0.3, "τ", learned_sink=0.25)
    bars, sink, _rule = chart.layer
    assert bars.to_dict()["encoding"]["x"]["sort"] == ["<sink>", "0 a", "1 b"]
    assert sink.data["att_received"].tolist() == [0.25] and sink.to_dict()["mark"]["strokeDash"]
    assert "color" not in sink.to_dict()["encoding"]  # not a label colour: it is not a token
    assert isinstance(charts.token_bars(frame, "att_received", "t").data, pd.DataFrame)  # no sink: one layer
