"""Case page (`case?user=ID`): one user's timeline, risk, explanation, what-if, decision, report."""
from __future__ import annotations

from urllib.parse import quote

import numpy as np
import pandas as pd
import streamlit as st

from analyst import charts, report
from analyst.service import ConflictError
from analyst.vocab import ALERT_QUALITY, DECISION_LABELS, LABEL_WORDS, REASON_CODES, WHY_LABELS
from models.contracts import CASE_COLUMNS
from analyst.views import chart, common, live

CACHE_KEY = "case_view"      # {"user_id", "model_version", "view"}: this tab's last loaded case
FLASH_KEY = "case_flash"     # the last decision, shown once after the rerun that records it
RING_FLASH_KEY = "case_ring_flash"  # the last ring decision of this tab, shown on its member's page
CONFLICT_KEY = "case_conflict"  # {"user_id", "decision", "note"}: this tab's decision that lost a race
# reason codes that contradict a decision (a UI consistency check before anything is written)
# the events table: time and type, the model's view of each event, then the field table's columns
EVENT_COLUMNS = ["ts", "event_type", "attribution", "surprise", "risk"] + [
    c for c in CASE_COLUMNS if c not in ("ts", "event_type")]

wb = common.workbench()
me = common.actor()   # the signed-in user (or the local operator): on every row written
demo = common.demo_mode()


def _attr_style(value: float, bound: float) -> str:
    """Background for an attribution cell: red towards fraud, blue towards legit."""
    if value is None or pd.isna(value) or bound <= 0:
        return ""
    alpha = min(abs(float(value)) / bound, 1.0) * 0.55
    rgb = "178,24,43" if value > 0 else "33,102,172"
    return f"background-color: rgba({rgb},{alpha:.2f})"


def _cached(user_id: str):
    """This tab's CaseView of `user_id` if it is still current (same model version), else None."""
    cached = st.session_state.get(CACHE_KEY)
    if cached and cached["user_id"] == user_id and cached["model_version"] == wb.current_version():
        return cached["view"]
    return None


def _load(user_id: str, fresh: bool = False):
    """The CaseView for this tab, reused across reruns until the model or a decision changes it."""
    view = None if fresh else _cached(user_id)
    if view is not None:
        return view
    label = "Explaining the risk (integrated gradients)..." if fresh else f"Loading user {common.esc(user_id)}..."
    with st.spinner(label, show_time=True):
        view = wb.case(user_id, fresh=fresh)
    st.session_state[CACHE_KEY] = {"user_id": user_id, "model_version": view.model_version, "view": view}
    return view


def _go_next(after_case_id: int | None) -> None:
    case_id = wb.next_case(me.name, after_case_id=after_case_id)
    user = wb.user_of_case(case_id)
    if user is None:
        st.info("The queue is empty: no case left to review.")
        return
    wb.claim(int(case_id), me)
    st.session_state.pop(CACHE_KEY, None)
    common.open_case(user)


def _int(value: object) -> int | None:
    return None if value is None else int(value)


def _tour(step: int, text: str) -> None:
    if demo:
        st.info(f"**Guided walk, step {step}.** {text}", icon=":material/school:")


def _report_links(user_id: str) -> dict | None:
    """The linked accounts for the case report (None when the store has no links yet)."""
    try:
        return wb.links(user_id, max_users=charts.NETWORK_MAX_PER_ENTITY, viewer=me.name)
    except (LookupError, ValueError):
        return None


