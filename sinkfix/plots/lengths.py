"""Charts against the context length T: the length sweep (sink rate, first-token mass, token 0's norm ratio)
and the BOS ablation (NLL per arm, and the paired ΔNLL of each comparison with a zero line). Each line
carries its 95% CI band over windows. Pure builders (data -> chart)."""
from __future__ import annotations

import altair as alt
import pandas as pd

from .profile import COLUMNS, band_panel, estimate_rows

LENGTH_PANELS = (
    ("sink rate of token 0", [("sink_rate", "sink rate")], False),
    ("attention to token 0", [("first_token_mass", "all queries (α)"), ("late_first_token_mass", "second half of queries")],
     False),
    ("token 0's norm ÷ median", [("token0_norm_ratio", "norm ratio")], True),
)
LENGTH_COLORS = {"sink rate": "#2166ac", "all queries (α)": "#5e3c99", "second half of queries": "#e08214",
                 "norm ratio": "#b2182b"}
ARM_COLORS = {"no_bos": "#2166ac", "bos": "#1b7837", "no_bos_masked": "#92c5de", "bos_masked": "#a6dba0",
              "bos - no_bos": "#1b7837", "no_bos_masked - no_bos": "#2166ac", "bos_masked - bos": "#b2182b"}
WIDTH, HEIGHT = 480, 130
DELTA, DELTA_LATE = "ΔNLL, paired (nats/token)", "ΔNLL, second half of positions"
RATE = "sink rate of token 0"


def _x(lengths: list[int], last: bool = True) -> alt.X:
    """The shared T axis; only the bottom panel (``last``) carries its labels and title."""
    return alt.X("x:Q", title="context length T (tokens, log scale)" if last else None,
                 scale=alt.Scale(type="log", base=2, domain=[min(lengths), max(lengths)], nice=False),
                 axis=alt.Axis(values=lengths, format="d", labels=last))


def lengths_frame(result: dict) -> pd.DataFrame:
    rows = []
    for panel, series, _ in LENGTH_PANELS:
        for key, name in series:
            rows += estimate_rows([(row["length"], row.get(key)) for row in result["lengths"]], panel, name)
    return pd.DataFrame(rows, columns=COLUMNS)


def lengths_chart(result: dict) -> alt.VConcatChart:
    frame = lengths_frame(result)
    lengths = [row["length"] for row in result["lengths"]]
    panels = [band_panel(frame, panel, _x(lengths, i == len(LENGTH_PANELS) - 1), log, LENGTH_COLORS, WIDTH, HEIGHT)
              for i, (panel, _, log) in enumerate(LENGTH_PANELS)]
    title = (f"Sinks against context length · {result.get('model', '')} · n = {result.get('n_windows')} windows · "
             "95% CI over windows")
    return alt.vconcat(*panels, spacing=8).resolve_scale(x="shared", color="independent").properties(title=title)


def bos_frame(result: dict) -> pd.DataFrame:
    """Panel "NLL" (one series per arm), "ΔNLL" (one per comparison) and "sink rate" (one per arm)."""
    rows = []
    arms = result.get("arms", [])
    for arm in arms:
        rows += estimate_rows([(r["length"], r["arms"][arm]["nll"]) for r in result["lengths"]], "NLL (nats/token)", arm)
        rows += estimate_rows([(r["length"], r["arms"][arm]["sink_rate"]) for r in result["lengths"]],
                              RATE, arm)
    names = list(result["lengths"][0]["comparisons"]) if result["lengths"] else []
    for name in names:
        for key, panel in (("delta_nll", DELTA), ("delta_nll_late", DELTA_LATE)):
            rows += estimate_rows([(r["length"], r["comparisons"][name].get(key)) for r in result["lengths"]], panel, name)
    return pd.DataFrame(rows, columns=COLUMNS)


def bos_chart(result: dict) -> alt.VConcatChart:
    frame = bos_frame(result)
    lengths = [row["length"] for row in result["lengths"]]
    nll = band_panel(frame, "NLL (nats/token)", _x(lengths, False), False, ARM_COLORS, WIDTH, HEIGHT)
    zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color="black", strokeDash=[4, 3]).encode(y="y:Q")
    deltas = [alt.layer(band_panel(frame, panel, _x(lengths, False), False, ARM_COLORS, WIDTH, HEIGHT), zero)
              for panel in (DELTA, DELTA_LATE) if (frame["panel"] == panel).any()]
    rate = band_panel(frame, RATE, _x(lengths), False, ARM_COLORS, WIDTH, HEIGHT)
    title = (f"BOS ablation · {result.get('model', '')} · n = {result.get('n_windows')} windows · "
             "95% CI over windows (masked arms: sink rate before the mask)")
    return alt.vconcat(nll, *deltas, rate, spacing=8).resolve_scale(x="shared", color="independent").properties(title=title)
