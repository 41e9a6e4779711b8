"""Evaluate: redistribute attention inside the forward pass and measure what the outputs do.

The user picks a model, texts and an intervention (target, β, layers, heads or a stored calibration).
One click runs, with progress: the intervention at β, a coarse β sweep beside the ``random`` and
``first`` (token 0) controls on the same heads, and per-sink evidence. The result is saved with
``Store.save_evaluation`` and listed at the bottom with the stored calibrations.
"""
from __future__ import annotations

import re
import time

import pandas as pd
import streamlit as st

from dashboard import charts, eval_charts, services, ui
from sinkfix.experiments import calibrate
from sinkfix import models
from sinkfix import settings as defaults
from sinkfix.errors import InputError, SettingsError, SinkFixError
from sinkfix.experiments.evaluate import SweepPoint, aggregate, control_arms, evaluate_many, run_chunks, token_evidence
from sinkfix.experiments.intervene import Intervention, parse_heads, parse_layers, parse_target

OTHER = "Other: hub id or local path"
LM_MODEL = "smollm2-135m"
DEFAULT_TEXT = "The cat sat on the mat and looked out of the window."
DEFAULT_SWEEP = "1.0, 0.7, 0.4, 0.0"
TARGETS = ["first", "detrimental", "random", "tokens:I,J"]
HEAD_MODES = ["All heads of those layers", "A list of heads (L:H)", "A stored calibration"]
RESULT = "_ev_result"  # the latest evaluation of this session: its numbers and the clean forwards
# Clean forwards kept per session for the per-position views. A causal LM's chunk holds T x vocabulary
# log-probabilities (about 12 MB for 64 SmolLM2 tokens), so long inputs keep only their first chunks.
KEPT_CHUNKS = 4


# ---------------------------------------------------------------- the form


def _use_lm_model() -> None:
    st.session_state.ev_model = LM_MODEL


def split_texts(raw: str, separate: bool) -> list[str]:
    """One text, or several separated by blank lines. Raises InputError when nothing is left."""
    parts = re.split(r"\n[ \t]*\n", raw) if separate else [raw]
    texts = [p.strip() for p in parts if p.strip()]
    if not texts:
        raise InputError("the text is empty: give at least one word to evaluate")
    return texts


def parse_betas(text: str) -> list[float]:
    """"1.0, 0.7, 0.4, 0" -> [1.0, 0.7, 0.4, 0.0] (from 1 down to 0, duplicates dropped)."""
    betas: set[float] = set()
    for part in text.replace(";", ",").split(","):
        if not part.strip():
            continue
        try:
            beta = float(part)
        except ValueError:
            raise SettingsError(f"β sweep value '{part.strip()}' is not a number: write a list like {DEFAULT_SWEEP}") from None
        if not 0.0 <= beta <= 1.0:
            raise SettingsError(f"β must be between 0 and 1, got {part.strip()} in the sweep")
        betas.add(beta)
    if not betas:
        raise SettingsError(f"the β sweep is empty: write a list like {DEFAULT_SWEEP}")
    return sorted(betas, reverse=True)


def model_input() -> str:
    choice = st.selectbox(
        "Model", [LM_MODEL, *[m for m in models.EMBEDDED if m != LM_MODEL], OTHER], key="ev_model",
        help="NLL, KL and top-1 agreement need a language-model head: smollm2-135m has one. minilm is a "
        "sentence encoder without one, so only the cosine of final hidden states is measured there.",
    )
    if choice == OTHER:
        return st.text_input("Hub id or local path", key="ev_model_other", placeholder="gpt2").strip()
    return choice


def text_input() -> tuple[str, str | None]:
    """The raw text (pasted, or read from an uploaded .txt) and the uploaded file's name, if any."""
    text = st.text_area(
        "Texts", value=DEFAULT_TEXT, key="ev_text", height=120,
        help="One text, or several separated by a blank line (untick the box below to keep blank lines "
        "inside one text). Short texts keep the page fast; long ones are cut into chunks of max tokens.",
    )
    upload = st.file_uploader("…or upload a .txt file (it replaces the box above)", type=["txt"], key="ev_file")
    if upload is None:
        return text, None
    try:
        return upload.getvalue().decode("utf-8"), upload.name
    except UnicodeDecodeError:
        raise InputError(f"{upload.name} is not UTF-8 text") from None


