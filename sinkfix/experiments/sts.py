"""STS Benchmark: a task-level score for sentence-embedding models, with and without an intervention.

Embeddings are the mean of the final hidden states over non-padding tokens; the score is the
Spearman correlation between the cosine of each pair and the gold similarity. SinkFix does not
ship the data: callers pass the path of ``sts-test.csv`` / ``sts-dev.csv`` (or their folder).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sinkfix.errors import InputError
from sinkfix.experiments.chunks import forward
from sinkfix.experiments.intervene import BatchStats, Intervention, Plan, make_plan, needs_stats, stats_for
from sinkfix.models import LoadedModel
from sinkfix.progress import Step, counter

BATCH_SIZE = 64
# all-MiniLM-L6-v2's sentence-transformers setting; STS-B sentences are far shorter anyway.
MAX_LENGTH = 256
BOOTSTRAP_SAMPLES = 1000


@dataclass(frozen=True)
class StsData:
    first: list[str]
    second: list[str]
    scores: np.ndarray  # gold similarity, 0..5

    def __len__(self) -> int:
        return len(self.scores)

    def subset(self, indices: Sequence[int]) -> StsData:
        return StsData([self.first[i] for i in indices], [self.second[i] for i in indices], self.scores[list(indices)])


def load_sts(path: str | Path, split: str = "test", limit: int | None = None) -> StsData:
    """Read an STS-B file: tab-separated, column 4 the score, columns 5 and 6 the sentences.

    Quotes are text, so lines are split on tabs only (no CSV quoting); extra trailing columns are
    ignored. A folder means ``sts-<split>.csv`` inside it. ``limit`` keeps the first N pairs.
    """
    source = Path(path).expanduser()
    if source.is_dir():
        source = source / f"sts-{split}.csv"
    if not source.is_file():
        raise InputError(f"STS-B file not found: {source} (give the path of sts-test.csv or its folder)")
    first, second, scores = [], [], []
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        columns = line.split("\t")
        try:
            score = float(columns[4])
            a, b = columns[5], columns[6]
        except (IndexError, ValueError):
            raise InputError(f"{source.name} line {number} is not an STS-B line (score in column 4, sentences in 5 and 6)") from None
        first.append(a)
        second.append(b)
        scores.append(score)
        if limit is not None and len(scores) >= limit:
            break
    if not scores:
        raise InputError(f"{source} holds no sentence pairs")
    return StsData(first, second, np.asarray(scores, dtype=np.float64))


@dataclass
class _Batch:
    order: np.ndarray  # sentence indices in this batch
    ids: torch.Tensor
    mask: torch.Tensor
    stats: BatchStats | None  # None when no target needs the clean forward's statistics


class SentenceSet:
    """Sentences encoded once in length-sorted padded batches, with the clean forward's embeddings
    and statistics kept, so each intervention costs one forward per batch (head search reuses it)."""

    def __init__(self, loaded: LoadedModel, sentences: Sequence[str], norm_layer: int | None = None,
                 batch_size: int = BATCH_SIZE, progress: Step | None = None, observe: bool = True) -> None:
        self.loaded = loaded
        self.n = len(sentences)
        lengths = [len(s) for s in sentences]
        order = np.argsort(lengths, kind="stable")
        self.batches: list[_Batch] = []
        self.baseline = np.zeros((self.n, 0), dtype=np.float32)
        pieces = []
        starts = range(0, self.n, batch_size)
        tick = counter(progress, len(starts), "embed (clean)")
        for start in starts:
            chosen = order[start : start + batch_size]
            encoded = loaded.tokenizer([sentences[i] for i in chosen], padding=True, truncation=True,
                                       max_length=MAX_LENGTH, padding_side="right", return_tensors="pt")
            stats = stats_for(encoded["attention_mask"], loaded.layer_numbers, norm_layer) if observe else None
            batch = _Batch(chosen, encoded["input_ids"], encoded["attention_mask"], stats)
            pieces.append(self._pool(forward(loaded, batch.ids, batch.mask, stats=stats).hidden, batch.mask))
            self.batches.append(batch)
            tick()
        self.baseline = self._unsort(pieces)

    @staticmethod
    def _pool(hidden: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return ((hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)).float().numpy()

    def _unsort(self, pieces: list[np.ndarray]) -> np.ndarray:
        out = np.zeros((self.n, pieces[0].shape[1]), dtype=np.float32)
        for batch, piece in zip(self.batches, pieces):
            out[batch.order] = piece
        return out

    def plan(self, batch: _Batch, intervention: Intervention) -> Plan:
        return make_plan(intervention, batch.stats, batch.mask.bool(), self.loaded.layer_numbers, self.loaded.n_heads, batch.ids)

    def embed(self, intervention: Intervention, progress: Step | None = None) -> tuple[np.ndarray, int]:
        """Intervened embeddings [N, D] and the number of sentences that had any target token."""
        pieces, touched = [], 0
        tick = counter(progress, len(self.batches), "embed (intervened)")
        for batch in self.batches:
            plan = self.plan(batch, intervention)
            hit = int(plan.sinks.any(dim=-1).sum())
            touched += hit
            if hit:
                pieces.append(self._pool(forward(self.loaded, batch.ids, batch.mask, plan=plan).hidden, batch.mask))
            else:  # an empty sink set changes nothing (beta = 1 is bit-identical too), so skip the forward
                pieces.append(self.baseline[batch.order])
            tick()
        return self._unsort(pieces), touched


class PairSet:
    """An STS split ready to score: both sides' sentences embedded once, clean."""

    def __init__(self, loaded: LoadedModel, data: StsData, norm_layer: int | None = None,
                 progress: Step | None = None, observe: bool = True) -> None:
        self.data = data
        self.sentences = SentenceSet(loaded, data.first + data.second, norm_layer, progress=progress, observe=observe)
        self.baseline_cosine = self._cosine(self.sentences.baseline)
        self.baseline_spearman = spearman(self.baseline_cosine, data.scores)

    def _cosine(self, embeddings: np.ndarray) -> np.ndarray:
        n = len(self.data)
        a, b = torch.from_numpy(embeddings[:n]), torch.from_numpy(embeddings[n:])
        return torch.nn.functional.cosine_similarity(a, b, dim=-1).numpy().astype(np.float64)

    def cosine(self, intervention: Intervention, progress: Step | None = None) -> tuple[np.ndarray, int]:
        embeddings, touched = self.sentences.embed(intervention, progress)
        return self._cosine(embeddings), touched

    def score(self, intervention: Intervention, progress: Step | None = None, seed: int = 0) -> StsResult:
        cosine, touched = self.cosine(intervention, progress)
        value = spearman(cosine, self.data.scores)
        low, high = bootstrap_difference(self.baseline_cosine, cosine, self.data.scores, seed=seed)
        return StsResult(
            intervention=intervention, n_pairs=len(self.data), baseline_spearman=self.baseline_spearman,
            intervened_spearman=value, delta=value - self.baseline_spearman, delta_ci=(low, high),
            sentences_with_targets=touched, n_sentences=2 * len(self.data),
        )


