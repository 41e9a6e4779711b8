"""The long-run view on a stored 32,768-token run built from synthetic arrays (tests/dashboard/long_run.py):
the whole-text strip keeps every sink visible, the span shows its tokens and text, the grid places each
head's top sink, and opening it decodes no blob. Numbers are checked against the synthetic arrays."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sinkfix.plots import longrun as longrun_charts
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store, tensorio

from .conftest import assert_clean, chart_specs, open_page, page_text
from .long_run import FAR_SINK, SINKS, long_analysis

LONGRUN = "views/longrun.py"
N = 32_768


@pytest.fixture(scope="module")
def long_db(tmp_path_factory: pytest.TempPathFactory):
    analysis = long_analysis(N)
    path = tmp_path_factory.mktemp("longrun") / "sinkfix.db"
    run_id = Store(path).save(analysis, viewer=LOCAL)
    return path, run_id, analysis


@pytest.fixture()
def stored(long_db, monkeypatch: pytest.MonkeyPatch):
    path, run_id, analysis = long_db
    monkeypatch.setenv("SINKFIX_DB", str(path))
    decoded: list[int] = []
    real = tensorio.loads

    def counting(data: bytes):
        decoded.append(len(data))
        return real(data)

    monkeypatch.setattr(tensorio, "loads", counting)
    return run_id, analysis, decoded


def _dataset(app, title_part: str) -> pd.DataFrame:
    for spec, data in chart_specs(app):
        text = str(spec.get("title", ""))
        if title_part in text or any(title_part in str(layer.get("title", "")) for layer in spec.get("layer", [])):
            return pd.concat(data.values(), ignore_index=True) if len(data) > 1 else next(iter(data.values()))
    raise AssertionError(f"no chart titled {title_part!r}")


def test_a_stored_32k_run_opens_without_decoding_a_blob(stored) -> None:
    run_id, analysis, decoded = stored
    app = open_page(LONGRUN, run=str(run_id))
    assert_clean(app)
    assert decoded == []  # per-token and per-head rows only: the arrays blob is never read
    assert f"Run {run_id} · synthetic-long · 32,768 tokens" in page_text(app)
    strip = _dataset(app, "along the whole text")
    strip = strip.dropna(subset=["att_max"])
    assert len(strip) <= longrun_charts.MAX_BINS and strip["end"].max() == N
    for position in (0, *SINKS[1:]):  # every sink is the maximum of its bar (token 1 shares token 0's bar)
        row = strip[(strip["start"] <= position) & (strip["end"] > position)].iloc[0]
        assert row["at"] == position and row["att_max"] == pytest.approx(float(analysis.att_received[position]))
        inside = analysis.labels[int(row["start"]):int(row["end"])]
        strongest = max(inside, key=longrun_charts.LABEL_RANK.get)
        assert row["label"] == strongest and (strongest != "neutral" or position == 0)
    grid = _dataset(app, "top sink position")
    expected = analysis.alpha.argmax(axis=2)
    got = np.zeros_like(expected)
    for row in grid.itertuples():
        got[row.layer, row.head] = row.position
    assert np.array_equal(got, expected) and got[-1, 0] == FAR_SINK


def test_a_span_in_the_url_shows_its_tokens_and_text(stored) -> None:
    run_id, analysis, _ = stored
    app = open_page(LONGRUN, run=str(run_id), start=str(FAR_SINK - 5), end=str(FAR_SINK + 5))
    assert_clean(app)
    table = app.dataframe[0].value
    assert table["index"].tolist() == list(range(FAR_SINK - 5, FAR_SINK + 5))
    assert table["att_received"].tolist() == pytest.approx(analysis.att_received[FAR_SINK - 5:FAR_SINK + 5].tolist())
    assert table.loc[table["index"] == FAR_SINK, "label"].item() == "detrimental"
    words = analysis.text.split(" ")[FAR_SINK - 6:FAR_SINK + 4]  # token i (i >= 1) is word i - 1
    assert app.text[0].value == " ".join(words)
    span = _dataset(app, f"Tokens {FAR_SINK - 5}–{FAR_SINK + 4}")
    assert span["index"].tolist() == list(range(FAR_SINK - 5, FAR_SINK + 5))


@pytest.mark.parametrize("start, end, message", [("5", "2", "not within this run's 32768 tokens"),
                                                 ("0", "40000", "not within"), ("x", "10", "not a token position")])
def test_a_bad_span_is_an_error_not_another_span(stored, start: str, end: str, message: str) -> None:
    run_id, _, _ = stored
    app = open_page(LONGRUN, run=str(run_id), start=start, end=end)
    assert not app.exception
    assert any(message in e.value for e in app.error)
    assert not app.dataframe  # nothing is shown for a span that was not asked for


def test_strip_bins_keep_the_largest_value_and_the_strongest_label() -> None:
    att = np.array([0.5, 0.01, 0.02, 0.3, 0.04, 0.05, 0.08])
    rate = np.array([1.0, 0, 0, 0.5, 0, 0, 0.25])
    ranks = np.array([1, 0, 0, 2, 0, 0, 0])  # beneficial, ..., detrimental, ...
    frame = longrun_charts.strip_frame(att, rate, ranks, 3)
    assert frame[["start", "end", "at"]].values.tolist() == [[0, 3, 0], [3, 6, 3], [6, 7, 6]]
    assert frame["att_max"].tolist() == [0.5, 0.3, 0.08]
    assert frame["label"].tolist() == ["beneficial", "detrimental", "neutral"]
    assert longrun_charts.bin_size(32_768) == 33 and longrun_charts.bin_size(100) == 1  # at most MAX_BINS bars