def calibration_names(store) -> dict[str, str]:
    """name -> how the selectbox shows it."""
    return {r["name"]: f"@{r['name']} · {r['model']} · {len(r['kept_heads'])} heads ({r['task']})"
            for r in store.calibrations()}


def inputs(store) -> tuple[dict | None, bool]:
    """The form. Returns (the request, or None when an input is invalid; whether Evaluate was clicked)."""
    left, right = st.columns([3, 2], gap="large")
    problems: list[str] = []
    request: dict = {}
    with left:
        request["model"] = model_input()
        try:
            raw, file_name = text_input()
        except SinkFixError as error:
            raw, file_name = "", None
            problems.append(str(error))
        separate = st.checkbox("Blank lines separate texts", value=True, key="ev_separate")
        if file_name:
            st.caption(f"Using the uploaded file {ui.escape_md(file_name)} ({len(raw)} characters).")
        request["raw"], request["separate"] = raw, separate
        cols = st.columns(3)
        request["max_tokens"] = cols[0].number_input(
            "Max tokens", min_value=4, max_value=4096, value=64, step=16, key="ev_max_tokens",
            help="Texts are cut into chunks of at most this many tokens (special tokens included). "
            "Each chunk costs one forward pass per arm and β.",
        )
        request["betas"] = cols[1].text_input(
            "β sweep", value=DEFAULT_SWEEP, key="ev_sweep",
            help="β values for the curve, between 0 and 1. Each value costs three forwards per chunk "
            "(target, random, token 0). Empty the box to skip the sweep.",
        )
        request["evidence"] = cols[2].number_input(
            "Candidate sinks", min_value=0, max_value=20, value=4, step=1, key="ev_evidence",
            help="Per-sink evidence: the tokens receiving the most attention (plus any the seed rule calls "
            "detrimental) are redistributed one at a time. 0 skips it.",
        )
    with right:
        choice = st.selectbox(
            "Target", TARGETS, key="ev_target",
            help="Which tokens lose attention. first: token 0 only. detrimental: the tokens the seed rule "
            "labels detrimental (high attention, small value vector). random: non-sink tokens with the same "
            "attention mass as the detrimental ones (a control). tokens:I,J: explicit positions.",
        )
        target = choice
        if choice == "tokens:I,J":
            indices = st.text_input("Token positions", value="1", key="ev_tokens",
                                    help="Comma-separated positions, e.g. 2,5. Token 0 is protected: write first "
                                    "to include it (first,3).")
            target = f"tokens:{indices.strip()}"
        request["beta"] = st.slider(
            "β", 0.0, 1.0, defaults.DEFAULT_BETA, 0.05, key="ev_beta",
            help="The target tokens keep β of the attention they receive; the other 1−β is spread over the "
            "other tokens in proportion to their attention (ACT), inside the forward pass, before ·V.",
        )
        layers = st.text_input("Layers", key="ev_layers", placeholder="all layers",
                               help="A range like 2-4, or a list like 0,3-5. Empty: every layer.")
        mode = st.radio("Heads", HEAD_MODES, key="ev_head_mode")
        heads_text, calibration = None, None
        if mode == HEAD_MODES[1]:
            heads_text = st.text_input("Heads", key="ev_heads", placeholder="3:7, 4:0",
                                       help="LAYER:HEAD pairs, comma-separated.")
        elif mode == HEAD_MODES[2]:
            names = calibration_names(store)
            if names:
                calibration = st.selectbox("Calibration", list(names), format_func=names.get, key="ev_calibration",
                                           help="A head set kept by `python -m sinkfix calibrate --name NAME`.")
            else:
                problems.append("No calibration is stored yet: run `python -m sinkfix calibrate ... --name NAME`, "
                                "or choose another head setting.")
        with st.expander("Seed rule thresholds (for target detrimental)"):
            tau_att = st.slider("τ_att", 0.0, 1.0, defaults.DEFAULT_TAU_ATT, 0.01, key="ev_tau_att")
            tau_norm = st.slider("τ_norm", 0.0, 1.0, defaults.DEFAULT_TAU_NORM, 0.01, key="ev_tau_norm")
    try:
        parse_target(target)
        request["intervention"] = Intervention(target=target, beta=request["beta"], layers=parse_layers(layers),
                                               heads=parse_heads(heads_text), tau_att=tau_att, tau_norm=tau_norm)
        request["calibration"] = calibration
    except SinkFixError as error:
        problems.append(str(error))
    clicked = st.button("Evaluate", type="primary", icon=":material/play_arrow:", key="ev_run")
    if clicked:
        for problem in problems:
            st.error(problem)
    return (None if problems else request), clicked


