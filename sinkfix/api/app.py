"""The HTTP API's endpoints: the seed's ``POST /api/analyze``, stored runs and corpora.

``POST /api/analyze`` takes the seed's body ``{"model_name": ..., "text": ...}`` (plus optional
settings) and returns the seed's fields plus ``run_id``, ``cached`` and ``maps_url``. The L x H x T x T
``corrected_att_scores`` is null unless asked for (``?maps=true`` or ``"include_maps": true``):
a shared server should not send megabytes nobody asked for. A model is loaded once per process,
and every run goes to the same database as the CLI and the dashboard (``SINKFIX_DB``).

The policy and limits (``sinkfix.policy``) are the server's, shared with the dashboard; the CLI
keeps its local freedom. Error statuses are in ``sinkfix.api.errors``.

Every endpoint that reads or writes stored rows takes the request's ``Viewer`` (``requester``): the
name of the token it sent (``local`` when the server has no token), an administrator when
``SINKFIX_ADMINS`` names it. A row that viewer may not read is answered exactly as a missing one.
"""
from __future__ import annotations

import dataclasses
import json
import threading
import time
from typing import Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from starlette.middleware.gzip import GZipMiddleware

from sinkfix import paths
from sinkfix.analysis import classify
from sinkfix.analysis.corpus import CorpusSummary, summarize_stored
from sinkfix.analysis.pipeline import analyze
from sinkfix.analysis.result import Analysis
from sinkfix.api import errors
from sinkfix.api.body import AnalyzeRequest
from sinkfix.api.guards import OWNER, BearerToken, BodyLimit
from sinkfix.api.keylocks import KeyLocks
from sinkfix.api.shelf import BoundedShelf
from sinkfix.cache import cache_key
from sinkfix.errors import InputError, SettingsError, StoreError, StoreReadOnlyError
from sinkfix.models import LoadedModel
from sinkfix.policy import Line, Lines, ServerConfig, check_model, identity
from sinkfix.policy.config import char_budget
from sinkfix.policy.ownership import LOCAL_NAME, Viewer
from sinkfix.settings import AnalysisSettings
from sinkfix.store import Store
from sinkfix.version import __version__


MODELS = BoundedShelf()
LINES = Lines()  # the admission line, one per model (this process's; the dashboard has its own)
KEYS = KeyLocks()
_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def store() -> Store:
    """The Store at SINKFIX_DB (read per request, so a test or a restart can point elsewhere)."""
    path = str(paths.db_path())
    with _stores_lock:
        if path not in _stores:
            try:
                _stores[path] = Store(path, viewer=None)  # every call names its requester
            except StoreError as error:
                raise errors.DatabaseUnavailable(str(error)) from None
        return _stores[path]


def reset() -> None:
    """Forget models, lines and open databases (tests; a server never needs it)."""
    MODELS.clear()
    LINES.clear()
    with _stores_lock:
        _stores.clear()


app = FastAPI(
    title="SinkFix",
    version=__version__,
    description="Find, classify and correct attention sinks. The seed's POST /api/analyze, with the model "
                "loaded once per process and every run stored.",
)
errors.install(app)
# The last added is the outermost: the token is checked first, then the body size; gzip is innermost.
app.add_middleware(GZipMiddleware, minimum_size=1000)
app.add_middleware(BodyLimit)
app.add_middleware(BearerToken)


def requester(request: Request) -> Viewer:
    """Who sent the request: its token's name (set by BearerToken), or ``local`` on a server without tokens."""
    name = getattr(request.state, OWNER, None) or LOCAL_NAME
    return identity.viewer_named(name, ServerConfig.from_env().admins)


def _json(data: object, status_code: int = 200) -> Response:
    # json.dumps directly: FastAPI's jsonable_encoder walks every float of an L x H x T x T list first.
    return Response(json.dumps(data, ensure_ascii=False), status_code=status_code, media_type="application/json")


