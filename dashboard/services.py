"""What pages share: the loaded models (one per process), the run store (one per session), the visitor
(``viewer()``, whom every stored row is read as), run look-ups.

Pages call these instead of the core directly, so caching and error display live in one place.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import streamlit as st

from dashboard import access, visitors
from dashboard.progress import StatusProgress
from sinkfix import models, paths
from sinkfix.analysis.align import retokenized_offsets
from sinkfix.analysis.pipeline import Analysis, validate_text
from sinkfix.cache import analyze_or_fetch
from sinkfix.errors import RunNotFoundError, SinkFixError
from sinkfix.policy.ownership import Viewer
from sinkfix.settings import AnalysisSettings
from sinkfix.store import Store

SEED_TEXT = "[MASK] [MASK] [MASK] [MASK] The actual sentence contains no useful semantic content."
RECENT_ANALYSES = 6  # decoded runs kept per session, so reruns of a page do not re-read blobs


@st.cache_resource(show_spinner=False)
def model_shelf() -> models.ModelShelf:
    """Held in st.cache_resource: one shelf per server. Loading happens in ``get``, outside the
    cached function, so progress messages reach the live st.status box, not a replay."""
    return visitors.GuardedShelf(reuse_note="already loaded (held in st.cache_resource)")  # the server's model list


def get_store() -> Store:
    """This session's Store, reopened if SINKFIX_DB changed. Raises StoreError for a corrupt/newer db."""
    path = str(paths.db_path())
    held = st.session_state.get("_sinkfix_store")
    if held is None or held[0] != path:
        # viewer=None: every read names this visitor (services.viewer()); none reads as `local` by omission.
        st.session_state["_sinkfix_store"] = (path, Store(path, viewer=None))
    return st.session_state["_sinkfix_store"][1]


def store_or_stop() -> Store:
    """The store, or an error box and the end of this page when the database is unusable."""
    try:
        return get_store()
    except SinkFixError as error:
        st.error(f"The run database cannot be used: {error}")
        st.caption(f"Database file: `{paths.db_path()}`. Set SINKFIX_DB to use another file.")
        st.stop()


def viewer() -> Viewer:
    """Who this visitor is (``access.gate`` decided it for this script run). No viewer means no page: a
    page never reads stored rows as anyone else."""
    found = st.session_state.get(access.VIEWER)
    if not isinstance(found, Viewer):
        st.error("This page ran without a signed-in visitor; open it from the dashboard's home page.")
        st.stop()
    return found


def _recent() -> OrderedDict[int, Analysis]:
    """This session's decoded runs, kept per viewer: another sign-in in the same session starts empty."""
    held = st.session_state.get("_sinkfix_runs")
    if held is None or held[0] != viewer():
        held = (viewer(), OrderedDict())
        st.session_state["_sinkfix_runs"] = held
    return held[1]


def recent_run_ids() -> list[int]:
    """The runs this session opened or made, oldest first."""
    return list(_recent())


def load_run(run_id: int) -> Analysis:
    """A stored run the visitor may read, decoded once per session. Raises RunNotFoundError for an unknown id
    and for one that is not theirs to read alike."""
    recent = _recent()
    if run_id in recent:
        recent.move_to_end(run_id)
        return recent[run_id]
    analysis = get_store().get(run_id, viewer=viewer())
    remember(analysis)
    return analysis


def run_info(run_id: int) -> dict | None:
    """A run's row (``Store.info``: no blob decoded), or None when no such run is stored for this visitor."""
    try:
        return get_store().info(run_id, viewer=viewer())
    except RunNotFoundError:
        return None


def remember(analysis: Analysis) -> None:
    recent = _recent()
    if analysis.run_id is not None:
        recent[analysis.run_id] = analysis
        while len(recent) > RECENT_ANALYSES:
            recent.popitem(last=False)


def forget(run_id: int) -> None:
    _recent().pop(run_id, None)


def run_analysis(text: str, model_name: str, settings: AnalysisSettings | None = None,
                 parent_run_id: int | None = None, device: str = "auto", dtype: str = "auto") -> Analysis | None:
    """Analyse with progress in an ``st.status`` box and save the run (``parent_run_id``: the run this
    one re-runs with changed settings). Errors a user can cause become an ``st.error`` and ``None``.
    A request already stored is served from the store (``st.session_state["_sinkfix_cached"]`` says so)."""
    try:
        validate_text(text)
        visitors.check_texts(text)  # the server's text limit (SINKFIX_MAX_BODY)
        store = get_store()
    except SinkFixError as error:
        st.error(str(error))
        return None
    with st.status(f"Analysing with {model_name}…", expanded=True) as status:
        try:
            with visitors.turn(model_name, status):  # one job per model at a time; the place in line shows here
                shown = StatusProgress(status, first=f"loading {model_name}", unit=" layers")
                loaded = model_shelf().get(model_name, progress=shown.stage, device=device, dtype=dtype)
                shown.stage(f"running one forward pass over the text ({loaded.n_layers} layers)")
                analysis, cached = analyze_or_fetch(text, loaded, settings, store, parent_run_id=parent_run_id,
                                                    progress=shown.layers, viewer=viewer())
        except SinkFixError as error:
            status.update(label="Analysis failed", state="error", expanded=False)
            st.error(str(error))
            return None
        status.update(
            label=f"Run {analysis.run_id}: {analysis.n_tokens} tokens on {analysis.model_name}"
            + (" (already stored: served from the database)" if cached else ""),
            state="complete",
            expanded=False,
        )
    st.session_state["_sinkfix_cached"] = analysis.run_id if cached else None
    remember(analysis)
    return analysis


@st.cache_resource(show_spinner=False, max_entries=8)
def _tokenizer(source: str):
    """A fast tokenizer from a model directory, held per server (no weights are loaded)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source, local_files_only=True)


def offsets_for(analysis: Analysis) -> list[tuple[int, int]] | None:
    """The run's token spans: stored with the run, or (older runs) recomputed by tokenizing the text
    again with the tokenizer in the model's source directory. None when that is not possible."""
    if analysis.offsets is not None:
        return list(analysis.offsets)
    if not Path(analysis.model_id).is_dir():
        return None
    try:
        tokenizer = _tokenizer(analysis.model_id)
    except (OSError, ValueError):
        return None
    return retokenized_offsets(analysis.text, analysis.token_ids, tokenizer)
