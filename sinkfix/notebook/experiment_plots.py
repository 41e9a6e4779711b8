"""``stored.plot`` for each kind of stored evaluation and experiment: the charts the dashboard's Evaluate
and Experiments pages draw, from the same builders with the same arguments (the stored JSON).

A chart a result cannot have (no sweep was run, no LM head, no intervention arm) is a SettingsError
that says why, never an empty chart.
"""
from __future__ import annotations

from sinkfix.errors import SettingsError
from sinkfix.notebook.plots import Chart, ChartSet  # imports first checks for the viz extra
from sinkfix.plots import evaluation_result, evict, lab, lengths, longcontext, mechanisms, profile, secondary


def _drawn(chart: Chart | None, why: str) -> Chart:
    if chart is None:
        raise SettingsError(why)
    return chart


class ResultPlots(ChartSet):
    """A stored row (``id``, ``kind``, ``model``, ``result``, ...) whose ``result`` the charts read."""

    def __init__(self, row: dict) -> None:
        self._row = row
        self._result = row["result"]


class EvaluationPlots(ResultPlots):
    """``sinkfix evaluate`` / the Evaluate page's results."""

    def forest(self) -> Chart:
        """ΔNLL with its 95% CI beside the random and token-0 controls on the same heads (Findings)."""
        return _drawn(evaluation_result.forest(self._row),
                      "no NLL to draw: this model has no LM head (see the cosine in the summary)")

    def sweep(self) -> Chart:
        """NLL and KL against β beside the controls (the cosine, without an LM head)."""
        return _drawn(evaluation_result.sweep(self._result), "this evaluation ran no β sweep")

    def kl(self, chunk: int = 0, position: int | None = None) -> Chart:
        """KL(p_orig ‖ p_mod) at each position of one chunk, redistributed tokens in red, ``position``
        outlined (default: the largest KL, as the page picks it)."""
        return _drawn(evaluation_result.stored_kl(self._result, int(chunk), position),
                      f"no per-position KL is stored for chunk {chunk} (the CLI keeps it only with --json; "
                      "the Evaluate page and to_json(detail=True) keep it)")

    def evidence(self) -> Chart:
        """Each candidate sink redistributed alone: its ΔNLL, coloured by the evidence-based label."""
        return _drawn(evaluation_result.evidence(self._result), "this evaluation measured no per-sink evidence")


class StsPlots(ResultPlots):
    """``sinkfix sts``: STS-B Spearman before and after."""

    def forest(self) -> Chart:
        """ΔSpearman with its 95% CI."""
        return _drawn(evaluation_result.forest(self._row), "this STS-B run has no intervened Spearman")


class LabPlots(ResultPlots):
    """A lab sweep: small decoders trained with swappable attention."""

    def curves(self, metric: str = "first_token_mass") -> Chart:
        """One line per variant during training (mean over seeds, band: lowest to highest seed)."""
        _check_metric(metric)
        return lab.training_curves(self._result, metric)

    def final(self, metric: str = "first_token_mass") -> Chart:
        """The final checkpoint's value per variant with its 95% CI over seeds."""
        _check_metric(metric)
        return lab.final_bars(self._result, metric)

    def sinks(self) -> Chart:
        """The learned sink's and the registers' mass beside the first token's."""
        return lab.sink_share_bars(self._result)


class StreamingPlots(ResultPlots):
    """Window attention with k sinks (StreamingLLM)."""

    def curves(self) -> Chart:
        """Per-position NLL of each setting along the text."""
        return longcontext.curve_chart(self._result)

    def sinks(self) -> Chart:
        """Perplexity against the number of sink tokens kept, with 95% CIs."""
        if not any(r.get("sinks") is not None for r in self._result["settings"]):
            raise SettingsError("this window experiment kept no sink tokens in any setting")
        return longcontext.sinks_chart(self._result)


class KvquantPlots(ResultPlots):
    """KV-cache quantisation with the sink tokens kept in full precision."""

    def deltas(self) -> Chart:
        """ΔNLL against the unquantised model per (bits, tokens kept), with paired-bootstrap 95% CIs."""
        return longcontext.quant_chart(self._result)


