"""Review page (`review`): my blind second reviews, agreement (Cohen's kappa), adjudication.

Thin: everything comes from the Workbench (analyst/service/review.py holds the rules). While reviewing,
nothing of the first decision is shown (no label, note, decision or history).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
import streamlit as st

from analyst import charts
from analyst.service import ConflictError
from analyst.views import chart, common
from analyst.vocab import REASON_CODES, REVIEW_DECISIONS

BLIND_KEY = "review_blind_view"   # {"case_id", "model_version", "view"}: the blind case being reviewed
FLASH_KEY = "review_flash"        # the last second review / adjudication, shown once after its rerun
WORDS = {decision: decision.capitalize() for decision in REVIEW_DECISIONS}  # fraud -> "Fraud"

wb = common.workbench()
me = common.actor()   # second reviews and adjudication need the reviewer role


def _kappa(value: object) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{float(value):.2f}"


def _reason(code: str) -> str:
    return code.replace("_", " ").capitalize()


def _label_form(key: str, question: str, placeholder: str, button: str, icon: str) -> tuple[str, str, str] | None:
    """A fraud / legit answer, a reason code and a required note (widget keys start with `key`);
    (decision, reason, note) once submitted complete, else None (a missing part is said)."""
    with st.form(f"{key}_form", border=True, enter_to_submit=False):
        decision = st.radio(question, list(WORDS), index=None, horizontal=True, key=f"{key}_decision",
                            format_func=WORDS.get)
        reason = st.selectbox("Reason code", REASON_CODES, key=f"{key}_reason", format_func=_reason)
        note = st.text_area("Note", placeholder=placeholder, height=90, key=f"{key}_note")
        pressed = st.form_submit_button(button, type="primary", icon=icon)
    if not pressed:
        return None
    if decision is None:
        st.error("Pick fraud or legit first.")
        return None
    if not (note or "").strip():
        st.error("Write a note: it is required.")
        return None
    return decision, reason, note


@contextmanager
def _recording(what: str, note: str) -> Iterator[None]:
    """Shows why `what` was not recorded, repeating the analyst's note so nothing typed is lost."""
    try:
        yield
    except ConflictError as exc:
        st.error(f"Not recorded: {common.esc(common.error_message(exc))}. Your note: {common.esc(exc.note or note)}")
    except Exception as exc:
        st.error(f"Could not record {what}: {common.esc(common.error_message(exc))}")


def _blind(case_id: int):
    """The blind CaseView of a case, reused across reruns of this tab while the model is the same."""
    cached = st.session_state.get(BLIND_KEY)
    if cached and cached["case_id"] == case_id and cached["model_version"] == wb.current_version():
        return cached["view"]
    with st.spinner(f"Loading case {case_id}...", show_time=True):
        view = wb.blind_case(case_id, me.name)
    st.session_state[BLIND_KEY] = {"case_id": case_id, "model_version": view.model_version, "view": view}
    return view


def _flash() -> None:
    flash = st.session_state.pop(FLASH_KEY, None)
    if flash:
        st.success(flash, icon=":material/check_circle:")


def my_reviews() -> None:
    """The sampled decided cases waiting for my blind second look, one at a time."""
    _flash()
    if not me.can("reviewer"):
        st.info(f"Blind second reviews are done by reviewers; you are signed in as {me.role}.", icon=":material/lock:")
        return
    due = wb.second_reviews_due(me.name)
    if due.empty:
        st.info("No blind second review is waiting for you.", icon=":material/inbox:")
        return
    st.dataframe(due, hide_index=True, width="stretch", key="rv_due_table",
                 column_config={"score": st.column_config.ProgressColumn("Risk at alert", format="percent",
                                                                         min_value=0.0, max_value=1.0),
                                "opened_at": st.column_config.DatetimeColumn("Opened", format="YYYY-MM-DD HH:mm")})
    users = dict(zip(due["case_id"].astype(int), due["user_id"].astype(str)))
    case_id = st.selectbox("Case to review", list(users), key="rv_pick",
                           format_func=lambda c: f"case {c} · user {users[c]}")
    view = _blind(int(case_id))
    h = view.header
    cols = st.columns(5)
    cols[0].metric("Risk", common.pct(view.risk), border=True)
    cols[1].metric("Events", f"{h.get('events', 0):,}", border=True)
    cols[2].metric("Devices", f"{h.get('devices', 0)}", border=True)
    cols[3].metric("Countries", f"{len(h.get('countries') or [])}", border=True)
    cols[4].metric("Payments", f"{h.get('payments', 0)}", border=True)
    chart.show(charts.timeline_figure(view.timeline), key=f"rv_timeline_{case_id}", config={"scrollZoom": True})
    if view.explanation is not None:
        st.markdown("**Why the model flagged it**")
        for sentence in view.explanation.reasons:
            st.markdown(f"- {common.esc(sentence)}")
    answer = _label_form("rv", "Your decision", "What did you see? (required)", "Record second review",
                         ":material/rate_review:")
    if answer is not None:
        decision, reason, note = answer
        done = None
        with _recording("the second review", note):
            done = wb.second_review(int(case_id), decision, reviewer=me, reason_code=reason, note=note)
        if done is not None:
            verdict = "agrees with" if done.agrees else "disagrees with (it goes to adjudication)"
            st.session_state[FLASH_KEY] = (f"Second review of case {done.case_id} recorded: {WORDS[decision]}; "
                                           f"it {verdict} the first decision.")
            st.session_state.pop(BLIND_KEY, None)
            for key in ("rv_pick", "rv_decision", "rv_note"):
                st.session_state.pop(key, None)
            st.rerun()


