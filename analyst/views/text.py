"""Data shown as text: the one escape every Markdown sink in the pages uses (issue 15).

Not a page. `common.esc` re-exports `esc` (pages call it from there).
"""
from __future__ import annotations

import re

_MD_SPECIAL = frozenset("\\`*_{}[]()<>#+-.!|~:$&=\"'@/")


_AUTOLINK = re.compile(r"(?i)(?:https?|ftp|mailto|www)[:.@]")
_EMAIL_AT = re.compile(r"(?<=[\w.+-])@")


def esc(value: object) -> str:
    """`value` as literal text inside Markdown (st.markdown, captions, titles, alerts, labels):
    every character Markdown, Streamlit's directives (`:red[...]`, `:material/x:`), LaTeX (`$`)
    or an autolink (`http://`, `www.`) could act on is backslash-escaped, and line breaks become
    spaces. Data (user ids, event fields, names, notes, URLs) never renders as a link or an image."""
    text = "" if value is None else str(value)
    text = " ".join(text.split())
    # GFM autolinks ("http://", "www.") ignore backslash escapes: a zero-width space breaks them
    text = _AUTOLINK.sub(lambda m: m.group(0)[:-1] + "\u200b" + m.group(0)[-1], text)
    text = _EMAIL_AT.sub("\u200b@", text)   # ... and so do e-mail autolinks (an analyst's identity)
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in text)
