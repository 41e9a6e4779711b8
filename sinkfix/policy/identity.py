"""Who a request is: the owner name its rows get, and whether it is an administrator.

- **HTTP API:** the name of the bearer token it sent. ``SINKFIX_API_TOKENS="alice=TOKEN,bob=TOKEN"``
  names each token; the older single ``SINKFIX_API_TOKEN`` still works and is named ``lab``
  (``DEFAULT_TOKEN_NAME``). Without any token the API acts as ``local``, like the CLI (serve it on
  loopback only).
- **Dashboard:** the OIDC account's e-mail (``st.user``), or the name of the token the visitor typed
  (``SINKFIX_DASHBOARD_TOKENS`` or ``[sinkfix.tokens]`` in ``secrets.toml``; the single
  ``SINKFIX_DASHBOARD_TOKEN`` / ``[sinkfix] token`` is ``lab``); on loopback without sign-in, ``local``.
- **CLI:** ``local``, or ``--owner NAME``.

Administrators read every row: ``SINKFIX_ADMINS="alice@lab.example,bob"`` (and, for the dashboard,
``admins = [...]`` under ``[sinkfix]`` in ``secrets.toml``), compared without regard to case.
"""
from __future__ import annotations

import hmac
import os
from collections.abc import Iterable, Mapping

from sinkfix.errors import SinkFixError
from sinkfix.policy.ownership import Viewer

DEFAULT_TOKEN_NAME = "lab"  # the one unnamed token: everyone holding it is the same owner
ADMINS_ENV = "SINKFIX_ADMINS"

Tokens = tuple[tuple[str, str], ...]  # (name, token) pairs


class IdentityConfigError(SinkFixError):
    """A token list or administrator list cannot be read."""


def named_tokens(raw: str | None, variable: str) -> Tokens:
    """``name=token,name=token`` as (name, token) pairs; a token may hold '=' but not ','."""
    pairs: list[tuple[str, str]] = []
    for part in (raw or "").split(","):
        if not part.strip():
            continue
        name, sep, token = part.partition("=")
        if not sep or not name.strip() or not token.strip():
            raise IdentityConfigError(f"{variable} must be name=token pairs separated by commas, got an entry "
                                      f"without a name or a token")
        pairs.append((name.strip(), token.strip()))
    return with_names(pairs, variable)


def with_names(pairs: Iterable[tuple[str, str]], where: str) -> Tokens:
    """Check names are valid owner names and tokens are unique (two names for one token would be ambiguous)."""
    result = tuple((str(name), str(token)) for name, token in pairs)
    for name, _ in result:
        try:
            Viewer(name)
        except SinkFixError as error:
            raise IdentityConfigError(f"{where}: {error}") from None
    tokens = [token for _, token in result]
    if len(set(tokens)) != len(tokens):
        raise IdentityConfigError(f"{where}: two names share one token; give each name its own")
    names = [name for name, _ in result]
    if len(set(names)) != len(names):
        raise IdentityConfigError(f"{where}: a name is given twice")
    return result


def token_owner(given: bytes | str, tokens: Tokens) -> str | None:
    """The name of the token ``given`` is, or None. Every token is compared, each in constant time, so the
    time taken says neither which token nor how much of a guess was right."""
    if isinstance(given, str):
        given = given.encode("utf-8", "surrogatepass")
    given = given.strip()
    found = None
    for name, token in tokens:
        if hmac.compare_digest(given, token.encode("utf-8")):
            found = name
    return found


def admins(listed: Iterable[str] = ()) -> frozenset[str]:
    """``SINKFIX_ADMINS`` plus ``listed`` (the dashboard's ``[sinkfix] admins``), case-folded."""
    names = [n for n in os.environ.get(ADMINS_ENV, "").split(",")] + [str(n) for n in listed]
    return frozenset(n.strip().casefold() for n in names if n.strip())


def viewer_named(name: str, admin_names: frozenset[str]) -> Viewer:
    return Viewer(name, admin=name.casefold() in admin_names)


def admins_in(section: Mapping | None) -> list[str]:
    """``admins`` under ``[sinkfix]`` in secrets.toml: a list of names, or one comma-separated string."""
    raw = (section or {}).get("admins") if isinstance(section, Mapping) else None
    if raw is None:
        return []
    if isinstance(raw, str):
        return [n for n in raw.split(",")]
    if isinstance(raw, (list, tuple)):
        return [str(n) for n in raw]
    raise IdentityConfigError("admins under [sinkfix] in secrets.toml must be a list of names")
