"""How results show themselves in a notebook: the HTML summary (escaped, self-contained, its numbers
right), the short text form, the static SVG chart, and stored results that stay plain dicts."""
from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from sinkfix.errors import SettingsError
from sinkfix.notebook import render, stored, svg
from sinkfix.store.results import StoredResult
from tests.synthetic import synthetic_analysis

SCRIPT = "<script>alert(1)</script>"


@pytest.fixture()
def hostile():
    """A run whose token, model name and warning are markup."""
    base = synthetic_analysis(n_tokens=6)
    tokens = list(base.tokens)
    tokens[2] = SCRIPT
    return dataclasses.replace(base, tokens=tokens, model_name='<img src=x onerror="alert(2)">',
                               warnings=["<b>bold</b> warning"], run_id=7)


def test_a_script_token_is_escaped_in_repr_html(hostile) -> None:
    html = hostile._repr_html_()
    assert "<script" not in html.lower() and "<img" not in html and "<b>bold" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown as text in the token spans and the SVG
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in html
    assert "&lt;b&gt;bold&lt;/b&gt; warning" in html
    bundle = hostile._repr_mimebundle_()
    assert bundle["text/html"] == html and set(bundle) == {"text/html", "text/plain"}


def test_the_summary_lists_the_top_sinks_by_attention_received(hostile) -> None:
    att = np.array([0.05, 0.40, 0.10, 0.30, 0.05, 0.10], dtype=np.float32)
    run = dataclasses.replace(hostile, att_received=att)
    order = sorted(range(6), key=lambda i: (-float(att[i]), i))[: render.TOP_SINKS]
    assert render.top_sinks(run) == order == [1, 3, 2, 5, 0]
    table = render.summary_html(run).split("<table")[1]
    assert [row.split("</td>")[0].split(">")[-1] for row in table.split("<tr>")[2:]] == [str(i) for i in order]
    text = run._repr_mimebundle_()["text/plain"]
    assert text.splitlines()[0] == f"Run 7 · {run.model_name} · 6 tokens: " + " · ".join(
        f"{n} {label}" for label, n in run.label_counts().items())
    assert len(text) < 600 and "array(" not in text  # not the dataclass repr with every array


def test_the_settings_line_names_every_threshold() -> None:
    run = synthetic_analysis()
    s = run.settings
    assert render.settings_line(run) == (f"2 layers × 3 heads (3 KV heads) · value-norm layer {s.layer} · "
                                         f"τ_att {s.tau_att:g} · τ_norm {s.tau_norm:g} · β {s.beta:g} · "
                                         f"ε {s.epsilon:g} · rule {run.rule}")


def test_the_svg_has_one_bar_per_token_scaled_to_the_largest(hostile) -> None:
    html = render.summary_html(hostile)
    picture = html[html.index("<svg"): html.index("</svg>") + 6]
    root = ET.fromstring(picture)  # well-formed XML: escaped labels cannot break it
    bars = root.findall("{http://www.w3.org/2000/svg}rect")
    assert len(bars) == hostile.n_tokens
    heights = np.array([float(b.get("height")) for b in bars])
    expected = hostile.att_received / max(float(hostile.att_received.max()), hostile.settings.tau_att)
    assert heights / (svg.HEIGHT - svg.TOP - svg.BOTTOM) == pytest.approx(expected, abs=0.01)
    assert [b.get("fill") for b in bars] == [render.LABEL_COLOR[label] for label in hostile.labels]
    assert bars[2].find("{http://www.w3.org/2000/svg}title").text.startswith(f"2 {SCRIPT}: ")


def test_long_runs_draw_the_first_bars_and_say_so() -> None:
    many = svg.bar_chart([1.0] * 50, ["#000"] * 50, [str(i) for i in range(50)], "t")
    assert many.count("<rect") == 50 and "token position 0 … 49" in many and "rotate(" not in many
    run = synthetic_analysis(n_tokens=render.BARS_SHOWN + 8, n_layers=1, n_heads=1, keep_maps=False)
    html = render.summary_html(run)
    assert html.count("<rect") == render.BARS_SHOWN and f"the first {render.BARS_SHOWN} of {run.n_tokens}" in html
    assert f"… {run.n_tokens - render.TOKENS_SHOWN} more tokens" in html


ROW = {"id": 3, "created_at": "2025-01-02T03:04:05+00:00", "kind": "massive", "model": "<m>", "label": SCRIPT,
       "headline": 3400.0, "result": {"top": {"max_abs": 2000.0, "ratio": 3400.0, "layer": 2, "dim": 7, "token": 0,
                                              "token_text": SCRIPT, "value": -2000.0}, "first_massive_layer": 2}}


def test_a_stored_result_is_still_the_same_dict_and_renders_escaped() -> None:
    row = StoredResult(ROW)
    assert row == ROW and json.loads(json.dumps(row)) == ROW and isinstance(row, dict)
    html = row._repr_html_()
    assert "<script" not in html and "<m>" not in html and html.count("&lt;script&gt;") == 2
    assert "Massive activations 3" in html and "top |h| ratio 3,400×" in html and "2025-01-02 03:04 UTC" in html


def test_an_unregistered_kind_shows_its_scalars_and_has_no_charts() -> None:
    row = StoredResult({"id": 1, "kind": "eviction", "model": "m", "result": {"ratio": 0.5, "press": "<snap>",
                                                                                "curve": [1, 2]}})
    html = row._repr_html_()
    assert "Experiment (eviction) 1" in html and "&lt;snap&gt;" in html and "0.5" in html and "curve" not in html
    with pytest.raises(SettingsError, match="no charts are registered .* 'eviction'"):
        row.plot
    assert set(stored.KINDS) >= {"evaluate", "sts", "lab", "streaming", "kvquant", "sinkrate", "massive"}