def rescore_progress(job_id: str | None) -> None:
    """The background rescore of linked accounts a fraud decision started: progress, then result."""
    job = wb.job(job_id) if job_id else None
    if job is None:
        return
    if job.done:
        if job.error:
            st.error(f"Rescoring linked accounts failed: {common.esc(job.error)}", icon=":material/error:")
        else:
            rose = job.result.get("rose", [])
            st.info(f"Linked accounts rescored: {job.message}."
                    + (" Risk rose for: " + ", ".join(f"{common.esc(r['user_id'])} ({r['old']:.0%} -> {r['new']:.0%})"
                                                        for r in rose[:8]) if rose else ""),
                    icon=":material/hub:")
        return

    @st.fragment(run_every=1.0)
    def poll() -> None:
        if job.done:
            st.rerun()   # the whole page: the result replaces the progress bar
        st.progress(min(max(job.progress, 0.0), 1.0), text=f"Rescoring linked accounts: {job.message}")

    poll()


# ---------------------------------------------------------------------------------- which user
user_id = st.query_params.get("user")
if not user_id:
    st.title("Case")
    st.caption("Open a case from the queue, use **Next case**, or look a user up.")
    with st.form("case_pick", border=True):
        typed = st.text_input("User id", placeholder="e.g. u00042")
        if st.form_submit_button("Open", type="primary") and typed.strip():
            common.open_case(typed.strip())
    if st.button("Next case", icon=":material/arrow_forward:", key="case_next_empty"):
        with common.guard("Could not pick the next case"):
            _go_next(None)
    st.stop()

# ---------------------------------------------------------------------------------- header
# The layout is laid down before the case loads: on a first visit the timeline slot shows an empty
# chart at once, so the browser loads its plotly.js while the server reads the case.
head_l, head_r = st.columns([3, 1.2], vertical_alignment="center")
head_l.title(f"Case: user {common.esc(user_id)}")
chips_slot = head_l.empty()
flash_slot = st.container()
metrics_slot = st.container()
chart_slot = st.empty()
if _cached(user_id) is None:
    with chart_slot:
        chart.show(charts.loading_figure(), config={"displayModeBar": False})

view = None
with common.guard(f"Could not open user {user_id}"):
    view = _load(user_id)
if view is None:
    chart_slot.empty()
    st.stop()

timeline = charts.mask_identifiers(view.timeline) if demo else view.timeline
exp = view.explanation
case = {k: (None if not isinstance(v, (list, tuple, dict)) and pd.isna(v) else v) for k, v in (view.case or {}).items()}

chips = []
if case:
    chips.append(f":blue-badge[{case.get('status', 'open')}]")
    chips.append(f":orange-badge[{WHY_LABELS.get(case.get('why'), case.get('why') or 'flagged')}]")
    if case.get("assignee"):
        chips.append(f":gray-badge[:material/person: {common.esc(case['assignee'])}]")
    chips.append(f":gray-badge[opened {common.fmt_when(case.get('opened_at'))}]")
else:
    chips.append(":gray-badge[no open case]")
# a blind second reviewer of this user does not see the first decision here either
# (only decided cases are sampled for it: the lookup runs for those only)
blind = wb.blind_for(me.name, case)
if len(view.labels) and not blind:
    last = view.labels.iloc[-1].get("label")
    chips.append(f":violet-badge[last decision: {'fraud' if last == 1 else 'legit' if last == 0 else 'escalated'}]")
    imported = view.labels[view.labels["source"] == "import"] if "source" in view.labels.columns else view.labels.iloc[0:0]
    if len(imported):  # delayed ground truth (chargebacks, refunds) from `sleuth ingest --labels`
        outcome = "fraud" if imported.iloc[-1].get("label") == 1 else "legit"
        chips.append(f":green-badge[:material/receipt_long: outcome imported: {outcome}]")
chips_slot.markdown(" ".join(chips))


def _reload_case() -> None:
    st.session_state.pop(CACHE_KEY, None)
    st.rerun()


with flash_slot:
    live.case_watch(wb, view.user_id, view.risk, _reload_case)   # streamed events moved the risk
if blind:
    flash_slot.info("You have a blind second review of this case on the Review page: its first decision and "
                    "history are hidden here until you record it.", icon=":material/visibility_off:")
