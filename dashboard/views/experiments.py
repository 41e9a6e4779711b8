"""Experiments: what sinks do to long-context inference, and why they form. Each tab is a section.

A deep link opens on the tab that shows it: ``?mechanism=ID`` on Mechanisms, ``?finding=ID`` on Layer
profile, ``?lab=ID`` on Lab, ``?experiment=ID`` on Long context (the first tab).
"""
import streamlit as st

from dashboard.sections import lab, longcontext, mechanisms, profile

TABS = ["Long context", "Mechanisms", "Layer profile", "Lab"]

st.title("Experiments")
opened = ("Mechanisms" if st.query_params.get(mechanisms.QUERY) else "Layer profile" if st.query_params.get(profile.QUERY)
          else "Lab" if st.query_params.get(lab.QUERY) else None)
long_tab, mechanism_tab, profile_tab, lab_tab = st.tabs(TABS, default=opened)
with long_tab:
    longcontext.render()
with mechanism_tab:
    mechanisms.render()
with profile_tab:
    profile.render()
with lab_tab:
    lab.render()
