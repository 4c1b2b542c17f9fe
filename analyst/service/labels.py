"""Labels: the decision history and its export (every label row, the latest last)."""
from __future__ import annotations

from pathlib import Path

from analyst.store import Store

EXPORT_FORMATS: tuple[str, ...] = ("csv", "parquet")


def export_labels(store: Store, path: str | Path, fmt: str | None = None) -> Path:
    """Write the full label history (every decision, latest last) as CSV or Parquet; the format
    comes from `fmt` or the file's suffix (csv when it has none)."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".") or "csv").lower()
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format {fmt!r}: expected csv or parquet")
    history = store.label_history()
    if fmt == "csv":
        history.to_csv(path, index=False)
    else:
        history.to_parquet(path, index=False)
    return path
