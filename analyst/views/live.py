"""Live updates while new events stream in (`sleuth app --stream SOURCE`; issue 16).

Three fragments that rerun on their own every `POLL_S` seconds, so an analyst sees a change
without reloading; each draws nothing (and does not poll) when no stream runs:
- `stream_badge`: in the sidebar, what the stream has stored and its last error;
- `queue_changes`: on the queue, the open cases whose risk changed with new events since this
  tab opened the queue, each a link to its case;
- `case_watch`: on a case, "risk changed" when the user's latest risk differs from the one
  shown, with a button that loads the new events.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from analyst.service import Workbench
from analyst.service.rescoring import RISE_MIN
from analyst.views.text import esc

POLL_S = 2.0
SHOWN_CHANGES = 8
_SINCE_KEY = "live_queue_since"


def _ago(at: object) -> str:
    if at is None:
        return "no batch yet"
    seconds = max((pd.Timestamp.utcnow().tz_localize(None) - pd.Timestamp(at)).total_seconds(), 0)
    return f"last batch {seconds:.0f} s ago" if seconds < 120 else f"last batch {seconds / 60:.0f} min ago"


def stream_badge(wb: Workbench) -> None:
    """The stream's counts in the sidebar (nothing without a stream; why, if it did not start)."""
    if wb.stream_status() is None:
        if wb.stream_error:
            st.markdown(":red-badge[:material/sensors_off: not streaming]")
            st.caption(f":red[{esc(wb.stream_error)}]")
        return

    @st.fragment(run_every=POLL_S)
    def badge() -> None:
        status = wb.stream_status()
        if status is None:
            return
        state = ":green-badge[:material/sensors: live]" if status["running"] else ":gray-badge[stopped]"
        st.markdown(f"{state} {status['events']:,} events streamed · {_ago(status['last_batch_at'])}")
        if status["last_error"]:
            st.caption(f":red[Last error: {esc(status['last_error'])}] (the batch is read again)")

    badge()


def queue_changes(wb: Workbench) -> None:
    """Open cases whose risk changed with new events since this tab first drew the queue."""
    if wb.stream_status() is None:
        return
    since = st.session_state.setdefault(_SINCE_KEY, pd.Timestamp.utcnow().tz_localize(None))

    @st.fragment(run_every=POLL_S)
    def changes() -> None:
        found = wb.risk_changes(since)
        if found.empty:
            return
        latest = found.drop_duplicates("case_id")
        lines = [f"[user {esc(r.user_id)}](case?user={r.user_id}): {r.old:.0%} -> {r.new:.0%}"
                 for r in latest.head(SHOWN_CHANGES).itertuples()]
        more = f" and {len(latest) - SHOWN_CHANGES} more" if len(latest) > SHOWN_CHANGES else ""
        st.warning(f"**Risk changed with new events** on {len(latest)} open case(s): " + "; ".join(lines) + more
                   + ". The table below shows them after a refresh.", icon=":material/sensors:")

    changes()


def case_watch(wb: Workbench, user_id: str, shown_risk: float | None, reload) -> None:
    """'Risk changed' on the open case when the user's latest risk moved away from the one shown;
    `reload()` loads the case again (the new events and their explanation)."""
    if wb.stream_status() is None:
        return

    @st.fragment(run_every=POLL_S)
    def watch() -> None:
        latest = wb.latest_risk(user_id)
        if latest is None or shown_risk is None or abs(latest - shown_risk) < RISE_MIN:
            return
        st.warning(f"**Risk changed with new events:** {shown_risk:.0%} -> {latest:.0%}.",
                   icon=":material/sensors:")
        if st.button("Show the new events", icon=":material/refresh:", key=f"live_reload_{user_id}"):
            reload()

    watch()
