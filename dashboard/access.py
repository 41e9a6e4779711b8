"""Who may see the dashboard's pages, and as whom. Home.py calls ``gate()`` before the navigation runs.

- **OIDC** configured (``[auth]`` in ``.streamlit/secrets.toml``): Streamlit's ``st.login``; the pages
  show once ``st.user.is_logged_in``. The visitor is their account's e-mail.
- **Tokens** (``SINKFIX_DASHBOARD_TOKEN`` / ``[sinkfix] token``, and named ones in
  ``SINKFIX_DASHBOARD_TOKENS`` / ``[sinkfix.tokens]``): asked once per browser session (a Streamlit
  session: a reload asks again), compared in constant time. The visitor is the token's name (``lab`` for
  the single shared token).
- **Neither**: the pages show only when the server listens on loopback (``server.address`` 127.0.0.1,
  as ``make run`` and ``sinkfix dashboard`` start it), and the visitor is ``local``. Bound wider, this
  page refuses to show anything, so ``streamlit run --server.address 0.0.0.0`` without sign-in serves no data.

``gate()`` leaves the visitor's ``Viewer`` in the session (``VIEWER``) for ``services.viewer()``: every
stored row is read as that viewer (``sinkfix.policy.ownership``). It is set afresh on every script run,
and removed first, so a page never runs with a stale one. The rules (what counts as configured,
loopback, the token check, administrators) are ``sinkfix.policy``'s.
"""
from __future__ import annotations

import time

import streamlit as st

from dashboard import ui
from sinkfix.errors import SinkFixError
from sinkfix.policy import ServerConfig, identity, signin
from sinkfix.policy.ownership import LOCAL_NAME, Viewer

SIGNED_IN = "_sinkfix_signed_in"  # the name of the token this session signed in with
VIEWER = "_sinkfix_viewer"
WRONG_TOKEN_PAUSE = 1.0  # seconds after a wrong token: a slow guesser, on top of a 16+ character token


def gate() -> Viewer:
    """Return this visitor's viewer when they may see the pages; otherwise draw the sign-in (or refusal) and stop."""
    st.session_state.pop(VIEWER, None)
    try:
        ServerConfig.from_env()  # a bad limit or list is one line here, not a traceback on some page
        setup = signin.SignIn.from_secrets(_secrets())
        tokens = setup.named_tokens()
    except SinkFixError as error:
        _stop(f"This dashboard is misconfigured: {error}")
    if setup.oidc:
        name = _oidc()
    elif tokens:
        name = _token(tokens)
    else:
        host = st.get_option("server.address")
        try:
            signin.check_shared_start(host, setup)
        except SinkFixError as error:
            _stop(f"This dashboard shows nothing: {error}.")
        name = LOCAL_NAME
    viewer = identity.viewer_named(name, setup.admins)
    st.session_state[VIEWER] = viewer
    return viewer


def _secrets() -> dict:
    """``st.secrets`` as a plain dict; no secrets file is no secrets."""
    try:
        return st.secrets.to_dict()
    except FileNotFoundError:  # StreamlitSecretNotFoundError: no secrets.toml anywhere
        return {}


def _oidc() -> str:
    if st.user.is_logged_in:
        email, subject = st.user.get("email"), st.user.get("sub")
        if not email and not subject:
            _stop("Your identity provider sent neither an e-mail nor a subject, so this dashboard cannot tell "
                  "whose runs are yours. Ask its administrator to add the email scope.")
        name = str(email).strip().lower() if email else f"oidc:{subject}"
        with st.sidebar:
            st.caption(f"Signed in as {ui.escape_md(name)}")
            st.button("Sign out", on_click=st.logout, key="_sinkfix_logout")
        return name
    st.title("SinkFix")
    st.write("This dashboard is shared: sign in to use it.")
    st.button("Sign in", on_click=st.login, type="primary", key="_sinkfix_login")
    st.stop()


def _token(tokens: identity.Tokens) -> str:
    signed = st.session_state.get(SIGNED_IN)
    if signed in {name for name, _ in tokens}:  # a token taken off the list signs its sessions out
        if len(tokens) > 1:
            st.sidebar.caption(f"Signed in as {ui.escape_md(signed)}")
        return signed
    st.title("SinkFix")
    with st.form("_sinkfix_signin"):
        given = st.text_input("Access token", type="password", key="_sinkfix_token",
                              help="Your token for this dashboard (ask whoever runs it).")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        name = identity.token_owner(given, tokens)
        if name is not None:
            st.session_state[SIGNED_IN] = name
            st.session_state.pop("_sinkfix_token", None)  # the token is not kept in the session
            st.rerun()
        time.sleep(WRONG_TOKEN_PAUSE)
        st.error("That token is not right.")
    st.stop()


def _stop(message: str) -> None:
    st.title("SinkFix")
    st.error(message)
    st.stop()
