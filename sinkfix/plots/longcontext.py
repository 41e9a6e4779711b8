"""Charts of the long-context experiments: pure functions from a stored result (its JSON) to altair."""
from __future__ import annotations

import math

import altair as alt
import numpy as np
import pandas as pd


ROUGH_UNITS = 10  # fewer resampled units than this and a bootstrap CI is flagged as rough


def ci_units(result: dict) -> int:
    """How many units the bootstrap resampled: blocks of positions, chunks, or single positions."""
    unit = str(result.get("ci_unit") or "")
    n = int(result.get("n_positions") or 0)
    if unit.startswith("block of "):
        size = int(unit.split()[2])
        return max(1, math.ceil(n / size))
    if unit == "chunk":
        return int(result.get("n_chunks") or 0)
    return n


def rough_ci_note(result: dict) -> str | None:
    """A warning sentence when the CIs rest on fewer than ``ROUGH_UNITS`` resampled units."""
    units = ci_units(result)
    if units >= ROUGH_UNITS:
        return None
    return (f"The 95% CIs rest on only {units} bootstrap unit{'s' if units != 1 else ''} "
            f"({result.get('ci_unit')}s): read them as rough. More tokens (or chunks) give more units.")


def sinks_frame(result: dict) -> pd.DataFrame:
    """One row per window setting with a sink count: perplexity and its CI."""
    rows = [{"sinks": r["sinks"], "setting": r["name"], "ppl": r["ppl"], "low": r["ppl_ci95"][0], "high": r["ppl_ci95"][1],
             "pos_shift": "on" if r.get("pos_shift") else "off" if r.get("pos_shift") is False else "–"}
            for r in result["settings"] if r.get("sinks") is not None]
    return pd.DataFrame(rows, columns=["sinks", "setting", "ppl", "low", "high", "pos_shift"])


def sinks_chart(result: dict) -> alt.LayerChart:
    """Perplexity against the number of sinks (log scale), with 95% CIs and dense as a dashed rule.
    A pos_shift legend only when the runs differ in it (stream mode); one y title for every layer."""
    frame = sinks_frame(result)
    title = "perplexity (log scale)"
    scale = alt.Scale(type="log")
    x = alt.X("sinks:O", title="sink tokens kept (first k)", axis=alt.Axis(labelAngle=0))
    shifts = set(frame["pos_shift"]) - {"–"}
    colour = {"color": alt.Color("pos_shift:N", title="pos_shift")} if shifts else {}
    base = alt.Chart(frame)
    tooltip = ["setting", alt.Tooltip("ppl:Q", format=",.2f"), alt.Tooltip("low:Q", format=",.2f"),
               alt.Tooltip("high:Q", format=",.2f")]
    layers = [base.mark_line(point=True).encode(x=x, y=alt.Y("ppl:Q", title=title, scale=scale), tooltip=tooltip,
                                                **colour),
              base.mark_rule().encode(x=x, y=alt.Y("low:Q", title=title, scale=scale), y2="high:Q", **colour)]
    if result.get("dense_ppl") is not None:
        dense = pd.DataFrame({"ppl": [result["dense_ppl"]], "label": ["dense attention"]})
        layers.append(alt.Chart(dense).mark_rule(strokeDash=[4, 4], color="gray").encode(
            y=alt.Y("ppl:Q", title=title, scale=scale), tooltip=["label", alt.Tooltip("ppl:Q", format=",.2f")]))
    return alt.layer(*layers).properties(width=420, height=280,
                                         title=f"Window {result['window']} with k sinks · {result['model']}")


def sinks_caption(result: dict) -> str:
    """What the sinks chart draws, naming only what is drawn."""
    parts = ["Perplexity over query positions ≥ W; whiskers: 95% bootstrap CI over "
             f"{ci_units(result)} {result.get('ci_unit')}s."]
    if result.get("dense_ppl") is not None:
        parts.append("Dashed line: dense attention on the same tokens.")
    return " ".join(parts)


def curve_caption(result: dict) -> str:
    trained = result.get("trained_positions")
    caption = "Next-token NLL along the text, in nats, averaged over bins of 64 positions."
    if trained and result["n_tokens"] > trained:
        caption += f" Dashed line: the end of the model's trained positions ({trained})."
    return caption


