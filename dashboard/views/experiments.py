"""Experiments: what sinks do to long-context inference, and why they form. Each tab is a section.

A deep link opens on the tab that shows it: ``?mechanism=ID`` on Mechanisms, ``?finding=ID`` on Layer
profile, ``?lab=ID`` on Lab, ``?evict=ID`` on Eviction, ``?experiment=ID`` on Long context (the first tab).
"""
import streamlit as st

from dashboard.sections import evict, lab, longcontext, mechanisms, profile

TABS = ["Long context", "Mechanisms", "Layer profile", "Lab", "Eviction"]
# Which tab a deep link opens (the first whose query parameter is set); none: the first tab.
DEEP_LINKS = ((mechanisms.QUERY, "Mechanisms"), (profile.QUERY, "Layer profile"), (lab.QUERY, "Lab"),
              (evict.QUERY, "Eviction"))

st.title("Experiments")
opened = next((tab for query, tab in DEEP_LINKS if st.query_params.get(query)), None)
long_tab, mechanism_tab, profile_tab, lab_tab, evict_tab = st.tabs(TABS, default=opened)
with long_tab:
    longcontext.render()
with mechanism_tab:
    mechanisms.render()
with profile_tab:
    profile.render()
with lab_tab:
    lab.render()
with evict_tab:
    evict.render()
