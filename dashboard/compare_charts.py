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

from .charts import LABEL_LEGEND, label_scale
from .tokens import show_token

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
            y=alt.Y(f"{field}:Q", title=f"{field} ({HOW[field]} over the word's tokens)"),
            color=alt.Color("run:N", legend=alt.Legend(title=None, orient="top")),
            stroke=alt.Stroke("label:N", scale=label_scale(), legend=LABEL_LEGEND),
            tooltip=["word:N", "run:N", "tokens:N", "positions:N", "label:N",
                     alt.Tooltip(f"{field}:Q", format=".4f")],
        )
        .properties(width=alt.Step(step), height=240, title=f"{field} per word, aligned across tokenizers")
    )


def depth_frame(analyses: Sequence[Analysis]) -> pd.DataFrame:
    """Per run and layer: relative depth l ÷ (L − 1), token 0's share of the attention in that layer
    (mean over heads and queries), and the layer's sink rate (share of its heads where some token
    receives α > ε, the run's ε)."""
    rows = []
    for a in analyses:
        depth = np.linspace(0.0, 1.0, a.n_layers) if a.n_layers > 1 else np.zeros(1)
        sinking = (np.asarray(a.alpha).max(axis=2) > a.settings.epsilon).mean(axis=1)
        for layer in range(a.n_layers):
            rows.append({"run": run_name(a), "layer": layer, "depth": float(depth[layer]),
                         "token0_share": float(a.att_received_layer[layer, 0]),
                         "sink_rate": float(sinking[layer]), "epsilon": a.settings.epsilon})
    return pd.DataFrame(rows, columns=["run", "layer", "depth", "token0_share", "sink_rate", "epsilon"])


def depth_curves(frame: pd.DataFrame) -> alt.HConcatChart:
    """Token 0's share and the sink rate against relative depth, a line per run."""
    panels = []
    for field, title in (("token0_share", "Token 0's share of attention"), ("sink_rate", "Sink rate per layer")):
        panels.append(
            alt.Chart(frame)
            .mark_line(point=True)
            .encode(
                x=alt.X("depth:Q", title="relative depth: layer ÷ (L − 1)", scale=alt.Scale(domain=[0, 1])),
                y=alt.Y(f"{field}:Q", title=field, scale=alt.Scale(domain=[0, 1])),
                color=alt.Color("run:N", legend=alt.Legend(title=None, orient="top")),
                tooltip=["run:N", "layer:Q", alt.Tooltip("depth:Q", format=".2f"), alt.Tooltip(f"{field}:Q", format=".3f")],
            )
            .properties(width=360, height=240, title=title)
        )
    return alt.hconcat(*panels).resolve_scale(color="shared")
