"""Experiments: what sinks do to long-context inference, and why they form. Each tab is a section."""
import streamlit as st

from dashboard.sections import longcontext, mechanisms

st.title("Experiments")
long_tab, mechanism_tab = st.tabs(["Long context", "Mechanisms"])
with long_tab:
    longcontext.render()
with mechanism_tab:
    mechanisms.render()
