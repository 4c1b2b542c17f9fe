"""Plotly figures from plain data (DataFrames, arrays, dicts): no Streamlit, no store, no torch.

Colour convention everywhere: red pushes the risk up (towards fraud), blue pushes it down.
Every function returns a `plotly.graph_objects.Figure`; the pages draw it with `views/chart.show`
and the HTML report embeds it, so the two always show the same picture.
"""
from __future__ import annotations

import hashlib
import html
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analyst.config import REPO_ROOT
from models import contracts

# The plotly.js that draws these figures in the app (views/chart.py) and in the HTML report: the
# official "cartesian" bundle, 1.5 MB instead of 4.7 MB (static/README.md). Every trace type used
# here is in it; tests/test_charts.py keeps that true.
PLOTLY_JS = REPO_ROOT / "static" / "plotly-cartesian-4.1.1.min.js"

# diverging scale: blue (towards legit) -> light grey (no effect) -> red (towards fraud)
ATTRIBUTION_SCALE: list[list] = [
    [0.0, "#2166ac"], [0.25, "#67a9cf"], [0.5, "#e8e8e8"], [0.75, "#ef8a62"], [1.0, "#b2182b"],
]
RISK_COLOUR = "#111827"
# a reading order for the event types we know; unknown types follow alphabetically
TYPE_ORDER: tuple[str, ...] = (
    "login", "logout", "account_change", "password_change", "address_change", "device_change",
    "search", "view", "pv", "fav", "cart", "checkout", "payment", "buy", "purchase",
    "refund", "chargeback", "review", "message",
)
# demo masks and hover lines come from the field table (models/contracts.py)
MASKED_COLUMNS: tuple[str, ...] = contracts.MASKED_COLUMNS
_HOVER_FIELDS: tuple[tuple[str, str], ...] = tuple((c, contracts.field_label(c)) for c in contracts.HOVER_COLUMNS)


def mask_value(value: object, prefix: str = "") -> str | None:
    """A stable pseudonym for an identifier (same input -> same mask), `None` stays `None`."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    digest = hashlib.blake2b(str(value).encode(), digest_size=4).hexdigest()
    return f"{prefix}#{digest}" if prefix else f"#{digest}"


def mask_identifiers(frame: pd.DataFrame, columns: Sequence[str] = MASKED_COLUMNS) -> pd.DataFrame:
    """A copy of `frame` with identifier columns (ip, device ids, ...) replaced by stable pseudonyms."""
    out = frame.copy()
    for col in columns:
        if col in out.columns:
            field = contracts.FIELDS_BY_NAME.get(col)
            prefix = field.mask_prefix if field is not None and field.mask_prefix else col
            out[col] = [mask_value(v, prefix) for v in out[col]]
    return out


def _with_room(fig: go.Figure) -> go.Figure:
    """Axes grow their margins to fit tick labels and titles, whatever template or renderer draws
    the figure (plotly.js's own default is off; Streamlit's renderer used to switch it on)."""
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    return fig


def _type_order(types: Sequence[str]) -> list[str]:
    present = list(dict.fromkeys(str(t) for t in types))
    known = [t for t in TYPE_ORDER if t in present]
    return known + sorted(t for t in present if t not in TYPE_ORDER)


def _fmt(value: object) -> str | None:
    """A data value as hover text: HTML-escaped (Plotly renders <a>, <b>, <br> in hover labels)."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    text = html.escape(str(value))
    return text if text else None


def _hover_texts(frame: pd.DataFrame, attribution: str, risk: str) -> list[str]:
    """One hover text per event: type, time, amount and the identifying fields, then the model's view."""
    n = len(frame)
    when = pd.to_datetime(frame["ts"]).dt.strftime("%Y-%m-%d %H:%M:%S").tolist()
    types = [html.escape(t) for t in frame["event_type"].astype(str).tolist()]
    lines: list[list[str]] = [[f"<b>#{i} {types[i]}</b>", when[i]] for i in range(n)]
    if "amount" in frame.columns:
        currency = frame["currency"].tolist() if "currency" in frame.columns else [None] * n
        for i, amount in enumerate(frame["amount"].tolist()):
            if _fmt(amount) is not None:
                lines[i].append(f"amount {float(amount):,.2f} {_fmt(currency[i]) or ''}".rstrip())
    for col, label in _HOVER_FIELDS:
        if col in frame.columns:
            for i, value in enumerate(frame[col].tolist()):
                text = _fmt(value)
                if text is not None:
                    lines[i].append(f"{label}: {text[:40]}")
    for col, fmt in ((attribution, "attribution: {:+.3f}"), ("surprise", "surprise: {:.2f} nats"),
                     (risk, "risk after this event: {:.1%}")):
        if col in frame.columns:
            for i, value in enumerate(frame[col].tolist()):
                if _fmt(value) is not None:
                    lines[i].append(fmt.format(float(value)))
    return ["<br>".join(parts) for parts in lines]