# ---------------------------------------------------------------- running it


def readable(tokenizer, tokens: list[str]) -> list[str]:
    """Tokens as a reader knows them: byte-level BPE pieces decoded (Ġcat -> ␣cat, âĢĻ -> ’), a leading
    space shown as ␣ and a newline as ↵. WordPiece continuations (##ing), special tokens and pieces of a
    multi-byte character stay as the tokenizer wrote them."""
    special = set(tokenizer.all_special_tokens)
    out = []
    for token in tokens:
        text = token
        if not token.startswith("##") and token not in special:
            decoded = tokenizer.convert_tokens_to_string([token])
            if decoded and "\ufffd" not in decoded:
                text = decoded
        out.append(text.replace(" ", "␣").replace("\n", "↵"))
    return out


def check(request: dict) -> tuple[list[str], list[float]]:
    """What can be checked before a model loads (empty text, a bad β list, no model name)."""
    if not request["model"]:
        raise SettingsError("give a model name: an embedded model, a hub id or a local directory")
    texts = split_texts(request["raw"], request["separate"])
    betas = parse_betas(request["betas"]) if request["betas"].strip() else []
    return texts, betas


def run_evaluation(request: dict, store) -> dict | None:
    """Run every measurement with progress in an st.status box, save the evaluation, and return what
    the page shows. A user's mistake becomes one st.error line and None."""
    try:
        texts, betas = check(request)
    except SinkFixError as error:
        st.error(str(error))
        return None
    failed = None
    started = time.perf_counter()
    with st.status(f"Evaluating on {ui.escape_md(request['model'])}…", expanded=True) as status:
        bar = st.progress(0.0, text="loading the model")

        def tick(done: int, total: int, what: str) -> None:
            bar.progress(min(done / max(total, 1), 1.0), text=f"{what}: {done} of {total} forward passes")

        try:
            result = measure(request, texts, betas, store, status, tick)
        except SinkFixError as error:
            failed = str(error)
        if failed is None:
            status.update(label=f"Evaluation {result['id']} saved: {result['evaluation'].n_positions} positions "
                          f"on {ui.escape_md(result['model'])} in {time.perf_counter() - started:.1f} s",
                          state="complete", expanded=False)
        else:
            status.update(label="Evaluation failed", state="error", expanded=False)
    if failed is not None:
        st.error(failed)
        return None
    return result