with head_r:
    st.download_button(
        "Download case report", icon=":material/download:", width="stretch",
        data=lambda: report.case_report_html(view, masked=demo, analyst=me.name, links=_report_links(view.user_id),
                                             blind=blind),
        file_name=report.report_filename(view.user_id, view.model_version), mime="text/html",
        key=f"report_{view.user_id}", on_click="ignore",
    )
    if st.button("Recompute explanation", icon=":material/refresh:", width="stretch", key=f"fresh_{view.user_id}",
                 disabled=view.model_version is None, help="Explain again with the current model"):
        with common.guard("Could not recompute the explanation"):
            _load(view.user_id, fresh=True)
            st.rerun()

flash = st.session_state.get(FLASH_KEY)
if flash and flash["user_id"] != view.user_id:
    st.session_state.pop(FLASH_KEY, None)  # shown only on the case it was recorded for
    flash = None

with metrics_slot:
    h = view.header
    countries = h.get("countries") or []
    cols = st.columns([1.1, 1, 1, 1, 1, 1])
    cols[0].metric("Risk", common.pct(view.risk), border=True,
                   help=f"Calibrated P(fraud) at the last event, model {view.model_version or 'none'}")
    cols[1].metric("Account age", f"{h.get('account_age_days', 0):.0f} d", border=True)
    cols[2].metric("Devices", f"{h.get('devices', 0)}", border=True)
    cols[3].metric("Countries", f"{len(countries)}", border=True)
    cols[4].metric("Payments", f"{h.get('payments', 0)}", border=True)
    cols[5].metric("Events", f"{h.get('events', 0):,}", border=True)
    st.caption(
        f"Model version **{view.model_version or 'none'}** · first seen {common.fmt_when(h.get('first_seen'))}, "
        f"last seen {common.fmt_when(h.get('last_seen'))} · {h.get('ips', 0)} IPs · "
        f"countries: {common.esc(', '.join(countries)) or 'n/a'} · paid {h.get('paid_total', 0):,.2f} · "
        f"{h.get('refunds', 0)} refunds · the model reads the last {h.get('events_in_model_window', 0)} events"
        + (" (the earlier ones tell it which devices, IPs, countries, addresses and payment methods are new)"
           if h.get("events", 0) > h.get("events_in_model_window", 0) else "")
    )
    _tour(1, "The risk above is the model's calibrated probability that this account is fraudulent, "
             "as of its latest event. The header summarises the account.")

    planted: list[int] = []
    if demo and view.ground_truth is not None:
        if st.toggle("Reveal ground truth (synthetic data)", key=f"reveal_{view.user_id}"):
            gt = view.ground_truth
            planted = [int(i) for i in gt.get("planted_events", [])]
            verdict = "fraud" if gt.get("label") else "legit"
            st.info(f"This synthetic user is **{verdict}**"
                    + (f", planted pattern(s): **{', '.join(gt['patterns'])}**" if gt.get("patterns") else "")
                    + (f"; its {len(planted)} planted events are outlined in orange in the timeline." if planted else "."),
                    icon=":material/visibility:")

    _tour(2, "Each dot is an event, one row per event type. Red events pushed the risk up, blue ones down; "
             "bigger dots mattered more. The black line is the risk as of each event. Drag to zoom, hover for details.")

# ---------------------------------------------------------------------------------- timeline
with chart_slot:
    chart.show(charts.timeline_figure(timeline, selected=planted), key=f"timeline_{view.user_id}",
               config={"scrollZoom": True})

# ---------------------------------------------------------------------------------- why + decide
why_col, decide_col = st.columns([1.35, 1], gap="large")
with why_col:
    st.subheader("Why this risk")
    _tour(3, "These sentences are built from the events with the largest attributions.")
    if exp is None:
        st.info("No model has scored this user yet: train one on the Model page.")
    else:
        for sentence in exp.reasons:
            st.markdown(f"- {common.esc(sentence)}")
        fields = getattr(exp, "field_attribution", None) or {}
        if fields:
            chart.show(charts.field_attribution_figure(fields), key=f"fields_{view.user_id}",
                       config={"displayModeBar": False})
        st.caption(f"Integrated gradients, {exp.n_steps} steps from an average-event baseline "
                   f"(time kept, each event as surprising as usual); "
                   f"convergence delta {exp.delta:.1e}.")