@dataclass(frozen=True)
class StsResult:
    intervention: Intervention | None
    n_pairs: int
    baseline_spearman: float
    intervened_spearman: float | None
    delta: float | None
    delta_ci: tuple[float, float] | None
    sentences_with_targets: int
    n_sentences: int

    def to_json(self) -> dict:
        i = self.intervention
        return {
            "target": None if i is None else i.target,
            "beta": None if i is None else i.beta,
            "layers": None if i is None or i.layers is None else list(i.layers),
            "heads": None if i is None or i.heads is None else [list(h) for h in i.heads],
            "n_pairs": self.n_pairs,
            "baseline_spearman": self.baseline_spearman,
            "intervened_spearman": self.intervened_spearman,
            "delta_spearman": self.delta,
            "delta_ci95": None if self.delta_ci is None else list(self.delta_ci),
            "sentences_with_targets": self.sentences_with_targets,
            "n_sentences": self.n_sentences,
        }


def spearman(predicted: np.ndarray, gold: np.ndarray) -> float:
    from scipy.stats import spearmanr  # scipy loads in ~1 s: only where a correlation is taken

    return float(spearmanr(predicted, gold).statistic)


def bootstrap_difference(baseline: np.ndarray, modified: np.ndarray, gold: np.ndarray,
                         samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> tuple[float, float]:
    """95% CI of Spearman(modified) - Spearman(baseline), resampling pairs (the same pairs for both)."""
    from scipy.stats import rankdata

    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(gold), size=(samples, len(gold)))
    gold_ranks = rankdata(gold[picks], axis=1)

    def rho(values: np.ndarray) -> np.ndarray:
        ranks = rankdata(values[picks], axis=1)
        x = ranks - ranks.mean(axis=1, keepdims=True)
        y = gold_ranks - gold_ranks.mean(axis=1, keepdims=True)
        return (x * y).sum(axis=1) / np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))

    low, high = np.percentile(rho(modified) - rho(baseline), [2.5, 97.5])
    return float(low), float(high)


def sts(loaded: LoadedModel, data: StsData, intervention: Intervention | None = None,
        progress: Step | None = None) -> StsResult:
    """Baseline Spearman, and the intervened one with a paired bootstrap CI when an intervention is given."""
    norm_layer = None if intervention is None else intervention.norm_layer
    pairs = PairSet(loaded, data, norm_layer, progress, observe=needs_stats(intervention))
    if intervention is None:
        return StsResult(None, len(data), pairs.baseline_spearman, None, None, None, 0, 2 * len(data))
    return pairs.score(intervention, progress)