def measure(request: dict, texts: list[str], betas: list[float], store, status, tick) -> dict:
    loaded = services.model_shelf().get(request["model"], progress=status.write)
    intervention: Intervention = request["intervention"]
    if request["calibration"]:
        heads = calibrate.resolve_heads(f"@{request['calibration']}", loaded.name)
        intervention = intervention.with_(heads=heads)
    max_tokens = int(request["max_tokens"])
    status.write(f"clean forward over {len(texts)} text(s), in chunks of at most {max_tokens} tokens")
    runs = run_chunks(loaded, texts, max_tokens, intervention.norm_layer)
    status.write(f"{intervention.label()}: {len(runs)} chunk(s)")
    scores = []
    for index, run in enumerate(runs):
        scores.append(run.score(run.plan(intervention)))
        tick(index + 1, len(runs), "intervention")
    evaluation = aggregate(loaded, intervention, runs, scores)
    sweep = []
    if betas:
        arms = control_arms(intervention)
        keys = [(name, beta) for name in arms for beta in betas]
        status.write(f"β sweep: {len(betas)} values × {len(arms)} arms ({', '.join(arms)})")
        results = evaluate_many(loaded, runs, [arms[n].with_(beta=b) for n, b in keys], max_tokens, progress=tick)
        sweep = [SweepPoint(n, b, e).to_json() for (n, b), e in zip(keys, results)]
    evidence = []
    if request["evidence"]:
        status.write(f"per-sink evidence on the first text ({int(request['evidence'])} candidates by attention)")
        rows = token_evidence(loaded, texts[0], intervention, top_k=int(request["evidence"]), max_tokens=max_tokens,
                              progress=tick)
        evidence = [r.to_json() for r in rows]
    out = evaluation.to_json(detail=True) | {"source": "dashboard", "sweep": sweep, "token_evidence": evidence}
    evaluation_id = store.save_evaluation("evaluate", out)
    shown = readable(loaded.tokenizer, [row["token"] for row in evidence])
    return {"id": evaluation_id, "model": loaded.name, "lm_kind": loaded.lm_kind, "evaluation": evaluation,
            "intervention": intervention, "runs": runs[:KEPT_CHUNKS], "scores": scores[:KEPT_CHUNKS],
            "sweep": sweep, "evidence": [row | {"shown": text} for row, text in zip(evidence, shown)],
            "shown": [readable(loaded.tokenizer, tokens) for tokens in evaluation.tokens], "predictions": {}}


# ---------------------------------------------------------------- showing it


def fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def summary(result: dict) -> None:
    e = result["evaluation"]
    st.header(f"Evaluation {result['id']} · {ui.escape_md(result['model'])} · {e.intervention.label()}")
    targets = sorted({charts.short_token(result["shown"][c][i], 16)
                      for c, chunk in enumerate(e.target_tokens) for i in chunk})
    n_targets = sum(len(t) for t in e.target_tokens)
    cols = st.columns(3 if result["lm_kind"] is None else 5)
    if result["lm_kind"] is None:
        cols[0].metric("Cosine of final hidden states", fmt(e.cosine_mean, ".4f"),
                       help="Mean over tokens of cos(h_orig, h_mod); 1 means the outputs did not move.")
        cols[1].metric("Texts · chunks", f"{e.n_texts} · {e.n_chunks}")
        cols[2].metric("Target tokens", n_targets)
        st.info(f"{ui.escape_md(result['model'])} has no language-model head, so NLL, KL and top-1 agreement are not defined "
                "(they are null in the saved evaluation). The page shows the cosine similarity of the final hidden "
                f"states instead. Choose {LM_MODEL}, a causal LM with an LM head, to measure NLL and KL.")
        st.button(f"Switch to {LM_MODEL}", key="ev_switch", on_click=_use_lm_model, icon=":material/swap_horiz:")
    else:
        low, high = e.delta_nll_ci
        cols[0].metric("Baseline NLL", fmt(e.baseline_nll, ".4f"), help="Mean next-token cross-entropy, nats.")
        cols[1].metric("Intervened NLL", fmt(e.intervened_nll, ".4f"), delta=f"{e.delta_nll:+.4f}",
                       delta_color="inverse",
                       help=f"95% bootstrap CI of the change: [{low:+.4f}, {high:+.4f}] (resampling {e.ci_unit}s).")
        cols[2].metric("KL(p_orig ‖ p_mod)", fmt(e.kl_mean, ".4f"), help="Mean over positions, nats.")
        cols[3].metric("Top-1 agreement", fmt(e.top1_agreement, ".3f"))
        cols[4].metric("Cosine", fmt(e.cosine_mean, ".4f"), help="Of final hidden states, mean over tokens.")
        st.caption(f"NLL change {e.delta_nll:+.4f} nats per token, 95% CI [{low:+.4f}, {high:+.4f}] "
                   f"over {e.n_positions} positions ({e.ci_unit}s resampled). Below 0: the intervention helped.")
    if n_targets:
        st.caption(f"{n_targets} target token(s) redistributed: {ui.escape_md(', '.join(targets))}")
    else:
        st.warning("No token matched the target, so nothing was redistributed and the outputs are unchanged. "
                   "With target detrimental, lower τ_att or raise τ_norm (or pick first / tokens:I,J).")
    st.caption(f"{e.n_texts} text(s), {e.n_chunks} chunk(s), {e.n_positions} scored positions. Saved as "
               f"evaluation {result['id']} in the run database.")


