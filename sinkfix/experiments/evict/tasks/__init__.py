"""The generated tasks, one per module, by name: deterministic from a seed, no download."""
from __future__ import annotations

from collections.abc import Callable, Sequence

from sinkfix.errors import SettingsError
from sinkfix.experiments.evict.tasks import multikey, needle, passkey, ppl, vartrack
from sinkfix.experiments.evict.tasks.common import Prompt

TASKS: dict[str, Callable[[object, int, float, int], Prompt]] = {
    "passkey": passkey.prompt, "needle": needle.prompt, "multikey": multikey.prompt,
    "vartrack": vartrack.prompt, "ppl": ppl.prompt,
}
# Tasks scored by the NLL of a continuation, not by an exact answer.
NLL_TASKS = ("ppl",)

__all__ = ["NLL_TASKS", "TASKS", "Prompt", "prompts"]


def prompts(tokenizer: object, task: str, lengths: Sequence[int], depths: Sequence[float], seeds: int) -> list[Prompt]:
    """Every (length, depth, seed) prompt of a task, in that order (ppl has no depth: one per length and seed)."""
    if task not in TASKS:
        raise SettingsError(f"unknown task {task!r}: choose from {', '.join(TASKS)}")
    if seeds < 1:
        raise SettingsError(f"seeds must be at least 1, got {seeds}")
    for depth in depths:
        if not 0 <= depth <= 1:
            raise SettingsError(f"depths are fractions of the context in [0, 1], got {depth}")
    grid = [None] if task in NLL_TASKS else list(depths)
    return [TASKS[task](tokenizer, int(length), depth, seed) for length in lengths for depth in grid
            for seed in range(seeds)]
