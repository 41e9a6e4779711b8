"""A small bar chart as static SVG text, built without JavaScript or any plotting package.

The HTML summary of an analysis draws its received-attention bars with it, so the chart shows where
Vega cannot load: GitHub and nbviewer previews, untrusted notebooks, a machine without the viz extra.
Every label is escaped; values only set coordinates.
"""
from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT = 640, 150
LEFT, TOP, BOTTOM = 44, 20, 44  # room for the value axis, the title and rotated token labels
LABELLED_UP_TO = 40  # above this many bars, token labels would overlap: the axis shows positions only


def bar_chart(values: Sequence[float], colors: Sequence[str], names: Sequence[str], title: str,
              threshold: float | None = None, threshold_name: str = "", hints: Sequence[str] | None = None) -> str:
    """One bar per value; ``names`` label the bars, ``hints`` (default: the names) are their tooltips,
    ``threshold`` is a dashed line."""
    n = len(values)
    hints = names if hints is None else hints
    top = max([*values, threshold or 0.0, 1e-12])
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - TOP - BOTTOM
    step = plot_w / max(n, 1)

    def y(value: float) -> float:
        return TOP + plot_h * (1 - value / top)

    parts = [f'<text x="{LEFT}" y="13" font-size="12" font-weight="600">{escape(title)}</text>',
             f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" stroke="#999"/>',
             f'<text x="{LEFT - 4}" y="{TOP + 4}" font-size="10" text-anchor="end">{top:.3g}</text>',
             f'<text x="{LEFT - 4}" y="{TOP + plot_h}" font-size="10" text-anchor="end">0</text>']
    for i, (value, color, name, hint) in enumerate(zip(values, colors, names, hints)):
        x, height = LEFT + i * step, plot_h * max(value, 0.0) / top
        parts.append(f'<rect x="{x + step * 0.1:.1f}" y="{TOP + plot_h - height:.1f}" width="{max(step * 0.8, 0.5):.1f}" '
                     f'height="{height:.1f}" fill="{escape(color)}"><title>{escape(hint)}: {value:.4f}</title></rect>')
        if n <= LABELLED_UP_TO:
            cx, cy = x + step / 2, TOP + plot_h + 6
            parts.append(f'<text x="{cx:.1f}" y="{cy:.1f}" font-size="9" text-anchor="end" '
                         f'transform="rotate(-50 {cx:.1f} {cy:.1f})">{escape(name)}</text>')
    if n > LABELLED_UP_TO:
        parts.append(f'<text x="{LEFT + plot_w / 2:.0f}" y="{TOP + plot_h + 14}" font-size="10" '
                     f'text-anchor="middle">token position 0 … {n - 1}</text>')
    if threshold is not None:
        parts.append(f'<line x1="{LEFT}" y1="{y(threshold):.1f}" x2="{LEFT + plot_w}" y2="{y(threshold):.1f}" '
                     f'stroke="#333" stroke-dasharray="5 4"><title>{escape(threshold_name)} = {threshold:g}</title></line>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" role="img" aria-label="{escape(title)}">'
            + "".join(parts) + "</svg>")