def timeline_figure(
    timeline: pd.DataFrame,
    *,
    attribution: str = "attribution",
    risk: str = "risk",
    selected: Sequence[int] = (),
    height: int = 440,
) -> go.Figure:
    """Events on a time axis, one row per event type, coloured by signed attribution, with the
    risk-over-time line on a second axis.

    `timeline` needs `ts` and `event_type`; `attribution` (signed), `risk` (0..1 as of each
    event), `surprise` and the optional event columns are used when present. Rows are events in
    timeline order; their position is the event index shown in the hover (`#i`). `selected`
    indexes are outlined (e.g. the events removed in a what-if).
    """
    missing = [c for c in ("ts", "event_type") if c not in timeline.columns]
    if missing:
        raise ValueError(f"timeline is missing columns {missing}; has {list(timeline.columns)}")
    frame = timeline.reset_index(drop=True)
    ts = pd.to_datetime(frame["ts"])
    types = frame["event_type"].astype(str)
    has_attr = bool(attribution in frame.columns and frame[attribution].notna().any())
    attr = frame[attribution].astype(float).fillna(0.0).to_numpy() if has_attr else np.zeros(len(frame))
    bound = float(np.max(np.abs(attr))) if len(attr) and np.any(attr) else 1.0
    # marker size grows with |attribution| so the events that matter stand out even in grey
    size = 8 + 14 * (np.abs(attr) / bound) if has_attr else np.full(len(frame), 9.0)
    chosen = np.isin(np.arange(len(frame)), np.asarray(list(selected), dtype=int))
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=ts, y=types, mode="markers", name="events", yaxis="y",
        customdata=np.arange(len(frame)),
        text=_hover_texts(frame, attribution, risk), hovertemplate="%{text}<extra></extra>",
        marker=dict(
            size=size, color=attr, colorscale=ATTRIBUTION_SCALE, cmin=-bound, cmax=bound,
            showscale=has_attr,
            line=dict(width=np.where(chosen, 2.5, 0.6), color=np.where(chosen, "#f59e0b", "#374151")),
            colorbar=dict(title=dict(text="attribution<br>(red = towards fraud)", side="right"),
                          x=1.08, len=0.8, thickness=12),
        ),
    ))
    if risk in frame.columns and bool(frame[risk].notna().any()):
        fig.add_trace(go.Scatter(
            x=ts, y=frame[risk].astype(float), mode="lines", name="risk", yaxis="y2",
            line=dict(color=RISK_COLOUR, width=1.3, shape="hv"), opacity=0.8,
            fill="tozeroy", fillcolor="rgba(17,24,39,0.05)",
            hovertemplate="risk %{y:.1%}<br>%{x|%Y-%m-%d %H:%M}<extra></extra>",
        ))
    order = _type_order(types)
    fig.update_layout(
        height=height, margin=dict(l=10, r=10, t=56, b=10), plot_bgcolor="white",
        hovermode="closest", showlegend=False, dragmode="zoom",
        title=dict(text="Timeline: events by type, coloured by attribution; line = risk", font=dict(size=13),
                   y=0.985, yanchor="top"),
        xaxis=dict(showgrid=True, gridcolor="#f1f5f9", domain=[0, 0.94],
                   rangeselector=dict(buttons=[
                       dict(count=1, label="last day", step="day", stepmode="backward"),
                       dict(count=7, label="last week", step="day", stepmode="backward"),
                       dict(step="all", label="all"),
                   ], x=0, y=1.0, yanchor="bottom", font=dict(size=11, color=RISK_COLOUR), bgcolor="#f3f4f6")),
        yaxis=dict(categoryorder="array", categoryarray=order[::-1], showgrid=True, gridcolor="#f1f5f9",
                   automargin=True),
        yaxis2=dict(title=dict(text="risk"), overlaying="y", side="right", anchor="x", range=[0, 1.02],
                    tickformat=".0%", showgrid=False, tickmode="array", tickvals=[0, 0.25, 0.5, 0.75, 1.0]),
        meta={"chart": "timeline", "n_events": int(len(frame))},
    )
    return _with_room(fig)


