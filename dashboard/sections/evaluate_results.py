"""Evaluate page, one evaluation's charts: summary, β sweep beside the controls, KL (or cosine) along
the text, top-5 predictions, per-sink evidence.

Everything is drawn from the evaluation's stored JSON, so a fresh result and one reopened with
``?evaluation=ID`` look the same. Only the per-position predictions and a model without an LM
head's per-token cosine need the clean forwards, which a fresh result of this session keeps.
"""
from __future__ import annotations

import streamlit as st

from dashboard import ui, units
from sinkfix.plots import evaluation as eval_charts, evaluation_result
from dashboard.sections.evaluate_form import LM_MODEL, _use_lm_model
from dashboard.sections.evaluate_view import (  # noqa: F401  (View and stored_view are used through this module)
    View, intervention_label, intervention_of, kl_missing_reason, stored_view, target_names,
)
from sinkfix.analysis.display import show_token, show_tokens


def fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def summary(view: View) -> None:
    e = view.result
    st.header(f"Evaluation {view.id} · {ui.escape_md(view.model)} · {ui.escape_md(view.label())}")
    shown = target_names(e)
    n_targets = sum(len(t) for t in e.get("target_tokens") or [])
    cols = st.columns(3 if view.lm_kind is None else 5)
    if view.lm_kind is None:
        cols[0].metric("Cosine of final hidden states", fmt(e.get("cosine_mean"), ".4f"),
                       help="Mean over tokens of cos(h_orig, h_mod); 1 means the outputs did not move.")
        cols[1].metric("Texts · chunks", f"{e.get('n_texts')} · {e.get('n_chunks')}")
        cols[2].metric("Target tokens", n_targets)
        st.info(f"{ui.escape_md(view.model)} has no language-model head, so NLL, KL and top-1 agreement are not "
                "defined (they are null in the saved evaluation). The page shows the cosine similarity of the final "
                f"hidden states instead. Choose {LM_MODEL}, a causal LM with an LM head, to measure NLL and KL.")
        st.button(f"Switch to {LM_MODEL}", key=f"ev_switch{'' if view.runs is not None else f'_{view.id}'}",
                  on_click=_use_lm_model, icon=":material/swap_horiz:")
    else:
        low, high = e.get("delta_nll_ci95") or (float("nan"), float("nan"))
        delta = e.get("delta_nll")
        cols[0].metric("Baseline NLL (nats)", fmt(e.get("baseline_nll"), ".4f"), help="Mean next-token cross-entropy, nats.")
        cols[1].metric("Intervened NLL (nats)", fmt(e.get("intervened_nll"), ".4f"), delta=f"{delta:+.4f}",
                       delta_color="inverse",
                       help=f"95% bootstrap CI of the change: [{low:+.4f}, {high:+.4f}] "
                       f"(resampling {e.get('ci_unit')}s).")
        cols[2].metric("KL (nats)", fmt(e.get("kl_mean"), ".4f"), help="KL(p_orig ‖ p_mod), mean over positions, in nats.")
        cols[3].metric("Top-1 agreement", units.percent(e.get("top1_agreement")))
        cols[4].metric("Cosine", fmt(e.get("cosine_mean"), ".4f"), help="Of final hidden states, mean over tokens.")
        st.caption(f"NLL change {delta:+.4f} nats per token, 95% CI [{low:+.4f}, {high:+.4f}] over "
                   f"{e.get('n_positions')} positions ({e.get('ci_unit')}s resampled). Below 0: the intervention helped.")
    if n_targets:
        names = ", ".join(shown) if shown else "(their text is not stored with this evaluation)"
        st.caption(f"{units.plural(n_targets, 'target token')} redistributed: {ui.escape_md(names)}")
    else:
        st.warning("No token matched the target, so nothing was redistributed and the outputs are unchanged. "
                   "With target detrimental, lower τ_att or raise τ_norm (or pick first / tokens:I,J).")
    st.caption(f"{units.plural(e.get('n_texts') or 0, 'text')}, {units.plural(e.get('n_chunks') or 0, 'chunk')}, "
               f"{e.get('n_positions')} scored positions. "
               f"Saved as evaluation {view.id} in the run database; link: `?evaluation={view.id}`.")


