"""The seed's HTTP endpoint, kept: ``uvicorn sinkfix.api:app --host 127.0.0.1``.

``POST /api/analyze`` takes the seed's body ``{"model_name": ..., "text": ...}`` (plus optional
settings) and returns the seed's five fields plus ``run_id``. Unlike the seed, a model is loaded
once per process and reused, and every run goes to the same database as the CLI and the dashboard
(``SINKFIX_DB``), so an identical request is served from it and appears in the History page.

Errors a client can cause are a 4xx with ``{"detail": "<one line>"}``, never a traceback:
422 for a bad body or settings, 404 for an unknown model, run or corpus, 400 for other SinkFix
errors; 503 when the database cannot be opened.
"""
from __future__ import annotations

import json
import threading
from typing import Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from sinkfix.version import __version__
from sinkfix.analysis import classify
from sinkfix import models
from sinkfix import paths
from sinkfix.cache import analyze_or_fetch
from sinkfix.analysis.corpus import CorpusSummary, summarize_stored
from sinkfix.errors import (
    CorpusNotFoundError,
    InputError,
    ModelNotFoundError,
    RunNotFoundError,
    SettingsError,
    SinkFixError,
    StoreError,
    UnsupportedModelError,
)
from sinkfix.models import DEFAULT_MODEL
from sinkfix.settings import (
    DEFAULT_BETA,
    DEFAULT_EPSILON,
    DEFAULT_MAP_TOKEN_LIMIT,
    DEFAULT_TAU_ATT,
    DEFAULT_TAU_NORM,
    AnalysisSettings,
)
from sinkfix.store import Store

# Most specific first: the first matching class decides the status.
STATUS: list[tuple[type[SinkFixError], int]] = [
    (RunNotFoundError, 404),
    (CorpusNotFoundError, 404),
    (ModelNotFoundError, 404),
    (InputError, 422),
    (SettingsError, 422),
    (UnsupportedModelError, 422),
    (SinkFixError, 400),
]


class AnalyzeRequest(BaseModel):
    """The seed's body, plus the analysis settings. Strict: "0.3" is not a number, 1.0 is not a layer."""

    model_config = ConfigDict(strict=True, extra="forbid", protected_namespaces=())

    model_name: str = Field(DEFAULT_MODEL, validation_alias=AliasChoices("model_name", "model"))
    text: str
    layer: int | None = None
    tau_att: float = DEFAULT_TAU_ATT
    tau_norm: float = DEFAULT_TAU_NORM
    beta: float = DEFAULT_BETA
    epsilon: float = DEFAULT_EPSILON
    map_token_limit: int = DEFAULT_MAP_TOKEN_LIMIT
    max_tokens: int | None = None

    def settings(self) -> AnalysisSettings:
        return AnalysisSettings.from_dict(self.model_dump())  # from_dict keeps only the settings fields


MODELS = models.ModelShelf()  # the API's own, so its tests can empty it and count loads
_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


class DatabaseUnavailable(Exception):
    """The run database cannot be opened: a server-side problem (503), not the client's."""


def store() -> Store:
    """The Store at SINKFIX_DB (read per request, so a test or a restart can point elsewhere)."""
    path = str(paths.db_path())
    with _stores_lock:
        if path not in _stores:
            try:
                _stores[path] = Store(path)
            except StoreError as error:
                raise DatabaseUnavailable(str(error)) from None
        return _stores[path]


app = FastAPI(
    title="SinkFix",
    version=__version__,
    description="Find, classify and correct attention sinks. The seed's POST /api/analyze, with the model "
                "loaded once per process and every run stored.",
)


@app.exception_handler(SinkFixError)
async def _sinkfix_error(request: Request, error: SinkFixError) -> JSONResponse:
    status = next(code for kind, code in STATUS if isinstance(error, kind))
    return JSONResponse({"detail": str(error)}, status_code=status)


@app.exception_handler(DatabaseUnavailable)
async def _database_unavailable(request: Request, error: DatabaseUnavailable) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=503)


