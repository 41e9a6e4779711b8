"""Secondary sinks: positions other than 0 that act as sinks (KVSink, arXiv 2508.04257: token 14 in
LLaMA-2-7B, predicted by stable massive-activation outliers).

Over n corpus windows: a *candidate* is a position j >= 1 that at least ``min_queries`` queries can see
(a causal key j is seen by T − j queries, and α over a handful of rows is noise; a bidirectional key by
all T). A candidate is a **secondary sink** when, in at least one layer, at least ``share`` of the
layer's heads give it a visible-query mean α[l, h, j] > ε. Each is reported with its token, kind
(``token_kind``), the layers where it sinks, and whether it holds a **massive activation** (Sun et al.'s
rule, |h| > 100 and > 1000 × the layer's median |h|, at any layer) with its largest peak ratio.

KVSink's predictor as a test: "the token holds a massive activation" predicts "the token is a secondary
sink". Precision = sinks among predicted / predicted, recall = predicted among sinks / sinks, pooled over
the candidates of all windows, with 95% bootstrap CIs resampling windows. The same is reported for
looser outliers (peak |h| ≥ r × the median, for each r in ``RATIO_LADDER``), since Sun's 1000× rule may
flag nothing but token 0 in a small model.
"""
from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from sinkfix.progress import Step
from sinkfix.errors import SettingsError
from sinkfix.experiments import onepass
from sinkfix.experiments.evaluate import BOOTSTRAP_SAMPLES
from sinkfix.experiments.massive import RATIO_THRESHOLD
from sinkfix.experiments.windows import batch_size, batches, corpus_windows
from sinkfix.models import LoadedModel
from sinkfix.settings import DEFAULT_EPSILON

DEFAULT_WINDOWS = 16
DEFAULT_LENGTH = 512
DEFAULT_SHARE = 0.3  # of a layer's heads (3 of SmolLM2's 9, 4 of MiniLM's 12)
DEFAULT_MIN_QUERIES = 32
RATIO_LADDER = (1000.0, 300.0, 100.0)
KINDS = ("special", "newline", "punctuation", "after newline", "word")
TOP_TOKENS = 20


def token_kind(text: str, previous: str | None, special: bool) -> str:
    """What a token is, from its decoded text: a special token (BOS-like, [SEP]), a newline, punctuation,
    the first token after a newline (a new line or turn), or a word (or word piece)."""
    if special:
        return "special"
    if "\n" in text:
        return "newline"
    stripped = text.strip()
    if stripped and all(unicodedata.category(c)[0] in "PS" for c in stripped):
        return "punctuation"
    if previous is not None and previous.endswith("\n"):
        return "after newline"
    return "word"


@dataclass(frozen=True)
class Window:
    """One window's candidates: their tokens and kinds, which sink, which hold an outlier, their peak ratios."""

    positions: np.ndarray  # [C] candidate positions
    tokens: list[str]  # [C]
    kinds: list[str]  # [C]
    sink: np.ndarray  # [C] bool
    massive: np.ndarray  # [C] bool (Sun et al.'s rule at any layer)
    ratio: np.ndarray  # [C] largest peak |h| / median |h| over layers


def _window(result: onepass.Pass, b: int, ids: list[int], tokenizer, epsilon: float, share: float,
            min_queries: int) -> tuple[Window, list[dict]]:
    alpha = result.alpha()[:, b]  # [La, H, T]
    above = (alpha > epsilon).float().mean(dim=1).numpy()  # [La, T]: share of each layer's heads
    n = alpha.shape[-1]
    last = n - min_queries if result.is_causal else n - 1  # causal key j is seen by n - j queries
    positions = np.arange(1, last + 1)
    sinking = above[:, positions] >= share  # [La, C]
    massive = result.massive()[:, b].numpy()[:, positions]  # [L, C]
    pieces = tokenizer.convert_ids_to_tokens(ids)
    texts = [tokenizer.convert_tokens_to_string([t]) for t in pieces]
    specials = set(getattr(tokenizer, "all_special_ids", []) or [])
    kinds = [token_kind(texts[j], texts[j - 1], ids[j] in specials) for j in positions]
    window = Window(positions, [pieces[j] for j in positions], kinds, sinking.any(axis=0), massive.any(axis=0),
                    result.peak_ratio()[:, b].numpy()[:, positions].max(axis=0))
    layers = result.attention_layers
    found = []
    for c in np.flatnonzero(window.sink):
        j = int(positions[c])
        found.append({"position": j, "token": pieces[j], "text": texts[j], "kind": kinds[c],
                      "layers": [layers[k] for k in np.flatnonzero(sinking[:, c])],
                      "max_share": float(above[:, j].max()), "massive": bool(window.massive[c]),
                      "massive_layers": [int(k) for k in np.flatnonzero(massive[:, c])],
                      "peak_ratio": float(window.ratio[c])})
    return window, found


def _ratio_ci(hits: np.ndarray, totals: np.ndarray, seed: int) -> dict:
    """Pooled hits / totals over windows with a bootstrap CI resampling windows; None where nothing is counted."""
    total = int(totals.sum())
    if total == 0:
        return {"value": None, "ci95": None, "hits": 0, "total": 0}
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(hits), size=(BOOTSTRAP_SAMPLES, len(hits)))
    num, den = hits[picks].sum(axis=1), totals[picks].sum(axis=1)
    ratios = num[den > 0] / den[den > 0]
    ci = [float(x) for x in np.percentile(ratios, [2.5, 97.5])] if len(hits) > 1 and len(ratios) else None
    return {"value": float(hits.sum() / total), "ci95": ci, "hits": int(hits.sum()), "total": total}


