"""Evaluate page, running it: one click runs the intervention at β, a β sweep beside the ``random``
and ``first`` (token 0) controls on the same heads, and per-sink evidence, with progress; the result
is saved with ``Store.save_evaluation`` and returned as a *view* (see ``evaluate_results``).
"""
from __future__ import annotations

import time

import streamlit as st

from dashboard import services, ui, visitors
from dashboard.progress import StatusProgress
from dashboard.sections import evaluate_form
from dashboard.sections.evaluate_results import View
from sinkfix.errors import SinkFixError
from sinkfix.experiments import calibrate
from sinkfix.experiments.evaluate import SweepPoint, aggregate, control_arms, evaluate_many, run_chunks
from sinkfix.experiments.token_evidence import token_evidence
from sinkfix.experiments.intervene import Intervention

# Clean forwards kept per session for the per-position views. A causal LM's chunk holds T x vocabulary
# log-probabilities (about 12 MB for 64 SmolLM2 tokens), so long inputs keep only their first chunks.
KEPT_CHUNKS = 4


def run_evaluation(request: dict, store) -> View | None:
    """Run every measurement with progress in an st.status box, save the evaluation, and return what
    the page shows. A user's mistake becomes one st.error line and None."""
    try:
        texts, betas = evaluate_form.check(request)
        visitors.check_texts(*texts, what="the texts")  # the server's limit on one request's text
    except SinkFixError as error:
        st.error(str(error))
        return None
    failed = None
    started = time.perf_counter()
    with st.status(f"Evaluating on {ui.escape_md(request['model'])}…", expanded=True) as status:
        progress = StatusProgress(status, unit=" forward passes")
        try:
            with visitors.turn(request["model"], status):  # one job per model at a time, the place in line shown
                view = measure(request, texts, betas, store, progress)
        except SinkFixError as error:
            failed = str(error)
        if failed is None:
            status.update(label=f"Evaluation {view.id} saved: {view.result['n_positions']} positions "
                          f"on {ui.escape_md(view.model)} in {time.perf_counter() - started:.1f} s",
                          state="complete", expanded=False)
        else:
            status.update(label="Evaluation failed", state="error", expanded=False)
    if failed is not None:
        st.error(failed)
        return None
    return view


def measure(request: dict, texts: list[str], betas: list[float], store, progress: StatusProgress) -> View:
    loaded = services.model_shelf().get(request["model"], progress=progress.stage,
                                        device=request.get("device", "auto"), dtype=request.get("dtype", "auto"))
    intervention: Intervention = request["intervention"]
    if request["calibration"]:
        heads = calibrate.resolve_heads(f"@{request['calibration']}", loaded.name, viewer=services.viewer())
        intervention = intervention.with_(heads=heads)
    max_tokens = int(request["max_tokens"])
    progress.stage(f"clean forward over {len(texts)} text(s), in chunks of at most {max_tokens} tokens")
    runs = run_chunks(loaded, texts, max_tokens, intervention.norm_layer)
    progress.stage(f"{intervention.label()}: {len(runs)} chunk(s)")
    scores = []
    for index, run in enumerate(runs):
        scores.append(run.score(run.plan(intervention)))
        progress(index + 1, len(runs), "intervention")
    evaluation = aggregate(loaded, intervention, runs, scores)
    sweep = []
    if betas:
        arms = control_arms(intervention)
        keys = [(name, beta) for name in arms for beta in betas]
        progress.stage(f"β sweep: {len(betas)} values × {len(arms)} arms ({', '.join(arms)})")
        results = evaluate_many(loaded, runs, [arms[n].with_(beta=b) for n, b in keys], max_tokens, progress=progress)
        sweep = [SweepPoint(n, b, e).to_json() for (n, b), e in zip(keys, results)]
    evidence = []
    if request["evidence"]:
        progress.stage(f"per-sink evidence on the first text ({int(request['evidence'])} candidates by attention)")
        rows = token_evidence(loaded, texts[0], intervention, top_k=int(request["evidence"]), max_tokens=max_tokens,
                              progress=progress)
        evidence = [r.to_json() for r in rows]
    out = evaluation.to_json(detail=True) | {"source": "dashboard", "sweep": sweep, "token_evidence": evidence,
                                             "lm_kind": loaded.lm_kind}
    evaluation_id = store.save_evaluation("evaluate", out, viewer=services.viewer())
    return View(id=evaluation_id, kind="evaluate", result=out, intervention=intervention,
                runs=runs[:KEPT_CHUNKS], scores=scores[:KEPT_CHUNKS])