with decide_col:
    st.subheader("Decision")
    # Notices sit in one container that is always drawn, so the form keeps its place on the page:
    # when a notice comes or goes (name entered, conflict) the browser never holds a stale copy of
    # the form beside the new one while the rerun finishes.
    notices = st.container()
    with notices:
        _tour(5, "Record what you conclude. A note is required; it is kept with the label and the audit trail.")
    note_key = f"note_{view.user_id}"
    conflict = st.session_state.get(CONFLICT_KEY)
    if conflict and conflict["user_id"] != view.user_id:
        st.session_state.pop(CONFLICT_KEY, None)
        conflict = None
    if conflict:
        now = case.get("decision")
        by = f" ({DECISION_LABELS.get(now, now)} by {common.esc(case.get('assignee') or 'another analyst')})" if now else ""
        notices.error(f"Not recorded: someone else decided this case{by} after you opened it, so your "
                 f"'{DECISION_LABELS.get(conflict['decision'], conflict['decision'])}' was not saved. "
                 f"Your note is kept below; the case now shows their decision (History & audit). Submit again "
                 f"if you still disagree: it is added as a new decision.\n\nYour note: {common.esc(conflict['note'])}",
                 icon=":material/sync_problem:")
        if not st.session_state.get(note_key):
            st.session_state[note_key] = conflict["note"]
    # no reason is preselected: one chosen from the model's risk nudged analysts toward its verdict
    with st.form(f"decision_{view.user_id}", border=True, enter_to_submit=False):
        reason = st.selectbox("Reason code", REASON_CODES, index=None, placeholder="choose a reason",
                              format_func=lambda r: r.replace("_", " ").capitalize())
        quality = st.radio("Alert quality", ALERT_QUALITY, index=0, horizontal=True,
                           format_func=lambda q: q.capitalize())
        note = st.text_area("Note", placeholder="What did you see? (required)", height=90, required=True,
                            key=note_key)
        pressed = None
        if st.form_submit_button("Confirm fraud", type="primary", width="stretch", icon=":material/gpp_bad:"):
            pressed = "fraud"
        b2, b3 = st.columns(2)
        if b2.form_submit_button("Reject", width="stretch", icon=":material/verified_user:"):
            pressed = "legit"
        if b3.form_submit_button("Escalate", width="stretch", icon=":material/upload:"):
            pressed = "escalate"
    if pressed == "escalate" and reason is None:
        reason = "insufficient_evidence"   # decided 2026-12-04: an escalation says "not enough to decide"
    if pressed:
        if not (note or "").strip():
            st.error("Write a note: it is required to record a decision.")
        elif reason is None:
            st.error("Choose a reason code: it is required to record a decision.")
        else:
            try:
                decision = wb.decide(view.user_id, pressed, analyst=me, reason_code=reason, quality=quality,
                                     note=note, case_id=_int(case.get("case_id")), expected_version=_int(case.get("version")))
            except ConflictError as exc:
                # keep the note (the text area keeps its value; the banner repeats it) and reload the case
                st.session_state[CONFLICT_KEY] = {"user_id": view.user_id, "decision": pressed,
                                                  "note": exc.note or note}
                st.session_state.pop(CACHE_KEY, None)
                st.rerun()
            except Exception as exc:
                st.error(f"Could not record the decision: {common.esc(common.error_message(exc))}")
            else:
                st.session_state.pop(CONFLICT_KEY, None)
                st.session_state[FLASH_KEY] = {"user_id": view.user_id, "decision": decision.decision,
                                               "analyst": me.name, "next_case_id": decision.next_case_id,
                                               "case_id": decision.case_id,
                                               "rescore_job": decision.rescore_job}
                st.session_state.pop(CACHE_KEY, None)
                st.session_state.pop(note_key, None)   # the recorded note leaves the form
                st.rerun()
    if flash:
        st.success("Decision recorded", icon=":material/check_circle:")
        st.caption(f"{DECISION_LABELS.get(flash['decision'], flash['decision'])} by {common.esc(flash['analyst'])}.")
        rescore_progress(flash.get("rescore_job"))
        if st.button("Next case", type="primary", icon=":material/arrow_forward:", key="case_next_after",
                     width="stretch"):
            st.session_state.pop(FLASH_KEY, None)
            with common.guard("Could not pick the next case"):
                _go_next(_int(flash.get("case_id")))
    elif st.button("Skip to next case", icon=":material/skip_next:", key="case_skip", width="stretch"):
        with common.guard("Could not pick the next case"):
            _go_next(_int(case.get("case_id")))