def loading_figure(height: int = 440, text: str = "Loading the timeline...") -> go.Figure:
    """An empty chart the size of the timeline, shown while a case loads (Plotly starts early)."""
    fig = go.Figure()
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(size=14, color="#6b7280"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), plot_bgcolor="white",
                      xaxis=dict(visible=False), yaxis=dict(visible=False), meta={"chart": "loading"})
    return _with_room(fig)


def attention_figure(
    weights: np.ndarray, *, event_labels: Sequence[str] | None = None, row_labels: Sequence[str] | None = None,
    title: str = "Attention from the scored event (attention is not an explanation)",
) -> go.Figure:
    """Heatmap of attention weights: `(H, T)` per head, or `(T,)` (e.g. rollout) as one row."""
    arr = np.asarray(weights, dtype=float)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"attention weights must be (T,) or (H, T); got shape {np.shape(weights)}")
    n_rows, n_events = arr.shape
    x = list(event_labels) if event_labels is not None else [f"#{i}" for i in range(n_events)]
    if len(x) != n_events:
        raise ValueError(f"event_labels has {len(x)} entries for {n_events} events")
    y = list(row_labels) if row_labels is not None else [f"head {h + 1}" for h in range(n_rows)]
    if len(y) != n_rows:
        raise ValueError(f"row_labels has {len(y)} entries for {n_rows} rows")
    fig = go.Figure(go.Heatmap(
        z=arr, x=x, y=y, colorscale="Purples", zmin=0.0, colorbar=dict(title="weight", thickness=12),
        hovertemplate="%{y} -> %{x}<br>weight %{z:.3f}<extra></extra>",
    ))
    fig.update_layout(
        height=140 + 28 * n_rows, margin=dict(l=10, r=10, t=40, b=10), title=dict(text=title, font=dict(size=13)),
        xaxis=dict(showticklabels=n_events <= 60, type="category"), meta={"chart": "attention"},
    )
    return _with_room(fig)


# The encoder's signal groups (models/tokenizer.py) in words; other fields keep their names.
_SIGNAL_GROUP_LABELS = {"velocity": "velocity (this user's recent counts)",
                        "entity": "shared device / card / address"}


def field_attribution_figure(field_attribution: Mapping[str, np.ndarray | Sequence[float]]) -> go.Figure:
    """Horizontal bars: total signed attribution per event field (summed over events)."""
    if not field_attribution:
        raise ValueError("field_attribution is empty")
    totals = pd.Series({k: float(np.sum(np.asarray(v, dtype=float))) for k, v in field_attribution.items()})
    totals = totals.reindex(totals.abs().sort_values().index)
    fig = go.Figure(go.Bar(
        x=totals.to_numpy(), y=[_SIGNAL_GROUP_LABELS.get(k, k) for k in totals.index], orientation="h",
        marker_color=["#b2182b" if v > 0 else "#2166ac" for v in totals],
        hovertemplate="%{y}: %{x:+.3f}<extra></extra>",
    ))
    fig.update_layout(
        height=120 + 22 * len(totals), margin=dict(l=10, r=10, t=36, b=10), plot_bgcolor="white",
        title=dict(text="Attribution by field (red = towards fraud)", font=dict(size=13)),
        xaxis=dict(zeroline=True, zerolinecolor="#9ca3af"), meta={"chart": "fields"},
    )
    return _with_room(fig)


