"""The event and label contracts (DESIGN.md section 4) as column lists and types.

An *events frame* is a pandas DataFrame with the required columns, any of the optional ones
(missing ones are added as nulls by `ingest.normalise`), and `attrs` (JSON text of any other
columns). `ts` is a naive UTC `datetime64[us]`; `amount` float64; every other column string or null.
A *labels frame* holds `user_id, label (0/1)` and any of the optional label columns.
"""
from __future__ import annotations

EVENT_REQUIRED: tuple[str, ...] = ("user_id", "ts", "event_type")
EVENT_OPTIONAL: tuple[str, ...] = (
    "session_id", "item_id", "category", "amount", "currency", "query", "device_id",
    "ip", "country", "status", "payment_method", "address_id",
)
EVENT_COLUMNS: tuple[str, ...] = EVENT_REQUIRED + EVENT_OPTIONAL + ("attrs",)

LABEL_REQUIRED: tuple[str, ...] = ("user_id", "label")
# `pattern` is our addition: the named fraud pattern of a synthetic positive (null otherwise).
LABEL_OPTIONAL: tuple[str, ...] = (
    "as_of", "source", "analyst", "reason", "note", "decided_at", "split", "pattern",
)
LABEL_COLUMNS: tuple[str, ...] = LABEL_REQUIRED + LABEL_OPTIONAL
LABEL_SOURCES: tuple[str, ...] = ("analyst", "import", "synthetic")
LABEL_SPLITS: tuple[str, ...] = ("train", "test")
