"""Experiments page, mechanisms section: the Gu et al. sink-rate protocol and massive activations."""
from __future__ import annotations

import streamlit as st


def render() -> None:
    st.info("Mechanism probes are not built yet.")
