"""``analysis.plot``: the dashboard's charts of one analysis, each an Altair chart a notebook displays.

Every method calls ``sinkfix.plots.run``, the functions the Analyze and Drill-down pages call, with the
same arguments, so a chart here is the chart the dashboard draws. Importing this module checks for the
viz extra first: without altair or pandas, ``analysis.plot`` raises a MissingExtraError that says
``pip install "sinkfix[viz]"``.
"""
from __future__ import annotations

import numbers
from typing import Any

from sinkfix.errors import SettingsError
from sinkfix.notebook.extras import require

require("altair", "pandas")  # before the builders import them: a clear error, not a bare ImportError

import altair as alt  # noqa: E402
import pandas as pd  # noqa: E402

from sinkfix.plots import run as charts  # noqa: E402

Chart = alt.TopLevelMixin


class ChartSet:
    """What every ``.plot`` accessor shares: its repr lists the charts it can draw."""

    def __repr__(self) -> str:
        names = [n for n in dir(type(self)) if not n.startswith("_") and callable(getattr(type(self), n))]
        return f"<{type(self).__name__}: {', '.join(f'.{n}()' for n in names)}>"


class AnalysisPlots(ChartSet):
    """The charts of one ``Analysis``: ``analysis.plot.received()``, ``.map(3, 5)``, ..."""

    def __init__(self, analysis: Any) -> None:
        self._analysis = analysis

    def tokens(self) -> Chart:
        """The input as tiles coloured by label (Analyze, Drill-down)."""
        return charts.tokens(self._analysis)

    def received(self) -> Chart:
        """Attention received per token, with the τ_att line (Analyze)."""
        return charts.received(self._analysis)

    def value_norms(self) -> Chart:
        """Value norm per token at the settings' layer, with the τ_norm line (Analyze)."""
        return charts.value_norms(self._analysis)

    def plane(self) -> Chart:
        """Every token on the attention-received / value-norm plane, the detrimental corner shaded (Analyze)."""
        return charts.plane(self._analysis)

    def heads(self, token: int | None = None) -> Chart:
        """α per (layer, head) (Analyze, "Which heads sink where"): each head's strongest sink, or the
        α of one ``token`` (its position) in every head."""
        if token is None:
            return charts.top_sink_grid(self._analysis)
        _check_index(token, self._analysis.n_tokens, "token")
        return charts.token_alpha_grid(self._analysis, int(token))

    def learned_sink(self) -> Chart:
        """The mass each head gives to its learned sink logit (models with learned sinks, e.g. gpt-oss)."""
        if self._analysis.learned_sink_mass is None:
            raise SettingsError(f"{self._analysis.model_name} has no learned sink logits, so there is no "
                                "learned-sink mass to draw (models such as gpt-oss have them)")
        return charts.learned_sink_grid(self._analysis)

    def grid(self, metric: str = "top_alpha", layer: int | None = None, head: int | None = None) -> Chart:
        """The Drill-down grid of one head metric (``top_alpha``, ``entropy``, ``token0_share``,
        ``top_contribution_share``, ``gate``), with a ring around (``layer``, ``head``) when given. As on the
        page, a click selects a cell (the selection parameter ``cell``)."""
        if metric not in charts.HEAD_METRICS:
            raise SettingsError(f"metric must be one of {', '.join(charts.HEAD_METRICS)}, got {metric!r}")
        rows = pd.DataFrame(self._analysis.head_table())
        if rows[metric].isna().all():
            raise SettingsError(f"{charts.HEAD_METRICS[metric][0]} is not available for this run's model "
                                f"({self._analysis.model_type})")
        selected = None if layer is None or head is None else self._head(layer, head)
        return charts.metric_grid(rows, metric, selected=selected, selectable=True)

    def gates(self) -> Chart:
        """Each head's mean attention output gate (gated-attention hybrids such as Qwen3-Next)."""
        if self._analysis.attention_gate is None:
            raise SettingsError(f"{self._analysis.model_name} has no attention output gates: gates() draws "
                                "gated-attention models (Qwen3-Next) only")
        return self.grid("gate")

    def map(self, layer: int, head: int) -> Chart:
        """One head's attention map before and after the correction (Drill-down)."""
        layer, head = self._head(layer, head)
        original, corrected = self._maps()
        row = self._analysis.row_of(layer)
        return charts.head_maps(self._analysis, layer, head, original[row, head], corrected[row, head])

    def change(self, layer: int | None = None, head: int | None = None) -> Chart:
        """Corrected − original: the mean map's (Analyze), or one head's (Drill-down)."""
        original, corrected = self._maps()
        if layer is None and head is None:
            return charts.mean_change(self._analysis)
        if layer is None or head is None:
            raise SettingsError("give both layer and head for one head's change, or neither for the mean map's")
        layer, head = self._head(layer, head)
        row = self._analysis.row_of(layer)
        return charts.head_change(self._analysis, layer, head, original[row, head], corrected[row, head])

    def mean_map(self) -> Chart:
        """Attention averaged over layers and heads, before and after the correction (Analyze)."""
        self._maps()
        return charts.mean_maps(self._analysis)

    def layers(self) -> Chart:
        """Attention each token receives in each layer (Drill-down, "Layer by layer")."""
        return charts.layer_curves(self._analysis)

    def value_norm_layers(self) -> Chart:
        """Each token's value-vector norm per layer (Drill-down)."""
        return charts.value_norm_layers(self._analysis)

    def value_norm_heads(self, layer: int) -> Chart:
        """Each token's value norm per KV head at ``layer`` (Drill-down)."""
        return charts.value_norm_heads(self._analysis, int(layer))

    def _head(self, layer: int, head: int) -> tuple[int, int]:
        _check_index(layer, self._analysis.n_layers, "layer")
        self._analysis.row_of(int(layer))  # a hybrid's layer without attention: a SettingsError naming those with
        _check_index(head, self._analysis.n_heads, "head")
        return int(layer), int(head)

    def _maps(self) -> tuple[Any, Any]:
        a = self._analysis
        if a.maps is None or a.corrected_maps is None:
            raise SettingsError(f"this analysis kept no attention maps: its {a.n_tokens} tokens are above the map "
                                f"limit ({a.settings.map_token_limit}); analyse again with a larger "
                                "AnalysisSettings(map_token_limit=...)")
        return a.maps, a.corrected_maps


def _check_index(value: int, size: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value < size:
        raise SettingsError(f"{what} must be a whole number from 0 to {size - 1}, got {value!r}")
