"""The layer profile (Queipo-de-Llano et al. 2025, "Mix-Compress-Refine", arXiv 2510.06477): per layer,
token 0's hidden-state norm beside the median token's, the sink rate, token 0's mean α, and the
representation entropy of the layer's output, with 95% CIs over texts.

The paper's claim: in the same layers the BOS token's norm spikes, the sink rate nears 1 and the
representation entropy drops. ``together`` reads the mean curves: a step into layer l is the change from
layer l − 1 (a rise of log(token-0 norm / median norm), a rise of the sink rate, a drop of the entropy);
each curve's large steps are those at least ``MARK_SHARE`` of its largest, and the three "change
together" where large steps of all three fall within ``TOGETHER_LAYERS`` layers. It says so in words,
or which two do, with each curve's largest step.

Per text and layer l (the output of decoder layer l): ``token0_norm`` = ‖h_l[0]‖; ``median_norm`` = the
median over tokens of ‖h_l[t]‖; ``sink_rate`` = the share of layer l's heads with α[l, h, 0] > ε (Gu's
Sink₁^ε within one layer); ``token0_alpha`` = α[l, h, 0] averaged over heads; ``repr_entropy`` = S(h_l)
(``sinkfix.analysis.representation``). A hybrid model's layers without attention get null attention figures.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sinkfix.progress import Step
from sinkfix.analysis.tokens import tokenize
from sinkfix.errors import InputError
from sinkfix.experiments import onepass
from sinkfix.experiments.windows import batch_size, batches, corpus_windows, estimate
from sinkfix.models import LoadedModel
from sinkfix.settings import DEFAULT_EPSILON

METRICS = ("token0_norm", "median_norm", "sink_rate", "token0_alpha", "repr_entropy")
DEFAULT_WINDOWS = 32
DEFAULT_LENGTH = 256
TOGETHER_LAYERS = 2  # onsets this close (in layers) count as "the same layers"


def per_text(loaded: LoadedModel, sequences: Sequence[Sequence[int]], epsilon: float) -> list[dict[str, list]]:
    """One forward per batch of equal-length sequences -> per sequence, each metric as a per-layer list."""
    result = onepass.run(loaded, sequences, entropy=True)
    attention = set(result.attention_layers)
    alpha = result.token0_alpha()  # [La, B, H]
    row = {layer: k for k, layer in enumerate(result.attention_layers)}
    out = []
    for b in range(len(sequences)):
        norms = result.norms[:, b].numpy()  # [L, T]
        values: dict[str, list] = {
            "token0_norm": norms[:, 0].tolist(),
            "median_norm": np.median(norms, axis=1).tolist(),
            "repr_entropy": result.entropy[:, b].tolist(),
            "sink_rate": [], "token0_alpha": [],
        }
        for layer in range(norms.shape[0]):
            heads = alpha[row[layer], b] if layer in attention else None
            values["sink_rate"].append(None if heads is None else float((heads > epsilon).float().mean()))
            values["token0_alpha"].append(None if heads is None else float(heads.mean()))
        out.append(values)
    return out


@dataclass(frozen=True)
class ProfileResult:
    model: str
    source: str  # "text" or the corpus file's name
    n_texts: int
    lengths: list[int]  # tokens per text
    bos: str
    epsilon: float
    layers: list[dict]  # {"layer", metric: {"mean", "ci95", "n"}, ...}
    together: dict
    notes: list[str] = field(default_factory=list)

    def headline(self) -> float | None:
        """The largest token-0 / median norm ratio over layers (what a list of experiments shows)."""
        ratios = [row["token0_norm"]["mean"] / row["median_norm"]["mean"] for row in self.layers
                  if row["median_norm"]["mean"]]
        return max(ratios) if ratios else None

    def to_json(self) -> dict:
        return {"kind": "profile", **self.__dict__}


def aggregate(texts: list[dict[str, list]], seed: int = 0) -> list[dict]:
    """Per layer, each metric's mean and bootstrap CI over texts."""
    n_layers = len(texts[0]["token0_norm"])
    layers = []
    for layer in range(n_layers):
        row: dict = {"layer": layer}
        for metric in METRICS:
            values = [t[metric][layer] for t in texts if t[metric][layer] is not None]
            row[metric] = estimate(values, seed) if values else None
        layers.append(row)
    return layers


def _mean(layers: list[dict], metric: str) -> np.ndarray:
    return np.array([np.nan if row[metric] is None or row[metric]["mean"] is None else row[metric]["mean"]
                     for row in layers], dtype=np.float64)


CURVES = {  # name in words, and the sign of the change that counts (+1: a rise, -1: a drop)
    "norm": ("token 0's norm relative to the median token", 1.0),
    "sink": ("the sink rate", 1.0),
    "entropy": ("the representation entropy", -1.0),
}
MARK_SHARE = 0.5  # a layer "changes" a curve when its step is at least this share of the curve's largest