def sweep_section(view: View) -> None:
    st.subheader("β sweep beside the controls")
    chart = evaluation_result.sweep(view.result)
    if chart is None:
        st.info("The β sweep was skipped (the β sweep box was empty).")
        return
    frame = eval_charts.sweep_frame(view.result["sweep"])
    has_lm = view.lm_kind is not None
    ui.show_chart(
        chart, f"evaluation{view.id}-sweep",
        ("Each line redistributes from its own token set on the same heads: the target, random non-sink tokens "
         "with matched attention mass, and token 0. β = 1 changes nothing; β = 0 moves all of their attention. "
         "The band is the 95% bootstrap CI of the NLL change. A gain that the controls also show is no gain."
         if has_lm else
         "Cosine of the final hidden states against β, for the target and its controls on the same heads: "
         "1 means no change. The further down, the more the intervention moved the model's outputs.")
        + (" With target first, the token-0 control is the target itself." if view.result.get("target") == "first" else ""),
    )
    shown = frame.drop(columns=["arm_key", "nll_low", "nll_high"])
    if not has_lm:
        shown = shown[["arm", "target", "beta", "cosine"]]
    with st.expander("Sweep values"):
        st.dataframe(shown, hide_index=True, column_config={
            c: st.column_config.NumberColumn(format="%.4f") for c in ("nll", "delta_nll", "kl", "top1", "cosine")})


def chunk_choice(view: View) -> int:
    e = view.result
    tokens = e.get("tokens") or []
    kept = len(view.runs) if view.runs is not None else len(tokens)
    if kept <= 1:
        return 0
    if view.runs is not None and e.get("n_chunks", 0) > kept:
        st.caption(f"Per-position views cover the first {kept} of {e['n_chunks']} chunks; the numbers above cover "
                   "them all.")
    texts = [run.chunk.text_index + 1 for run in view.runs] if view.runs is not None else None
    return st.selectbox("Chunk", range(kept), key=f"ev_chunk_{view.id}",
                        format_func=lambda c: f"chunk {c + 1}: " + (f"text {texts[c]}, " if texts else "")
                        + f"{len(tokens[c])} tokens")


def position_label(tokens: list[str], position: int, causal: bool) -> str:
    here = show_token(tokens[position], 20)
    if causal and position + 1 < len(tokens):
        return f"{position}: after {here} (next: {show_token(tokens[position + 1], 20)})"
    return f"{position}: {here}"


def _positions(view: View, chunk: int, tokens: list[str], n_scores: int) -> list[int] | None:
    """Scored positions: the live run's; stored, what the model kind implies (causal: all but the last;
    masked: the non-special tokens), or None when that does not match the stored count."""
    if view.runs is not None:
        return list(view.runs[chunk].positions)
    return evaluation_result.stored_positions(tokens, view.lm_kind, n_scores)


def positions_section(view: View, chunk: int) -> int | None:
    """Per-position KL (or cosine) along the chosen chunk; returns the position picked for predictions."""
    e = view.result
    raw = (e.get("tokens") or [[]])[chunk]
    tokens = show_tokens(raw)
    targets = (e.get("target_tokens") or [[]])[chunk]
    causal = view.lm_kind == "causal"
    if view.lm_kind is None:
        st.subheader("Cosine along the text")
        if view.scores is None:
            st.info("Per-token cosines are not stored with the evaluation; the mean is above. Run it again on this "
                    "page to see them token by token.")
            return None
        ui.show_chart(
            eval_charts.position_chart(tokens, list(range(len(tokens))), view.scores[chunk].cosine, "cosine",
                                       "Cosine of original and intervened final hidden state, per token", targets),
            f"evaluation{view.id}-cosine-c{chunk}",
            "One bar per token; red: tokens whose attention was redistributed. 1 means the token's output "
            "did not move. NLL and KL need an LM head.",
        )
        return None
    st.subheader("KL along the text")
    kl = view.scores[chunk].kl if view.scores is not None else (e.get("per_position_kl") or [[]])[chunk]
    positions = _positions(view, chunk, raw, len(kl))
    if not positions:
        st.info(kl_missing_reason(view, len(kl), len(raw)))
        return None
    default = evaluation_result.largest(positions, kl)
    picked = st.selectbox(
        "Position for the predictions below", positions, index=positions.index(default),
        format_func=lambda p: position_label(raw, p, causal), key=f"ev_position_{view.id}_{chunk}",
        help="Defaults to the position with the largest KL.",
    )
    ui.show_chart(
        evaluation_result.kl(raw, positions, kl, targets, picked),
        f"evaluation{view.id}-kl-c{chunk}",
        ("Each bar is the KL between the next-token distributions before and after the intervention, at the "
         "position of the token named on the axis (it predicts the token after it). "
         if causal else "Each bar is the KL of the masked-LM prediction at that token. ")
        + "Red: tokens whose attention was redistributed; the outlined bar is the position picked above.",
    )
    return picked


