"""Helpers every page shares: the Workbench, who the analyst is, demo mode, errors, navigation.

Not a page itself (app.py registers only the page files). Per-tab state lives in
`st.session_state`; the Workbench is shared by all sessions (analyst/resources.py).
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
import streamlit as st

from analyst import resources
from analyst.service import Workbench

CASE_PAGE = "analyst/views/case.py"
QUEUE_PAGE = "analyst/views/queue.py"
_LOG = logging.getLogger("sleuth.app")
ANALYST_KEY = "analyst_name"
DEMO_KEY = "demo_mode"


def workbench() -> Workbench:
    return resources.workbench()


def _logged_in_user() -> str | None:
    """The signed-in user's name or email when `st.login` auth is configured, else None."""
    try:
        if st.user.get("is_logged_in"):
            return st.user.get("email") or st.user.get("name")
    except Exception:  # no auth section / no script context: not logged in
        return None
    return None


def analyst_source() -> tuple[str | None, str]:
    """(name, where it came from): `st.user` login, then SLEUTH_ANALYST, then this session's answer."""
    user = _logged_in_user()
    if user:
        return user, "login"
    env = (resources.settings().analyst or "").strip()
    if env:
        return env, "SLEUTH_ANALYST"
    name = str(st.session_state.get(ANALYST_KEY) or "").strip()
    return (name or None), "session"


def remember_analyst() -> None:
    """on_change of the sidebar name box: keep the name in a key no page switch clears."""
    st.session_state[ANALYST_KEY] = str(st.session_state.get("_analyst_input") or "").strip()


def remember_demo() -> None:
    """on_change of the sidebar demo toggle (same reason as `remember_analyst`)."""
    st.session_state[DEMO_KEY] = bool(st.session_state.get("_demo_input"))


def analyst() -> str | None:
    """Who is working: recorded on every claim and decision."""
    return analyst_source()[0]


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


_MD_SPECIAL = frozenset("\\`*_{}[]()<>#+-.!|~:$&=\"'@/")


_AUTOLINK = re.compile(r"(?i)(?:https?|ftp|mailto|www)[:.@]")


def esc(value: object) -> str:
    """`value` as literal text inside Markdown (st.markdown, captions, titles, alerts, labels):
    every character Markdown, Streamlit's directives (`:red[...]`, `:material/x:`), LaTeX (`$`)
    or an autolink (`http://`, `www.`) could act on is backslash-escaped, and line breaks become
    spaces. Data (user ids, event fields, names, notes, URLs) never renders as a link or an image."""
    text = "" if value is None else str(value)
    text = " ".join(text.split())
    # GFM autolinks ("http://", "www.") ignore backslash escapes: a zero-width space breaks them
    text = _AUTOLINK.sub(lambda m: m.group(0)[:-1] + "\u200b" + m.group(0)[-1], text)
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in text)


def pct(value: float | None) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{float(value):.0%}"


def fmt_when(value: object) -> str:
    if value is None or (not isinstance(value, (list, tuple)) and pd.isna(value)):
        return "n/a"
    return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M")
