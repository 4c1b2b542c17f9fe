"""Helpers every page shares: the Workbench, who the analyst is, demo mode, errors, navigation.

Not a page itself (app.py registers only the page files). Per-tab state lives in
`st.session_state`; the Workbench is shared by all sessions (analyst/resources.py).
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
import streamlit as st

from analyst import resources
from analyst.access import Actor
from analyst.service import Workbench
from analyst.views import identity
from analyst.views.text import esc

__all__ = ["CASE_PAGE", "QUEUE_PAGE", "DEMO_KEY", "Actor", "actor", "demo_mode", "esc", "guard", "open_case",
           "workbench"]

CASE_PAGE = "analyst/views/case.py"
QUEUE_PAGE = "analyst/views/queue.py"
_LOG = logging.getLogger("sleuth.app")
DEMO_KEY = "demo_mode"


def workbench() -> Workbench:
    return resources.workbench()


def actor() -> Actor:
    """Who is working (identity.gate() in app.py let this request through): the signed-in user
    or, in local mode, the local operator. Recorded on every claim, decision and review."""
    me = identity.actor()
    if me is None:  # only when a page runs without app.py's gate (it stops such requests)
        raise PermissionError("not signed in")
    return me


def remember_demo() -> None:
    """on_change of the sidebar demo toggle: keep the choice in a key no page switch clears."""
    st.session_state[DEMO_KEY] = bool(st.session_state.get("_demo_input"))


def demo_mode() -> bool:
    return bool(st.session_state.get(DEMO_KEY, False))


def error_message(exc: BaseException) -> str:
    """One clear line for an exception (our ValueError/LookupError messages are already clear)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, (ValueError, LookupError, PermissionError, FileNotFoundError)) and not isinstance(
            exc, (KeyError, IndexError)):  # KeyError('x') alone would read as "'x'"
        return text
    return f"{type(exc).__name__}: {text}"


@contextmanager
def guard(what: str) -> Iterator[None]:
    """Show any failure inside the block as one `st.error` line instead of a traceback."""
    try:
        yield
    except Exception as exc:  # Streamlit's stop/rerun/switch_page are BaseException: not caught
        _LOG.warning("%s: %s", what, error_message(exc), exc_info=True)  # the traceback goes to the server log
        st.error(f"{esc(what)}: {esc(error_message(exc))}", icon=":material/error:")


def open_case(user_id: str, **extra: str) -> None:
    """Go to the case page of `user_id` (the URL `case?user=ID` can be shared)."""
    st.switch_page(CASE_PAGE, query_params={"user": str(user_id), **extra})


def pct(value: float | None) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{float(value):.0%}"


def fmt_when(value: object) -> str:
    if value is None or (not isinstance(value, (list, tuple)) and pd.isna(value)):
        return "n/a"
    return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M")


def log_odds(p: float) -> float:
    """log(p / (1 - p)), clipped away from 0 and 1 so a saturated risk still has a value."""
    import math
    q = min(max(float(p), 1e-12), 1.0 - 1e-12)
    return math.log(q / (1.0 - q))


def risk_change(old: float, new: float) -> str:
    """A change of risk in points; when the points round to zero (a saturated risk near 0 % or
    100 %, where "-0.0 pts" tells the analyst nothing), in log-odds instead (issue 17)."""
    points = (float(new) - float(old)) * 100
    if abs(points) >= 0.05:
        return f"{points:+.1f} pts"
    return f"{log_odds(new) - log_odds(old):+.2f} log-odds (risk saturated)"
