"""``run_lab``: train every (variant, seed) of a sweep, resuming what an earlier call left, and summarise.

Each run lives in its own directory under ``cache/lab/runs`` (``SINKFIX_CACHE``, or ``root=``), keyed by
everything that changes what it trains (``settings.run_key``). Calling ``run_lab`` again with the same
settings reuses finished runs and continues interrupted ones from their last checkpoint. The device
is CUDA when there is one (``device="auto"``), else the CPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from sinkfix import paths
from sinkfix.progress import Step
from sinkfix.experiments.lab.settings import LabSettings, run_key
from sinkfix.experiments.lab.summary import summarise
from sinkfix.experiments.lab.tasks import make_task
from sinkfix.experiments.lab.train import train_run
from sinkfix.models import devices


def runs_root() -> Path:
    return paths.cache_dir() / "lab" / "runs"


@dataclass(frozen=True)
class LabResult:
    settings: LabSettings
    runs: list[dict]

    def to_json(self) -> dict:
        return summarise(self.runs, self.settings.variants)

    def headline(self) -> float | None:
        """The first variant's mean first-token mass (what the stored-experiment list shows)."""
        variants = self.to_json()["variants"]
        first = next(iter(variants.values()), None)
        return None if first is None else first["first_token_mass"]["mean"]

    def label(self) -> str:
        s = self.settings
        optimizer = "" if s.optimizer == "adam" else f", {s.optimizer}"
        return f"{s.task}: {','.join(s.variants)} x {s.seeds} seeds, {s.steps} steps{optimizer}"


def run_lab(settings: LabSettings, root: Path | None = None, progress: Step | None = None) -> LabResult:
    """Train (or resume) ``settings.seeds`` seeds of each variant; seeds are 0 .. seeds - 1."""
    settings = settings.resolved()
    device = devices.resolve_device(settings.device)
    root = Path(root) if root is not None else runs_root()
    threads = torch.get_num_threads()
    if settings.threads is not None and device == "cpu":
        torch.set_num_threads(settings.threads)
    try:
        return LabResult(settings, _train_all(settings, device, root, progress))
    finally:
        torch.set_num_threads(threads)


def _train_all(settings: LabSettings, device: str, root: Path, progress: Step | None) -> list[dict]:
    tasks = {}
    runs: list[dict] = []
    total = len(settings.variants) * settings.seeds * settings.steps
    for v_index, variant in enumerate(settings.variants):
        n_registers = settings.registers if variant == "registers" else 0
        if n_registers not in tasks:
            tasks[n_registers] = make_task(settings.task, settings.length, n_registers, settings.tokenizer,
                                           settings.text_file)
        for seed in range(settings.seeds):
            offset = (v_index * settings.seeds + seed) * settings.steps

            def on_step(step: int, offset: int = offset, variant: str = variant, seed: int = seed) -> None:
                if progress is not None:
                    progress(offset + step, total, f"{variant} seed {seed}")

            directory = root / run_key(settings, variant, seed)
            runs.append(train_run(settings, variant, seed, tasks[n_registers], directory, device, on_step))
    return runs