def predictions_section(view: View, chunk: int, position: int) -> None:
    st.subheader("Top-5 predictions before and after")
    if view.runs is None:
        st.info("Predictions need the model's forward passes, which are not stored. Run the evaluation again on "
                "this page to see the top-5 tokens at any position.")
        return
    run, tokens = view.runs[chunk], (view.result.get("tokens") or [[]])[chunk]
    key = (chunk, position)
    if key not in view.predictions:
        with st.spinner("one forward pass with the intervention…"):
            before = run.top_k(None, position, 5)
            after = run.top_k(run.plan(view.intervention), position, 5)
        view.predictions[key] = tuple([(show_token(t), p) for t, p in top] for top in (before, after))
    before, after = view.predictions[key]
    where = position_label(tokens, position, view.lm_kind == "causal")
    left, right = st.columns([3, 2], gap="large")
    with left:
        ui.show_chart(eval_charts.predictions_chart(before, after, f"Position {where}"),
                      f"evaluation{view.id}-predictions-c{chunk}-p{position}",
                      "Probabilities of the five most likely tokens, before (blue) and after (red) the "
                      "intervention. ␣ marks a leading space.")
    with right:
        st.dataframe(eval_charts.predictions_frame(before, after), hide_index=True, column_config={
            "p_before": st.column_config.NumberColumn("p before", format="%.4f"),
            "p_after": st.column_config.NumberColumn("p after", format="%.4f")})


def evidence_section(view: View) -> None:
    st.subheader("Per-sink evidence")
    rows = view.result.get("token_evidence") or []
    if not rows:
        st.info("Per-sink evidence was skipped (candidate sinks = 0).")
        return
    has_lm = view.lm_kind is not None
    frame = evaluation_result.evidence_frame(rows)
    beta = view.result.get("beta")
    ui.show_chart(
        evaluation_result.evidence(view.result), f"evaluation{view.id}-evidence",
        (f"Each candidate (the tokens of the first text receiving the most attention, plus any the seed rule calls "
         f"detrimental) is redistributed alone at β = {beta:g} in the chosen heads. Evidence label: "
         "detrimental only if removing it lowers the NLL, beneficial if it raises it; token 0 stays beneficial."
         if has_lm else
         f"Each candidate is redistributed alone at β = {beta:g}; the bar is how far the final "
         "hidden states move (1 − cosine). No LM head, so there is no NLL and no evidence-based label."),
    )
    columns = ["index", "token", "att_received", "value_norm", "seed_label", "evidence_label", "delta_nll",
               "kl_mean", "top1_agreement", "cosine_mean"]
    if not has_lm:
        columns = [c for c in columns if c not in ("evidence_label", "delta_nll", "kl_mean", "top1_agreement")]
    st.dataframe(frame[columns], hide_index=True, column_config={
        "index": st.column_config.NumberColumn("#", width=40),
        "att_received": st.column_config.NumberColumn("att", format="%.4f"),
        "value_norm": st.column_config.NumberColumn("norm", format="%.3f"),
        "seed_label": st.column_config.TextColumn("seed rule"),
        "evidence_label": st.column_config.TextColumn("evidence"),
        "delta_nll": st.column_config.NumberColumn("ΔNLL", format="%+.4f"),
        "kl_mean": st.column_config.NumberColumn("KL", format="%.4f"),
        "top1_agreement": st.column_config.NumberColumn("top-1", format="%.3f"),
        "cosine_mean": st.column_config.NumberColumn("cosine", format="%.4f")})


def render(view: View) -> None:
    """Every chart of one evaluation (an STS-B result has its own section)."""
    if view.kind == "sts":
        from dashboard.sections import evaluate_sts

        evaluate_sts.show(view)
        return
    summary(view)
    sweep_section(view)
    chunk = chunk_choice(view)
    position = positions_section(view, chunk)
    if position is not None:
        predictions_section(view, chunk, position)
    elif view.lm_kind is None:
        st.subheader("Top-5 predictions before and after")
        st.info("Predictions need an LM head; this model has none.")
    evidence_section(view)
