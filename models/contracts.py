"""The contracts every layer shares (DESIGN.md section 4): the event field table, the label schema
and its one parser, the device choices.

This module sits at the bottom: both `models/` and `analyst/` import it, so it imports nothing of
either, and no torch / duckdb / streamlit (a test keeps that true). Everything that lists event
fields is derived from `EVENT_FIELDS`: the store's DDL and its migration, the ingest's columns,
the tokenizer's first-time flags, the case page's events table, chart hovers and demo masks.

Adding an event field is one `Field(...)` row here (at the end: the store adds the column to an
existing file on open, see `analyst/store/schema.py`) plus, if the model should read it, its
treatment in `models/tokenizer.py`.

Roles (what a field is, which decides who reads it):

| role        | meaning                                                         | read by            |
|-------------|-----------------------------------------------------------------|--------------------|
| key         | the user the event belongs to                                   | everyone           |
| time        | when it happened (naive UTC)                                    | everyone           |
| categorical | a small open vocabulary the tokenizer embeds (top-N + OOV)      | tokenizer          |
| continuous  | a number (log-quantile bins + a projection)                     | tokenizer          |
| text        | free text typed by the user (hashed n-grams)                    | tokenizer          |
| entity      | a value several users can share (device, card, address, ...)    | links, first-time  |
| identifier  | an id of the user's own (a session)                             | first-time flags   |
| attribute   | a plain attribute watched for first use (country)               | first-time flags   |
| extra       | `attrs`: JSON of any other input column (never read by models)  | nobody             |
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

ROLES: tuple[str, ...] = (
    "key", "time", "categorical", "continuous", "text", "entity", "identifier", "attribute", "extra",
)
DTYPES: tuple[str, ...] = ("string", "timestamp", "float", "json")


@dataclass(frozen=True)
class Field:
    """One column of the event schema.

    name: the column; dtype: string / timestamp / float / json; role: see the module docstring;
    label: what people read (tables, hovers, reasons); required: ingest rejects a file without it;
    masked: demo mode shows a stable pseudonym instead of the value (`mask_prefix` + hash);
    novelty: the tokenizer's "first time for this user" flag watching this column, if any;
    hover: shown in the timeline chart's hover text; in_case: shown in the case page's events table.
    """

    name: str
    dtype: str
    role: str
    label: str
    required: bool = False
    masked: bool = False
    mask_prefix: str = ""
    novelty: str | None = None
    hover: bool = False
    in_case: bool = True

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"Field {self.name!r}: role={self.role!r}, expected one of {ROLES}")
        if self.dtype not in DTYPES:
            raise ValueError(f"Field {self.name!r}: dtype={self.dtype!r}, expected one of {DTYPES}")


EVENT_FIELDS: tuple[Field, ...] = (
    # Order is the order of every events frame. Categorical fields and novelty flags keep the
    # tokenizer's id order (saved models stay loadable, trained ones unchanged): add new fields
    # after the last one before `attrs` (tests/test_new_field.py adds one that way).
    Field("user_id", "string", "key", "user", required=True, in_case=False),
    Field("ts", "timestamp", "time", "time", required=True),
    Field("event_type", "string", "categorical", "event", required=True),
    Field("category", "string", "categorical", "category", hover=True),
    Field("status", "string", "categorical", "status", hover=True),
    Field("currency", "string", "categorical", "currency"),
    Field("amount", "float", "continuous", "amount"),
    Field("query", "string", "text", "query", hover=True),
    Field("device_id", "string", "entity", "device", masked=True, mask_prefix="dev",
          novelty="new_device", hover=True),
    Field("ip", "string", "entity", "ip", masked=True, mask_prefix="ip", novelty="new_ip", hover=True),
    Field("country", "string", "attribute", "country", novelty="new_country", hover=True),
    Field("address_id", "string", "entity", "address", masked=True, mask_prefix="addr",
          novelty="new_address", hover=True),
    Field("payment_method", "string", "entity", "payment", masked=True, mask_prefix="pay",
          novelty="new_payment", hover=True),
    Field("session_id", "string", "identifier", "session", masked=True, mask_prefix="s",
          novelty="new_session", in_case=False),
    Field("item_id", "string", "entity", "item", novelty="new_item", hover=True),
    Field("attrs", "json", "extra", "other columns", in_case=False),
)
FIELDS_BY_NAME: dict[str, Field] = {f.name: f for f in EVENT_FIELDS}

EVENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in EVENT_FIELDS)
EVENT_REQUIRED: tuple[str, ...] = tuple(f.name for f in EVENT_FIELDS if f.required)
EVENT_OPTIONAL: tuple[str, ...] = tuple(f.name for f in EVENT_FIELDS if not f.required and f.role != "extra")
STRING_COLUMNS: tuple[str, ...] = tuple(f.name for f in EVENT_FIELDS if f.dtype == "string")
ENTITY_COLUMNS: tuple[str, ...] = tuple(f.name for f in EVENT_FIELDS if f.role == "entity")
MASKED_COLUMNS: tuple[str, ...] = tuple(f.name for f in EVENT_FIELDS if f.masked)
HOVER_COLUMNS: tuple[str, ...] = tuple(f.name for f in EVENT_FIELDS if f.hover)
CASE_COLUMNS: tuple[str, ...] = tuple(f.name for f in EVENT_FIELDS if f.in_case)
# `status` values that are not a failure (lower-cased; anything else, e.g. failed / declined /
# rejected, counts as one in reasons and velocity signals)
OK_STATUSES: frozenset[str] = frozenset({"", "ok", "success", "succeeded", "successful", "approved",
                                         "completed", "none"})
# tokenizer flag name -> the column it watches, in field-table order
NOVELTY_COLUMNS: dict[str, str] = {f.novelty: f.name for f in EVENT_FIELDS if f.novelty}


def field_label(name: str) -> str:
    """What people call a column (the field's label; unknown names come back as they are)."""
    field = FIELDS_BY_NAME.get(name)
    return field.label if field else name


# ---------------------------------------------------------------------------------------- labels
LABEL_REQUIRED: tuple[str, ...] = ("user_id", "label")
# `pattern` is our addition: the named fraud pattern of a synthetic positive (null otherwise).
LABEL_OPTIONAL: tuple[str, ...] = (
    "as_of", "source", "analyst", "reason", "note", "decided_at", "split", "pattern",
)
LABEL_COLUMNS: tuple[str, ...] = LABEL_REQUIRED + LABEL_OPTIONAL
LABEL_SOURCES: tuple[str, ...] = ("analyst", "import", "synthetic")
LABEL_SPLITS: tuple[str, ...] = ("train", "test")
# the words a label may be written as (case-insensitive, surrounding blanks ignored)
LABEL_VALUES: dict[str, int] = {"1": 1, "0": 0, "1.0": 1, "0.0": 0, "true": 1, "false": 0,
                                "fraud": 1, "legit": 0}
LABEL_HINT = "1/0/true/false/fraud/legit"


def label_words(col: pd.Series) -> pd.Series:
    """A label column as 1.0 / 0.0 per row, NaN where the value is none of LABEL_VALUES."""
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        values = pd.to_numeric(col, errors="coerce").astype("float64")
        return values.where(values.isin((0.0, 1.0)))
    text = col.astype(object).where(col.notna(), "").astype(str).str.strip().str.lower()
    return text.map(LABEL_VALUES).astype("float64")


def label_values(col: pd.Series, name: str = "labels.label") -> np.ndarray:
    """A label column as 0/1 int64; ValueError naming the first bad values otherwise."""
    values = label_words(col)
    bad = values.isna().to_numpy()
    if bad.any():
        raise ValueError(f"{name} has value(s) {col[bad].unique()[:5].tolist()}: expected {LABEL_HINT}")
    return values.to_numpy(dtype=np.int64)


# ---------------------------------------------------------------------------------------- devices
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def check_device(name: str, where: str = "device") -> str:
    """`name` when it is one of DEVICES; ValueError naming `where` otherwise."""
    if name not in DEVICES:
        raise ValueError(f"{where}={name!r}: expected one of {', '.join(DEVICES)}")
    return name
