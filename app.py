"""sleuth analyst workbench: `streamlit run app.py [-- --db PATH]` (or `sleuth app` / `sleuth demo`).

The entry point only sets up the page, the sidebar (who is working, demo mode) and the
navigation; each page under analyst/views/ draws what analyst/service.py returns.
"""
from __future__ import annotations

import streamlit as st

from analyst.views import common

st.set_page_config(page_title="sleuth - fraud investigation", page_icon=":material/policy:", layout="wide")

pages = [
    st.Page("analyst/views/queue.py", title="Queue", icon=":material/inbox:", url_path="queue", default=True),
    st.Page("analyst/views/case.py", title="Case", icon=":material/person_search:", url_path="case"),
    st.Page("analyst/views/labels.py", title="Labels", icon=":material/fact_check:", url_path="labels"),
    st.Page("analyst/views/model.py", title="Model", icon=":material/model_training:", url_path="model"),
]
page = st.navigation(pages, position="sidebar")

with st.sidebar:
    st.markdown("### :material/policy: sleuth")
    st.caption("Fraud investigation workbench")
    name, source = common.analyst_source()
    if source == "session":
        # asked once per session; kept in session_state for every decision of this tab
        st.text_input("Your name", key=common.ANALYST_KEY, placeholder="recorded on decisions",
                      help="Set SLEUTH_ANALYST or configure login to skip this.")
    else:
        st.markdown(f"Analyst: **{name}**")
    st.toggle("Demo mode", key=common.DEMO_KEY,
              help="Reveal synthetic ground truth, mask ip and device ids, guided walk through a case.")

with common.guard("This page failed"):
    page.run()
