"""Checks and conversions at the store's edge: timestamps as naive UTC, JSON payloads, and the
validation of events / labels / scores / rejected-row frames before they are written.

Every check raises ValueError naming the column and what was expected, before anything is written.
"""
from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analyst.vocab import check_choice
from models.contracts import (
    EVENT_COLUMNS, EVENT_FIELDS, EVENT_REQUIRED, LABEL_COLUMNS, LABEL_SOURCES, LABEL_SPLITS,
)

QUARANTINE_COLUMNS: tuple[str, ...] = ("file", "row_number", "reason", "raw")
_TEXT_COLUMNS = tuple(f.name for f in EVENT_FIELDS if f.dtype in ("string", "json"))
_FLOAT_COLUMNS = tuple(f.name for f in EVENT_FIELDS if f.dtype == "float")


def utcnow() -> dt.datetime:
    """Now as naive UTC with microseconds (the store's time convention)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def to_utc(value: Any, name: str = "timestamp") -> dt.datetime | None:
    """A timestamp-like value (datetime, pd.Timestamp, ISO text, np.datetime64) as naive UTC.

    Naive input is taken as UTC already; None/NaT give None. Raises ValueError naming the value.
    """
    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name}={value!r} is not a timestamp") from exc
    if pd.isna(ts):
        return None
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.to_pydatetime()


def to_json(value: Any) -> str | None:
    """JSON text for a dict/list payload; numpy arrays/scalars, timestamps, paths made plain."""
    if value is None:
        return None
    return json.dumps(value, default=_json_default)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (dt.datetime, dt.date, pd.Timestamp)):
        return obj.isoformat()
    if isinstance(obj, (Path, set, frozenset, tuple)):
        return str(obj) if isinstance(obj, Path) else list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def from_json(text: Any) -> Any:
    return None if text is None or (isinstance(text, float) and math.isnan(text)) else json.loads(text)


def positive_int(value: Any, name: str, allow_zero: bool = False) -> int:
    """`value` as an int when it is a positive (or, with allow_zero, non-negative) integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or \
            value < (0 if allow_zero else 1):
        raise ValueError(f"{name}={value!r}: expected a {'non-negative' if allow_zero else 'positive'} integer")
    return int(value)