# ---------------------------------------------------------------------------------- details
@st.fragment
def what_if_panel() -> None:
    """Remove events and recompute the risk (reruns only this panel)."""
    _tour(4, "Remove the events you think matter and see how the risk changes.")
    n = len(view.timeline)
    attr = view.timeline["attribution"].to_numpy(dtype=float) if "attribution" in view.timeline else np.zeros(n)
    top = [int(i) for i in np.argsort(-attr)[:3] if attr[i] > 0]
    types = view.timeline["event_type"].astype(str).tolist()
    times = pd.to_datetime(view.timeline["ts"]).dt.strftime("%m-%d %H:%M").tolist()
    remove = st.multiselect(
        "Events to remove", list(range(n)), default=top, key=f"whatif_sel_{view.user_id}",
        format_func=lambda i: f"#{i} {types[i]} {times[i]} ({attr[i]:+.2f})",
    )
    if st.button("Recompute risk without them", key=f"whatif_go_{view.user_id}", disabled=not remove or exp is None):
        with common.guard("What-if failed"):
            with st.spinner("Rescoring without those events..."):
                new = wb.what_if(view.user_id, remove, model=wb.model(view.model_version))
            st.session_state[f"whatif_result_{view.user_id}"] = (tuple(remove), new)
    result = st.session_state.get(f"whatif_result_{view.user_id}")
    if result is not None and view.risk is not None:
        removed, new = result
        st.metric(f"Risk without {len(removed)} event(s)", common.pct(new), delta=common.risk_change(view.risk, new),
                  delta_color="inverse")
        st.caption("Removed: " + common.esc(", ".join(f"#{i} {types[i]}" for i in removed)))
    if exp is not None and exp.what_if:
        st.markdown("**Precomputed: each top event removed on its own**")
        st.dataframe(pd.DataFrame([
            {"removed": ", ".join(f"#{i} {types[i]}" for i in w.removed), "risk without": w.risk,
             "change (pts)": (w.risk - exp.risk) * 100,
             "change (log-odds)": common.log_odds(w.risk) - common.log_odds(exp.risk)} for w in exp.what_if]),
            hide_index=True, width="stretch",
            column_config={"risk without": st.column_config.ProgressColumn(format="percent", min_value=0.0,
                                                                           max_value=1.0),
                           "change (pts)": st.column_config.NumberColumn(format="%+.1f"),
                           "change (log-odds)": st.column_config.NumberColumn(
                               format="%+.2f", help="Still moves when the risk is saturated near 0 % or 100 %")})


