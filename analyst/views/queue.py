"""Queue page (landing): open cases, riskiest first; filters, sort, claim, next case."""
from __future__ import annotations

import datetime as dt

import streamlit as st

from analyst import charts
from analyst.views import chart, common, live
from analyst.vocab import WHY_LABELS

STATUSES = ("open", "claimed", "escalated", "decided")
SORTS = {"risk": "Risk (highest first)", "age": "Account age (newest first)", "opened": "Opened (latest first)"}

wb = common.workbench()
me = common.actor()   # the signed-in user (or the local operator)

st.title("Case queue")
st.caption("Flagged users waiting for review, riskiest first. Pick one, or let **Next case** choose.")
live.queue_changes(wb)   # while events stream in: open cases whose risk changed since this tab opened

with st.container(border=True):
    c1, c2, c3, c4, c5, c6 = st.columns([1.6, 1.1, 1.3, 1.1, 1.1, 0.9], vertical_alignment="bottom")
    statuses = c1.multiselect("Status", STATUSES, default=["open", "claimed", "escalated"], key="q_status")
    risk_range = c2.slider("Risk", 0.0, 1.0, (0.0, 1.0), step=0.01, key="q_risk", format="%.2f")
    event_types = c3.multiselect("Has event types", wb.event_types(), key="q_types",
                                 placeholder="any event type")
    dates = c4.date_input("Opened between", value=[], key="q_dates")
    sort = c5.selectbox("Sort", list(SORTS), format_func=SORTS.get, key="q_sort")
    grouped = c6.toggle("Group rings", key="q_rings",
                        help="One row per ring: flagged users linked through a shared device, card, address or IP")

since = until = None
if isinstance(dates, (tuple, list)) and len(dates) >= 1:
    since = dt.datetime.combine(dates[0], dt.time.min)
    until = dt.datetime.combine(dates[-1], dt.time.max)

queue = None
with common.guard("Could not load the queue"):
    queue = wb.queue(statuses=tuple(statuses) or STATUSES, min_risk=risk_range[0], max_risk=risk_range[1],
                     event_types=tuple(event_types), since=since, until=until, sort=sort,
                     group_rings=grouped)

if queue is not None:
    m1, m2, m3, m4, m5 = st.columns([1, 1, 1, 1, 1.4])
    m1.metric("Cases shown", f"{len(queue):,}")
    m2.metric("High risk (>= 80%)", f"{int((queue['risk'] >= 0.8).sum()):,}")
    m3.metric("Unassigned", f"{int(queue['assignee'].isna().sum()):,}")
    m4.metric("Yours", f"{int((queue['assignee'] == me.name).sum()):,}")
    with m5:
        if st.button("Next case", type="primary", icon=":material/arrow_forward:", key="q_next",
                     help="Open (and claim) the riskiest case nobody else has claimed",
                     width="stretch"):
            with common.guard("Could not pick the next case"):
                case_id = wb.next_case(me.name)
                if case_id is None:
                    st.info("No unclaimed case left in the queue.")
                else:
                    row = wb.queue(statuses=STATUSES).set_index("case_id").loc[case_id]
                    wb.claim(case_id, me)
                    common.open_case(str(row["user_id"]))

    if common.demo_mode() and not queue.empty:
        with st.container(border=True):
            g1, g2 = st.columns([4, 1], vertical_alignment="center")
            g1.markdown("**Demo mode.** Take the guided walk through the riskiest case: numbered notes explain "
                        "each part of the case page; ip and device ids are masked; ground truth can be revealed.")
            if g2.button("Start the walk", icon=":material/school:", key="q_tour", width="stretch"):
                common.open_case(str(queue.iloc[0]["user_id"]))

    if queue.empty:
        st.info("No case matches these filters. Widen the filters, or score new data "
                "(`sleuth score`) to open cases.", icon=":material/inbox:")
    else:
        shown = queue.assign(
            risk_pct=(queue["risk_now"] * 100).round(0),
            ring=[f"{n} accounts" if n else "" for n in queue["ring_size"]],
            why=queue["why"].map(lambda w: WHY_LABELS.get(w, w)),
            assignee=queue["assignee"].fillna("-"),
            link=[f"case?user={u}" for u in queue["user_id"]],
        )
        event = st.dataframe(
            shown,
            key="queue_table",
            hide_index=True,
            width="stretch",
            height=min(38 + 35 * len(shown), 560),
            on_select="rerun",
            selection_mode="single-row",
            column_order=["risk_pct", "user_id", "top_reason", "tags", "ring", "why", "status", "assignee",
                          "age_days", "opened_at", "link"],
            column_config={
                "risk_pct": st.column_config.ProgressColumn(
                    "Risk", format="%d%%", min_value=0, max_value=100, width="small",
                    help="The latest risk: after a linked account's decision rescored it, the new one"),
                "user_id": st.column_config.TextColumn("User", width="small"),
                "top_reason": st.column_config.TextColumn("Top reason", width="large"),
                "tags": st.column_config.ListColumn("Tags", width="small"),
                "ring": st.column_config.TextColumn(
                    "Ring", width="small",
                    help="Flagged accounts linked to this one through a shared device, card, address or IP: "
                         "open the case's Linked accounts tab to decide the ring at once"),
                "why": st.column_config.TextColumn(
                    "Why queued", width="small",
                    help="High risk: among the riskiest users. Uncertain: near the alert cut, or the risk head "
                         "and the surprise disagree. Random control: drawn at random from unflagged users."),
                "status": st.column_config.TextColumn("Status", width="small"),
                "assignee": st.column_config.TextColumn("Assignee", width="small"),
                "age_days": st.column_config.NumberColumn("Age (d)", format="%.0f", width="small",
                                                         help="Account age in days"),
                "opened_at": st.column_config.DatetimeColumn("Opened", format="MM-DD HH:mm", width="small"),
                "link": st.column_config.LinkColumn("Link", display_text="open", width="small"),
            },
        )
        if (queue["why"] == "control").any():
            st.caption(f"**{WHY_LABELS['control']}** cases are a random sample of users the model did not "
                       "flag: deciding them honestly measures the fraud base rate and the frauds the queue misses, "
                       "free of selection bias.")
        rows = event.selection.rows if event is not None else []
        if rows:
            picked = queue.iloc[rows[0]]
            with st.container(border=True):
                a, b, c = st.columns([3, 1, 1])
                a.markdown(f"**User {common.esc(picked['user_id'])}** - risk {common.pct(picked['risk_now'])} - "
                           f"{common.esc(picked['top_reason'] or 'no reason stored')}")
                if b.button("Open case", type="primary", key="q_open", width="stretch"):
                    common.open_case(str(picked["user_id"]))
                claimable = picked["status"] in ("open", "escalated")
                if c.button("Claim", key="q_claim", disabled=not claimable, width="stretch"):
                    with common.guard("Could not claim the case"):
                        if wb.claim(int(picked["case_id"]), me):
                            st.toast(f"Claimed case {int(picked['case_id'])}")
                            st.rerun()
                        else:
                            st.warning("Someone else claimed this case first.")
        else:
            st.caption("Select a row to open or claim it.")
        with st.expander("Risk distribution of the cases shown"):
            chart.show(charts.risk_histogram(queue["risk"]), key="q_hist")
