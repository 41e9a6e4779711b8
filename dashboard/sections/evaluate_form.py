"""Evaluate page, the form: model, texts, intervention (target, β, layers, heads or a stored calibration).

Everything here is checked before a model loads, so a mistake is one error box and no wait.
"""
from __future__ import annotations

import math
import re

import streamlit as st

from dashboard import services, ui, visitors
from dashboard.sections import model_picker
from sinkfix import models
from sinkfix import settings as defaults
from sinkfix.errors import InputError, SettingsError, SinkFixError
from sinkfix.experiments.intervene import Intervention, parse_heads, parse_layers, parse_target
from sinkfix.policy import files

OTHER = model_picker.OTHER
LM_MODEL = "smollm2-135m"
DEFAULT_TEXT = "The cat sat on the mat and looked out of the window."
DEFAULT_SWEEP = "1.0, 0.7, 0.4, 0.0"
TARGETS = ["first", "detrimental", "random", "tokens:I,J"]
HEAD_MODES = ["All heads of those layers", "A list of heads (L:H)", "A stored calibration"]


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


def model_input() -> model_picker.Choice:
    return model_picker.render(
        "ev", [LM_MODEL, *[m for m in models.EMBEDDED if m != LM_MODEL]],
        help="NLL, KL and top-1 agreement need a language-model head: smollm2-135m has one. minilm is a "
        "sentence encoder without one, so only the cosine of final hidden states is measured there.",
    )


def text_input() -> tuple[str, str | None]:
    """The raw text (pasted, or read from an uploaded .txt) and the uploaded file's name, if any."""
    text = st.text_area(
        "Texts", value=DEFAULT_TEXT, key="ev_text", height=120,
        help="One text, or several separated by a blank line (untick the box below to keep blank lines "
        "inside one text). Short texts keep the page fast; long ones are cut into chunks of max tokens.",
    )
    limit = visitors.limits().max_body
    upload = st.file_uploader("…or upload a .txt file (it replaces the box above)", type=["txt"], key="ev_file",
                              max_upload_size=max(1, math.ceil(limit / 2**20)), help=f"Up to {limit:,} bytes.")
    if upload is None:
        return text, None
    return files.read_upload(upload.name, upload.getvalue(), limit).text, upload.name  # over the limit: refused


def calibration_names(store) -> dict[str, str]:
    """name -> how the selectbox shows it."""
    return {r["name"]: f"@{r['name']} · {r['model']} · {len(r['kept_heads'])} heads ({r['task']})"
            for r in store.calibrations(viewer=services.viewer())}


def render(store) -> tuple[dict | None, bool]:
    """The form. Returns (the request, or None when an input is invalid; whether Evaluate was clicked)."""
    left, right = st.columns([3, 2], gap="large")
    problems: list[str] = []
    request: dict = {}
    with left:
        choice = model_input()
        request["model"], request["device"], request["dtype"] = choice.name, choice.device, choice.dtype
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


def check(request: dict) -> tuple[list[str], list[float]]:
    """What can be checked before a model loads (empty text, a bad β list, no model name)."""
    if not request["model"]:
        raise SettingsError("give a model name: an embedded model, a hub id or a local directory")
    texts = split_texts(request["raw"], request["separate"])
    betas = parse_betas(request["betas"]) if request["betas"].strip() else []
    return texts, betas


