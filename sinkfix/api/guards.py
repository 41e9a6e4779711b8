"""ASGI middlewares that run before FastAPI parses anything: the bearer token and the body limit.

They answer from the headers alone where they can, so an unauthenticated or oversized request
costs the server neither a parse nor (for a declared Content-Length) reading the body at all.
The token a request sent names its owner (``OWNER``, in the request's state); ``sinkfix.api.app``
turns it into the viewer every stored row is read as.
"""
from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from sinkfix.api.config import ServerConfig
from sinkfix.policy import identity, signin

OWNER = "sinkfix_owner"  # request.state key: the name of the token the request sent

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_json(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value
    return None


class BearerToken:
    """With SINKFIX_API_TOKEN or SINKFIX_API_TOKENS set, every request needs ``Authorization: Bearer <token>``
    with one of the tokens: 401 otherwise. The token's name becomes the request's owner. Without a
    token, a client from beyond this machine gets 403 (``uvicorn --host 0.0.0.0`` cannot be refused
    before it listens, as ``sinkfix serve`` refuses).

    Every token is compared, each in constant time (``hmac.compare_digest``), so response times leak
    neither which token matched nor how much of a guessed token was right.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        tokens = ServerConfig.from_env().named_tokens()
        scope.setdefault("state", {}).pop(OWNER, None)
        if tokens:
            given = _header(scope, b"authorization") or b""
            scheme, _, credential = given.partition(b" ")
            owner = identity.token_owner(credential, tokens)
            if scheme.lower() != b"bearer" or owner is None:
                return await send_json(send, 401, "this server needs a token: send the header "
                                       "'Authorization: Bearer <token>'", {"WWW-Authenticate": "Bearer"})
            scope["state"][OWNER] = owner
        elif signin.is_network_peer((scope.get("client") or ("",))[0]):
            # No token: every client would be the owner `local`, so only this machine is answered.
            return await send_json(send, 403, "this server has no token, so it answers only this machine: its "
                                   "administrator sets SINKFIX_API_TOKEN or SINKFIX_API_TOKENS")
        await self.app(scope, receive, send)


class BodyLimit:
    """A body over SINKFIX_MAX_BODY bytes gets 413 before it is parsed.

    A declared Content-Length is checked from the header; a chunked body is read here, counting
    bytes, and refused as soon as it passes the limit. A body within the limit is handed on as read.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = ServerConfig.from_env().max_body
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return await send_json(send, 413, _too_large(limit))
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return await send_json(send, 413, _too_large(limit))
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: wait for a disconnect, as Starlette expects

        await self.app(scope, replay, send)


def _too_large(limit: int) -> str:
    return f"the request body is over this server's limit of {limit} bytes (SINKFIX_MAX_BODY)"
