"""One-file HTML case report: timeline chart, explanation, decision, model version, audit trail.

The report embeds plotly.js inline (the app's cartesian bundle, `charts.PLOTLY_JS`; the full one
from the plotly package if that file is missing), so it opens offline (about 1.6 MB). It is built
from a `CaseView` (analyst/service/records.py) or anything with the same attributes; all text is
HTML-escaped.
"""
from __future__ import annotations

import html
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from analyst import charts
from analyst.vocab import LABEL_WORDS

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#111827}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #e5e7eb;padding-bottom:.3rem}
.meta{color:#6b7280;font-size:.9rem} .risk{font-size:2rem;font-weight:600}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:.6rem}
.card{border:1px solid #e5e7eb;border-radius:8px;padding:.6rem .8rem} .card b{display:block;color:#6b7280;font-weight:500;font-size:.8rem}
table{border-collapse:collapse;font-size:.85rem;width:100%} th,td{border-bottom:1px solid #e5e7eb;padding:.3rem .5rem;text-align:left}
th{background:#f9fafb} .pos{color:#b2182b} .neg{color:#2166ac} .empty{color:#6b7280;font-style:italic}
"""


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _fmt_value(value: Any) -> str:
    if isinstance(value, (pd.Timestamp, datetime)):
        return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def _readable(frame: pd.DataFrame) -> pd.DataFrame:
    """Timestamps to the minute/second, 0/1 labels as words: tables for people, not for parsers."""
    out = frame.copy()
    for col in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[col]):
            out[col] = out[col].dt.strftime("%Y-%m-%d %H:%M:%S")
    if "label" in out.columns:
        out["label"] = out["label"].map(LABEL_WORDS).fillna(out["label"].astype(str))
    return out


def _table(frame: pd.DataFrame | None, empty: str) -> str:
    if frame is None or len(frame) == 0:
        return f'<p class="empty">{_esc(empty)}</p>'
    return _readable(frame).to_html(index=False, escape=True, border=0, na_rep="",
                                    float_format=lambda v: f"{v:.3f}")


def top_events(timeline: pd.DataFrame, k: int = 10, attribution: str = "attribution") -> pd.DataFrame:
    """The `k` events with the largest |attribution|, with their index in the timeline as `#`."""
    if attribution not in timeline.columns:
        return pd.DataFrame()
    frame = timeline.reset_index(drop=True)
    order = frame[attribution].astype(float).abs().sort_values(ascending=False).index[:k]
    cols = [c for c in ("ts", "event_type", "amount", "category", "country", "device_id", "ip",
                        attribution, "surprise", "risk") if c in frame.columns]
    out = frame.loc[order, cols].copy()
    out.insert(0, "#", order)
    return out.dropna(axis=1, how="all")


def linked_table(links: dict | None, *, masked: bool = False, max_items: int = 5) -> pd.DataFrame:
    """The report's linked accounts: one row per (shared value, other account), devices, cards,
    addresses and IPs first, at most `max_items` item values; values masked as on the pages."""
    order = {k: i for i, k in enumerate(("device", "payment_method", "address", "ip", "item"))}
    shared = [e for e in (links or {}).get("entities", []) if e["n_users"] > 1 and e["users"]]
    items = [e for e in shared if e["kind"] == "item"][:max_items]
    shared = sorted([e for e in shared if e["kind"] != "item"] + items,
                    key=lambda e: (order.get(e["kind"], len(order)), -e["n_users"]))
    rows = [{"shared": e["kind"].replace("_", " "),
             "value": charts.mask_entity(e["kind"], e["value"]) if masked else str(e["value"]),
             "accounts on it": e["n_users"], "linked user": u["user_id"],
             "risk": "n/a" if u["risk"] is None else f"{float(u['risk']):.0%}",
             "decision": u["decision"] or ("open case" if u["case_id"] is not None else "")}
            for e in shared for u in e["users"]]
    return pd.DataFrame(rows, columns=["shared", "value", "accounts on it", "linked user", "risk", "decision"])


def case_report_html(view: Any, *, masked: bool = False, analyst: str | None = None,
                     generated_at: datetime | None = None, links: dict | None = None,
                     blind: bool = False) -> str:
    """A self-contained HTML page describing one case (see module docstring).

    `view` is a `CaseView`; `masked` pseudonymises ip / device / address / card ids (demo mode);
    `links` (a `links()` dict) adds the linked accounts. `blind`: for a reader with an open blind
    second review of the case: no decision, assignee, label or audit row is in the file.
    """
    for attr in ("user_id", "timeline", "explanation", "model_version", "risk", "header", "audit", "labels"):
        if not hasattr(view, attr):
            raise ValueError(f"case_report_html needs a CaseView; {type(view).__name__} has no {attr!r}")
    when = (generated_at or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    timeline: pd.DataFrame = view.timeline
    if masked:
        timeline = charts.mask_identifiers(timeline)
    exp = view.explanation
    bundle = charts.PLOTLY_JS.read_text(encoding="utf-8") if charts.PLOTLY_JS.is_file() else None
    parts: list[str] = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Case report: {_esc(view.user_id)}</title><style>{_CSS}</style>"
        + (f"<script>{bundle}</script>" if bundle else "") + "</head><body>",
        f"<h1>Case report: user {_esc(view.user_id)}</h1>",
        f"<p class='meta'>Generated {_esc(when)}" + (f" by {_esc(analyst)}" if analyst else "") + " with sleuth.</p>",
    ]
    # summary ----------------------------------------------------------------------------------
    risk = "n/a" if view.risk is None else f"{float(view.risk):.1%}"
    cards = [("Current risk", f"<span class='risk'>{_esc(risk)}</span>"),
             ("Model version", _esc(view.model_version or "none"))]
    case = getattr(view, "case", None) or {}
    for key in (("status", "why") if blind else ("status", "assignee", "why")):
        value = case.get(key)
        if isinstance(value, str) and value:
            cards.append((key.capitalize(), _esc(value.replace("_", " "))))
    for key, value in (view.header or {}).items():
        cards.append((_esc(str(key).replace("_", " ").capitalize()), _esc(_fmt_value(value))))
    parts.append("<div class='grid'>" + "".join(
        f"<div class='card'><b>{label}</b>{value}</div>" for label, value in cards) + "</div>")
    # timeline ---------------------------------------------------------------------------------
    parts.append("<h2>Timeline</h2>")
    if len(timeline):
        fig = charts.timeline_figure(timeline)
        parts.append(fig.to_html(include_plotlyjs=bundle is None, full_html=False, div_id="timeline",
                                 config={"displaylogo": False}))
    else:
        parts.append("<p class='empty'>No events.</p>")
    # explanation ------------------------------------------------------------------------------
    parts.append("<h2>Why this risk</h2>")
    if exp is None:
        parts.append("<p class='empty'>No explanation: no model version has scored this user.</p>")
    else:
        parts.append("<ul>" + "".join(f"<li>{_esc(r)}</li>" for r in exp.reasons) + "</ul>")
        parts.append(
            f"<p class='meta'>Integrated gradients over {int(exp.n_steps)} steps from an average-event "
            f"baseline, time kept, typical surprise (risk logit {float(exp.logit):+.3f} vs baseline {float(exp.baseline_logit):+.3f}, "
            f"convergence delta {float(exp.delta):.2e}); explanation made by model {_esc(exp.model_version)}.</p>")
        parts.append("<h3>Most influential events</h3>" + _table(top_events(timeline), "No attributions."))
        if exp.what_if:
            rows = [{"removed events": ", ".join(f"#{i}" for i in w.removed), "risk without them": f"{w.risk:.1%}",
                     "change": f"{w.risk - float(exp.risk):+.1%}"} for w in exp.what_if]
            parts.append("<h3>What if</h3>" + _table(pd.DataFrame(rows), ""))
    # decision and audit -------------------------------------------------------------------------
    parts.append("<h2>Decision</h2>")
    if blind:
        parts.append("<p class='empty'>Hidden: the reader has an open blind second review of this case.</p>")
    labels = view.labels if isinstance(view.labels, pd.DataFrame) and not blind else pd.DataFrame()
    if len(labels):
        keep = [c for c in ("decided_at", "label", "analyst", "reason", "note", "source", "as_of") if c in labels.columns]
        parts.append(_table(labels[keep] if keep else labels, ""))
    elif not blind:
        parts.append("<p class='empty'>No decision recorded yet.</p>")
    parts.append("<h2>Audit trail</h2>")
    parts.append(_table(view.audit if isinstance(view.audit, pd.DataFrame) and not blind else None,
                        "Hidden (blind second review open)." if blind else "No audit entries."))
    if links is not None:
        parts.append("<h2>Linked accounts</h2>" + _table(
            linked_table(links, masked=masked), "No other account shares a device, card, address, IP or item."))
    neighbours = getattr(view, "neighbours", None)
    if isinstance(neighbours, pd.DataFrame) and len(neighbours):
        parts.append("<h2>Nearest confirmed cases</h2>" + _table(neighbours, ""))
    parts.append("</body></html>")
    return "\n".join(parts)


def report_filename(user_id: str, model_version: str | None = None) -> str:
    """A safe file name such as `case-u123-v3.html`."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(user_id))[:60]
    suffix = f"-{''.join(c if c.isalnum() or c in '-_.' else '_' for c in model_version)}" if model_version else ""
    return f"case-{safe}{suffix}.html"

