"""Error bodies: every error is ``{"detail": "<one line>"}`` with a status that says whose fault it is.

403 for a model not on the server's list; 422 for a bad body or settings; 404 for an unknown run
or corpus (or a listed model that cannot be found); 413 for a body over the limit (guards);
401 without the token (guards); 429 with Retry-After when the model's admission line is full, 503
when the database cannot be opened or is read-only; 507 when the disk is full. Never a traceback: an
unexpected error is logged and answered with a plain 500.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from sinkfix import paths
from sinkfix.api.body import accepted_fields
from sinkfix.errors import (
    CorpusNotFoundError,
    InputError,
    ModelNotFoundError,
    RunNotFoundError,
    SettingsError,
    SinkFixError,
    StoreFullError,
    StoreReadOnlyError,
    UnsupportedModelError,
)
from sinkfix.policy import LineFullError, ModelNotAllowedError, ServerConfigError
from sinkfix.policy.identity import IdentityConfigError
from sinkfix.policy.ownership import NotOwnerError

log = logging.getLogger("sinkfix.api")


class DatabaseUnavailable(Exception):
    """The run database cannot be opened: a server-side problem (503), not the client's."""


# Most specific first: the first matching class decides the status.
STATUS: list[tuple[type[SinkFixError], int]] = [
    (ModelNotAllowedError, 403),
    (LineFullError, 429),
    (RunNotFoundError, 404),
    (CorpusNotFoundError, 404),
    (ModelNotFoundError, 404),
    (StoreFullError, 507),
    (StoreReadOnlyError, 503),
    (ServerConfigError, 500),
    (IdentityConfigError, 500),
    (NotOwnerError, 403),
    (InputError, 422),
    (SettingsError, 422),
    (UnsupportedModelError, 422),
    (SinkFixError, 400),
]


def install(app: FastAPI) -> None:
    app.add_exception_handler(SinkFixError, _sinkfix_error)
    app.add_exception_handler(DatabaseUnavailable, _database_unavailable)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


async def _sinkfix_error(request: Request, error: SinkFixError) -> JSONResponse:
    status = next(code for kind, code in STATUS if isinstance(error, kind))
    retry = getattr(error, "retry_after", None)  # a full line says when to come back
    headers = None if retry is None else {"Retry-After": str(retry)}
    if status >= 500:
        log.warning("%s %s: %s", request.method, request.url.path, error)  # the log keeps the path
    return JSONResponse({"detail": without_paths(str(error))}, status_code=status, headers=headers)


async def _database_unavailable(request: Request, error: DatabaseUnavailable) -> JSONResponse:
    log.warning("%s %s: %s", request.method, request.url.path, error)
    return JSONResponse({"detail": without_paths(str(error))}, status_code=503)


def without_paths(message: str) -> str:
    """A client is told what failed, not where the server keeps its database: the store's messages
    name the file (for the CLI and the server's log), an answer names "the server's database"."""
    path = paths.db_path()
    for shown in {str(path), str(path.resolve())}:
        message = message.replace(f"the database {shown}", "the server's database")
        message = message.replace(f"database {shown}", "the server's database")
        message = message.replace(shown, "the server's database file")
    return message


async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    """FastAPI answers a body it cannot decode (not UTF-8) with 400; it is a bad body like any other: 422."""
    if error.status_code == 400 and error.detail == "There was an error parsing the body":
        return JSONResponse({"detail": "the body is not valid JSON (it must be UTF-8 JSON)"}, status_code=422)
    return await http_exception_handler(request, error)


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "internal error; the server's log has the details"}, status_code=500)


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
        message = f"unknown field (the fields are {', '.join(accepted_fields())})"
    return f"{where}: {message}" if where else message
