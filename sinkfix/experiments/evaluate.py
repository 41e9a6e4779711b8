"""What an intervention does to a model's outputs, measured on the same input.

For every model: cosine between original and intervened final hidden states. With an LM head:
per-position KL(p_orig || p_mod), top-1 agreement, and the NLL before and after (next-token
cross-entropy for causal LMs; pseudo-log-likelihood for masked LMs, each position masked in turn).
Long texts are split into chunks of at most ``max_tokens``. Chunks are the bootstrap units when
there are several; with a single chunk the CI resamples positions (and says so).
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from sinkfix.capture.attention import observing
from sinkfix.errors import InputError, SettingsError
from sinkfix.experiments.intervene import BatchStats, Intervention, Plan, intervene, make_plan, stats_for
from sinkfix.models import LoadedModel, devices, model_inputs

DEFAULT_MAX_TOKENS = 512
DEFAULT_BETAS = (1.0, 0.8, 0.6, 0.4, 0.2, 0.0)
BOOTSTRAP_SAMPLES = 2000
PLL_BATCH = 32  # masked copies per forward when scoring an MLM
Progress = Callable[[int, int, str], None]  # (done, total, what)


# ---------------------------------------------------------------- chunks and forwards


@dataclass(frozen=True)
class Chunk:
    text_index: int
    ids: tuple[int, ...]


def special_affixes(tokenizer: object) -> tuple[list[int], list[int]]:
    """The special ids a tokenizer puts before and after a text ([CLS] ... [SEP]; nothing for SmolLM2)."""
    probe = "hello"
    full = tokenizer(probe)["input_ids"]
    body = tokenizer(probe, add_special_tokens=False)["input_ids"]
    for start in range(len(full) - len(body) + 1):
        if full[start : start + len(body)] == body:
            return full[:start], full[start + len(body) :]
    return [], []


def chunk_text(loaded: LoadedModel, texts: Sequence[str], max_tokens: int = DEFAULT_MAX_TOKENS) -> list[Chunk]:
    """Split each text into chunks of at most ``max_tokens`` tokens, special tokens included."""
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise InputError("the text is empty: give at least one word to evaluate")
    limit = min(int(max_tokens), loaded.max_tokens)
    before, after = special_affixes(loaded.tokenizer)
    body = limit - len(before) - len(after)
    if body < 2:
        raise SettingsError(f"max_tokens must leave room for at least 2 tokens, got {max_tokens}")
    chunks = []
    for index, text in enumerate(texts):
        ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
        for start in range(0, len(ids), body):
            piece = before + ids[start : start + body] + after
            if len(piece) >= 2:  # a causal LM needs one token to predict another
                chunks.append(Chunk(index, tuple(piece)))
    if not chunks:
        raise InputError("the text is too short to evaluate: it needs at least 2 tokens")
    return chunks


@dataclass
class Outputs:
    hidden: torch.Tensor  # [B, T, D] final hidden states
    logits: torch.Tensor | None  # [B, T, V]


def forward(loaded: LoadedModel, ids: torch.Tensor, mask: torch.Tensor, plan: Plan | None = None,
            stats: BatchStats | None = None) -> Outputs:
    """One forward of a right-padded batch, optionally observed (``stats``) and/or intervened (``plan``).

    Query blocks follow the caller's ``capture.blocking(n)`` context (the CLI's --query-block), as
    in ``analyze()``. Inputs go to the model's (first) device; outputs come back to the CPU.
    """
    device = devices.input_device(loaded.model)
    inputs = model_inputs(loaded.model, {"input_ids": ids.to(device), "attention_mask": mask.to(device)})
    with torch.inference_mode(), intervene(plan):
        if stats is not None:
            with observing(stats):
                out = loaded.model(**inputs, output_hidden_states=loaded.lm_kind is not None)
        else:
            out = loaded.model(**inputs, output_hidden_states=loaded.lm_kind is not None)
    if loaded.lm_kind is None:
        return Outputs(out.last_hidden_state.cpu(), None)
    return Outputs(out.hidden_states[-1].cpu(), out.logits.cpu())


# ---------------------------------------------------------------- one chunk, clean and intervened


@dataclass(frozen=True)
class ChunkScores:
    """Per-position numbers for one chunk under one intervention."""

    targets: list[int]
    cosine: np.ndarray  # [T]
    base_nll: np.ndarray | None  # [P]
    nll: np.ndarray | None  # [P]
    kl: np.ndarray | None  # [P]
    agree: np.ndarray | None  # [P] bool
    positions: list[int]  # which token each of the P scores belongs to
    target_mass: float | None = None
    achieved_mass: float | None = None


class ChunkRun:
    """The clean forward of one chunk, kept so any number of interventions can be scored against it."""

    def __init__(self, loaded: LoadedModel, chunk: Chunk, norm_layer: int | None = None) -> None:
        self.loaded = loaded
        self.chunk = chunk
        self.ids = torch.tensor([chunk.ids])
        self.mask = torch.ones_like(self.ids)
        self.stats = stats_for(self.mask, loaded.layer_numbers, norm_layer)
        clean = forward(loaded, self.ids, self.mask, stats=self.stats)
        self.hidden = clean.hidden[0]
        self.positions = self._positions()
        self.base_logp = self._logp(clean, None)

    def _positions(self) -> list[int]:
        n = len(self.chunk.ids)
        if self.loaded.lm_kind == "causal":
            return list(range(n - 1))  # position i predicts token i + 1
        if self.loaded.lm_kind == "masked":
            special = set(self.loaded.tokenizer.all_special_ids)
            return [i for i, token in enumerate(self.chunk.ids) if token not in special]
        return list(range(n))

    def _logp(self, outputs: Outputs, plan: Plan | None) -> torch.Tensor | None:
        """Log-probabilities [P, V] of the predictions scored at ``self.positions``."""
        if self.loaded.lm_kind == "causal":
            return torch.log_softmax(outputs.logits[0, :-1].float(), dim=-1)
        if self.loaded.lm_kind == "masked":
            return self._pll_logp(plan)
        return None

    def _pll_logp(self, plan: Plan | None) -> torch.Tensor:
        """Mask each scored position in turn (batched copies); the sink set stays the original input's."""
        mask_id = self.loaded.tokenizer.mask_token_id
        if mask_id is None:
            raise SettingsError(f"{self.loaded.name} has a masked-LM head but its tokenizer has no mask token")
        rows = []
        for start in range(0, len(self.positions), PLL_BATCH):
            where = self.positions[start : start + PLL_BATCH]
            ids = self.ids.repeat(len(where), 1)
            ids[torch.arange(len(where)), torch.tensor(where)] = mask_id
            out = forward(self.loaded, ids, self.mask.repeat(len(where), 1), plan=plan)
            rows.append(torch.log_softmax(out.logits[torch.arange(len(where)), torch.tensor(where)].float(), dim=-1))
        return torch.cat(rows)

    def plan(self, intervention: Intervention) -> Plan:
        return make_plan(intervention, self.stats, self.mask.bool(), self.loaded.layer_numbers, self.loaded.n_heads, self.ids)

    def score(self, plan: Plan) -> ChunkScores:
        # An empty sink set moves nothing, so the outputs are the clean ones: skip the forward.
        empty = not bool(plan.sinks.any())
        modified = None if empty else forward(self.loaded, self.ids, self.mask, plan=plan)
        hidden = self.hidden if modified is None else modified.hidden[0]
        cosine = torch.nn.functional.cosine_similarity(self.hidden.float(), hidden.float(), dim=-1)
        mass = {}
        if plan.target_mass is not None:
            mass = {"target_mass": float(plan.target_mass[0]), "achieved_mass": float(plan.achieved_mass[0])}
        if self.base_logp is None:
            return ChunkScores(plan.target_tokens()[0], cosine.numpy(), None, None, None, None, self.positions, **mass)
        logp = self.base_logp if modified is None else self._logp(modified, plan)
        targets = torch.tensor(self.chunk.ids)[self._target_positions()]
        base_nll = -self.base_logp.gather(1, targets[:, None])[:, 0]
        nll = -logp.gather(1, targets[:, None])[:, 0]
        kl = (self.base_logp.exp() * (self.base_logp - logp)).sum(dim=-1).clamp(min=0)
        agree = self.base_logp.argmax(dim=-1) == logp.argmax(dim=-1)
        return ChunkScores(
            plan.target_tokens()[0], cosine.numpy(), base_nll.numpy(), nll.numpy(), kl.numpy(), agree.numpy(),
            self.positions, **mass,
        )

    def _target_positions(self) -> list[int]:
        """Which token each scored prediction should put its mass on."""
        if self.loaded.lm_kind == "causal":
            return [i + 1 for i in self.positions]
        return list(self.positions)

    def top_k(self, plan: Plan | None, position: int, k: int = 5) -> list[tuple[str, float]]:
        """The top-k predictions at scored ``position`` (an index into the chunk's tokens)."""
        if self.base_logp is None:
            return []
        if position not in self.positions:
            raise SettingsError(f"position {position} has no prediction here (scored: {self.positions[0]}..{self.positions[-1]})")
        logp = self.base_logp if plan is None else self._logp(forward(self.loaded, self.ids, self.mask, plan=plan), plan)
        values, ids = logp[self.positions.index(position)].exp().topk(k)
        tokens = self.loaded.tokenizer.convert_ids_to_tokens(ids.tolist())
        return [(token, float(p)) for token, p in zip(tokens, values)]


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Evaluation:
    """The effect of one intervention over a set of texts. NLL fields are None without an LM head."""

    model_name: str
    intervention: Intervention
    n_texts: int
    n_chunks: int
    n_positions: int
    baseline_nll: float | None
    intervened_nll: float | None
    delta_nll: float | None
    delta_nll_ci: tuple[float, float] | None
    ci_unit: str | None
    kl_mean: float | None
    top1_agreement: float | None
    cosine_mean: float
    target_tokens: list[list[int]]  # per chunk
    target_token_text: list[list[str]]
    per_position_kl: list[list[float]] = field(default_factory=list)  # per chunk
    tokens: list[list[str]] = field(default_factory=list)  # per chunk
    random_mass: dict | None = None  # the random control's target and achieved mass (means over chunks)

    def to_json(self, detail: bool = False) -> dict:
        out = {
            "model": self.model_name,
            "target": self.intervention.target,
            "beta": self.intervention.beta,
            "layers": None if self.intervention.layers is None else list(self.intervention.layers),
            "heads": None if self.intervention.heads is None else [list(h) for h in self.intervention.heads],
            "n_texts": self.n_texts,
            "n_chunks": self.n_chunks,
            "n_positions": self.n_positions,
            "baseline_nll": self.baseline_nll,
            "intervened_nll": self.intervened_nll,
            "delta_nll": self.delta_nll,
            "delta_nll_ci95": None if self.delta_nll_ci is None else list(self.delta_nll_ci),
            "ci_unit": self.ci_unit,
            "kl_mean": self.kl_mean,
            "top1_agreement": self.top1_agreement,
            "cosine_mean": self.cosine_mean,
            "target_tokens": self.target_tokens,
            "target_token_text": self.target_token_text,
        }
        if self.random_mass is not None:
            out["random_mass"] = self.random_mass
        if detail:
            out["tokens"] = self.tokens
            out["per_position_kl"] = self.per_position_kl
        return out


