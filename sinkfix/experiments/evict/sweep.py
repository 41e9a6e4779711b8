"""The sweep: every prompt of a task through every press x ratio x protection, one prefill per prompt.

Per prompt: one dense prefill (``capture.prefill``); each press scores the layers once; every ratio
and protection selects from those scores; the selections that share per-layer budgets answer in one
batched forward on their stacked pruned caches (``decode.groups``), the dense cache among them as
ratio 0. So a sweep costs one prefill per prompt plus one short batched forward per group.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch

from sinkfix.errors import SettingsError
from sinkfix.experiments.evict import decode, presses, summary, view
from sinkfix.experiments.evict.capture import Prefill, prefill
from sinkfix.experiments.evict.compress import Kept, compress, layer_scores
from sinkfix.experiments.evict.protect import Protection
from sinkfix.experiments.evict.tasks import NLL_TASKS, TASKS, Prompt, prompts
from sinkfix.models import LoadedModel
from sinkfix.settings import DEFAULT_EPSILON

Progress = Callable[[int, int, str], None]  # (done, total, what)
DEFAULT_PRESSES = tuple(presses.PRESSES)
DEFAULT_RATIOS = (0.5, 0.75)
DEFAULT_PROTECTIONS = ("none", "first:4", "detected")
DEFAULT_LENGTHS = (1024, 2048)
DEFAULT_DEPTHS = (0.1, 0.3, 0.5, 0.7, 0.9)
DEFAULT_SEEDS = 4
DENSE = "dense"


@dataclass(frozen=True)
class SweepSettings:
    """What a sweep runs: the task's prompt grid, and every press x ratio x protection on each prompt."""

    task: str = "passkey"
    presses: tuple[str, ...] = DEFAULT_PRESSES
    ratios: tuple[float, ...] = DEFAULT_RATIOS
    protections: tuple[str, ...] = DEFAULT_PROTECTIONS
    lengths: tuple[int, ...] = DEFAULT_LENGTHS
    depths: tuple[float, ...] = DEFAULT_DEPTHS
    seeds: int = DEFAULT_SEEDS
    generate: bool = False  # greedy decoding instead of teacher-forced exact match
    epsilon: float = DEFAULT_EPSILON  # the ``detected`` threshold on α
    kernel: str = "auto"
    example: int | None = None  # which prompt's kept keys the result keeps (None: a middle-depth short one)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise SettingsError(f"unknown task {self.task!r}: choose from {', '.join(TASKS)}")
        for name in self.presses:
            presses.make(name)
        for ratio in self.ratios:
            presses.base.check_ratio(ratio)
        names = [Protection.parse(p, self.epsilon).name for p in self.protections]
        if len(set(names)) != len(names) or len(set(self.presses)) != len(self.presses):
            raise SettingsError("each press and each protection may be named once")
        if not self.presses or not self.ratios or not self.protections or not self.lengths:
            raise SettingsError("give at least one press, ratio, protection and length")
        if self.generate and self.task in NLL_TASKS:
            raise SettingsError(f"--generate decodes an answer; the {self.task} task scores a continuation's NLL")

    def protection_names(self) -> list[str]:
        """The protections as the JSON names them (``first:4``, ``detected``)."""
        return [Protection.parse(p, self.epsilon).name for p in self.protections]


@dataclass(frozen=True)
class EvictResult:
    """A finished sweep: each prompt's outcomes, the example prompt's kept keys, and how long it took."""

    model: str
    settings: SweepSettings
    rows: tuple[dict, ...]  # per prompt: its JSON with "dense" and "outcomes"
    example: dict | None
    seconds: float
    kernel: str
    threads: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict:
        """The JSON ``sinkfix evict --json`` prints and the store keeps (see docs/experiments/eviction.md)."""
        s = self.settings
        ratios = [summary.ratio_key(r) for r in s.ratios]
        results, paired, dense = summary.tables(self.rows, s.presses, s.ratios, s.protection_names())
        return {
            "kind": "evict", "model": self.model, "task": s.task, "settings": {**asdict(s), "ratios": ratios},
            "metric": "nll" if s.task in NLL_TASKS else "accuracy", "dense": dense, "results": results,
            "paired": paired, "prompts": list(self.rows), "example": self.example,
            "timing": {"seconds": self.seconds, "per_prompt": self.seconds / max(1, len(self.rows)),
                       "threads": self.threads, "kernel": self.kernel},
            "notes": list(self.notes),
        }

    def headline(self) -> float | None:
        """Dense accuracy, what a list of experiments shows (None for the ppl task, which has no exact answer)."""
        dense = summary.accuracy([row["dense"] for row in self.rows])
        return None if dense is None else dense["mean"]


def selections(pre: Prefill, settings: SweepSettings) -> list[tuple[str, Kept]]:
    """(key, selection) for dense (ratio 0) and every press x ratio x protection of one prefill."""
    out = [(DENSE, compress(pre, "streaming", 0.0, "none"))]
    for name in settings.presses:
        press = presses.make(name)
        scores = layer_scores(pre, press)
        for ratio in settings.ratios:
            for protect in settings.protections:
                kept = compress(pre, press, ratio, Protection.parse(protect, settings.epsilon), scores)
                out.append((f"{name}|{summary.ratio_key(ratio)}|{kept.protect}", kept))
    return out


