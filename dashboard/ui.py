"""Streamlit building blocks pages share: escaped text, charts with PNG/SVG downloads, run summaries."""
from __future__ import annotations

import json
import re

import altair as alt
import pandas as pd
import streamlit as st

from sinkfix.analysis.pipeline import Analysis
from sinkfix.settings import AnalysisSettings

from . import units
from sinkfix.notebook import render  # the settings line a notebook's summary shows too
from sinkfix.plots.base import chart_bytes  # noqa: F401  (the downloads below; tests read it as ui.chart_bytes)

# Above this many tokens, per-token tiles and bars give way to the long-run view (views/longrun.py).
LONG_TOKENS = 1024

# Everything Markdown (and Streamlit's :color[...] / :emoji: / $math$ extensions) gives meaning to.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$&\"'])")


def escape_md(text: str) -> str:
    """User text made inert for st.markdown: every special character backslash-escaped, newlines flattened."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def shorten(text: str, limit: int = 80) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def show_chart(
    chart: alt.TopLevelMixin,
    name: str,
    caption: str | None = None,
    width: str = "content",
    **select,
):
    """An altair chart, a caption saying how to read it, and PNG/SVG downloads made only when clicked."""
    # Streamlit defaults single views to autosize "fit", which squeezes axes, legends and titles into the
    # plot size and shrinks the plot; "pad" keeps the plot at the size the builder chose.
    chart = chart.properties(autosize=alt.AutoSizeParams(type="pad", contains="padding"))
    state = st.altair_chart(chart, width=width, key=select.pop("key", f"chart_{name}"), **select)
    if caption:
        st.caption(caption)
    row = st.container(horizontal=True, gap="small")
    row.download_button(
        "PNG", lambda: chart_bytes(chart, "png"), file_name=f"{name}.png", mime="image/png",
        key=f"png_{name}", on_click="ignore", icon=":material/download:",
    )
    row.download_button(
        "SVG", lambda: chart_bytes(chart, "svg"), file_name=f"{name}.svg", mime="image/svg+xml",
        key=f"svg_{name}", on_click="ignore", icon=":material/download:",
    )
    return state


def run_title(analysis: Analysis) -> str:
    return f"Run {analysis.run_id} · {analysis.model_name} · {analysis.n_tokens} tokens"


def run_summary(analysis: Analysis) -> None:
    """What a run is: model, text (shown as plain text, never markup), settings, label counts."""
    counts = analysis.label_counts()
    # The model is a line of text, not a metric tile: a tile cuts a long name ("google-bert/bert-base-unc…").
    st.markdown(f"**Model:** {escape_md(analysis.model_name)} · {escape_md(analysis.model_id)}")
    cols = st.columns(4)
    cols[0].metric("Tokens", analysis.n_tokens)
    cols[1].metric("Beneficial", counts.get("beneficial", 0))
    cols[2].metric("Detrimental", counts.get("detrimental", 0))
    cols[3].metric("Neutral", counts.get("neutral", 0))
    if len(analysis.text) <= 400:
        st.text(analysis.text)
    else:
        st.text(analysis.text[:400] + " …")
        with st.expander(f"Full text ({len(analysis.text)} characters)"):
            st.text(analysis.text)
    st.caption(f"{render.settings_line(analysis)} · created {units.when(analysis.created_at)}")
    for warning in analysis.warnings:
        st.warning(warning)


def analysis_downloads(analysis: Analysis) -> None:
    """The seed JSON and the per-token CSV, built on click (the JSON can hold L x H x T x T floats)."""
    name = f"sinkfix-run-{analysis.run_id}"
    row = st.container(horizontal=True, gap="small")
    row.download_button(
        "Seed JSON", lambda: json.dumps(analysis.to_seed_json()), file_name=f"{name}.json",
        mime="application/json", key=f"json_{analysis.run_id}", on_click="ignore", icon=":material/data_object:",
    )
    row.download_button(
        "Per-token CSV", lambda: pd.DataFrame(analysis.token_table()).to_csv(index=False),
        file_name=f"{name}-tokens.csv", mime="text/csv", key=f"csv_{analysis.run_id}", on_click="ignore",
        icon=":material/table:",
    )



def count_columns() -> dict:
    """Column settings for the light run rows (token and label counts) shared by History and Corpus."""
    return {
        "n_tokens": st.column_config.NumberColumn("tokens", width="small"),
        "n_beneficial": st.column_config.NumberColumn("benef.", width="small"),
        "n_detrimental": st.column_config.NumberColumn("detr.", width="small"),
        "n_neutral": st.column_config.NumberColumn("neutral", width="small"),
    }


SETTING_NAMES = {"tau_att": "τ_att", "tau_norm": "τ_norm", "beta": "β", "epsilon": "ε", "layer": "value-norm layer",
                 "map_token_limit": "map limit", "max_tokens": "max tokens", "bos": "BOS"}


def settings_changes(before: AnalysisSettings, after: AnalysisSettings) -> list[str]:
    """["τ_att 0.04 → 0.035", ...]: the settings that differ between two runs, as pages name them."""
    return [f"{shown} {getattr(before, name)!s} → {getattr(after, name)!s}" for name, shown in SETTING_NAMES.items()
            if getattr(before, name, None) != getattr(after, name, None)]


def provenance(analysis: Analysis, parent: dict | None) -> str | None:
    """Where a run with a ``parent_run_id`` came from, told apart by what changed: a re-run with other
    settings (Analyze), or the same request with its maps recomputed (drill-down, corpus runs).
    ``parent`` is ``Store.info(parent_run_id)``, or None when that run was deleted."""
    pid = analysis.parent_run_id
    if pid is None:
        return None
    if parent is None:
        return f"Made from run {pid}, which is no longer stored."
    changed = settings_changes(parent["settings"], analysis.settings)
    if not changed and not parent["has_maps"] and analysis.maps is not None:
        return f"Maps recomputed from run {pid}, which stored summaries only (same model, text and settings)."
    if changed:
        return f"Re-run of run {pid} with changed settings: {', '.join(changed)}."
    return f"Re-run of run {pid} with the same settings."