def agreement() -> None:
    """Cohen's kappa per analyst pair and per analyst against the current model."""
    ag = wb.agreement()
    pending = wb.disagreements()
    m = st.columns(4)
    m[0].metric("Second reviews", f"{ag.n_reviews:,}", border=True)
    m[1].metric("Kappa (all pairs)", _kappa(ag.kappa), border=True,
                help="Cohen's kappa of first decision vs blind second review: 1 = perfect, 0 = chance")
    m[2].metric("Agreement", common.pct(ag.agreement), border=True, help="Share of second reviews that agree")
    m[3].metric("Awaiting adjudication", f"{len(pending):,}", border=True)
    st.markdown("**Analyst pairs** (first decision vs blind second review)")
    if ag.pairs.empty:
        st.caption("No second review yet.")
    else:
        st.dataframe(ag.pairs, hide_index=True, width="stretch", key="rv_pairs",
                     column_config={"agreement": st.column_config.NumberColumn(format="percent"),
                                    "kappa": st.column_config.NumberColumn(format="%.2f")})
    st.markdown("**Analysts vs the model**")
    st.caption(f"The model says fraud when the latest score of model {ag.model_version or 'none'} is at least "
               f"{ag.threshold:.2f} (a calibrated probability). Analyst judgements: their decisions, "
               "adjudications and second reviews, the latest per user.")
    if ag.model.empty:
        st.caption("No analyst judgement of a scored user yet.")
    else:
        st.dataframe(ag.model, hide_index=True, width="stretch", key="rv_model",
                     column_config={"agreement": st.column_config.NumberColumn(format="percent"),
                                    "kappa": st.column_config.NumberColumn(format="%.2f")})


def adjudication() -> None:
    """Disagreements between the first decision and the second review; a third analyst decides."""
    _flash()
    pending = wb.disagreements()
    if pending.empty:
        st.info("No disagreement awaits adjudication.", icon=":material/done_all:")
        return
    st.dataframe(pending.drop(columns=["adjudicator", "final_decision"]), hide_index=True, width="stretch",
                 key="rv_disagreements")
    rows = {int(r["review_id"]): r for _, r in pending.iterrows()}
    review_id = st.selectbox("Disagreement", list(rows), key="rv_adj_pick",
                             format_func=lambda r: f"review {r} · case {int(rows[r]['case_id'])} · "
                                                   f"user {rows[r]['user_id']}")
    row = rows[int(review_id)]
    st.markdown(f"**{common.esc(row['first_analyst'])}** decided **{common.esc(row['first_decision'])}**: "
                f"{common.esc(row['first_note'] or '-')}  \n"
                f"**{common.esc(row['reviewer'])}** (blind) said **{common.esc(row['second_decision'])}**: "
                f"{common.esc(row['second_note'] or '-')}")
    if not me.can("reviewer"):
        st.info(f"Adjudication is done by reviewers; you are signed in as {me.role}.", icon=":material/lock:")
        return
    if me.name in (row["first_analyst"], row["reviewer"]):
        st.info("You took part in this case: a third analyst (or a lead who did not) records the final label.",
                icon=":material/group:")
        return
    answer = _label_form("rv_adj", "Final label", "Why this is the final label (required)", "Record final label",
                         ":material/gavel:")
    if answer is not None:
        decision, reason, note = answer
        done = None
        with _recording("the final label", note):
            done = wb.adjudicate(int(review_id), decision, adjudicator=me, reason_code=reason, note=note)
        if done is not None:
            st.session_state[FLASH_KEY] = (f"Final label for user {common.esc(done.user_id)}: {WORDS[decision]} "
                                           f"(a new label row by {common.esc(me.name)}).")
            for key in ("rv_adj_pick", "rv_adj_decision", "rv_adj_note"):
                st.session_state.pop(key, None)
            st.rerun()


st.title("Second review")
st.caption(f"{wb.settings.second_review_share:.0%} of decided cases go blind to a second analyst (the same cases "
           "every time: chosen by a hash of the case id). Disagreements are adjudicated by a third analyst.")
PANELS = {"My blind reviews": my_reviews, "Agreement": agreement, "Adjudication": adjudication}
for tab, draw in zip(st.tabs(list(PANELS), key="rv_tab", on_change="rerun"), PANELS.values()):
    if tab.open:
        with tab, common.guard("This panel failed"):
            draw()