def sweep_section(result: dict) -> None:
    st.subheader("β sweep beside the controls")
    if not result["sweep"]:
        st.info("The β sweep was skipped (the β sweep box was empty).")
        return
    frame = eval_charts.sweep_frame(result["sweep"])
    has_lm = result["lm_kind"] is not None
    target = result["intervention"].target
    ui.show_chart(
        eval_charts.sweep_chart(frame, has_lm), f"evaluation{result['id']}-sweep",
        ("Each line redistributes from its own token set on the same heads: the target, random non-sink tokens "
         "with matched attention mass, and token 0. β = 1 changes nothing; β = 0 moves all of their attention. "
         "The band is the 95% bootstrap CI of the NLL change. A gain that the controls also show is no gain."
         if has_lm else
         "Cosine of the final hidden states against β, for the target and its controls on the same heads: "
         "1 means no change. The further down, the more the intervention moved the model's outputs.")
        + (" With target first, the token-0 control is the target itself." if target == "first" else ""),
    )
    shown = frame.drop(columns=["arm_key", "nll_low", "nll_high"])
    if not has_lm:
        shown = shown[["arm", "target", "beta", "cosine"]]
    with st.expander("Sweep values"):
        st.dataframe(shown, hide_index=True, column_config={
            c: st.column_config.NumberColumn(format="%.4f") for c in ("nll", "delta_nll", "kl", "top1", "cosine")})


def chunk_choice(result: dict) -> int:
    e = result["evaluation"]
    if e.n_chunks == 1:
        return 0
    if e.n_chunks > len(result["runs"]):
        st.caption(f"Per-position views cover the first {len(result['runs'])} of {e.n_chunks} chunks; "
                   "the numbers above cover them all.")
    return st.selectbox("Chunk", range(len(result["runs"])), key=f"ev_chunk_{result['id']}",
                        format_func=lambda c: f"chunk {c + 1}: text {result['runs'][c].chunk.text_index + 1}, "
                        f"{len(e.tokens[c])} tokens")


def position_label(tokens: list[str], position: int, causal: bool) -> str:
    here = charts.short_token(tokens[position], 20)
    if causal and position + 1 < len(tokens):
        return f"{position}: after {here} (next: {charts.short_token(tokens[position + 1], 20)})"
    return f"{position}: {here}"


