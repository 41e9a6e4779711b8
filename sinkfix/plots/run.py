"""One run's charts exactly as the Analyze and Drill-down pages draw them: an ``Analysis`` in, the builder
of ``analysis`` (or ``maps``, ``plane``) called with the pages' titles and thresholds, an ``alt.Chart`` out.

The pages and the notebook accessor (``analysis.plot``) both call these, so a chart in a notebook is
the dashboard's chart. ``analysis`` is any ``sinkfix.Analysis``; the class is not imported here, because
``Analysis.plot`` imports this module (the import graph must stay free of cycles).
"""
from __future__ import annotations

from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from sinkfix.analysis.display import SINK_COLUMN, show_tokens

from . import analysis as charts

Analysis = Any  # sinkfix.analysis.result.Analysis (see the module docstring)

# The drill-down's layer x head metrics: the name a chart shows, and how to read it.
HEAD_METRICS = {
    "top_alpha": ("α of the top sink", "α of the token that receives the most attention in the head "
                  "(averaged over the queries that can see it); hover to see which token."),
    "entropy": ("entropy", "Mean entropy of the head's attention rows, in nats: low = focused, high = spread out."),
    "token0_share": ("token-0 share", "Share of the head's attention that goes to token 0."),
    "top_contribution_share": ("norm-based contribution", "Share of the head's norm-based contribution "
                               "‖A·v·W_O‖ (Kobayashi et al. 2020) that comes from its top sink: a sink with "
                               "a high α but a low share writes little into the residual stream."),
    "gate": ("output gate", "Mean of the head's attention output gate sigmoid(g) over the tokens (gated attention, "
             "Qwen3-Next): near 0 the head writes little whatever it attends to, the job a sink does in ungated models."),
}


def token_frame(analysis: Analysis) -> pd.DataFrame:
    """The per-token frame the token charts read (display tokens, axis positions, the values)."""
    return charts.token_frame(analysis.tokens, analysis.labels, analysis.att_received, analysis.value_norm,
                              analysis.sink_rate)


def tokens(analysis: Analysis) -> alt.Chart:
    """The input as tiles coloured by label."""
    return charts.token_strip(analysis.tokens, analysis.labels)


def received(analysis: Analysis) -> alt.Chart:
    """Attention received per token, with τ_att (and a learned sink's column, for models that have one)."""
    return charts.token_bars(token_frame(analysis), "att_received", "Attention received per token",
                             analysis.settings.tau_att, "τ_att", learned_sink=analysis.mean_learned_sink_mass)


def value_norms(analysis: Analysis) -> alt.Chart:
    """Each token's value norm at the settings' layer (÷ max), with τ_norm."""
    s = analysis.settings
    return charts.token_bars(token_frame(analysis), "value_norm", f"Value norm per token (layer {s.layer})",
                             s.tau_norm, "τ_norm")


def plane(analysis: Analysis) -> alt.Chart:
    """Every token on the (att_received, value_norm) plane, the detrimental corner shaded."""
    return charts.classification_plane(token_frame(analysis), analysis.settings.tau_att, analysis.settings.tau_norm)


def token_alpha_grid(analysis: Analysis, token: int) -> alt.Chart:
    """α of one token in every head, the cells above ε marked."""
    values = analysis.alpha[:, :, token]
    frame = charts.head_frame(values, "alpha", {"above_epsilon": values > analysis.settings.epsilon})
    label = charts.token_axis_labels(analysis.tokens)[token]
    return charts.head_grid(frame, "alpha", f"α of token {label} in every head", domain=(0, 1))


def top_sink_grid(analysis: Analysis) -> alt.Chart:
    """Each head's strongest sink: its α, the token in the tooltip (and the learned-sink mass, when any)."""
    labels = charts.token_axis_labels(analysis.tokens)
    extra = {"top_token": np.array(labels, dtype=object)[analysis.alpha.argmax(axis=2)]}
    if analysis.learned_sink_mass is not None:
        extra[f"{SINK_COLUMN} mass"] = analysis.learned_sink_mass
    frame = charts.head_frame(analysis.alpha.max(axis=2), "alpha", extra)
    return charts.head_grid(frame, "alpha", "α of the strongest sink in every head", domain=(0, 1))


def learned_sink_grid(analysis: Analysis) -> alt.Chart:
    """The mass each head gives to its learned sink logit (models with learned sinks only)."""
    frame = charts.head_frame(analysis.learned_sink_mass, "sink_mass")
    return charts.head_grid(frame, "sink_mass", f"Learned sink {SINK_COLUMN}: mass per head", scheme="purples",
                            domain=(0, 1))


def metric_grid(rows: pd.DataFrame, metric: str, selected: tuple[int, int] | None = None,
                selectable: bool = False) -> alt.Chart:
    """The drill-down grid: one ``HEAD_METRICS`` value per (layer, head) from head rows (``Store.head_rows``
    or ``Analysis.head_table()``), the top token in the tooltip, a ring around ``selected``."""
    frame = rows[["layer", "head", metric, "top_token_text"]].rename(columns={"top_token_text": "top_token"})
    frame["top_token"] = show_tokens(frame["top_token"])
    return charts.head_grid(frame, metric, f"{HEAD_METRICS[metric][0]} per head", selectable=selectable,
                            selected=selected)


def mean_maps(analysis: Analysis) -> alt.HConcatChart:
    """Attention averaged over layers and heads, before and after the correction."""
    return charts.attention_pair(analysis.mean_map, analysis.corrected_mean_map, analysis.tokens,
                                 "Attention averaged over layers and heads")


def mean_change(analysis: Analysis) -> alt.Chart:
    """What the correction changed in the mean map (corrected − original)."""
    return charts.attention_change(analysis.mean_map, analysis.corrected_mean_map, analysis.tokens,
                                   "Change made by the correction (corrected − original)")


def head_maps(analysis: Analysis, layer: int, head: int, original: np.ndarray, corrected: np.ndarray):
    """One head's map before and after the correction (``original``/``corrected``: its T x T maps)."""
    return charts.attention_pair(original, corrected, analysis.tokens, f"Layer {layer}, head {head}")


def head_change(analysis: Analysis, layer: int, head: int, original: np.ndarray, corrected: np.ndarray):
    """What the correction changed in one head's map."""
    return charts.attention_change(original, corrected, analysis.tokens, f"Layer {layer}, head {head}: corrected − original")


def layer_curves(analysis: Analysis) -> alt.Chart:
    """Attention each token receives in each layer (grey rules at a hybrid's layers without attention)."""
    return charts.layer_curves(analysis.att_received_layer, analysis.tokens, layers=analysis.layer_numbers,
                               n_layers=analysis.n_layers)


def value_norm_layers(analysis: Analysis) -> alt.Chart:
    """Each token's full value-vector norm per (attention) layer, not normalised."""
    hybrid = analysis.attention_layers is not None
    return charts.token_heatmap(analysis.value_norm_layer, analysis.tokens, "layer", "value_norm",
                                "Value-vector norm per attention layer" if hybrid else "Value-vector norm per layer",
                                row_labels=analysis.layer_numbers)


def value_norm_heads(analysis: Analysis, layer: int) -> alt.Chart:
    """Each token's value norm per KV head at model layer ``layer``."""
    return charts.token_heatmap(analysis.value_norm_head[analysis.row_of(layer)], analysis.tokens, "kv_head",
                                "value_norm", f"Value norm per KV head, layer {layer}")
