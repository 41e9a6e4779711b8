"""The ``Analysis``: everything one analysis found, as a frozen dataclass of numpy arrays."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from sinkfix import layers
from sinkfix.version import __version__
from sinkfix.analysis import classify
from sinkfix.settings import AnalysisSettings

if TYPE_CHECKING:  # the notebook layer is imported on first use only (Analysis.plot, .frame, the reprs)
    import pandas

    from sinkfix.notebook.plots import AnalysisPlots


@dataclass(frozen=True)
class Analysis:
    """Everything one analysis found. Arrays are numpy float32; L layers, H heads, T tokens.

    ``maps`` (and the corrected and mean maps) are kept only when T <= settings.map_token_limit.
    For a hybrid model (attention in some layers only), every per-layer array has one row per
    attention layer (L = len(attention_layers)), ``attention_layers`` gives the model's layer number
    of each row, and ``n_layers`` stays the model's depth; ``layer_numbers`` is right for both kinds.
    """

    text: str
    tokens: list[str]
    token_ids: list[int]
    model_name: str
    model_id: str
    model_type: str
    fingerprint: str
    is_causal: bool
    n_layers: int
    n_heads: int
    n_kv_heads: int
    settings: AnalysisSettings
    att_received: np.ndarray  # [T]
    att_received_layer: np.ndarray  # [L, T]
    att_received_head: np.ndarray  # [L, H, T]
    alpha: np.ndarray  # [L, H, T] visible-query mean
    sink_rate: np.ndarray  # [T] at settings.epsilon
    entropy: np.ndarray  # [L, H] mean row entropy, nats
    value_norm: np.ndarray  # [T] at settings.layer, divided by its max
    value_norm_layer: np.ndarray  # [L, T] raw norm of the full value vector
    value_norm_head: np.ndarray  # [L, H_kv, T] raw per-head norms
    contribution: np.ndarray | None  # [L, H, T] norm-based (Kobayashi), mean over queries
    labels: list[str]
    rule: str
    sink_indices: list[int]  # the set the correction redistributes away from
    maps: np.ndarray | None  # [L, H, T, T]
    corrected_maps: np.ndarray | None  # [L, H, T, T]
    version: str = __version__
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    truncated: bool = False
    created_at: str = ""
    run_id: int | None = None
    # Learned sinks (gpt-oss's per-head sink logits): the attention mass each (layer, head) gives to
    # the virtual sink column, mean over queries [L, H]. None for models without learned sinks.
    learned_sink_mass: np.ndarray | None = None
    device: str = "cpu"
    dtype: str = "float32"
    parent_run_id: int | None = None
    offsets: list[tuple[int, int]] | None = None  # each token's (start, end) characters in text; (0, 0) for specials  # the run this one re-ran with changed settings
    # True when corrected_maps is exactly ACT of maps over sink_indices (what analyze() makes), so
    # the store can recompute it from the maps instead of storing it.
    corrected_from_rule: bool = False
    # A hybrid model's attention layers: the model layer number of each per-layer row. None means
    # every layer attends (row l is layer l). The other layers are listed by ``non_attention_layers``.
    attention_layers: list[int] | None = None
    # Attention output gates (Qwen3-Next): each head's mean sigmoid gate over the real tokens [L, H].
    # None for models without a gate.
    attention_gate: np.ndarray | None = None
    # Which attention computation produced the statistics: "triton" (the fused kernels of
    # sinkfix.capture.kernels) or "blocked" (query blocks); the reason when triton was wanted and
    # the run fell back to blocked. Runs stored before the kernels existed read as "blocked".
    kernel: str = "blocked"
    kernel_reason: str | None = None

    @property
    def layer_numbers(self) -> list[int]:
        """The model layer number of each per-layer row."""
        return layers.layer_numbers(self.n_layers, self.attention_layers)

    @property
    def non_attention_layers(self) -> list[int]:
        """Layers that mix tokens without softmax attention (linear attention, state space, convolution)."""
        return layers.non_attention_layers(self.n_layers, self.attention_layers)

    def row_of(self, layer: int) -> int:
        """The per-layer row of model layer ``layer`` (a SettingsError when it does not attend)."""
        return layers.row_of(layer, self.n_layers, self.attention_layers)

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    @property
    def mean_learned_sink_mass(self) -> float | None:
        return None if self.learned_sink_mass is None else float(self.learned_sink_mass.mean())

    @property
    def mean_map(self) -> np.ndarray | None:
        """A-bar: attention averaged over layers and heads [T, T]."""
        return None if self.maps is None else self.maps.mean(axis=(0, 1))

    @property
    def corrected_mean_map(self) -> np.ndarray | None:
        return None if self.corrected_maps is None else self.corrected_maps.mean(axis=(0, 1))

    @property
    def plot(self) -> AnalysisPlots:
        """The dashboard's charts of this analysis, as Altair charts: ``analysis.plot.received()``,
        ``.value_norms()``, ``.plane()``, ``.heads()``, ``.map(layer, head)``, ``.gates()``, ... (needs
        ``pip install "sinkfix[viz]"``; see ``sinkfix.notebook.plots.AnalysisPlots``)."""
        from sinkfix.notebook.plots import AnalysisPlots

        return AnalysisPlots(self)

    def frame(self, name: str = "tokens") -> pandas.DataFrame:
        """A pandas DataFrame: ``"tokens"`` (one row per token) or ``"heads"`` (one row per layer and
        head); the columns and their units are listed in ``sinkfix.notebook.frames``."""
        from sinkfix.notebook.frames import analysis_frame

        return analysis_frame(self, name)

    def _repr_html_(self) -> str:
        from sinkfix.notebook.render import summary_html

        return summary_html(self)

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> dict[str, str]:
        # Both forms at once: a notebook shows the HTML, a terminal (IPython) the short text rather than
        # the dataclass repr with every array in it.
        from sinkfix.notebook.render import summary_html, summary_text

        return {"text/plain": summary_text(self), "text/html": summary_html(self)}

    def label_counts(self) -> dict[str, int]:
        """How many tokens carry each label (every label present, zero included)."""
        return {label: self.labels.count(label) for label in classify.LABELS}

    def head_table(self) -> list[dict]:
        """One row per (layer, head): the top sink (by alpha), its alpha, entropy and token-0 share."""
        # Whole arrays at once: a corpus run writes L x H rows per text, and a loop per head cost
        # more than the forward pass of a short text (SmolLM2: 270 rows).
        top = self.alpha.argmax(axis=-1)  # [L, H]
        top_alpha = np.take_along_axis(self.alpha, top[..., None], axis=-1)[..., 0]
        shares = _top_shares(self.contribution, top)
        top_ids, alphas, entropies = top.tolist(), top_alpha.tolist(), self.entropy.tolist()
        token0 = self.att_received_head[..., 0].tolist()
        gate = None if self.attention_gate is None else self.attention_gate.tolist()
        return [
            {
                "layer": number,  # the model's layer number; row is the array index
                "head": head,
                "top_token": top_ids[row][head],
                "top_token_text": self.tokens[top_ids[row][head]],
                "top_alpha": alphas[row][head],
                "entropy": entropies[row][head],
                "token0_share": token0[row][head],
                "top_contribution_share": None if shares is None else shares[row][head],
                "gate": None if gate is None else gate[row][head],
            }
            for row, number in enumerate(self.layer_numbers)
            for head in range(self.n_heads)
        ]

    def token_table(self) -> list[dict]:
        """One row per token: the per-token CSV."""
        att, norm, rate = self.att_received.tolist(), self.value_norm.tolist(), self.sink_rate.tolist()
        return [
            {"index": i, "token": token, "att_received": att[i], "value_norm": norm[i], "sink_rate": rate[i],
             "label": self.labels[i]}
            for i, token in enumerate(self.tokens)
        ]

    def to_seed_json(self) -> dict:
        """The seed prototype's five fields (plus ``run_id`` once stored)."""
        out: dict = {
            "token_list": list(self.tokens),
            "classifications": list(self.labels),
            "att_received_scores": self.att_received.tolist(),
            "value_norms": self.value_norm.tolist(),
            "corrected_att_scores": None if self.corrected_maps is None else self.corrected_maps.tolist(),
        }
        if self.corrected_maps is None:
            out["note"] = (
                f"corrected_att_scores is null: the input has {self.n_tokens} tokens, above the map limit of "
                f"{self.settings.map_token_limit}; raise map_token_limit to keep the full L x H x T x T maps"
            )
        if self.run_id is not None:
            out["run_id"] = self.run_id
        if self.attention_layers is not None:  # a hybrid: which layers the per-layer maps are
            out["attention_layers"] = list(self.attention_layers)
            out["non_attention_layers"] = self.non_attention_layers
        if self.attention_gate is not None:
            out["attention_gates"] = self.gate_table()
        out["kernel"] = self.kernel  # which attention computation ran (triton or blocked)
        if self.kernel_reason is not None:
            out["kernel_reason"] = self.kernel_reason  # why a wanted triton run fell back
        return out

    def gate_table(self) -> list[dict] | None:
        """Gated attention (Qwen3-Next): per (layer, head) the mean output gate beside the head's
        first-token mass, so "the gate does the sink's job" can be checked head by head."""
        if self.attention_gate is None:
            return None
        gate, first = self.attention_gate.tolist(), self.att_received_head[..., 0].tolist()
        return [{"layer": number, "head": head, "gate": gate[row][head], "first_token_mass": first[row][head]}
                for row, number in enumerate(self.layer_numbers) for head in range(self.n_heads)]


def _top_shares(contribution: np.ndarray | None, top: np.ndarray) -> list[list[float]] | None:
    """Each head's top token's share of that head's contribution row (0 where the row sums to 0)."""
    if contribution is None:
        return None
    totals = contribution.sum(axis=-1).astype(np.float64)
    picked = np.take_along_axis(contribution, top[..., None], axis=-1)[..., 0].astype(np.float64)
    return np.where(totals > 0, picked / np.where(totals > 0, totals, 1.0), 0.0).tolist()
