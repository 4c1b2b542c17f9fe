"""Labels page: every decision (append-only history), the audit trail, CSV / Parquet export."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from analyst.views import common
from analyst.vocab import LABEL_WORDS

wb = common.workbench()
me = common.actor()

st.title("Labels and audit")
st.caption("Every decision is a new label row (the latest per user wins; history stays). "
           "Every action is in the audit trail.")


def _export(fmt: str) -> bytes:
    """The label history as CSV or Parquet bytes, written by the service."""
    with tempfile.TemporaryDirectory() as tmp:
        path = wb.export_labels(Path(tmp) / f"labels.{fmt}", fmt=fmt, viewer=me.name)
        return path.read_bytes()


history = audit = None
with common.guard("Could not load the labels"):
    history = wb.label_history(viewer=me.name)   # a blind second reviewer sees none of their cases' first decisions
    audit = wb.audit(viewer=me.name)

if history is not None:
    latest = history.drop_duplicates("user_id", keep="last") if "user_id" in history.columns else history
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Label rows", f"{len(history):,}")
    m2.metric("Users labelled", f"{latest['user_id'].nunique():,}" if "user_id" in latest else "-")
    if "label" in latest.columns:
        m3.metric("Fraud (latest)", f"{int((latest['label'] == 1).sum()):,}")
        m4.metric("Legit (latest)", f"{int((latest['label'] == 0).sum()):,}")

    tab_hist, tab_audit = st.tabs(["Decision history", "Audit trail"])
    with tab_hist:
        shown = history
        f1, f2, f3 = st.columns([1, 1, 2])
        sources = sorted(history["source"].dropna().unique()) if "source" in history.columns else []
        chosen_sources = f1.multiselect("Source", sources, default=[s for s in sources if s == "analyst"] or sources,
                                        key="lab_source")
        analysts = sorted(history["analyst"].dropna().unique()) if "analyst" in history.columns else []
        chosen_analysts = f2.multiselect("Analyst", analysts, key="lab_analyst", placeholder="anyone")
        user_filter = f3.text_input("User id contains", key="lab_user")
        if chosen_sources and "source" in shown.columns:
            shown = shown[shown["source"].isin(chosen_sources)]
        if chosen_analysts:
            shown = shown[shown["analyst"].isin(chosen_analysts)]
        if user_filter.strip():
            shown = shown[shown["user_id"].astype(str).str.contains(user_filter.strip(), regex=False)]
        if "label" in shown.columns:
            shown = shown.assign(label=shown["label"].map(LABEL_WORDS).fillna("escalated"))
        st.dataframe(shown.iloc[::-1], hide_index=True, width="stretch", height=420, key="lab_table",
                     column_config={"decided_at": st.column_config.DatetimeColumn("Decided", format="YYYY-MM-DD HH:mm"),
                                    "as_of": st.column_config.DatetimeColumn("As of", format="YYYY-MM-DD HH:mm")})
        st.caption(f"{len(shown):,} of {len(history):,} rows, newest first.")
        e1, e2, _ = st.columns([1, 1, 3])
        with common.guard("Export failed"):
            e1.download_button("Export CSV", data=lambda: _export("csv"), file_name="labels.csv", mime="text/csv",
                               icon=":material/download:", key="lab_csv", on_click="ignore", width="stretch")
            e2.download_button("Export Parquet", data=lambda: _export("parquet"), file_name="labels.parquet",
                               mime="application/vnd.apache.parquet", icon=":material/download:", key="lab_parquet",
                               on_click="ignore", width="stretch")
    with tab_audit:
        if audit is None or audit.empty:
            st.info("No audit entries yet.")
        else:
            trail = audit
            if {"old", "new"} <= set(audit.columns):
                trail = audit.assign(change=[f"{o if pd.notna(o) else '-'} -> {n if pd.notna(n) else '-'}"
                                             for o, n in zip(audit["old"], audit["new"])])
            st.dataframe(trail.iloc[::-1], hide_index=True, width="stretch", height=460, key="audit_table")
            st.caption("Who did what, when, old -> new; newest first.")
