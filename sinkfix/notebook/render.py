"""How an ``Analysis`` shows itself in a notebook: a compact HTML summary and a plain-text one.

The HTML is self-contained: inline styles, no script, and the received-attention bars as static SVG
(``svg.bar_chart``), so it renders the same in Jupyter, JupyterLab, VS Code, and in GitHub or nbviewer
previews where no JavaScript runs. Every string that comes from the text, the tokenizer or the model
(tokens, model names, warnings) is escaped with ``html.escape``; numbers are formatted here.
"""
from __future__ import annotations

from html import escape
from typing import Any

import numpy as np

from sinkfix.analysis.display import LABEL_COLOR, show_token
from sinkfix.notebook.svg import bar_chart

TOP_SINKS = 5  # rows of the top-sinks table
TOKENS_SHOWN = 256  # coloured tokens before "… N more"
TOKEN_CHARS = 32  # a longer token is cut with … (its tooltip has it whole)
BARS_SHOWN = 512  # received-attention bars before the chart says it shows the first ones only
BOX = "font-family: system-ui, -apple-system, sans-serif; font-size: 13px; line-height: 1.45; max-width: 780px"
CELL = "padding: 1px 8px; text-align: left"


def title_line(analysis: Any) -> str:
    """"Run 3 · minilm · 14 tokens" (plain text; callers escape it for HTML)."""
    run = "Analysis" if analysis.run_id is None else f"Run {analysis.run_id}"
    return f"{run} · {analysis.model_name} · {analysis.n_tokens} tokens"


def settings_line(analysis: Any) -> str:
    """The model's shape and every setting the labels depend on, as the dashboard's run summary writes them."""
    s = analysis.settings
    hybrid = "" if analysis.attention_layers is None else \
        f"attention in layers {', '.join(map(str, analysis.attention_layers))} · "
    return (f"{analysis.n_layers} layers × {analysis.n_heads} heads ({analysis.n_kv_heads} KV heads) · {hybrid}"
            f"value-norm layer {s.layer} · τ_att {s.tau_att:g} · τ_norm {s.tau_norm:g} · β {s.beta:g} · "
            f"ε {s.epsilon:g} · rule {analysis.rule}")


def label_line(analysis: Any) -> str:
    return " · ".join(f"{count} {label}" for label, count in analysis.label_counts().items())


def top_sinks(analysis: Any, limit: int = TOP_SINKS) -> list[int]:
    """Positions of the tokens receiving the most attention, most first."""
    return [int(i) for i in np.argsort(-np.asarray(analysis.att_received), kind="stable")[:limit]]


def summary_text(analysis: Any) -> str:
    """A few lines for a terminal (IPython's text/plain), instead of the dataclass's arrays."""
    sinks = ", ".join(f"{i} {show_token(analysis.tokens[i], 16)} {float(analysis.att_received[i]):.3f} "
                      f"({analysis.labels[i]})" for i in top_sinks(analysis))
    return (f"{title_line(analysis)}: {label_line(analysis)}\n{settings_line(analysis)}\n"
            f"top sinks (attention received): {sinks}")


def _token_spans(analysis: Any) -> str:
    spans = []
    for i, (token, label) in enumerate(zip(analysis.tokens[:TOKENS_SHOWN], analysis.labels)):
        hint = f"{i} {show_token(token)} · {label} · attention received {float(analysis.att_received[i]):.4f}"
        spans.append(f'<span title="{escape(hint)}" style="background: {LABEL_COLOR.get(label, "#777")}; '
                     'color: white; border-radius: 3px; padding: 0 3px; margin: 1px; display: inline-block">'
                     f"{escape(show_token(token, TOKEN_CHARS))}</span>")
    if analysis.n_tokens > TOKENS_SHOWN:
        spans.append(f" … {analysis.n_tokens - TOKENS_SHOWN} more tokens")
    return "".join(spans)


def _sink_table(analysis: Any) -> str:
    head = "".join(f'<th style="{CELL}">{name}</th>' for name in
                   ("#", "token", "label", "attention received", "value norm", "sink rate"))
    rows = []
    for i in top_sinks(analysis):
        cells = (str(i), escape(show_token(analysis.tokens[i], TOKEN_CHARS)), escape(analysis.labels[i]),
                 f"{float(analysis.att_received[i]):.4f}", f"{float(analysis.value_norm[i]):.3f}",
                 f"{float(analysis.sink_rate[i]):.2f}")
        rows.append("<tr>" + "".join(f'<td style="{CELL}">{cell}</td>' for cell in cells) + "</tr>")
    return f'<table style="border-collapse: collapse; margin: 6px 0"><tr>{head}</tr>{"".join(rows)}</table>'


def _received_svg(analysis: Any) -> str:
    shown = min(analysis.n_tokens, BARS_SHOWN)
    title = "Attention received per token" + (f" (the first {shown} of {analysis.n_tokens})"
                                              if shown < analysis.n_tokens else "")
    return bar_chart([float(v) for v in analysis.att_received[:shown]],
                     [LABEL_COLOR.get(label, "#777") for label in analysis.labels[:shown]],
                     [f"{i} {show_token(t, 12)}" for i, t in enumerate(analysis.tokens[:shown])],
                     title, analysis.settings.tau_att, "τ_att",
                     [f"{i} {show_token(t)}" for i, t in enumerate(analysis.tokens[:shown])])


def summary_html(analysis: Any) -> str:
    """The HTML summary: title and settings, tokens coloured by label, the top sinks, the bars."""
    return (f'<div class="sinkfix-analysis" style="{BOX}">'
            f"<div><b>{escape(title_line(analysis))}</b></div>"
            f'<div style="color: #555">{escape(settings_line(analysis))}</div>'
            f"<div>Labels: {escape(label_line(analysis))}</div>"
            f'<div style="margin: 6px 0">{_token_spans(analysis)}</div>'
            f"{_sink_table(analysis)}{_received_svg(analysis)}"
            + "".join(f'<div style="color: #8a5a00">{escape(note)}</div>' for note in analysis.warnings)
            + '<div style="color: #777; font-size: 11px">Charts: <code>.plot.received()</code>, '
            "<code>.plot.heads()</code>, <code>.plot.map(layer, head)</code>, …; tables: "
            "<code>.frame(\"tokens\")</code>, <code>.frame(\"heads\")</code>.</div></div>")