def positions_section(result: dict, chunk: int) -> int | None:
    """Per-position KL (or cosine) along the chosen chunk; returns the position picked for predictions."""
    e, run, scores = result["evaluation"], result["runs"][chunk], result["scores"][chunk]
    tokens = result["shown"][chunk]
    targets = e.target_tokens[chunk]
    causal = result["lm_kind"] == "causal"
    if result["lm_kind"] is None:
        st.subheader("Cosine along the text")
        ui.show_chart(
            eval_charts.position_chart(tokens, list(range(len(tokens))), scores.cosine, "cosine",
                                       "Cosine of original and intervened final hidden state, per token", targets),
            f"evaluation{result['id']}-cosine-c{chunk}",
            "One bar per token; red: tokens whose attention was redistributed. 1 means the token's output "
            "did not move. NLL and KL need an LM head.",
        )
        return None
    st.subheader("KL along the text")
    positions = list(run.positions)
    default = positions[int(scores.kl.argmax())] if len(positions) else 0
    picked = st.selectbox(
        "Position for the predictions below", positions, index=positions.index(default),
        format_func=lambda p: position_label(tokens, p, causal), key=f"ev_position_{result['id']}_{chunk}",
        help="Defaults to the position with the largest KL.",
    )
    ui.show_chart(
        eval_charts.position_chart(tokens, positions, scores.kl, "KL",
                                   "KL(p_orig ‖ p_mod) at each position", targets, picked),
        f"evaluation{result['id']}-kl-c{chunk}",
        ("Each bar is the KL between the next-token distributions before and after the intervention, at the "
         "position of the token named on the axis (it predicts the token after it). "
         if causal else "Each bar is the KL of the masked-LM prediction at that token. ")
        + "Red: tokens whose attention was redistributed; the outlined bar is the position picked above.",
    )
    return picked


def predictions_section(result: dict, chunk: int, position: int) -> None:
    run, tokens = result["runs"][chunk], result["shown"][chunk]
    st.subheader("Top-5 predictions before and after")
    key = (chunk, position)
    if key not in result["predictions"]:
        with st.spinner("one forward pass with the intervention…"):
            before = run.top_k(None, position, 5)
            after = run.top_k(run.plan(result["intervention"]), position, 5)
        tokenizer = run.loaded.tokenizer
        result["predictions"][key] = tuple(
            list(zip(readable(tokenizer, [t for t, _ in top]), [p for _, p in top])) for top in (before, after))
    before, after = result["predictions"][key]
    causal = result["lm_kind"] == "causal"
    where = position_label(tokens, position, causal)
    left, right = st.columns([3, 2], gap="large")
    with left:
        ui.show_chart(eval_charts.predictions_chart(before, after, f"Position {where}"),
                      f"evaluation{result['id']}-predictions-c{chunk}-p{position}",
                      "Probabilities of the five most likely tokens, before (blue) and after (red) the "
                      "intervention. ␣ marks a leading space.")
    with right:
        st.dataframe(eval_charts.predictions_frame(before, after), hide_index=True, column_config={
            "p_before": st.column_config.NumberColumn("p before", format="%.4f"),
            "p_after": st.column_config.NumberColumn("p after", format="%.4f")})