def events_panel() -> None:
    """The events the model reads, with attribution (coloured), surprise and risk columns."""
    shown = timeline[[c for c in EVENT_COLUMNS if c in timeline.columns]].dropna(axis=1, how="all")
    shown.index.name = "#"
    styled = shown.style
    if "attribution" in shown.columns:
        bound = float(np.nanmax(np.abs(shown["attribution"].to_numpy(dtype=float)))) if len(shown) else 0.0
        styled = styled.map(lambda v: _attr_style(v, bound), subset=["attribution"])
    st.dataframe(
        styled, key=f"events_{view.user_id}", width="stretch", height=420,
        column_config={
            "ts": st.column_config.DatetimeColumn("Time", format="YYYY-MM-DD HH:mm:ss"),
            "event_type": "Event", "amount": st.column_config.NumberColumn("Amount", format="%.2f"),
            "currency": "Cur.", "status": "Status", "category": "Category", "item_id": "Item", "query": "Query",
            "payment_method": "Payment", "country": "Country", "device_id": "Device", "ip": "IP",
            "address_id": "Address",
            "attribution": st.column_config.NumberColumn("Attribution", format="%+.3f",
                                                         help="Signed: > 0 pushes the risk towards fraud"),
            "surprise": st.column_config.NumberColumn("Surprise (nats)", format="%.2f",
                                                      help="How unexpected the event was given the ones before"),
            "risk": st.column_config.ProgressColumn("Risk after", format="percent", min_value=0.0, max_value=1.0),
        },
    )
    st.caption("Events the model reads (the latest ones), in time order; # is the event index used by what-if.")


def attention_panel() -> None:
    """Rollout over all layers, or the last layer per head, from the scored event."""
    st.warning("Attention is not an explanation: it shows where the model looked from the scored event, "
               "not why the score is what it is. Use the attributions for reasons.", icon=":material/info:")
    if exp is None:
        st.info("No model explanation for this user.")
        return
    mode = st.segmented_control("View", ["Rollout (all layers)", "Last layer, per head"],
                                default="Rollout (all layers)", key=f"attn_mode_{view.user_id}")
    labels = [f"#{i} {t}" for i, t in enumerate(view.timeline["event_type"])]
    if mode == "Last layer, per head":
        fig = charts.attention_figure(np.asarray(exp.attention_last), event_labels=labels)
    else:
        fig = charts.attention_figure(np.asarray(exp.attention_rollout), event_labels=labels, row_labels=["rollout"])
    chart.show(fig, key=f"attn_{view.user_id}")


def similar_panel() -> None:
    """The nearest labelled users in the model's sequence embedding."""
    nb = view.neighbours
    if nb is None or nb.empty:
        st.info("No labelled cases to compare with yet.")
        return
    st.caption("Labelled users whose behaviour the model encodes most similarly.")
    st.dataframe(
        nb.assign(label=nb["label"].map(LABEL_WORDS), link=[f"case?user={u}" for u in nb["user_id"]]),
        hide_index=True, width="stretch", key=f"nb_{view.user_id}",
        column_config={"user_id": "User", "label": "Decision",
                       "similarity": st.column_config.ProgressColumn("Similarity", min_value=0.0, max_value=1.0,
                                                                     format="%.2f"),
                       "link": st.column_config.LinkColumn("Open", display_text="open")},
    )


# shared-entity kinds in the order an analyst reads them (items are shared by honest shoppers too)
LINK_KIND_ORDER = ("device", "payment_method", "address", "ip", "item")
LINK_ITEMS_SHOWN = 5
LINKS_OPENED = 5   # the riskiest linked users get a one-click link to their case


def _link_value(kind: str, value: str) -> str:
    """An entity value as shown: masked in demo mode like the events table masks its column."""
    return charts.mask_entity(kind, value) if demo else str(value)


def entity_url(kind: str, value: str) -> str:
    """The shareable entity page of one value (the URL carries the value itself)."""
    return f"entity?kind={quote(str(kind))}&value={quote(str(value), safe='')}"


def shared_entities(doc: dict) -> list[dict]:
    """The values this user shares with another account, devices and cards first; at most
    LINK_ITEMS_SHOWN items (the riskiest)."""
    order = {k: i for i, k in enumerate(LINK_KIND_ORDER)}
    shared = [e for e in doc["entities"] if e["n_users"] > 1 and e["users"]]
    items = sorted((e for e in shared if e["kind"] == "item"),
                   key=lambda e: -max((u["risk"] or 0.0) for u in e["users"]))[:LINK_ITEMS_SHOWN]
    return sorted([e for e in shared if e["kind"] != "item"] + items,
                  key=lambda e: (order.get(e["kind"], len(order)), -e["n_users"]))


