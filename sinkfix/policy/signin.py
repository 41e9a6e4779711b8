"""Whether a dashboard may be shared: sign-in configured, and the address it listens on.

Two kinds of sign-in (docs/security.md):

- **OIDC**, Streamlit's built-in ``st.login``: an ``[auth]`` section in ``.streamlit/secrets.toml``
  (``redirect_uri``, ``cookie_secret``, and the provider's ``client_id``, ``client_secret``,
  ``server_metadata_url``);
- **tokens** for a lab without an identity provider: one shared token, ``SINKFIX_DASHBOARD_TOKEN`` or
  ``token`` under ``[sinkfix]`` in ``secrets.toml`` (everyone holding it is the owner ``lab``), and/or
  named ones, one per person, ``SINKFIX_DASHBOARD_TOKENS="ada=TOKEN,bob=TOKEN"`` or a ``[sinkfix.tokens]``
  table (the name is the owner of what that visitor stores). Never on a command line (``ps`` shows it)
  nor in the code. At least ``MIN_TOKEN`` characters each, compared in constant time.

Administrators (who read every stored row, ``sinkfix.policy.ownership``) are ``SINKFIX_ADMINS`` plus
``admins = [...]`` under ``[sinkfix]``.

The command that starts the dashboard reads the secrets files itself (this module never imports
streamlit); the app passes ``st.secrets``. Both decide with ``SignIn.from_secrets``.
"""
from __future__ import annotations

import hmac
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sinkfix.errors import SinkFixError
from sinkfix.policy import identity

TOKEN_ENV = "SINKFIX_DASHBOARD_TOKEN"
TOKENS_ENV = "SINKFIX_DASHBOARD_TOKENS"
MIN_TOKEN = 16  # python -c 'import secrets; print(secrets.token_urlsafe(32))' gives 43


class SignInConfigError(SinkFixError):
    """The sign-in settings are unusable (a short token, a secrets file that is not TOML)."""


class SharedWithoutSignInError(SinkFixError):
    """The dashboard would listen beyond this machine with nobody asked to sign in."""


@dataclass(frozen=True)
class SignIn:
    oidc: bool  # an [auth] section is configured: st.login
    token: str | None  # the shared token, when there is one (its holders are the owner ``lab``)
    tokens: identity.Tokens = ()  # named tokens: (owner name, token)
    admins: frozenset[str] = frozenset()  # owner names that read every stored row

    @property
    def configured(self) -> bool:
        return self.oidc or bool(self.named_tokens())

    def named_tokens(self) -> identity.Tokens:
        """Every token a visitor may type, with the owner name it signs in as."""
        unnamed = ((identity.DEFAULT_TOKEN_NAME, self.token),) if self.token is not None else ()
        return identity.with_names(self.tokens + unnamed, "the dashboard's tokens")

    @classmethod
    def from_secrets(cls, secrets: Mapping) -> SignIn:
        """From the environment and the parsed ``secrets.toml`` (``st.secrets`` or ``read_secrets``)."""
        section = secrets.get("sinkfix") or {}
        section = section if isinstance(section, Mapping) else {}
        token = os.environ.get(TOKEN_ENV) or section.get("token")
        token = None if token is None else str(token).strip()
        if os.environ.get(TOKENS_ENV):
            tokens = identity.named_tokens(os.environ[TOKENS_ENV], TOKENS_ENV)
        else:
            listed = section.get("tokens") or {}
            if not isinstance(listed, Mapping):
                raise SignInConfigError("[sinkfix.tokens] in secrets.toml must be a table of name = \"token\" lines")
            tokens = identity.with_names(((str(k), str(v).strip()) for k, v in listed.items()), "[sinkfix.tokens]")
        for value in [token] * (token is not None) + [t for _, t in tokens]:
            if len(value) < MIN_TOKEN:
                raise SignInConfigError(f"every dashboard token must have at least {MIN_TOKEN} characters (make one "
                                        "with: python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        auth = secrets.get("auth")
        return cls(oidc=isinstance(auth, Mapping) and bool(auth), token=token, tokens=tokens,
                   admins=identity.admins(identity.admins_in(section)))


def secrets_files(folder: Path, script: Path | None = None) -> list[Path]:
    """Where ``streamlit run SCRIPT`` started in ``folder`` reads secrets, in its order (later wins):
    the user's, the working folder's, and the one beside the script."""
    found = [Path.home() / ".streamlit" / "secrets.toml", folder / ".streamlit" / "secrets.toml"]
    if script is not None and script.parent / ".streamlit" / "secrets.toml" not in found:
        found.append(script.parent / ".streamlit" / "secrets.toml")
    return found


def read_secrets(folder: Path, script: Path | None = None) -> dict:
    """The secrets ``streamlit run`` would see, merged as Streamlit merges them (a later file wins per key)."""
    merged: dict = {}
    for path in secrets_files(folder, script):
        if not path.is_file():
            continue
        try:
            merged.update(tomllib.loads(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise SignInConfigError(f"{path} cannot be read as TOML: {error}") from None
    return merged


def _ip(host: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address ``host`` spells (brackets allowed), or None for a name or nothing."""
    try:
        return ipaddress.ip_address(host.strip().strip("[]")) if host else None
    except ValueError:
        return None


def is_loopback(host: str | None) -> bool:
    """True only for an address that this machine alone can reach. Unset or empty means every interface."""
    if host and host.strip().lower() == "localhost":
        return True
    address = _ip(host)  # a host name may resolve to a public interface: not loopback
    return address is not None and address.is_loopback


def is_network_peer(host: str | None) -> bool:
    """True for a client address beyond this machine: an IP address that is not loopback. A test
    client's name or a Unix socket has no IP address and is not a network peer."""
    address = _ip(host)
    if address is None:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is loopback too
    return not (mapped or address).is_loopback


def token_matches(given: str, token: str) -> bool:
    """Constant-time: the time taken says nothing about how much of a guess was right."""
    return hmac.compare_digest(given.strip().encode("utf-8", "surrogatepass"), token.encode("utf-8"))


def check_shared_start(host: str | None, sign_in: SignIn) -> None:
    """Refuse to listen beyond loopback unless visitors must sign in."""
    if not is_loopback(host) and not sign_in.configured:
        shown = host or "every interface"
        raise SharedWithoutSignInError(
            f"refusing to serve the dashboard on {shown} without sign-in: set {TOKEN_ENV} (a shared token) or an "
            "[auth] section in .streamlit/secrets.toml (OIDC), see docs/security.md; or listen on 127.0.0.1")
