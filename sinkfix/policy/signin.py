"""Whether a dashboard may be shared: sign-in configured, and the address it listens on.

Two kinds of sign-in (docs/security.md):

- **OIDC**, Streamlit's built-in ``st.login``: an ``[auth]`` section in ``.streamlit/secrets.toml``
  (``redirect_uri``, ``cookie_secret``, and the provider's ``client_id``, ``client_secret``,
  ``server_metadata_url``);
- **a shared token** for a lab without an identity provider: ``SINKFIX_DASHBOARD_TOKEN``, or
  ``token`` under ``[sinkfix]`` in ``secrets.toml``. Never on a command line (``ps`` shows it) nor in
  the code. At least ``MIN_TOKEN`` characters, compared in constant time.

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

TOKEN_ENV = "SINKFIX_DASHBOARD_TOKEN"
MIN_TOKEN = 16  # python -c 'import secrets; print(secrets.token_urlsafe(32))' gives 43


class SignInConfigError(SinkFixError):
    """The sign-in settings are unusable (a short token, a secrets file that is not TOML)."""


class SharedWithoutSignInError(SinkFixError):
    """The dashboard would listen beyond this machine with nobody asked to sign in."""


@dataclass(frozen=True)
class SignIn:
    oidc: bool  # an [auth] section is configured: st.login
    token: str | None  # the shared token, when there is one

    @property
    def configured(self) -> bool:
        return self.oidc or self.token is not None

    @classmethod
    def from_secrets(cls, secrets: Mapping) -> SignIn:
        """From the environment and the parsed ``secrets.toml`` (``st.secrets`` or ``read_secrets``)."""
        section = secrets.get("sinkfix") or {}
        token = os.environ.get(TOKEN_ENV) or (section.get("token") if isinstance(section, Mapping) else None)
        if token is not None:
            token = str(token).strip()
            if len(token) < MIN_TOKEN:
                raise SignInConfigError(f"the dashboard token must have at least {MIN_TOKEN} characters (make one "
                                        "with: python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        auth = secrets.get("auth")
        return cls(oidc=isinstance(auth, Mapping) and bool(auth), token=token)


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


def is_loopback(host: str | None) -> bool:
    """True only for an address that this machine alone can reach. Unset or empty means every interface."""
    if not host:
        return False
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to a public interface
        return False


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