class SinkratePlots(ResultPlots):
    """Gu et al.'s sink-rate protocol on natural, random and repeated tokens."""

    def bars(self) -> Chart:
        """Sink₁ per kind of sequence with 95% CIs, beside the paper's bars."""
        return mechanisms.sinkrate_bars(self._result)

    def layers(self) -> Chart:
        """The first token's sink rate layer by layer."""
        return mechanisms.sinkrate_layers(self._result)


class MassivePlots(ResultPlots):
    """Sun et al.'s massive activations."""

    def peak(self) -> Chart:
        """The largest |h| per layer and token (log colour)."""
        return mechanisms.peak_heatmap(self._result["peak"], self._result["tokens"])

    def features(self) -> Chart:
        """The top (token, dim) entries at the layer where each peaks."""
        return mechanisms.top_features(self._result["top_features"])

    def intervention(self) -> Chart:
        """ΔNLL when the massive entries are set to zero (or their mean), with 95% CIs."""
        if not self._result.get("intervention"):
            raise SettingsError("this run did not intervene on the massive activations")
        return mechanisms.intervention_bars(self._result["intervention"])


class EvictPlots(ResultPlots):
    """A KV-cache eviction sweep (``sinkfix evict``, Experiments → Eviction)."""

    def accuracy(self) -> Chart:
        """Accuracy against the ratio per press, 95% Wilson bands, protection as the line style."""
        return evict.accuracy_chart(self._result)

    def paired(self) -> Chart:
        """The paired differences between protections, with paired-bootstrap 95% CIs."""
        return evict.paired_forest(self._result)

    def heatmap(self, press: str = evict.DENSE, ratio: str | None = None, protect: str = "none") -> Chart:
        """Right answers over seeds, needle depth × context length, for one press, ratio and protection."""
        ratio = ratio if ratio is not None else str(self._result["settings"]["ratios"][0])
        return evict.needle_heatmap(self._result, press, ratio, protect)

    def kept(self, ratio: str | None = None, protect: str = "none", head: int = 0) -> Chart:
        """For the sweep's example prompt: which keys each press kept, layer × position, sinks marked."""
        example = self._result.get("example")
        if not example:
            raise SettingsError("this sweep stored no example prompt")
        ratio = ratio if ratio is not None else str(self._result["settings"]["ratios"][0])
        presses = [p for p in self._result["results"] if p in example["kept"]]
        return evict.kept_strips(example, presses, ratio, protect, head)


class ProfilePlots(ResultPlots):
    """The layer profile (``sinkfix profile``): norms, sink rate, token 0's α and the representation entropy."""

    def profile(self) -> Chart:
        """The four panels on one layer axis, with CI bands and the layers where they change together."""
        return profile.profile_chart(self._result)


class LengthsPlots(ResultPlots):
    """The context-length sweep (``sinkfix lengths``)."""

    def lengths(self) -> Chart:
        """Sink rate, first-token mass and token 0's norm against T, with CIs."""
        return lengths.lengths_chart(self._result)


class BosPlots(ResultPlots):
    """The BOS ablation (``sinkfix bos``)."""

    def bos(self) -> Chart:
        """NLL and sink rate against T for each arm, with paired CIs."""
        return lengths.bos_chart(self._result)


class SecondaryPlots(ResultPlots):
    """Secondary sinks (``sinkfix secondary``) and KVSink's massive-activation predictor."""

    def layers(self) -> Chart:
        """Where the secondary sinks sit, layer by layer."""
        return secondary.layers_chart(self._result)

    def prediction(self) -> Chart:
        """Precision and recall of "a massive activation predicts a secondary sink", with CIs."""
        return secondary.prediction_chart(self._result)


def _check_metric(metric: str) -> None:
    if metric not in lab.METRICS:
        raise SettingsError(f"metric must be one of {', '.join(lab.METRICS)}, got {metric!r}")
