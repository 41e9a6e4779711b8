"""Experiments page, long-context section: StreamingLLM windows with k sinks, and sink-preserving KV quantisation."""
from __future__ import annotations

import streamlit as st


def render() -> None:
    st.info("Long-context experiments are not built yet.")
