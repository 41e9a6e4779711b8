"""Experiments page, lab section: train small decoders with swappable attention and see where sinks form.

A sweep runs from the form with a progress bar and is saved with ``Store.save_experiment`` (kind
"lab"); stored sweeps are listed and opened by deep link ``?lab=ID``: training curves per variant with
seed bands, the final metrics with 95% CIs beside the papers' claims, the learned sink's and the
registers' mass, and each trained model's directory (open it in Analyze: Model → Other).
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import services, ui, visitors
from sinkfix.plots import lab as lab_charts
from dashboard.sections import experiment_store
from sinkfix.experiments.lab.runner import run_lab
from sinkfix.experiments.lab.settings import OPTIMIZERS, LabSettings
from sinkfix.experiments.lab.tasks import TASKS, TOKENIZERS
from sinkfix.experiments.lab.variants import VARIANTS

KINDS = ("lab",)
QUERY = "lab"
MAX_STEPS = 5000  # a form submission blocks its session while it trains
# Training loads no model by name, so it takes its turn in a line of its own: one sweep at a time per server.
TRAINING_LINE = "lab training"


def _describe(data: dict) -> str:
    runs = data["runs"]
    if not runs:
        return "lab: no runs"
    task = runs[0]["task"]["task"]
    seeds = len({run["seed"] for run in runs})
    optimizer = runs[0].get("settings", {}).get("optimizer", "adam")
    return (f"{task}: {','.join(data['variants'])} x {seeds} seeds, {runs[0]['steps']} steps"
            + ("" if optimizer == "adam" else f", {optimizer}"))


def _form() -> None:
    with st.form("lab_form"):
        cols = st.columns(4)
        task = cols[0].selectbox("Task", TASKS, key="lab_task",
                                 help="backcopy: Guo et al.'s Bigram-Backcopy; text: tinyshakespeare")
        variants = cols[1].multiselect("Attention", list(VARIANTS), ["softmax", "relu"], key="lab_variants")
        seeds = cols[2].number_input("Seeds", 1, 10, 3, key="lab_seeds")
        optimizer = cols[3].selectbox("Optimiser", OPTIMIZERS, key="lab_optimizer")
        cols = st.columns(4)
        steps = cols[0].number_input("Steps (0: the task's default)", 0, MAX_STEPS, 0, key="lab_steps")
        batch = cols[1].number_input("Batch size", 1, 512, 32, key="lab_batch")
        layers = cols[2].number_input("Layers (0: default)", 0, 4, 0, key="lab_layers")
        hidden = cols[3].selectbox("Width d", (0, 64, 128, 256), key="lab_hidden",
                                   format_func=lambda d: "task default" if d == 0 else str(d))
        with st.expander("More settings"):
            cols = st.columns(4)
            heads = cols[0].number_input("Heads (0: default)", 0, 16, 0, key="lab_heads")
            every = cols[1].number_input("Checkpoint every (0: default)", 0, MAX_STEPS, 0, key="lab_every")
            registers = cols[2].number_input("Registers", 1, 16, 4, key="lab_registers")
            tokenizer = cols[3].selectbox("Text tokenizer", TOKENIZERS, key="lab_tokenizer")
        submitted = st.form_submit_button("Train", type="primary", key="lab_run")
    if not submitted:
        return
    settings = LabSettings(
        task=task, variants=tuple(variants), seeds=int(seeds), steps=int(steps) or None, batch_size=int(batch),
        layers=int(layers) or None, hidden=int(hidden) or None, heads=int(heads) or None, optimizer=optimizer,
        checkpoint_every=int(every) or None, registers=int(registers), tokenizer=tokenizer,
    )
    experiment_store.run_and_store("lab", f"Training {', '.join(variants) or 'no variant'} on {task}",
                                   lambda get, progress: _train(settings, progress), _describe, QUERY)


def _train(settings: LabSettings, progress):
    with visitors.job_turn(TRAINING_LINE):  # heavy work: one sweep at a time, the place in line shown
        return run_lab(settings, progress=progress)


def _show(result: dict, experiment_id: int) -> None:
    metric = st.radio("Curve", list(lab_charts.METRICS)[:5], horizontal=True, key="lab_curve",
                      format_func=lambda name: lab_charts.METRICS[name])
    ui.show_chart(lab_charts.training_curves(result, metric), f"lab-{experiment_id}-{metric}",
                  "Line: mean over seeds at each checkpoint; band: lowest to highest seed.")
    st.markdown("**Final checkpoint, beside the papers' claims**")
    st.dataframe(lab_charts.final_frame(result), hide_index=True)
    st.caption("Mean and 95% CI over seeds (Student's t). Sink₁^ε and first-token mass are token index 0's; "
               "sigmoid and relu are measured on row shares A[i,j]/ΣA[i,·] as Gu et al. measure them.")
    ui.show_chart(lab_charts.final_bars(result), f"lab-{experiment_id}-final")
    frame = lab_charts.sink_share_frame(result)
    if frame["where"].isin([lab_charts.METRICS["learned_sink_mass"], lab_charts.METRICS["register_share"]]).any():
        ui.show_chart(lab_charts.sink_share_bars(result), f"lab-{experiment_id}-sinks",
                      "Learned sink: the mass rows give the sink logit (sinklogit) or the +1 (softmax1). "
                      "Registers: the mass on the k prepended tokens. Whiskers: lowest to highest seed.")
    with st.expander("Trained models (open one in Analyze: Model → Other, where this server allows local folders)"):
        st.dataframe(pd.DataFrame([{"variant": r["variant"], "seed": r["seed"], "model directory": r["model_dir"],
                                    "seconds": round(r["seconds"], 1), "device": r["device"]}
                                   for r in result["runs"]]), hide_index=True)


def render() -> None:
    store = services.store_or_stop()
    st.subheader("Why sinks form, from scratch")
    st.caption("Train 1-4 layer decoders on Bigram-Backcopy (Guo et al. 2024) or tinyshakespeare with softmax, "
               "softmax+1, sigmoid, ReLU, softpick, gated, learned-sink or register attention, and measure each "
               "checkpoint with the code that analyses pretrained models. Training runs here, in this session.")
    _form()
    experiment_store.open_from_query(store, QUERY, {"lab": _show}, "lab")
    st.markdown("**Stored lab sweeps**")
    experiment_store.stored_table(store, QUERY, KINDS, "lab", "first variant's mean first-token mass", "lab_stored")