@app.post("/api/analyze")
async def analyze_endpoint(request: AnalyzeRequest, maps: bool = Query(False, description="include the L x H x T x T "
                                                                        "corrected_att_scores"),
                           viewer: Viewer = Depends(requester)) -> Response:
    """Analyse one text (or serve the identical stored request): the seed's JSON plus run_id and maps_url.
    The run is the requester's; a cache hit is their own run, or their copy of one shared with them."""
    config = ServerConfig.from_env()
    check_model(request.model_name, config)  # 403 before anything touches the name
    settings = request.settings()  # out-of-range settings fail before the model loads
    if settings.map_token_limit > config.map_limit:
        raise SettingsError(f"map_token_limit must be at most {config.map_limit} on this server, "
                            f"got {settings.map_token_limit}")
    _check_text(request.text)
    runs = await run_in_threadpool(store)
    loaded = await run_in_threadpool(MODELS.get, request.model_name, config.max_models, request.device,
                                     request.dtype)
    text, dropped = _cut(request.text, loaded, settings)
    key = cache_key(text, loaded, settings)  # also checks the layer against the model
    run_id = await run_in_threadpool(lambda: runs.reuse(key, viewer=viewer))  # a hit skips the queue
    if run_id is not None:
        analysis, cached = await run_in_threadpool(lambda: runs.get(run_id, viewer=viewer)), True
    else:
        if runs.read_only:
            raise StoreReadOnlyError("this server's database is read-only: stored runs can be read, new analyses "
                                     "cannot be saved")
        line = LINES[request.model_name]
        # Joined here, in the event loop: a full line is a 429 at once, before any thread is taken.
        ticket = line.join(config.max_concurrency, config.max_queue)
        try:
            analysis, cached = await run_in_threadpool(_compute, text, loaded, settings, runs, key, line, ticket,
                                                       config.max_concurrency, viewer)
        finally:
            line.leave(ticket)
    body = await run_in_threadpool(_seed_body, analysis, maps or request.include_maps)
    body["cached"] = cached
    if dropped:
        body["text_cut"] = {"kept_chars": len(text), "dropped_chars": dropped}
    return _json(body)


def _check_text(text: str) -> None:
    if not text.strip():
        raise InputError("the text is empty: give at least one word to analyse")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("the text is not valid Unicode (it holds a lone surrogate such as \\ud800)") from None


def _cut(text: str, loaded: LoadedModel, settings: AnalysisSettings) -> tuple[str, int]:
    """Cut the text to the character budget of its token limit, so a huge text is never tokenised whole."""
    limit = min(loaded.max_tokens, settings.max_tokens or loaded.max_tokens)
    budget = char_budget(limit)
    return (text, 0) if len(text) <= budget else (text[:budget], len(text) - budget)


def _compute(text: str, loaded: LoadedModel, settings: AnalysisSettings, runs: Store, key: str, line: Line,
             ticket: int, max_concurrency: int, viewer: Viewer) -> tuple[Analysis, bool]:
    """Wait for the ticket's turn, then analyse and save, once per owner and key: an identical request
    that waited on the key finds the run stored (or a copy of one shared with it). The turn comes before
    the key's lock (every request takes them in that order), so a request holding a key never waits for
    a turn held by one waiting for that key. The lock is per owner, so waiting on it says nothing about
    what another owner is computing."""
    line.wait(ticket, max_concurrency, None)
    with KEYS.hold(f"{viewer.name}\n{key}"):
        run_id = runs.reuse(key, viewer=viewer)
        if run_id is not None:
            return runs.get(run_id, viewer=viewer), True
        started = time.perf_counter()
        result = analyze(text, loaded, settings)
        line.record(time.perf_counter() - started)
        line.leave(ticket)  # the model's slot is free before the save
        return dataclasses.replace(result, run_id=runs.save(result, key, viewer=viewer)), False


def _seed_body(analysis: Analysis, include_maps: bool) -> dict:
    """The seed's fields; the corrected maps only when asked for, else null with a ``maps_url``."""
    has_maps = analysis.corrected_maps is not None
    if include_maps or not has_maps:
        body = analysis.to_seed_json()  # without maps it carries the note on the map limit
    else:
        body = dataclasses.replace(analysis, corrected_maps=None).to_seed_json()
        body.pop("note", None)
    body["maps_url"] = f"/api/runs/{analysis.run_id}?maps=true" if has_maps and analysis.run_id else None
    body["kernel"], body["kernel_reason"] = analysis.kernel, analysis.kernel_reason  # which attention computation ran
    return body