def _curves(layers: list[dict]) -> dict[str, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = _mean(layers, "token0_norm") / _mean(layers, "median_norm")
    return {"norm": ratio, "sink": _mean(layers, "sink_rate"), "entropy": _mean(layers, "repr_entropy")}


def _marks(values: np.ndarray, sign: float, log: bool) -> tuple[int | None, list[int]]:
    """(the layer of the largest step, every layer whose step is >= MARK_SHARE of it); a step into layer l
    is the change from layer l - 1 to l (log scale for the norm ratio, which spans orders of magnitude)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        change = sign * np.diff(np.log(values) if log else values)
    change = np.where(np.isfinite(change), change, -np.inf)
    if len(change) == 0 or not np.isfinite(change).any() or change.max() <= 0:
        return None, []
    top = float(change.max())
    return int(change.argmax()) + 1, [int(i) + 1 for i in np.flatnonzero(change >= MARK_SHARE * top)]


def together(layers: list[dict], tolerance: int = TOGETHER_LAYERS) -> dict:
    """Where the norm spike, the sink-rate rise and the entropy drop happen (on the mean curves), and where
    they coincide: layers where all three (else two) make a large step within ``tolerance`` layers."""
    curves = _curves(layers)
    top, marks = {}, {}
    for name, (_, sign) in CURVES.items():
        top[name], marks[name] = _marks(curves[name], sign, log=name == "norm")

    def near(name: str, layer: int) -> bool:
        return any(abs(layer - other) <= tolerance for other in marks[name])

    triple = sorted({layer for layer in marks["norm"] if near("sink", layer) and near("entropy", layer)})
    found = set()
    for layer in triple:
        close = [m for name in CURVES for m in marks[name] if abs(m - layer) <= tolerance]
        found.add((min(close), max(close)))
    spans = [list(span) for span in sorted(found)]
    out = {f"{name}_layer": top[name] for name in CURVES}
    out.update({"marks": marks, "tolerance": tolerance, "together": bool(spans), "spans": spans,
                "sentence": _sentence(curves, top, marks, spans, tolerance)})
    return out


def _step(curves: dict[str, np.ndarray], name: str, layer: int) -> str:
    values = curves[name]
    if name == "norm":
        return f"{values[layer - 1]:.1f}× → {values[layer]:.1f}× at layer {layer}"
    unit = " nats" if name == "entropy" else ""
    return f"{values[layer - 1]:.2f} → {values[layer]:.2f}{unit} at layer {layer}"


def _sentence(curves: dict[str, np.ndarray], top: dict, marks: dict, spans: list, tolerance: int) -> str:
    if len(curves["norm"]) < 2:
        return "One layer: there is no change across layers to compare."
    if any(top[name] is None for name in CURVES):
        flat = [CURVES[name][0] for name in CURVES if top[name] is None]
        verb = "shows" if len(flat) == 1 else "show"
        return f"No comparison: {' and '.join(flat)} {verb} no change in that direction across layers (or no value)."
    largest = "; ".join(f"{CURVES[name][0]} {_step(curves, name, top[name])}" for name in CURVES)
    if spans:
        where = ", ".join(f"layer {a}" if a == b else f"layers {a}–{b}" for a, b in spans)
        return f"The three change together at {where}. Largest steps: {largest}."
    pairs = []
    for a, b in (("norm", "sink"), ("norm", "entropy"), ("sink", "entropy")):
        hits = sorted({(min(x, y), max(x, y)) for x in marks[a] for y in marks[b] if abs(x - y) <= tolerance})
        if hits:
            where = ", ".join(f"layer {x}" if x == y else f"layers {x}–{y}" for x, y in hits)
            pairs.append(f"{CURVES[a][0]} and {CURVES[b][0]} change together at {where}")
    head = ("; ".join(pairs) + ", but the three never do") if pairs else "The three never change in the same layers"
    return f"{head[0].upper()}{head[1:]} (within {tolerance} layers). Largest steps: {largest}."


def _finish(loaded: LoadedModel, source: str, texts: list[dict], lengths: list[int], bos: str, epsilon: float,
            seed: int, notes: list[str]) -> ProfileResult:
    layers = aggregate(texts, seed)
    if len(texts) == 1:
        notes.append("one text: every figure is that text's value, with no interval (give a corpus for CIs)")
    return ProfileResult(loaded.name, source, len(texts), lengths, bos, float(epsilon), layers, together(layers), notes)


def profile_texts(loaded: LoadedModel, texts: Sequence[str], max_tokens: int | None = None, bos: str = "auto",
                  epsilon: float = DEFAULT_EPSILON, seed: int = 0, progress: Step | None = None) -> ProfileResult:
    """The profile of each given text (one forward each, truncated to ``max_tokens``), CIs over texts."""
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise InputError("the text is empty: give at least one word")
    limit = min(max_tokens or loaded.max_tokens, loaded.max_tokens)
    rows, lengths, notes = [], [], []
    for index, text in enumerate(texts):
        encoded, total = tokenize(loaded, text, limit, bos)
        ids = encoded["input_ids"][0].tolist()
        if total > len(ids):
            notes.append(f"text {index + 1} was cut to its first {len(ids)} of {total} tokens")
        rows += per_text(loaded, [ids], epsilon)
        lengths.append(len(ids))
        if progress is not None:
            progress(index + 1, len(texts), "texts")
    return _finish(loaded, "text", rows, lengths, bos, epsilon, seed, notes)


def profile_corpus(loaded: LoadedModel, text: str, name: str, n_windows: int = DEFAULT_WINDOWS,
                   length: int = DEFAULT_LENGTH, bos: str = "auto", epsilon: float = DEFAULT_EPSILON, seed: int = 0,
                   progress: Step | None = None) -> ProfileResult:
    """The profile over ``n_windows`` consecutive windows of ``length`` tokens of a corpus, CIs over windows."""
    sequences = corpus_windows(loaded, text, n_windows, length, bos).at(length)
    groups = batches(sequences, batch_size(length))
    rows: list[dict] = []
    for done, group in enumerate(groups, start=1):
        rows += per_text(loaded, group, epsilon)
        if progress is not None:
            progress(done, len(groups), "windows")
    return _finish(loaded, name, rows, [length] * len(rows), bos, epsilon, seed, [])
