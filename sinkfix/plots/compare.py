"""Pure chart builders for comparing runs across models: word-aligned tokens and relative depth.

Runs of one text on two tokenizers are aligned by ``sinkfix.analysis.align`` (rows are words and
special tokens); layers are put on a relative depth axis, layer ÷ (L − 1), so a 6-layer and a
30-layer model share one x axis. No Streamlit here.
"""
from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from sinkfix.analysis.align import Alignment
from sinkfix.analysis.result import Analysis

from .analysis import LABEL_LEGEND, label_scale, title_of
from sinkfix.analysis.display import show_token

# How a word's tokens combine: shares add up; a norm or a rate is the largest of its pieces.
HOW = {"att_received": "sum", "value_norm": "max", "sink_rate": "max"}
_LABEL_RANK = {"detrimental": 2, "beneficial": 1, "neutral": 0}


def run_name(analysis: Analysis) -> str:
    return f"run {analysis.run_id} · {analysis.model_name}"


def aligned_frame(analyses: Sequence[Analysis], alignment: Alignment) -> pd.DataFrame:
    """One row per (aligned row, run): the row's text, the run's tokens in it (as displayed), the
    per-token values combined (``HOW``) and the strongest label among its tokens."""
    values = {field: alignment.aggregate([getattr(a, field) for a in analyses], how) for field, how in HOW.items()}
    rows = []
    for r, row in enumerate(alignment.rows):
        shown = show_token(row.label, 18) if row.kind == "special" else _flat(row.label)
        for run, analysis in enumerate(analyses):
            positions = row.members[run]
            if not positions:
                continue
            labels = [analysis.labels[p] for p in positions]
            rows.append({
                "row": r, "word": f"{r} {shown}", "kind": row.kind, "run": run_name(analysis),
                "tokens": " ".join(show_token(analysis.tokens[p]) for p in positions),
                "positions": ", ".join(map(str, positions)),
                **{field: float(values[field][r, run]) for field in HOW},
                "label": max(labels, key=_LABEL_RANK.get),
            })
    return pd.DataFrame(rows, columns=["row", "word", "kind", "run", "tokens", "positions", *HOW, "label"])


def _flat(text: str, limit: int = 18) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def aligned_table(frame: pd.DataFrame, field: str) -> pd.DataFrame:
    """Wide form for a table: one line per aligned row, a tokens and a value column per run."""
    runs = list(dict.fromkeys(frame["run"]))
    wide = frame.drop_duplicates("row")[["row", "word", "kind"]].set_index("row")
    for run in runs:
        part = frame[frame["run"] == run].set_index("row")
        wide[f"{run}: tokens"] = part["tokens"]
        wide[f"{run}: {field}"] = part[field]
    return wide.reset_index(drop=True)


def aligned_bars(frame: pd.DataFrame, field: str) -> alt.Chart:
    """Grouped bars: one group per word or special token, one bar per run (coloured by run, outlined
    by label), so the same word of two models sits side by side."""
    order = list(dict.fromkeys(frame["word"]))
    # With an x offset the step is per bar, so a group is (runs x step) wide: fit ~800 px.
    bars_total = max(len(order) * frame["run"].nunique(), 1)
    step = int(min(30, max(5, 800 // bars_total)))
    return (
        alt.Chart(frame)
        .mark_bar(strokeWidth=2)
        .encode(
            x=alt.X("word:N", sort=order, title="word (aligned by characters)",
                    axis=alt.Axis(labelAngle=-60, labelLimit=120, labelOverlap="greedy" if len(order) > 40 else False)),
            xOffset=alt.XOffset("run:N"),
            y=alt.Y(f"{field}:Q", title=f"{title_of(field)}, {HOW[field]} over the word's tokens"),
            color=alt.Color("run:N", legend=alt.Legend(title=None, orient="top")),
            stroke=alt.Stroke("label:N", scale=label_scale(), legend=LABEL_LEGEND),
            tooltip=["word:N", "run:N", "tokens:N", "positions:N", "label:N",
                     alt.Tooltip(f"{field}:Q", format=".4f")],
        )
        .properties(width=alt.Step(step), height=240, title=f"{title_of(field)} per word, aligned across tokenizers")
    )


def depth_frame(analyses: Sequence[Analysis]) -> pd.DataFrame:
    """Per run and layer: relative depth l ÷ (L − 1), token 0's share of the attention in that layer
    (mean over heads and queries), and the layer's sink rate (share of its heads where some token
    receives α > ε, the run's ε). A hybrid's points sit at its model layer numbers, and its layers
    without attention are rows with ``attention`` False and no values (drawn as marks, not as points)."""
    rows = []
    for a in analyses:
        scale = max(1, a.n_layers - 1)
        sinking = (np.asarray(a.alpha).max(axis=2) > a.settings.epsilon).mean(axis=1)
        for row, layer in enumerate(a.layer_numbers):
            rows.append({"run": run_name(a), "layer": layer, "depth": layer / scale,
                         "token0_share": float(a.att_received_layer[row, 0]),
                         "sink_rate": float(sinking[row]), "epsilon": a.settings.epsilon, "attention": True})
        rows += [{"run": run_name(a), "layer": layer, "depth": layer / scale, "token0_share": None, "sink_rate": None,
                  "epsilon": a.settings.epsilon, "attention": False} for layer in a.non_attention_layers]
    return pd.DataFrame(rows, columns=["run", "layer", "depth", "token0_share", "sink_rate", "epsilon", "attention"])


def depth_caption(analyses: Sequence[Analysis]) -> str:
    """The depth axis explained with these runs' own layer counts (never a made-up pair of models)."""
    counts = sorted({a.n_layers for a in analyses})
    if len(counts) == 1:
        return (f"x: layer ÷ (L − 1); every run here has {counts[0]} layers, so layers line up one to one.")
    shown = " and ".join(f"{n}-layer" for n in counts)
    return f"x: layer ÷ (L − 1), so the first and last layers of the {shown} models meet."


def depth_curves(frame: pd.DataFrame) -> alt.HConcatChart:
    """Token 0's share and the sink rate against relative depth, a line per run; a hybrid's layers
    without attention are grey ticks on the x axis."""
    attending = frame[frame["attention"]] if "attention" in frame else frame
    others = frame[~frame["attention"]] if "attention" in frame else frame.iloc[:0]
    panels = []
    for field, title in (("token0_share", "Token 0's share of attention"), ("sink_rate", "Sink rate per layer")):
        line = (
            alt.Chart(attending)
            .mark_line(point=True)
            .encode(
                x=alt.X("depth:Q", title="relative depth: layer ÷ (L − 1)", scale=alt.Scale(domain=[0, 1])),
                y=alt.Y(f"{field}:Q", title=title_of(field), scale=alt.Scale(domain=[0, 1])),
                color=alt.Color("run:N", legend=alt.Legend(title=None, orient="top")),
                tooltip=["run:N", "layer:Q", alt.Tooltip("depth:Q", format=".2f"), alt.Tooltip(f"{field}:Q", format=".3f")],
            )
        )
        if len(others):
            ticks = alt.Chart(others.assign(y=0.0, kind="not an attention layer")).mark_tick(
                color="#999999", thickness=2, size=12).encode(
                x=alt.X("depth:Q", scale=alt.Scale(domain=[0, 1])), y=alt.Y("y:Q", scale=alt.Scale(domain=[0, 1])),
                tooltip=["run:N", "layer:Q", "kind:N"])
            line = alt.layer(line, ticks)
        panels.append(line.properties(width=360, height=240, title=title))
    return alt.hconcat(*panels).resolve_scale(color="shared")