def linked_rows(doc: dict) -> pd.DataFrame:
    """One row per (shared entity value, linked user), as `shared_entities` orders them."""
    rows = [{"shared": e["kind"].replace("_", " "), "value": _link_value(e["kind"], e["value"]),
             "accounts": e["n_users"] - 1, "user_id": u["user_id"], "risk": u["risk"],
             "decision": u["decision"] or ("open case" if u["case_id"] is not None else ""),
             "link": f"case?user={u['user_id']}", "entity": entity_url(e["kind"], e["value"])}
            for e in shared_entities(doc) for u in e["users"]]
    return pd.DataFrame(rows, columns=["shared", "value", "accounts", "user_id", "risk", "decision", "link",
                                       "entity"])


def ring_panel() -> None:
    """This user's ring (flagged users linked through small shared values) and one decision for it."""
    ring = wb.ring_of(view.user_id)
    done = st.session_state.get(RING_FLASH_KEY)
    if done and done.get("user_id") == view.user_id:
        st.success(f"Ring {done['ring_id']}: {done['decided']} case(s) decided as "
                   f"{DECISION_LABELS.get(done['decision'], done['decision'])}.", icon=":material/check_circle:")
        for user, case_id, why in done["conflicts"]:
            st.warning(f"Not changed: case {case_id} (user {common.esc(user)}) {common.esc(why)}.", icon=":material/sync_problem:")
        rescore_progress(done.get("rescore_job"))
    if ring is None:
        return
    with st.container(border=True):
        st.markdown(f"**Ring case {ring.ring_id}**: {len(ring.members)} flagged accounts linked through "
                    f"{len(ring.shared)} shared value{'s' if len(ring.shared) != 1 else ''} "
                    f"(highest risk {common.pct(ring.risk)}).")
        members = pd.DataFrame([{"user_id": m.user_id, "case_id": m.case_id, "risk": m.risk, "status": m.status,
                                 "link": f"case?user={m.user_id}"} for m in ring.members])
        st.dataframe(members, hide_index=True, width="stretch", key=f"ring_{ring.ring_id}",
                     column_config={"user_id": "User", "case_id": "Case",
                                    "risk": st.column_config.ProgressColumn("Risk", min_value=0.0, max_value=1.0,
                                                                           format="%.2f"),
                                    "status": "Status", "link": st.column_config.LinkColumn("Open", display_text="open")})
        st.caption("Shared: " + "; ".join(f"{k.replace('_', ' ')} {common.esc(_link_value(k, v))} ({n} of them)"
                                          for k, v, n in ring.shared[:6]))
        with st.form(f"ring_form_{ring.ring_id}", border=False, enter_to_submit=False):
            st.caption("Decide the whole ring: one outcome and one rationale; each account still gets its own "
                       "label and audit row, and a case someone changed meanwhile is left as it is.")
            r1, r2 = st.columns(2)
            reason = r1.selectbox("Reason code", REASON_CODES, index=None, placeholder="choose a reason",
                                  format_func=lambda r: r.replace("_", " ").capitalize(), key=f"ring_reason_{ring.ring_id}")
            quality = r2.radio("Alert quality", ALERT_QUALITY, index=0, horizontal=True,
                               format_func=lambda q: q.capitalize(), key=f"ring_quality_{ring.ring_id}")
            note = st.text_area("Rationale for the ring", height=70, key=f"ring_note_{ring.ring_id}",
                                placeholder="Why these accounts belong together (required)")
            f1, f2 = st.columns(2)
            pressed = ("fraud" if f1.form_submit_button("Confirm fraud for the ring", type="primary", width="stretch")
                       else "legit" if f2.form_submit_button("Reject for the ring", width="stretch") else None)
        if pressed:
            if reason is None:
                st.error("Choose a reason code for the ring decision.")
            else:
                with common.guard("Could not record the ring decision"):
                    result = wb.decide_ring(ring, pressed, analyst=me, reason_code=reason, quality=quality, note=note)
                    st.session_state[RING_FLASH_KEY] = {
                        "user_id": view.user_id, "ring_id": result.ring_id, "decision": pressed,
                        "decided": len(result.decided), "conflicts": list(result.conflicts),
                        "rescore_job": result.rescore_job}
                    st.session_state.pop(CACHE_KEY, None)
                    st.rerun()


