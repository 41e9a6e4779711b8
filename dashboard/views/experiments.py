"""Experiments: what sinks do to long-context inference, and why they form. Each tab is a section.

A deep link opens on the tab that shows it: ``?mechanism=ID`` on Mechanisms, ``?lab=ID`` on Lab,
``?experiment=ID`` on Long context (the first tab), ``?evict=ID`` on Eviction.
"""
import streamlit as st

from dashboard.sections import evict, lab, longcontext, mechanisms

TABS = ["Long context", "Mechanisms", "Lab", "Eviction"]

st.title("Experiments")
opened = "Mechanisms" if st.query_params.get(mechanisms.QUERY) else "Lab" if st.query_params.get(lab.QUERY) else None
opened = "Eviction" if st.query_params.get(evict.QUERY) else opened
long_tab, mechanism_tab, lab_tab, evict_tab = st.tabs(TABS, default=opened)
with long_tab:
    longcontext.render()
with mechanism_tab:
    mechanisms.render()
with lab_tab:
    lab.render()
with evict_tab:
    evict.render()