def answer(loaded: LoadedModel, pre: Prefill, prompt: Prompt, chosen: Sequence[Kept], generate: bool) -> list[dict]:
    """Each selection's outcome on the prompt's question and answer. Selections that keep the same keys
    (``detected`` adding nothing to a press that keeps the sinks anyway, PyramidKV's fallback to SnapKV)
    answer once; the others in batches of equal per-layer budgets."""
    first: dict[bytes, int] = {}
    for index, kept in enumerate(chosen):
        first.setdefault(kept.fingerprint(), index)
    distinct = sorted(set(first.values()))
    scored: dict[int, tuple[bool, float, list[int] | None]] = {}
    for batch in decode.groups([chosen[i] for i in distinct]):
        kept = [chosen[distinct[i]] for i in batch]
        logits = decode.answer_logits(loaded, pre, kept, prompt.question_ids, prompt.answer_ids)
        made = decode.generate(loaded, pre, kept, prompt.question_ids, len(prompt.answer_ids)) if generate else None
        for row, i in enumerate(batch):
            correct, nll = decode.outcome(logits[row], prompt.answer_ids)
            tokens = None if made is None else made[row]
            scored[distinct[i]] = (correct if tokens is None else tokens == list(prompt.answer_ids), nll, tokens)
    out = []
    for kept in chosen:
        correct, nll, tokens = scored[first[kept.fingerprint()]]
        row = {"correct": None if prompt.task in NLL_TASKS else correct, "nll": nll,
               "token0_kept": kept.token0_share(), "protected": kept.protected_mean(),
               "kept_share": sum(kept.n_kept) / (len(kept.n_kept) * kept.n_tokens)}
        if tokens is not None:
            row["generated"] = tokens
        out.append(row)
    return out


def run_prompt(loaded: LoadedModel, prompt: Prompt, settings: SweepSettings, keep_example: bool = False
               ) -> tuple[dict, dict | None, Prefill]:
    """One prompt: its JSON row (prompt, dense outcome, every configuration's outcome) and, if asked, the
    kept-keys view."""
    pre = prefill(loaded, prompt.context_ids, settings.kernel)
    chosen = selections(pre, settings)
    outcomes = answer(loaded, pre, prompt, [kept for _, kept in chosen], settings.generate)
    row = {**prompt.to_json(), "sinks": detected_positions(pre, settings.epsilon), "dense": outcomes[0], "outcomes": {}}
    for (key, _), result in zip(chosen[1:], outcomes[1:]):
        press, ratio, protect = key.split("|")
        row["outcomes"].setdefault(press, {}).setdefault(ratio, {})[protect] = result
    example = view.pack(pre, prompt, [kept for _, kept in chosen[1:]], settings.epsilon) if keep_example else None
    return row, example, pre


def detected_positions(pre: Prefill, epsilon: float) -> dict[str, int]:
    """The tokens ``detected`` protects in this prefill: position -> how many (layer, KV head) pairs flag it."""
    flags = view.sinks(pre, epsilon)
    positions, counts = torch.unique(flags.nonzero()[:, 2], return_counts=True)
    return {str(int(p)): int(c) for p, c in zip(positions, counts)}


def example_index(items: Sequence[Prompt]) -> int:
    """The prompt whose kept keys a result keeps: the shortest context, needle nearest the middle."""
    return min(range(len(items)), key=lambda i: (items[i].length, abs((items[i].depth or 0.5) - 0.5), i))


def run_sweep(loaded: LoadedModel, settings: SweepSettings, progress: Progress | None = None) -> EvictResult:
    """Every prompt of ``settings.task`` through every configuration; progress once per prompt."""
    items = prompts(loaded.tokenizer, settings.task, settings.lengths, settings.depths, settings.seeds)
    chosen = settings.example if settings.example is not None else example_index(items)
    if not 0 <= chosen < len(items):
        raise SettingsError(f"example must be a prompt index in 0..{len(items) - 1}, got {chosen}")
    rows, example, kernel = [], None, "blocked"
    started = time.perf_counter()
    for done, prompt in enumerate(items):
        if progress is not None:
            progress(done, len(items), _describe(prompt, done, len(items)))
        row, packed, pre = run_prompt(loaded, prompt, settings, keep_example=done == chosen)
        rows.append(row)
        example = packed if packed is not None else example
        kernel = pre.kernel
    if progress is not None:
        progress(len(items), len(items), "done")
    return EvictResult(loaded.name, settings, tuple(rows), example, time.perf_counter() - started, kernel,
                       torch.get_num_threads())


def dense_outcomes(loaded: LoadedModel, items: Sequence[Prompt], generate: bool = False,
                   progress: Progress | None = None) -> list[dict]:
    """Each prompt's dense-cache outcome only: whether the model can do the task before any eviction."""
    rows = []
    for done, prompt in enumerate(items):
        if progress is not None:
            progress(done, len(items), _describe(prompt, done, len(items)))
        pre = prefill(loaded, prompt.context_ids)
        kept = compress(pre, "streaming", 0.0, "none")
        rows.append({**prompt.to_json(), "dense": answer(loaded, pre, prompt, [kept], generate)[0]})
    return rows


def _describe(prompt: Prompt, done: int, total: int) -> str:
    depth = "" if prompt.depth is None else f", depth {prompt.depth:g}"
    return f"prompt {done + 1}/{total}: {prompt.task}, {prompt.length} tokens{depth}, seed {prompt.seed}"
