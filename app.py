"""sleuth analyst workbench: `streamlit run app.py [-- --db PATH]` (or `sleuth app` / `sleuth demo`).

The entry point only sets up the page, lets the request through sign-in (or local mode's
loopback check, analyst/views/identity.py), draws the sidebar (who is working, demo mode) and the
navigation; each page under analyst/views/ draws what the use-case layer (analyst/service/) returns.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from analyst.views import common, identity, live

# the favicon is a file of ours: a material-icon or emoji page_icon makes the browser ask an outside
# host for it, which fails offline (issue 17)
FAVICON = Path(__file__).resolve().parent / "static" / "favicon.png"
st.set_page_config(page_title="sleuth - fraud investigation", page_icon=str(FAVICON), layout="wide")
st.set_option("client.toolbarMode", "viewer")  # a product, not a dev server: no Deploy button

def _home() -> None:
    """`/` opens the queue at its own address: a default page's url_path is always "", so the
    queue as default page answered `/queue` with "Page not found" (issue 17)."""
    st.switch_page(common.QUEUE_PAGE)


pages = [
    st.Page(_home, title="Home", url_path="home", default=True, visibility="hidden"),
    st.Page("analyst/views/queue.py", title="Queue", icon=":material/inbox:", url_path="queue"),
    st.Page("analyst/views/case.py", title="Case", icon=":material/person_search:", url_path="case"),
    st.Page("analyst/views/entity.py", title="Entity", icon=":material/hub:", url_path="entity"),
    st.Page("analyst/views/labels.py", title="Labels", icon=":material/fact_check:", url_path="labels"),
    st.Page("analyst/views/review.py", title="Review", icon=":material/rate_review:", url_path="review"),
    st.Page("analyst/views/model.py", title="Model", icon=":material/model_training:", url_path="model"),
]
me = identity.gate()   # sign-in page, or local mode's loopback check: nothing below runs otherwise
page = st.navigation(pages, position="sidebar")

with st.sidebar:
    st.markdown("### :material/policy: sleuth")
    st.caption("Fraud investigation workbench")
    identity.sidebar(me)
    st.session_state["_demo_input"] = bool(st.session_state.get(common.DEMO_KEY, False))
    st.toggle("Demo mode", key="_demo_input", on_change=common.remember_demo,
              help="Reveal synthetic ground truth, mask ip and device ids, guided walk through a case.")
    live.stream_badge(common.workbench())   # only while new events stream in (sleuth app --stream)

with common.guard("This page failed"):
    page.run()