def aggregate(loaded: LoadedModel, intervention: Intervention, runs: list[ChunkRun], scores: list[ChunkScores],
              seed: int = 0) -> Evaluation:
    """Pool per-chunk scores, position-weighted, with a paired bootstrap CI on the NLL change."""
    cosine = np.concatenate([s.cosine for s in scores])
    has_lm = scores[0].nll is not None
    base = delta = ci = unit = kl = agree = None
    n_positions = len(cosine)
    if has_lm:
        base_parts = [s.base_nll for s in scores]
        diff_parts = [s.nll - s.base_nll for s in scores]
        n_positions = int(sum(len(p) for p in base_parts))
        base = float(np.concatenate(base_parts).mean())
        delta = float(np.concatenate(diff_parts).mean())
        unit = "chunk" if len(scores) > 1 else "position"
        units = diff_parts if len(scores) > 1 else [np.array([d]) for d in diff_parts[0]]
        ci = paired_bootstrap([u.sum() for u in units], [len(u) for u in units], seed=seed)
        kl = float(np.concatenate([s.kl for s in scores]).mean())
        agree = float(np.concatenate([s.agree for s in scores]).mean())
    tokenizer = loaded.tokenizer
    mass = None
    if scores[0].target_mass is not None:
        mass = {
            "target": float(np.mean([s.target_mass for s in scores])),
            "achieved": float(np.mean([s.achieved_mass for s in scores])),
        }
    return Evaluation(
        model_name=loaded.name,
        intervention=intervention,
        n_texts=len({run.chunk.text_index for run in runs}),
        n_chunks=len(runs),
        n_positions=n_positions,
        baseline_nll=base,
        intervened_nll=None if base is None else base + delta,
        delta_nll=delta,
        delta_nll_ci=ci,
        ci_unit=unit,
        kl_mean=kl,
        top1_agreement=agree,
        cosine_mean=float(cosine.mean()),
        target_tokens=[s.targets for s in scores],
        target_token_text=[
            tokenizer.convert_ids_to_tokens([run.chunk.ids[i] for i in s.targets]) for run, s in zip(runs, scores)
        ],
        per_position_kl=[[] if s.kl is None else s.kl.tolist() for s in scores],
        tokens=[tokenizer.convert_ids_to_tokens(list(run.chunk.ids)) for run in runs],
        random_mass=mass,
    )


