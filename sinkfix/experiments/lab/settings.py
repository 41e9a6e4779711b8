"""A lab sweep's settings, their defaults per task, and each run's identity (its directory key).

Defaults are chosen to finish the issue's targets on 2 CPU cores with a margin (docs/lab.md has the
timings): Bigram-Backcopy with 1 layer of 1 head (Guo et al.'s smallest model), d = 128, T = 32,
600 AdamW steps of 32 sequences at 5e-3, weight decay 1e-4 (Guo et al.'s); tinyshakespeare characters
with 2 layers of 2 heads, d = 64, T = 64, 1200 AdamW steps of 32 at 1e-2, weight decay 0.1 (Gu et
al. report more sink with more weight decay).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace

from sinkfix.errors import SettingsError
from sinkfix.experiments.lab.tasks import TASKS, TOKENIZERS
from sinkfix.experiments.lab.variants import parse_variants
from sinkfix.settings import DEFAULT_EPSILON

OPTIMIZERS = ("adam", "sgd")
LAB_FORMAT = 1  # bump when a change makes stored runs incomparable; part of every run's key
TASK_DEFAULTS = {
    "backcopy": {"steps": 600, "layers": 1, "heads": 1, "hidden": 128, "length": 32, "checkpoint_every": 100,
                 "weight_decay": 1e-4, "adam": 5e-3, "sgd": 3e-2},
    "text": {"steps": 1200, "layers": 2, "heads": 2, "hidden": 64, "length": 64, "checkpoint_every": 200,
             "weight_decay": 0.1, "adam": 1e-2, "sgd": 3e-2},
}


@dataclass(frozen=True)
class LabSettings:
    """What ``run_lab`` trains: one model per (variant, seed). ``None`` fields take the task's default."""

    task: str = "backcopy"
    variants: tuple[str, ...] = ("softmax", "relu")
    seeds: int = 3
    steps: int | None = None
    batch_size: int = 32
    layers: int | None = None
    hidden: int | None = None
    heads: int | None = None
    length: int | None = None  # content tokens per sequence (after the registers and <s>)
    optimizer: str = "adam"
    lr: float | None = None
    weight_decay: float | None = None
    checkpoint_every: int | None = None
    registers: int = 4  # tokens the ``registers`` variant prepends
    tokenizer: str = "char"  # text task: char or smollm2
    text_file: str | None = None
    epsilon: float = DEFAULT_EPSILON
    device: str = "auto"
    # CPU threads while training (None: torch's setting). One by default: these matrices are too small to
    # gain from a second thread, and on the shared 2-core machine a second thread made steps 3-4x slower.
    threads: int | None = 1

    def resolved(self) -> LabSettings:
        """The settings with every default filled in and checked."""
        if self.task not in TASKS:
            raise SettingsError(f"the task must be one of {', '.join(TASKS)}, got {self.task!r}")
        defaults = TASK_DEFAULTS[self.task]
        out = replace(
            self, variants=parse_variants(self.variants),
            steps=self.steps if self.steps is not None else defaults["steps"],
            layers=self.layers if self.layers is not None else defaults["layers"],
            heads=self.heads if self.heads is not None else defaults["heads"],
            hidden=self.hidden if self.hidden is not None else defaults["hidden"],
            weight_decay=self.weight_decay if self.weight_decay is not None else defaults["weight_decay"],
            length=self.length if self.length is not None else defaults["length"],
            checkpoint_every=self.checkpoint_every if self.checkpoint_every is not None else defaults["checkpoint_every"],
            lr=self.lr if self.lr is not None else defaults.get(self.optimizer, 0.0),
        )
        _check(out)
        return out

    def to_json(self) -> dict:
        return {**asdict(self), "variants": list(self.variants)}


def _check(s: LabSettings) -> None:
    if s.optimizer not in OPTIMIZERS:
        raise SettingsError(f"the optimiser must be one of {', '.join(OPTIMIZERS)}, got {s.optimizer!r}")
    if s.tokenizer not in TOKENIZERS:
        raise SettingsError(f"the tokenizer must be one of {', '.join(TOKENIZERS)}, got {s.tokenizer!r}")
    if not 1 <= s.layers <= 8 or s.hidden < 8 or s.heads < 1 or s.hidden % s.heads:
        raise SettingsError(f"layers must be 1 to 8 and the width ({s.hidden}) a multiple of the heads ({s.heads})")
    if s.seeds < 1 or s.steps < 1 or s.batch_size < 1 or s.checkpoint_every < 1 or s.length < 2:
        raise SettingsError("seeds, steps, batch size and checkpoint interval must be at least 1, the length 2")
    if s.lr <= 0 or s.weight_decay < 0 or not 0.0 <= s.epsilon <= 1.0 or s.registers < 0:
        raise SettingsError("the learning rate must be positive, weight decay and registers not negative, ε in [0, 1]")
    if s.threads is not None and s.threads < 1:
        raise SettingsError(f"threads must be at least 1, got {s.threads}")
    if "registers" in s.variants and s.registers < 1:
        raise SettingsError("the registers variant needs at least 1 register (--registers)")


def run_key(settings: LabSettings, variant: str, seed: int) -> str:
    """Everything that changes what one run trains (not the device, not the other variants or seeds)."""
    fields = settings.to_json()
    for name in ("variants", "seeds", "device", "threads"):
        fields.pop(name)
    if variant != "registers":
        fields.pop("registers")
    if settings.task != "text":
        fields.pop("tokenizer")
        fields.pop("text_file")
    payload = json.dumps({"format": LAB_FORMAT, "variant": variant, "seed": seed, **fields}, sort_keys=True)
    return f"{settings.task}-{variant}-s{seed}-{hashlib.sha256(payload.encode()).hexdigest()[:12]}"