@app.get("/api/runs")
def list_runs(
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
    model: str | None = None,
    search: str | None = Query(None, description="only runs whose text contains this"),
    label: Literal[classify.LABELS] | None = Query(None, description="only runs with a token of this label"),
    since: str | None = Query(None, description="only runs created at or after this ISO date (UTC)"),
    viewer: Viewer = Depends(requester),
) -> Response:
    """The requester's stored runs and those shared with them, newest first, paged:
    ``{"total", "limit", "offset", "runs": [...]}`` (each row names its ``owner`` and whether it is ``shared``)."""
    where = {"model": model, "text_contains": search, "since": since, "label": label}
    runs = store()
    return _json({"total": runs.count(**where, viewer=viewer), "limit": limit, "offset": offset,
                  "runs": runs.list(**where, limit=limit, offset=offset, viewer=viewer)})


@app.get("/api/runs/{run_id}")
def get_run(run_id: int, maps: bool = Query(False, description="include the L x H x T x T corrected_att_scores"),
            viewer: Viewer = Depends(requester)) -> Response:
    """One stored run: the seed's JSON plus run_id and ``metadata`` (maps only with ``?maps=true``); 404 for a
    run the requester may not read, exactly as for a missing one."""
    runs = store()
    run = runs.get(run_id, viewer=viewer)
    sharing = runs.sharing("run", run_id, viewer=viewer)
    return _json({**_seed_body(run, maps), "metadata": {
        "model": run.model_name, "model_id": run.model_id, "model_type": run.model_type,
        "fingerprint": run.fingerprint, "created_at": run.created_at, "text": run.text, "n_tokens": run.n_tokens,
        "n_layers": run.n_layers, "n_heads": run.n_heads, "settings": run.settings.to_dict(), "rule": run.rule,
        "sink_indices": run.sink_indices, "warnings": run.warnings, "version": run.version,
        "attention_layers": run.attention_layers, "owner": sharing["owner"], "shared": sharing["shared"],
    }})


@app.get("/api/corpora")
def list_corpora(viewer: Viewer = Depends(requester)) -> Response:
    """The requester's corpora (made by ``python -m sinkfix batch``) and those shared with them, newest first."""
    return _json({"corpora": store().corpora(viewer=viewer)})


@app.get("/api/corpora/{name}")
def get_corpus(name: str, viewer: Viewer = Depends(requester)) -> Response:
    """One corpus: its settings, its runs by line and its summary (see sinkfix.corpus for the definitions).
    The requester's own corpus of that name first, then one shared with them."""
    runs = store()
    corpus = runs.corpus(name, viewer=viewer)
    summary = (CorpusSummary.from_json(corpus["summary"]) if corpus["summary"]
               else summarize_stored(runs, corpus["id"], corpus["settings"]["epsilon"], viewer=viewer))
    return _json({
        "corpus": corpus["name"], "corpus_id": corpus["id"], "model": corpus["model"],
        "settings": corpus["settings"], "source": corpus["source"], "created_at": corpus["created_at"],
        "complete": corpus["summary"] is not None, "owner": corpus["owner"], "shared": corpus["shared"],
        "runs": [{"line_no": r["line_no"], "run_id": r["run_id"]} for r in runs.corpus_runs(corpus["id"], viewer=viewer)],
        "summary": summary.to_dict(),
    })


@app.get("/api/health")
def health() -> dict:
    """Liveness and policy; it names no file on the server."""
    config = ServerConfig.from_env()
    try:
        database = "read-only" if store().read_only else "ok"
    except errors.DatabaseUnavailable:
        database = "unavailable"
    return {"status": "ok", "version": __version__, "models_allowed": list(config.models),
            "models_loaded": MODELS.loaded(), "database": database}