def evidence_section(result: dict) -> None:
    st.subheader("Per-sink evidence")
    if not result["evidence"]:
        st.info("Per-sink evidence was skipped (candidate sinks = 0).")
        return
    has_lm = result["lm_kind"] is not None
    frame = pd.DataFrame(result["evidence"])
    frame["token"] = frame.pop("shown")
    e = result["evaluation"]
    ui.show_chart(
        eval_charts.evidence_chart(frame, has_lm), f"evaluation{result['id']}-evidence",
        (f"Each candidate (the tokens of the first text receiving the most attention, plus any the seed rule calls "
         f"detrimental) is redistributed alone at β = {e.intervention.beta:g} in the chosen heads. Evidence label: "
         "detrimental only if removing it lowers the NLL, beneficial if it raises it; token 0 stays beneficial."
         if has_lm else
         f"Each candidate is redistributed alone at β = {e.intervention.beta:g}; the bar is how far the final "
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


def results(result: dict) -> None:
    summary(result)
    sweep_section(result)
    chunk = chunk_choice(result)
    position = positions_section(result, chunk)
    if position is not None:
        predictions_section(result, chunk, position)
    else:
        st.subheader("Top-5 predictions before and after")
        st.info("Predictions need an LM head; this model has none.")
    evidence_section(result)


# ---------------------------------------------------------------- what is stored


def _heldout(row: dict, arm: str) -> tuple[float | None, list | None]:
    value = row.get(arm) or {}
    if "delta_spearman" in value:
        return value.get("delta_spearman"), value.get("delta_ci95")
    return value.get("delta_nll"), value.get("delta_nll_ci95")


def calibrations_table(store) -> None:
    st.subheader("Stored calibrations")
    rows = store.calibrations()
    if not rows:
        st.info("No calibrations yet. Search heads on a dev split and store them under a name: "
                "`python -m sinkfix calibrate --model smollm2-135m --data tinyshakespeare.txt --name smol-first "
                "--target first --max-heads 20`; then pick them here under Heads.")
        return
    table = []
    for row in rows:
        full = store.calibration(row["name"]) or {}
        heldout = full.get("heldout") or {}
        target, ci = _heldout(heldout, "target")
        intervention = full.get("intervention") or {}
        table.append({
            "name": row["name"], "model": row["model"], "task": f"{row['task']} ({row['metric']})",
            "intervention": f"{intervention.get('target')}, β={intervention.get('beta')}",
            "kept heads": f"{len(row['kept_heads'])}: " + ", ".join(f"{layer}:{head}" for layer, head in row["kept_heads"]),
            "dev baseline": row["dev_baseline"],
            "held-out Δ target": target,
            "95% CI": None if not ci else f"[{ci[0]:+.4f}, {ci[1]:+.4f}]",
            "held-out Δ random": _heldout(heldout, "random")[0],
            "held-out Δ token 0": _heldout(heldout, "first")[0],
            "created (UTC)": row["created_at"][:16].replace("T", " "),
        })
    st.dataframe(pd.DataFrame(table), hide_index=True, column_config={
        c: st.column_config.NumberColumn(format="%+.4f") for c in
        ("held-out Δ target", "held-out Δ random", "held-out Δ token 0")} | {
        "dev baseline": st.column_config.NumberColumn(format="%.4f"),
        "kept heads": st.column_config.TextColumn(width="medium")})
    st.caption("Δ is the held-out change of the metric (Spearman: higher is better; NLL: lower is better) for the "
               "kept heads, and for the random and token-0 controls on the same heads.")


def evaluations_table(store) -> None:
    st.subheader("Recent evaluations")
    rows = store.evaluations(limit=20)
    if not rows:
        st.info("No evaluations yet: run one above, or `python -m sinkfix evaluate --text ... --model smollm2-135m`.")
        return
    frame = pd.DataFrame([{
        "id": r["id"], "created (UTC)": r["created_at"][:16].replace("T", " "), "kind": r["kind"],
        "model": r["model"],
        "intervention": f"{r['target']}, β={r['beta']:g}",
        "heads": "all" if r["heads"] is None else f"{len(r['heads'])} heads",
        "baseline": r["baseline"], "intervened": r["intervened"], "delta": r["delta"],
        "95% CI": None if r["ci_low"] is None else f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]",
        "KL": r["result"].get("kl_mean"), "cosine": r["result"].get("cosine_mean"),
    } for r in rows])
    st.dataframe(frame, hide_index=True, column_config={
        "id": st.column_config.NumberColumn(width="small"),
        "baseline": st.column_config.NumberColumn(format="%.4f"),
        "intervened": st.column_config.NumberColumn(format="%.4f"),
        "delta": st.column_config.NumberColumn(format="%+.4f"),
        "KL": st.column_config.NumberColumn(format="%.4f"),
        "cosine": st.column_config.NumberColumn(format="%.4f")})
    st.caption("evaluate rows: NLL in nats per token (empty without an LM head); sts rows: Spearman.")


st.title("Evaluate")
st.caption("Redistribute attention away from chosen tokens inside the forward pass (ACT), then measure how the "
           "model's outputs change, beside two controls: random tokens with the same attention mass, and token 0.")
store = services.store_or_stop()
request, clicked = inputs(store)
if clicked and request is not None:
    done = run_evaluation(request, store)
    if done is not None:
        st.session_state[RESULT] = done
try:
    latest = st.session_state.get(RESULT)
    if latest is not None:
        results(latest)
    calibrations_table(store)
    evaluations_table(store)
except SinkFixError as error:
    st.error(str(error))
