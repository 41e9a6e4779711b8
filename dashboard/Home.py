"""SinkFix dashboard entry point: `streamlit run dashboard/Home.py`. It only builds the navigation.

Adding a page is one line in PAGES: a module under views/ that lays out widgets and calls the core.
"""
import sys
from pathlib import Path

# `streamlit run` puts dashboard/ on sys.path; the pages import `dashboard.*`, so add the repo root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamlit as st  # noqa: E402

st.set_page_config(page_title="SinkFix", page_icon=":material/water_drop:", layout="wide")

from dashboard import access  # noqa: E402

access.gate()  # sign-in, or a refusal when served beyond loopback without it (docs/security.md)

PAGES = [
    st.Page("views/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("views/analyze.py", title="Analyze", icon=":material/science:"),
    st.Page("views/history.py", title="History", icon=":material/history:"),
    st.Page("views/drilldown.py", title="Drill-down", icon=":material/grid_on:"),
    st.Page("views/longrun.py", title="Long run", icon=":material/timeline:"),
    st.Page("views/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("views/corpus.py", title="Corpus", icon=":material/library_books:"),
    st.Page("views/evaluate.py", title="Evaluate", icon=":material/rule:"),
    st.Page("views/experiments.py", title="Experiments", icon=":material/experiment:"),
]

st.navigation(PAGES).run()