def _curve(points: Mapping[str, Sequence[float]], x: str, y: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    if x not in points or y not in points:
        raise ValueError(f"{what} needs keys {x!r} and {y!r}; got {sorted(points)}")
    xs, ys = np.asarray(points[x], dtype=float), np.asarray(points[y], dtype=float)
    if xs.shape != ys.shape:
        raise ValueError(f"{what}: {x} has {xs.shape} values but {y} has {ys.shape}")
    return xs, ys


def pr_curve_figure(curves: Mapping[str, Mapping[str, Sequence[float]]], *, base_rate: float | None = None) -> go.Figure:
    """Precision-recall curves, one per model version: `{version: {"recall": [...], "precision": [...]}}`."""
    fig = go.Figure()
    for name, points in curves.items():
        recall, precision = _curve(points, "recall", "precision", f"PR curve {name!r}")
        ap = points.get("auprc") if isinstance(points, Mapping) else None
        label = f"{name} (AP {float(ap):.3f})" if ap is not None else str(name)
        fig.add_trace(go.Scatter(x=recall, y=precision, mode="lines", name=label, line=dict(shape="hv"),
                                 hovertemplate="recall %{x:.2f}<br>precision %{y:.2f}<extra></extra>"))
    if base_rate is not None:
        fig.add_hline(y=base_rate, line_dash="dot", line_color="#9ca3af", annotation_text="base rate")
    fig.update_layout(
        height=340, margin=dict(l=10, r=10, t=36, b=10), plot_bgcolor="white",
        title=dict(text="Precision-recall on reviewed cases", font=dict(size=13)),
        xaxis=dict(title="recall", range=[0, 1.02]), yaxis=dict(title="precision", range=[0, 1.02]),
        legend=dict(orientation="h", y=-0.25), meta={"chart": "pr"},
    )
    return _with_room(fig)


def calibration_figure(curves: Mapping[str, Mapping[str, Sequence[float]]]) -> go.Figure:
    """Reliability diagram: `{version: {"prob_pred": [...], "prob_true": [...]}}` (sklearn's names)."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect",
                             line=dict(dash="dot", color="#9ca3af"), hoverinfo="skip"))
    for name, points in curves.items():
        pred, true = _curve(points, "prob_pred", "prob_true", f"calibration {name!r}")
        fig.add_trace(go.Scatter(x=pred, y=true, mode="lines+markers", name=str(name),
                                 hovertemplate="predicted %{x:.2f}<br>observed %{y:.2f}<extra></extra>"))
    fig.update_layout(
        height=340, margin=dict(l=10, r=10, t=36, b=10), plot_bgcolor="white",
        title=dict(text="Calibration on reviewed cases", font=dict(size=13)),
        xaxis=dict(title="predicted risk", range=[0, 1]), yaxis=dict(title="observed fraud rate", range=[0, 1]),
        legend=dict(orientation="h", y=-0.25), meta={"chart": "calibration"},
    )
    return _with_room(fig)


def risk_histogram(risks: Sequence[float], *, height: int = 160) -> go.Figure:
    """Small histogram of queue risks (context for the risk filter)."""
    fig = go.Figure(go.Histogram(x=np.asarray(risks, dtype=float), xbins=dict(start=0, end=1, size=0.05),
                                 marker_color="#b2182b", hovertemplate="%{x}: %{y} cases<extra></extra>"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10), plot_bgcolor="white",
                      xaxis=dict(range=[0, 1], tickformat=".0%"), bargap=0.05, meta={"chart": "risk_hist"})
    return _with_room(fig)


def entity_column(kind: str) -> str:
    """The field-table column of a link kind (device -> device_id, ip -> ip, ...)."""
    return kind + "_id" if kind + "_id" in contracts.FIELDS_BY_NAME else kind


def mask_entity(kind: str, value: object) -> str:
    """An entity value as demo mode shows it: the events table's pseudonym for its column (the
    same value gets the same mask on every page and in the report); unmasked columns as text."""
    field = contracts.FIELDS_BY_NAME.get(entity_column(kind))
    if field is not None and field.masked:
        return mask_value(value, field.mask_prefix or field.name) or ""
    return "" if value is None else str(value)


NETWORK_MAX_PER_ENTITY = 10
_DECISION_SYMBOLS = {"fraud": "x", "legit": "circle-open", "escalate": "diamond"}


def links_network(doc: Mapping, *, label: Callable[[str, str], str] | None = None,
                  max_per_entity: int = NETWORK_MAX_PER_ENTITY, height: int = 380) -> go.Figure:
    """The user of `doc` (a `links()` dict) in the centre, its shared entity values around it and
    the linked users on an outer ring: colour = risk, symbol = decision (x fraud, open circle
    legit, diamond escalated, filled circle none yet). One node per user however many values it
    shares; at most `max_per_entity` users drawn per value; the layout is deterministic (same
    doc, same picture). `label(kind, value)` gives the text shown for a value (demo masks)."""
    shown = label or (lambda kind, value: str(value))

    def label(kind: str, value: str) -> str:     # data as text: Plotly renders a few HTML tags
        return html.escape(shown(kind, value))
    entities = [e for e in doc.get("entities", []) if e.get("users")]
    n_e = max(len(entities), 1)
    ent_xy, user_angles, users = {}, {}, {}
    for i, e in enumerate(entities):
        angle = 2 * np.pi * i / n_e + np.pi / 2
        ent_xy[i] = (np.cos(angle), np.sin(angle))
        for u in e["users"][:max_per_entity]:
            user_angles.setdefault(u["user_id"], []).append(angle)
            users.setdefault(u["user_id"], u)
    # the outer ring keeps each user near its values: ordered by mean angle, spread evenly
    order = sorted(users, key=lambda u: (float(np.angle(np.mean(np.exp(1j * np.array(user_angles[u]))))), u))
    n_u = max(len(order), 1)
    start = float(np.angle(np.mean(np.exp(1j * np.array(user_angles[order[0]]))))) if order else 0.0
    user_xy = {u: (2.2 * np.cos(start + 2 * np.pi * k / n_u), 2.2 * np.sin(start + 2 * np.pi * k / n_u))
               for k, u in enumerate(order)}
    ex, ey = [], []
    for i, e in enumerate(entities):
        ex += [0.0, ent_xy[i][0], None]
        ey += [0.0, ent_xy[i][1], None]
        for u in e["users"][:max_per_entity]:
            ex += [ent_xy[i][0], user_xy[u["user_id"]][0], None]
            ey += [ent_xy[i][1], user_xy[u["user_id"]][1], None]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=ex, y=ey, mode="lines", line=dict(color="#c7c7c7", width=1),
                             hoverinfo="skip", showlegend=False, name="links"))
    fig.add_trace(go.Scatter(
        x=[ent_xy[i][0] for i in range(len(entities))], y=[ent_xy[i][1] for i in range(len(entities))],
        mode="markers+text", name="shared values", showlegend=False,
        marker=dict(symbol="square", size=12, color="#6b7280"),
        text=[f"{e['kind'].replace('_', ' ')} {label(e['kind'], e['value'])}" for e in entities],
        textposition="top center", textfont=dict(size=10),
        hovertext=[f"{e['kind'].replace('_', ' ')} {label(e['kind'], e['value'])}: {e['n_users']} accounts"
                   for e in entities], hoverinfo="text"))
    risks = [users[u].get("risk") for u in order]
    fig.add_trace(go.Scatter(
        x=[user_xy[u][0] for u in order], y=[user_xy[u][1] for u in order], mode="markers+text",
        name="linked users", showlegend=False, customdata=order,
        marker=dict(size=16, color=[-0.05 if r is None else float(r) for r in risks], cmin=0, cmax=1,
                    colorscale=[[0, "#2166ac"], [0.5, "#e8e8e8"], [1, "#b2182b"]],
                    symbol=[_DECISION_SYMBOLS.get(users[u].get("decision") or "", "circle") for u in order],
                    line=dict(width=2, color="#374151"),
                    colorbar=dict(title=dict(text="risk"), tickformat=".0%", len=0.8, thickness=10)),
        text=[html.escape(u) for u in order], textposition="bottom center", textfont=dict(size=10),
        hovertext=[f"{html.escape(u)}: risk {'n/a' if r is None else f'{r:.0%}'}, "
                   f"{users[u].get('decision') or ('open case' if users[u].get('case_id') is not None else 'no case')}"
                   for u, r in zip(order, risks)], hoverinfo="text"))
    fig.add_trace(go.Scatter(x=[0.0], y=[0.0], mode="markers+text", name="this user", showlegend=False,
                             marker=dict(size=22, color="#111827", symbol="star"),
                             text=[html.escape(str(doc.get("user_id", "")))], textposition="bottom center",
                             hovertext=[f"this user: {html.escape(str(doc.get('user_id', '')))}"], hoverinfo="text"))
    axis = dict(visible=False, range=[-2.9, 2.9], fixedrange=True)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10), plot_bgcolor="white",
                      xaxis=axis, yaxis=dict(axis, scaleanchor="x"), meta={"chart": "links_network"})
    return fig