def utc_series(s: pd.Series, name: str) -> pd.Series:
    """A datetime column as naive UTC datetime64[us]; ValueError if it is not datetimes."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    elif not pd.api.types.is_datetime64_dtype(s.dtype):
        if s.isna().all():
            return pd.Series(pd.NaT, index=s.index, dtype="datetime64[us]")
        raise ValueError(f"column {name!r} has dtype {s.dtype}; expected datetimes "
                         "(normalise files with analyst.ingest)")
    return s.astype("datetime64[us]")


def check_events(events: pd.DataFrame) -> pd.DataFrame:
    """Validate a normalised events frame; return it with every schema column, in order."""
    if not isinstance(events, pd.DataFrame):
        raise ValueError(f"events is a {type(events).__name__}; expected a pandas DataFrame")
    unknown = [c for c in events.columns if c not in EVENT_COLUMNS]
    if unknown:
        raise ValueError(f"events columns {unknown} are not in the event schema; "
                         "put extra fields in 'attrs' (analyst.ingest.normalise_events does)")
    missing = [c for c in EVENT_REQUIRED if c not in events.columns]
    if missing:
        raise ValueError(f"events frame lacks required column(s) {missing}")
    for c in EVENT_REQUIRED:
        if events[c].isna().any():
            raise ValueError(f"events column {c!r} has {int(events[c].isna().sum())} null value(s)")
    out = {c: events[c] if c in events.columns else None for c in EVENT_COLUMNS}
    out["ts"] = utc_series(events["ts"], "ts")
    for c in _FLOAT_COLUMNS:
        if c not in events.columns:
            out[c] = np.nan
            continue
        values = pd.to_numeric(events[c], errors="coerce").astype("float64")
        if c == "amount" and (values < 0).any():
            raise ValueError(f"events column 'amount' has negative value(s), e.g. "
                             f"{float(values[values < 0].iloc[0])}")
        out[c] = values
    frame = pd.DataFrame(out, index=events.index).reset_index(drop=True)
    for c in _TEXT_COLUMNS:
        if frame[c].dtype == object and frame[c].isna().all():
            frame[c] = pd.Series(None, index=frame.index, dtype="str")
    frame["_pos"] = np.arange(len(frame), dtype="int64")   # arrival order -> event_id
    return frame


def check_labels(labels: pd.DataFrame) -> pd.DataFrame:
    """Validate a labels frame (label values must already be 0/1); all columns present."""
    if not isinstance(labels, pd.DataFrame):
        raise ValueError(f"labels is a {type(labels).__name__}; expected a pandas DataFrame")
    unknown = [c for c in labels.columns if c not in LABEL_COLUMNS]
    if unknown:
        raise ValueError(f"labels columns {unknown} are not in the label schema {LABEL_COLUMNS}")
    missing = [c for c in ("user_id", "label") if c not in labels.columns]
    if missing:
        raise ValueError(f"labels frame lacks required column(s) {missing}")
    if labels["user_id"].isna().any():
        raise ValueError("labels column 'user_id' has null value(s)")
    lab = pd.to_numeric(labels["label"], errors="coerce")
    bad = labels["label"][~lab.isin([0, 1])]
    if len(bad):
        raise ValueError(f"label values {list(bad.unique()[:5])}: expected 0 or 1")
    out = {c: (labels[c] if c in labels.columns else None) for c in LABEL_COLUMNS}
    out["label"] = lab.astype("int8")
    for c in ("as_of", "decided_at"):
        if c in labels.columns:
            out[c] = utc_series(labels[c], c)
    for c, allowed in (("source", LABEL_SOURCES), ("split", LABEL_SPLITS)):
        if c in labels.columns:
            vals = set(labels[c].dropna().unique()) - set(allowed)
            if vals:
                raise ValueError(f"{c} values {sorted(map(str, vals))}: expected one of {allowed}")
    frame = pd.DataFrame(out, index=labels.index).reset_index(drop=True)
    frame["_pos"] = np.arange(len(frame))
    for c in LABEL_COLUMNS:
        if frame[c].dtype == object and frame[c].isna().all():
            frame[c] = pd.Series(None, index=frame.index, dtype="str")
    for c in ("as_of", "decided_at"):
        if c not in labels.columns:
            frame[c] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[us]")
    return frame


def check_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Validate a scores frame (user_id, score in [0, 1]; optional head_logit, surprise, n_events, as_of)."""
    if not isinstance(scores, pd.DataFrame):
        raise ValueError(f"scores is a {type(scores).__name__}; expected a pandas DataFrame")
    missing = [c for c in ("user_id", "score") if c not in scores.columns]
    if missing:
        raise ValueError(f"scores frame lacks required column(s) {missing}")
    score = pd.to_numeric(scores["score"], errors="coerce").astype("float64")
    bad = scores["score"][~score.between(0.0, 1.0)]
    if len(bad):
        raise ValueError(f"scores.score values {list(bad[:5])}: expected numbers in [0, 1] (higher = riskier)")
    out = pd.DataFrame({"user_id": scores["user_id"].astype("str"), "score": score})
    for c in ("head_logit", "surprise", "n_events"):
        out[c] = pd.to_numeric(scores[c]) if c in scores.columns else np.nan
    out["as_of"] = (utc_series(scores["as_of"], "as_of") if "as_of" in scores.columns
                    else pd.Series(pd.NaT, index=scores.index, dtype="datetime64[us]"))
    out = out.reset_index(drop=True)
    out["_pos"] = np.arange(len(out))
    return out


def check_rejects(rows: pd.DataFrame) -> pd.DataFrame:
    """Rejected input rows (file, row_number, reason, raw), in that column order."""
    missing = [c for c in QUARANTINE_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"quarantine rows lack column(s) {missing}; expected {QUARANTINE_COLUMNS}")
    return rows[list(QUARANTINE_COLUMNS)].reset_index(drop=True)


