"""Labels: the decision history and its export (every label row, the latest last)."""
from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import pandas as pd

from analyst.store import Store

EXPORT_FORMATS: tuple[str, ...] = ("csv", "parquet")


def without_users(frame: pd.DataFrame, hidden: Collection[str]) -> pd.DataFrame:
    """`frame` without the rows of `hidden` users (a blind reviewer's open reviews)."""
    if not hidden or frame.empty or "user_id" not in frame.columns:
        return frame
    return frame[~frame["user_id"].astype(str).isin(set(hidden))].reset_index(drop=True)


def export_labels(store: Store, path: str | Path, fmt: str | None = None, *,
                  hidden: Collection[str] = ()) -> Path:
    """Write the label history (every decision, latest last; without `hidden` users) as CSV or
    Parquet; the format comes from `fmt` or the file's suffix (csv when it has none)."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".") or "csv").lower()
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format {fmt!r}: expected csv or parquet")
    history = without_users(store.label_history(), hidden)
    if fmt == "csv":
        history.to_csv(path, index=False)
    else:
        history.to_parquet(path, index=False)
    return path