def curve_frame(result: dict, bin_size: int = 64) -> pd.DataFrame:
    """Per-position NLL averaged over bins of ``bin_size`` positions, one series per setting."""
    series = []
    if result.get("dense_curve"):
        series.append(("dense", result["dense_curve"]))
    series += [(r["name"], r["curve"]) for r in result["settings"] if r.get("curve")]
    rows = []
    for name, curve in series:
        values = np.asarray(curve, dtype=float)
        for start in range(0, len(values), bin_size):
            rows.append({"setting": name, "position": result["scored_from"] + start,
                         "nll": float(np.mean(values[start : start + bin_size]))})
    return pd.DataFrame(rows, columns=["setting", "position", "nll"])


def curve_chart(result: dict, bin_size: int = 64) -> alt.Chart:
    """Per-position NLL (dense vs window vs window+sinks vs recompute); a rule marks the trained context."""
    frame = curve_frame(result, bin_size)
    lines = alt.Chart(frame).mark_line().encode(
        x=alt.X("position:Q", title="token position"),
        y=alt.Y("nll:Q", title=f"NLL (nats, mean over {bin_size} positions)"),
        color=alt.Color("setting:N", legend=alt.Legend(orient="bottom", columns=2, labelLimit=320)),
        tooltip=["setting", "position", "nll"],
    )
    chart = lines
    trained = result.get("trained_positions")
    if trained and result["n_tokens"] > trained:
        rule = pd.DataFrame({"position": [trained], "label": ["trained context ends"]})
        chart = alt.layer(lines, alt.Chart(rule).mark_rule(strokeDash=[4, 4], color="gray").encode(
            x="position:Q", tooltip=["label", "position"]))
    return chart.properties(width=620, height=300, title=f"Per-position NLL · {result['mode']} · {result['model']}")


def stream_frame(result: dict) -> pd.DataFrame:
    """One row per setting, dense first: perplexity, its CI, ΔNLL against dense, and past the trained length."""
    rows = []
    if result.get("dense_ppl"):
        low, high = result.get("dense_ppl_ci95") or (None, None)
        rows.append({"setting": "dense", "ppl": result["dense_ppl"], "CI low": low, "CI high": high,
                     "ΔNLL vs dense (nats)": 0.0, "ppl past trained": result.get("dense_ppl_past_trained")})
    rows += [{"setting": r["name"], "ppl": r["ppl"], "CI low": r["ppl_ci95"][0], "CI high": r["ppl_ci95"][1],
              "ΔNLL vs dense (nats)": r["delta_nll"], "ppl past trained": r.get("ppl_past_trained")} for r in result["settings"]]
    return pd.DataFrame(rows, columns=["setting", "ppl", "CI low", "CI high", "ΔNLL vs dense (nats)", "ppl past trained"])


def quant_frame(result: dict) -> pd.DataFrame:
    rows = [{"setting": r["name"], "bits": f"int{r['bits']}", "keep": str(r["keep"]), "delta_nll": r["delta_nll"],
             "low": r["delta_nll_ci95"][0], "high": r["delta_nll_ci95"][1], "ppl": r["ppl"]} for r in result["settings"]]
    return pd.DataFrame(rows, columns=["setting", "bits", "keep", "delta_nll", "low", "high", "ppl"])


def quant_chart(result: dict) -> alt.Chart:
    """ΔNLL against the unquantised model per (bits, kept tokens), with paired-bootstrap 95% CIs."""
    frame = quant_frame(result)
    # One axis title per facet would overlap its neighbours: the column header says what x is.
    x = alt.X("keep:N", title=None, axis=alt.Axis(labelAngle=0))
    base = alt.Chart(frame)
    bars = base.mark_bar().encode(x=x, y=alt.Y("delta_nll:Q", title="ΔNLL vs unquantised (nats)"),
                                  color=alt.Color("keep:N", legend=None), tooltip=["setting", "delta_nll", "low", "high", "ppl"])
    whiskers = base.mark_errorbar(color="black").encode(x=x, y="low:Q", y2="high:Q")
    return alt.layer(bars, whiskers, data=frame).properties(width=140, height=240).facet(
        column=alt.Column("bits:N", title="bits · tokens kept in full precision (first N, or sinks)",
                          sort=["int8", "int4", "int2"])).properties(
        title=f"KV quantisation · {result['model']} · unquantised ppl {result['dense_ppl']:.2f}")