def linked_panel() -> None:
    """Other accounts on this user's devices, cards, addresses, IPs and items, riskiest first."""
    ring_panel()
    try:
        doc = wb.links(view.user_id, max_users=charts.NETWORK_MAX_PER_ENTITY, viewer=me.name)
    except (LookupError, ValueError) as err:
        st.info(f"No linked accounts to show: {common.esc(err)}")
        return
    rows = linked_rows(doc)
    if rows.empty:
        st.caption("No other account shares a device, card, address, IP or item with this user.")
        return
    users = rows["user_id"].nunique()
    st.caption(f"{users} other account{'s' if users != 1 else ''} share a device, card, address, IP "
               "or item with this user (up to 10 per value, riskiest first; risk from the current model). "
               "Colour: risk; x: confirmed fraud, open circle: legit, diamond: escalated.")
    chart.show(charts.links_network({"user_id": doc["user_id"], "entities": shared_entities(doc)},
                                    label=_link_value),
               key=f"network_{view.user_id}", config={"displayModeBar": False})
    st.dataframe(
        rows, hide_index=True, width="stretch", key=f"links_{view.user_id}",
        column_config={"shared": "Shared", "value": "Value", "accounts": "Other accounts on it",
                       "user_id": "Linked user",
                       "risk": st.column_config.ProgressColumn("Risk", min_value=0.0, max_value=1.0, format="%.2f"),
                       "decision": "Decision", "link": st.column_config.LinkColumn("Open", display_text="open"),
                       "entity": st.column_config.LinkColumn("Entity page", display_text="everyone on it")},
    )
    riskiest = (rows.assign(r=rows["risk"].fillna(-1.0)).sort_values("r", ascending=False, kind="stable")
                .drop_duplicates("user_id").head(LINKS_OPENED))
    st.caption("Open a linked account's case:")
    for col, uid in zip(st.columns(LINKS_OPENED), riskiest["user_id"]):
        with col:   # opens in this tab, URL updated (the table's links open a new tab)
            if st.button(common.esc(uid), icon=":material/person_search:", key=f"open_link_{uid}"):
                common.open_case(str(uid))


def history_panel() -> None:
    """This user's decisions (append-only labels) and audit trail."""
    if blind:
        st.info("Hidden while your blind second review of this case is open (Review page).")
        return
    st.markdown("**Decisions (labels, newest last)**")
    if view.labels.empty:
        st.caption("No decision yet.")
    else:
        st.dataframe(view.labels, hide_index=True, width="stretch", key=f"labels_{view.user_id}")
    st.markdown("**Audit trail**")
    if view.audit.empty:
        st.caption("No audit entries.")
    else:
        st.dataframe(view.audit, hide_index=True, width="stretch", key=f"audit_{view.user_id}")


# lazy tabs: only the open tab runs (one rerun when the analyst switches; the CaseView is cached)
PANELS = {"Events": events_panel, "Attention": attention_panel, "What-if": what_if_panel,
          "Similar cases": similar_panel, "Linked accounts": linked_panel, "History & audit": history_panel}
for tab, draw in zip(st.tabs(list(PANELS), key="case_tab", on_change="rerun"), PANELS.values()):
    if tab.open:
        with tab:
            draw()