@app.exception_handler(RequestValidationError)
async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    """One readable line in ``detail`` (FastAPI's default is a list), the structured errors beside it."""
    problems = [_problem(e) for e in error.errors()]
    return JSONResponse(
        {"detail": "; ".join(problems), "errors": [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
                                                   for e in error.errors()]},
        status_code=422,
    )


def _problem(error: dict) -> str:
    if error["type"] == "json_invalid":
        return "the body is not valid JSON"
    where = ".".join(str(part) for part in error["loc"] if part != "body")
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown field (the fields are model_name, text, layer, tau_att, tau_norm, beta, epsilon, " \
                  "map_token_limit, max_tokens)"
    return f"{where}: {message}" if where else message


def _json(data: object, status_code: int = 200) -> Response:
    # json.dumps directly: FastAPI's jsonable_encoder walks every float of an L x H x T x T list first.
    return Response(json.dumps(data, ensure_ascii=False), status_code=status_code, media_type="application/json")


@app.post("/api/analyze")
def analyze_endpoint(request: AnalyzeRequest) -> Response:
    """Analyse one text (or serve the identical stored request) and return the seed's JSON plus run_id."""
    settings = request.settings()  # out-of-range settings fail before the model loads
    if not request.text.strip():
        raise InputError("the text is empty: give at least one word to analyse")
    runs = store()
    loaded = MODELS.get(request.model_name)
    analysis, cached = analyze_or_fetch(request.text, loaded, settings, runs)
    return _json({**analysis.to_seed_json(), "cached": cached})


@app.get("/api/runs")
def list_runs(
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
    model: str | None = None,
    search: str | None = Query(None, description="only runs whose text contains this"),
    label: Literal[classify.LABELS] | None = Query(None, description="only runs with a token of this label"),
    since: str | None = Query(None, description="only runs created at or after this ISO date (UTC)"),
) -> Response:
    """Stored runs, newest first, paged: ``{"total", "limit", "offset", "runs": [...]}``."""
    where = {"model": model, "text_contains": search, "since": since, "label": label}
    runs = store()
    return _json({"total": runs.count(**where), "limit": limit, "offset": offset,
                  "runs": runs.list(**where, limit=limit, offset=offset)})


@app.get("/api/runs/{run_id}")
def get_run(run_id: int) -> Response:
    """One stored run: the seed's JSON plus run_id and ``metadata``."""
    run = store().get(run_id)
    return _json({**run.to_seed_json(), "metadata": {
        "model": run.model_name, "model_id": run.model_id, "model_type": run.model_type,
        "fingerprint": run.fingerprint, "created_at": run.created_at, "text": run.text, "n_tokens": run.n_tokens,
        "n_layers": run.n_layers, "n_heads": run.n_heads, "settings": run.settings.to_dict(), "rule": run.rule,
        "sink_indices": run.sink_indices, "warnings": run.warnings, "version": run.version,
    }})


@app.get("/api/corpora")
def list_corpora() -> Response:
    """Corpora made by ``python -m sinkfix batch``, newest first."""
    return _json({"corpora": store().corpora()})


@app.get("/api/corpora/{name}")
def get_corpus(name: str) -> Response:
    """One corpus: its settings, its runs by line and its summary (see sinkfix.corpus for the definitions)."""
    runs = store()
    corpus = runs.corpus(name)
    summary = (CorpusSummary.from_json(corpus["summary"]) if corpus["summary"]
               else summarize_stored(runs, corpus["id"], corpus["settings"]["epsilon"]))
    return _json({
        "corpus": corpus["name"], "corpus_id": corpus["id"], "model": corpus["model"],
        "settings": corpus["settings"], "source": corpus["source"], "created_at": corpus["created_at"],
        "complete": corpus["summary"] is not None,
        "runs": [{"line_no": r["line_no"], "run_id": r["run_id"]} for r in runs.corpus_runs(corpus["id"])],
        "summary": summary.to_dict(),
    })


@app.get("/api/health")
def health() -> dict:
    return {"status": "ok", "version": __version__, "models_loaded": MODELS.loaded(), "database": str(paths.db_path())}
