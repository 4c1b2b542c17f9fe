"""Entity page (`entity?kind=device&value=ID`, shareable): everyone who used one device, card,
address, IP or item, its use over time and the share of fraud among its labelled users.

Every value from data is shown as text (st.text / dataframe cells), never as Markdown; demo
mode shows the value's pseudonym, the same one the case page and the report use.
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from analyst import charts
from analyst.views import chart, common

wb = common.workbench()
demo = common.demo_mode()

kind = str(st.query_params.get("kind") or "").strip()
value = str(st.query_params.get("value") or "").strip()

st.title("Entity")
if not kind or not value:
    st.caption("A device, card, address, IP or item, and every account that used it. "
               "Open one from a case's Linked accounts tab, or look one up.")
    with st.form("entity_pick", border=True):
        c1, c2 = st.columns([1, 3])
        picked_kind = c1.selectbox("Kind", ("device", "payment_method", "address", "ip", "item"),
                                   format_func=lambda k: k.replace("_", " "))
        typed = c2.text_input("Value", placeholder="e.g. d000123")
        if st.form_submit_button("Open", type="primary") and typed.strip():
            st.query_params.update({"kind": picked_kind, "value": typed.strip()})
            st.rerun()
    st.stop()

doc = None
with common.guard("Could not open this entity"):
    doc = wb.entity(kind, value, viewer=common.actor().name)
if doc is None:
    st.stop()

shown_value = charts.mask_entity(kind, value) if demo else value
st.text(f"{kind.replace('_', ' ')}: {shown_value}")     # literal text: the value comes from data
share = doc["fraud_share"]
m = st.columns(5)
m[0].metric("Accounts", f"{doc['n_users']:,}", border=True)
m[1].metric("Events", f"{doc['n_events']:,}", border=True)
m[2].metric("Confirmed fraud", f"{doc['fraud_users']:,}", border=True,
            help="Accounts on this value whose latest label says fraud")
m[3].metric("Fraud share", common.pct(share), border=True,
            help="Fraud among the accounts on it that have a label (decisions and imported outcomes)")
m[4].metric("Labelled legit", f"{doc['legit_users']:,}", border=True)
st.caption(f"First used {common.fmt_when(doc['first_ts'])}, last used {common.fmt_when(doc['last_ts'])}.")

daily = pd.DataFrame(doc["daily"], columns=["day", "events", "users"])
if not daily.empty:
    fig = go.Figure()
    fig.add_trace(go.Bar(x=daily["day"], y=daily["events"], name="events", marker_color="#9ca3af",
                         hovertemplate="%{x}: %{y} events<extra></extra>"))
    fig.add_trace(go.Scatter(x=daily["day"], y=daily["users"], name="accounts", mode="lines+markers",
                             line=dict(color="#b2182b"), yaxis="y2",
                             hovertemplate="%{x}: %{y} accounts<extra></extra>"))
    fig.update_layout(height=240, margin=dict(l=10, r=10, t=30, b=10), plot_bgcolor="white",
                      title=dict(text="Use per day"), legend=dict(orientation="h", y=1.15, x=1, xanchor="right"),
                      yaxis=dict(title="events", rangemode="tozero"),
                      yaxis2=dict(title="accounts", overlaying="y", side="right", rangemode="tozero"),
                      meta={"chart": "entity_daily"})
    chart.show(fig, key="entity_daily", config={"displayModeBar": False})

users = pd.DataFrame(doc["users"], columns=["user_id", "risk", "n_events", "first_ts", "last_ts", "label",
                                            "case_id", "decision"])
listed = len(users)
st.subheader("Accounts on it")
st.caption(f"{doc['n_users']:,} account{'s' if doc['n_users'] != 1 else ''}"
           + (f"; the {listed} riskiest are listed" if listed < doc["n_users"] else "")
           + ". Risk from the current model; label = the latest decision or imported outcome.")
users = users.assign(
    label=users["label"].map({1: "fraud", 0: "legit"}).fillna(""),
    decision=[d or ("open case" if c is not None and not pd.isna(c) else "") for d, c in
              zip(users["decision"], users["case_id"])],
    link=[f"case?user={u}" for u in users["user_id"]],
)
st.dataframe(
    users, hide_index=True, width="stretch", key="entity_users",
    column_order=["user_id", "risk", "label", "decision", "n_events", "first_ts", "last_ts", "link"],
    column_config={
        "user_id": st.column_config.TextColumn("User"),
        "risk": st.column_config.ProgressColumn("Risk", min_value=0.0, max_value=1.0, format="%.2f"),
        "label": "Label", "decision": "Case", "n_events": st.column_config.NumberColumn("Events on it"),
        "first_ts": st.column_config.DatetimeColumn("First use", format="YYYY-MM-DD HH:mm"),
        "last_ts": st.column_config.DatetimeColumn("Last use", format="YYYY-MM-DD HH:mm"),
        "link": st.column_config.LinkColumn("Open", display_text="open case"),
    },
)
