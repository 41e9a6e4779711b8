"""Who may see the dashboard's pages. Home.py calls ``gate()`` before the navigation runs.

- **OIDC** configured (``[auth]`` in ``.streamlit/secrets.toml``): Streamlit's ``st.login``; the pages
  show once ``st.user.is_logged_in``.
- **A shared token** (``SINKFIX_DASHBOARD_TOKEN`` or ``[sinkfix] token``): asked once per browser session
  (a Streamlit session: a reload asks again), compared in constant time.
- **Neither**: the pages show only when the server listens on loopback (``server.address`` 127.0.0.1,
  as ``make run`` and ``sinkfix dashboard`` start it). Bound wider, this page refuses to show anything,
  so ``streamlit run --server.address 0.0.0.0`` without sign-in serves no data.

The rules (what counts as configured, loopback, the token check) are ``sinkfix.policy.signin``'s.
"""
from __future__ import annotations

import time

import streamlit as st

from dashboard import ui
from sinkfix.errors import SinkFixError
from sinkfix.policy import ServerConfig, signin

SIGNED_IN = "_sinkfix_signed_in"
WRONG_TOKEN_PAUSE = 1.0  # seconds after a wrong token: a slow guesser, on top of a 16+ character token


def gate() -> None:
    """Return when this visitor may see the pages; otherwise draw the sign-in (or refusal) and stop."""
    try:
        ServerConfig.from_env()  # a bad limit or list is one line here, not a traceback on some page
        setup = signin.SignIn.from_secrets(_secrets())
    except SinkFixError as error:
        _stop(f"This dashboard is misconfigured: {error}")
    if setup.oidc:
        _oidc()
    elif setup.token is not None:
        _token(setup.token)
    else:
        host = st.get_option("server.address")
        try:
            signin.check_shared_start(host, setup)
        except SinkFixError as error:
            _stop(f"This dashboard shows nothing: {error}.")


def _secrets() -> dict:
    """``st.secrets`` as a plain dict; no secrets file is no secrets."""
    try:
        return st.secrets.to_dict()
    except FileNotFoundError:  # StreamlitSecretNotFoundError: no secrets.toml anywhere
        return {}


def _oidc() -> None:
    if st.user.is_logged_in:
        with st.sidebar:
            who = st.user.get("email") or st.user.get("name") or "a lab member"
            st.caption(f"Signed in as {ui.escape_md(str(who))}")
            st.button("Sign out", on_click=st.logout, key="_sinkfix_logout")
        return
    st.title("SinkFix")
    st.write("This dashboard is shared: sign in to use it.")
    st.button("Sign in", on_click=st.login, type="primary", key="_sinkfix_login")
    st.stop()


def _token(token: str) -> None:
    if st.session_state.get(SIGNED_IN):
        return
    st.title("SinkFix")
    with st.form("_sinkfix_signin"):
        given = st.text_input("Access token", type="password", key="_sinkfix_token",
                              help="The lab's shared token for this dashboard (ask whoever runs it).")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        if signin.token_matches(given, token):
            st.session_state[SIGNED_IN] = True
            st.session_state.pop("_sinkfix_token", None)  # the token is not kept in the session
            st.rerun()
        time.sleep(WRONG_TOKEN_PAUSE)
        st.error("That token is not right.")
    st.stop()


def _stop(message: str) -> None:
    st.title("SinkFix")
    st.error(message)
    st.stop()