def prediction(windows: list[Window], predicted: list[np.ndarray], seed: int = 0) -> dict:
    """Precision and recall of ``predicted`` (one bool array per window) against the sink label."""
    tp = np.array([(p & w.sink).sum() for w, p in zip(windows, predicted)], dtype=np.float64)
    flagged = np.array([p.sum() for p in predicted], dtype=np.float64)
    sinks = np.array([w.sink.sum() for w in windows], dtype=np.float64)
    return {"precision": _ratio_ci(tp, flagged, seed), "recall": _ratio_ci(tp, sinks, seed)}


@dataclass(frozen=True)
class SecondaryResult:
    model: str
    corpus: str
    n_windows: int
    length: int
    bos: str
    epsilon: float
    share: float
    min_queries: int
    n_candidates: int
    sinks: list[dict]  # every secondary sink: window, position, token, kind, layers, massive, ...
    by_token: list[dict]
    by_kind: list[dict]
    by_layer: list[int]  # per layer: secondary sinks that sink there
    predictor: dict  # Sun's rule: precision and recall with CIs
    ladder: list[dict]  # looser outliers: {"ratio", "precision", "recall"}
    token0_massive: float  # share of windows whose token 0 holds a massive activation (the primary sink)
    notes: list[str] = field(default_factory=list)

    def headline(self) -> float:
        """Secondary sinks per window."""
        return len(self.sinks) / max(1, self.n_windows)

    def to_json(self) -> dict:
        return {"kind": "secondary", **self.__dict__}


def _tables(sinks: list[dict], candidates: Counter, kinds: Counter) -> tuple[list[dict], list[dict]]:
    by_token: dict[str, dict] = {}
    for s in sinks:
        row = by_token.setdefault(s["token"], {"token": s["token"], "kind": s["kind"], "sinks": 0, "massive": 0,
                                                "layers": Counter()})
        row["sinks"] += 1
        row["massive"] += int(s["massive"])
        row["layers"].update(s["layers"])
    tokens = sorted(by_token.values(), key=lambda r: -r["sinks"])[:TOP_TOKENS]
    for row in tokens:
        row["occurrences"] = candidates[row["token"]]
        row["rate"] = row["sinks"] / max(1, row["occurrences"])
        row["layers"] = [int(layer) for layer, _ in row["layers"].most_common(5)]
    counted = Counter(s["kind"] for s in sinks)
    by_kind = [{"kind": k, "sinks": counted[k], "candidates": kinds[k], "rate": counted[k] / kinds[k] if kinds[k] else None}
               for k in KINDS]
    return tokens, by_kind


def secondary_sinks(loaded: LoadedModel, text: str, corpus: str, n_windows: int = DEFAULT_WINDOWS,
                    length: int = DEFAULT_LENGTH, epsilon: float = DEFAULT_EPSILON, share: float = DEFAULT_SHARE,
                    min_queries: int = DEFAULT_MIN_QUERIES, bos: str = "auto", seed: int = 0,
                    progress: Step | None = None) -> SecondaryResult:
    """Every secondary sink over ``n_windows`` windows of ``length`` tokens, and KVSink's predictor tested."""
    if not 0.0 < share <= 1.0 or not 0.0 <= epsilon <= 1.0:
        raise SettingsError(f"share must be in (0, 1] and epsilon in [0, 1], got {share} and {epsilon}")
    if min_queries < 1 or (loaded.is_causal and length - min_queries < 1):
        raise SettingsError(f"min_queries must be between 1 and length - 1, got {min_queries} for length {length}")
    sequences = corpus_windows(loaded, text, n_windows, length, bos).at(length)
    windows: list[Window] = []
    sinks: list[dict] = []
    first_massive: list[bool] = []
    groups = batches(sequences, batch_size(length))
    for done, group in enumerate(groups, start=1):
        result = onepass.run(loaded, group, massive=True, columns=True)
        first_massive += result.massive()[:, :, 0].any(dim=0).tolist()
        for b, ids in enumerate(group):
            window, found = _window(result, b, ids, loaded.tokenizer, epsilon, share, min_queries)
            sinks += [{"window": len(windows), **s} for s in found]
            windows.append(window)
        if progress is not None:
            progress(done, len(groups), "windows")
    candidates = Counter(t for w in windows for t in w.tokens)
    kinds = Counter(k for w in windows for k in w.kinds)
    by_token, by_kind = _tables(sinks, candidates, kinds)
    by_layer = [0] * loaded.n_layers
    for s in sinks:
        for layer in s["layers"]:
            by_layer[layer] += 1
    ladder = [{"ratio": r, **prediction(windows, [w.ratio >= r for w in windows], seed)} for r in RATIO_LADDER]
    notes = []
    if not any(w.massive.any() for w in windows):
        notes.append(f"no candidate holds a massive activation (>{RATIO_THRESHOLD:.0f}x the median): the predictor "
                     "flags nothing, so its precision is undefined; the ratio ladder shows looser outliers")
    return SecondaryResult(
        loaded.name, corpus, len(sequences), length, bos, float(epsilon), float(share), int(min_queries),
        sum(len(w.positions) for w in windows), sinks, by_token, by_kind, by_layer,
        prediction(windows, [w.massive for w in windows], seed), ladder,
        float(np.mean(first_massive)) if first_massive else 0.0, notes)
