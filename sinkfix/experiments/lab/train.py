"""Train one lab model (one variant, one seed), checkpointing and measuring every N steps.

The model trains through its own plain attention (``lab_eager_attention``) and is measured through
SinkFix's (``attn_implementation="sinkfix"``, as ``load_model`` loads it). Initial weights come from
``torch.manual_seed(seed)`` and each step's batch from (seed, step) alone, so a run resumed from a
checkpoint continues exactly as the uninterrupted run would (a test checks the weights match).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from sinkfix.capture import attention as capture
from sinkfix.errors import SinkFixError
from sinkfix.experiments.lab import checkpoint
from sinkfix.experiments.lab.architecture import LabConfig, LabForCausalLM, register
from sinkfix.experiments.lab.measure import measure
from sinkfix.experiments.lab.settings import LabSettings
from sinkfix.experiments.lab.tasks import Task
from sinkfix.experiments.lab.variants import VARIANTS

Step = Callable[[int], None]  # called after each training step with the run's step count
GRAD_CLIP = 1.0
WARMUP_SHARE = 0.05  # linear warm-up over the first 5% of steps, then a constant rate
# Position embeddings past the trained length exist so SinkFix's post-load probe (a ~100-character
# sentence) runs; they stay untrained, and analyses stop at the trained length, the saved tokenizer's
# model_max_length.
MIN_POSITIONS = 128


class TrainingDivergedError(SinkFixError):
    """The training loss stopped being a finite number."""


def build_model(settings: LabSettings, variant: str, task: Task, seed: int) -> LabForCausalLM:
    register()
    capture.register()
    v = VARIANTS[variant]
    config = LabConfig(
        vocab_size=task.vocab.size, hidden_size=settings.hidden, num_hidden_layers=settings.layers,
        num_attention_heads=settings.heads, intermediate_size=4 * settings.hidden,
        max_position_embeddings=max(task.vocab.max_length, MIN_POSITIONS), normaliser=v.normaliser, attention_gate=v.gate,
        sink_logit=v.sink_logit, n_registers=task.vocab.n_registers, lab_variant=variant, lab_task=task.name,
        bos_token_id=task.vocab.bos_id, pad_token_id=task.vocab.pad_id,
        architectures=["LabForCausalLM"],
    )
    torch.manual_seed(seed)
    model = LabForCausalLM(config)
    model.set_attn_implementation("eager")
    return model


def make_optimizer(model: torch.nn.Module, settings: LabSettings) -> torch.optim.Optimizer:
    if settings.optimizer == "sgd":  # Guo et al.'s SGD runs: momentum 0.9
        return torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=0.9, weight_decay=settings.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=settings.lr, betas=(0.9, 0.99), eps=1e-8,
                             weight_decay=settings.weight_decay)


def _rate(settings: LabSettings, step: int) -> float:
    warmup = max(1, int(WARMUP_SHARE * settings.steps))
    return settings.lr * min(1.0, (step + 1) / warmup)


def _measure(model: LabForCausalLM, task: Task, variant: str, settings: LabSettings, step: int) -> dict:
    model.eval()
    model.set_attn_implementation(capture.ATTN_NAME)
    try:
        row = measure(model, task.validation(), VARIANTS[variant].normaliser, task.vocab.n_registers, settings.epsilon)
    finally:
        model.set_attn_implementation("eager")
        model.train()
    return {"step": step, **row}


def train_run(settings: LabSettings, variant: str, seed: int, task: Task, directory: Path, device: str,
              on_step: Step | None = None) -> dict:
    """Train (or resume, or reuse) one run in ``directory``; returns its JSON entry."""
    saved = checkpoint.saved_info(directory)
    if saved is not None and saved.get("done") and (directory / checkpoint.MODEL_DIR).exists():
        if on_step is not None:
            on_step(settings.steps)
        return saved["run"]
    model = build_model(settings, variant, task, seed).to(device)
    optimizer = make_optimizer(model, settings)
    info = checkpoint.load_state(directory, model, optimizer) if saved is not None else None
    start = 0 if info is None else int(info["step"])
    history: list[dict] = [] if info is None else info["history"]
    seconds = 0.0 if info is None else float(info["seconds"])
    cpu = 0.0 if info is None else float(info.get("cpu_seconds", 0.0))
    if not history:
        history.append(_measure(model, task, variant, settings, 0))
    began, cpu_began = time.perf_counter(), time.process_time()
    model.train()
    for step in range(start, settings.steps):
        batch = task.train_batch(seed, step, settings.batch_size)
        ids = torch.as_tensor(batch.ids, device=device)
        scored = torch.as_tensor(batch.scored, device=device)
        logits = model(input_ids=ids).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits[scored], ids[:, 1:][scored])
        if not torch.isfinite(loss):  # the last checkpoint stays on disk; nothing after it is worth keeping
            raise TrainingDivergedError(f"{variant} (seed {seed}) diverged at step {step + 1}: the training loss is "
                                        f"{float(loss)}; try a lower --lr (now {settings.lr:g})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        for group in optimizer.param_groups:
            group["lr"] = _rate(settings, step)
        optimizer.step()
        done = step + 1
        if done % settings.checkpoint_every == 0 or done == settings.steps:
            history.append({**_measure(model, task, variant, settings, done), "train_loss": float(loss.detach())})
            checkpoint.save_state(directory, model, optimizer, {
                "step": done, "history": history, "seconds": seconds + time.perf_counter() - began,
                "cpu_seconds": cpu + time.process_time() - cpu_began, "done": False})
        if on_step is not None:
            on_step(done)
    model_dir = checkpoint.save_model(directory, model.cpu(), task.vocab)
    run = {"variant": variant, "seed": seed, "task": task.describe, "settings": _run_settings(settings),
           "device": device, "steps": settings.steps, "seconds": seconds + time.perf_counter() - began,
           "cpu_seconds": cpu + time.process_time() - cpu_began,
           "model_dir": str(model_dir), "checkpoints": history, "final": history[-1]}
    checkpoint.save_state(directory, model, optimizer, {"step": settings.steps, "history": history, "done": True,
                                                        "seconds": run["seconds"], "cpu_seconds": run["cpu_seconds"],
                                                        "run": run})
    return run


def _run_settings(settings: LabSettings) -> dict:
    out = settings.to_json()
    out.pop("variants")
    out.pop("seeds")
    return out