def paired_bootstrap(sums: Sequence[float], counts: Sequence[int], samples: int = BOOTSTRAP_SAMPLES,
                     seed: int = 0) -> tuple[float, float]:
    """95% percentile CI of the pooled mean change, resampling whole units (chunks or texts) with
    replacement. Each unit contributes the sum of its per-position changes and its position count."""
    sums_arr, counts_arr = np.asarray(sums, dtype=np.float64), np.asarray(counts, dtype=np.float64)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(sums_arr), size=(samples, len(sums_arr)))
    means = sums_arr[picks].sum(axis=1) / counts_arr[picks].sum(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


# ---------------------------------------------------------------- the public entry points


class Ticker:
    """A tqdm bar on stderr and/or a callback, advanced once per forward-sized step."""

    def __init__(self, total: int, what: str, bar: bool, callback: Progress | None) -> None:
        self.total, self.done, self.what, self.callback = total, 0, what, callback
        self.bar = tqdm(total=total, desc=what, file=sys.stderr, leave=False, disable=not bar)

    def step(self) -> None:
        self.done += 1
        self.bar.update(1)
        if self.callback is not None:
            self.callback(self.done, self.total, self.what)

    def close(self) -> None:
        self.bar.close()


def run_chunks(loaded: LoadedModel, texts: Sequence[str], max_tokens: int = DEFAULT_MAX_TOKENS,
               norm_layer: int | None = None) -> list[ChunkRun]:
    return [ChunkRun(loaded, chunk, norm_layer) for chunk in chunk_text(loaded, texts, max_tokens)]


def evaluate_many(
    loaded: LoadedModel,
    texts: Sequence[str] | list[ChunkRun],
    interventions: Sequence[Intervention],
    max_tokens: int = DEFAULT_MAX_TOKENS,
    bar: bool = False,
    progress: Progress | None = None,
) -> list[Evaluation]:
    """Score several interventions against one clean forward per chunk (they share the baseline)."""
    runs = texts if texts and isinstance(texts[0], ChunkRun) else None
    chunks = None if runs is not None else chunk_text(loaded, texts, max_tokens)
    n_chunks = len(runs) if runs is not None else len(chunks)
    ticker = Ticker(n_chunks * (1 + len(interventions)), "evaluate", bar, progress)
    norm_layer = interventions[0].norm_layer if interventions else None
    built: list[ChunkRun] = []
    per_arm: list[list[ChunkScores]] = [[] for _ in interventions]
    try:
        for index in range(n_chunks):
            run = runs[index] if runs is not None else ChunkRun(loaded, chunks[index], norm_layer)
            ticker.step()
            built.append(run)
            for arm, intervention in enumerate(interventions):
                per_arm[arm].append(run.score(run.plan(intervention)))
                ticker.step()
    finally:
        ticker.close()
    return [aggregate(loaded, i, built, scores) for i, scores in zip(interventions, per_arm)]


def evaluate(loaded: LoadedModel, texts: str | Sequence[str], intervention: Intervention,
             max_tokens: int = DEFAULT_MAX_TOKENS, bar: bool = False, progress: Progress | None = None) -> Evaluation:
    """The effect of ``intervention`` on ``texts`` (one string or several)."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    return evaluate_many(loaded, texts, [intervention], max_tokens, bar, progress)[0]


def control_arms(intervention: Intervention) -> dict[str, Intervention]:
    """The arm itself plus its two controls on the same heads: random (matched mass) and token 0."""
    arms = {"target": intervention}
    if intervention.target != "random":
        arms["random"] = intervention.with_(target="random", match=intervention.target)
    if intervention.target != "first":
        arms["first"] = intervention.with_(target="first")
    return arms


@dataclass(frozen=True)
class SweepPoint:
    arm: str  # "target", "random" or "first"
    beta: float
    evaluation: Evaluation

    def to_json(self) -> dict:
        e = self.evaluation
        return {
            "arm": self.arm, "target": e.intervention.target, "beta": self.beta, "intervened_nll": e.intervened_nll,
            "delta_nll": e.delta_nll, "delta_nll_ci95": None if e.delta_nll_ci is None else list(e.delta_nll_ci),
            "kl_mean": e.kl_mean, "top1_agreement": e.top1_agreement, "cosine_mean": e.cosine_mean,
        }


def sweep(loaded: LoadedModel, texts: str | Sequence[str], intervention: Intervention,
          betas: Sequence[float] = DEFAULT_BETAS, controls: bool = True, max_tokens: int = DEFAULT_MAX_TOKENS,
          bar: bool = False, progress: Progress | None = None) -> list[SweepPoint]:
    """The curve from beta = 1 (no change) to 0 (all sink attention moved), beside the controls."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    arms = control_arms(intervention) if controls else {"target": intervention}
    keys = [(name, float(beta)) for name in arms for beta in betas]
    results = evaluate_many(loaded, texts, [arms[n].with_(beta=b) for n, b in keys], max_tokens, bar, progress)
    return [SweepPoint(name, beta, result) for (name, beta), result in zip(keys, results)]
