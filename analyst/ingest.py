"""Readers and validation: files -> the event / label schema; bad rows -> quarantine with a reason.

Formats (by extension, or `fmt`): CSV (`.csv`, `.tsv`), Parquet (`.parquet`, `.pq`), JSON lines
(`.jsonl`, `.ndjson`, `.json`; a `.json` file may also be one JSON array of objects) and the
Taobao UserBehavior CSV (`fmt="taobao"`: user,item,category,behavior,ts; no header). A `.gz`
suffix is decompressed first. Text must be UTF-8. CSV cells are read as text (only an empty
cell is null, so a country code "NA" stays "NA"); a CSV value may be quoted but may not
contain a line break (such a line is rejected as having the wrong number of fields).

Decisions (documented here because callers rely on them):
- `row_number` of a reject: the line number in a CSV / JSONL file (a CSV header is line 1), the
  1-based row index in a Parquet file or a JSON array. Blank lines are skipped but counted.
- Timestamps: datetime columns as they are (tz-aware -> UTC; naive taken as UTC); text in ISO
  8601 (with an offset -> converted to UTC, without -> taken as UTC); numbers (or numeric text)
  are unix time: ms when |value| >= 1e11, else seconds (1e11 s is the year 5138, 1e11 ms is
  1973-03-03, so the magnitude is unambiguous for real data). We decide per value, not per
  column: a column that mixes s and ms (two exports glued together) still parses right, where
  a per-column rule would silently put half of it in January 1970. Anything outside
  1970-01-01 .. 2100-01-01 is rejected. Stored as naive UTC `datetime64[us]`.
- `amount`: non-numeric, negative or non-finite values are rejected.
- Event columns outside the schema go to `attrs` as one JSON object per row (null when all of
  them are null); an input `attrs` column must hold JSON objects and is merged with them.
- Labels: `label` in 1/0/true/false/fraud/legit (any case); `source` in analyst/import/synthetic,
  `split` in train/test (any case, null allowed); label columns outside the schema are dropped.
- A mapping renames file columns to schema columns: {"customer": "user_id", "time": "ts"}.
- A file that is not a table (binary/garbage bytes, not UTF-8, unreadable Parquet, required
  columns missing, or more than half of its lines of the wrong shape) raises `IngestError`
  with one line, and nothing is written anywhere. With several files, all are read and checked
  before the first write.
- Idempotency: the sha256 of the file bytes is recorded; the same bytes again are skipped
  (`IngestReport.skipped`). A file whose rows ALL fail adds no events, its rejects go to
  quarantine, and it counts as ingested (fix the file; the fixed bytes are a new file).
- `read_events` / `read_labels` (no store) return the good rows and `warnings.warn` the count
  and first reasons of rejects; `strict=True` raises `IngestError` instead.

Validation is vectorised with pandas; only an input `attrs` column and malformed JSON lines are
looked at row by row.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from models.contracts import (
    EVENT_COLUMNS, EVENT_OPTIONAL, EVENT_REQUIRED, FIELDS_BY_NAME, LABEL_COLUMNS, LABEL_HINT, LABEL_REQUIRED,
    LABEL_SOURCES, LABEL_SPLITS, LABEL_VALUES,
)

if TYPE_CHECKING:
    from analyst.store import Store

FORMATS: tuple[str, ...] = ("csv", "tsv", "parquet", "jsonl", "taobao")
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
               ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
TAOBAO_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "category", "behavior", "ts")
# Same names as analyst.synthetic for the shared actions; Taobao's "buy" becomes "purchase" (a
# completed order with no amount or payment details, unlike the synthetic "payment" event).
TAOBAO_EVENT_TYPES: dict[str, str] = {"pv": "view", "cart": "cart", "fav": "favourite", "buy": "purchase"}
MS_THRESHOLD = 1e11
TS_MIN = pd.Timestamp("1970-01-01")
TS_MAX = pd.Timestamp("2100-01-01")
MAX_BAD_SHAPE = 0.5      # more than this share of malformed lines -> not a table of that format
MAX_REASONS = 5
_TS_HINT = "is not a timestamp (ISO text, unix s or ms)"


# Size rules for every format alike (decided 2026-12-03): ids name accounts, devices, cards; a
# longer one is an error in the file, not an id. Other text (queries, notes) up to 10,000
# characters; the extra-fields JSON up to 100,000. A NUL byte is never text.
MAX_ID_CHARS = 256
MAX_TEXT_CHARS = 10_000
MAX_ATTRS_CHARS = 100_000
_ID_COLUMNS = frozenset({"user_id", "device_id", "ip", "address_id", "payment_method", "session_id", "item_id"})


def _check_text(values: pd.Series, name: str, reasons: "_Reasons") -> None:
    """Reject NUL bytes and over-long values of one text column (same rule for CSV, JSONL, Parquet)."""
    text = values.astype("str").where(values.notna(), "")
    limit = MAX_ID_CHARS if name in _ID_COLUMNS else MAX_ATTRS_CHARS if name == "attrs" else MAX_TEXT_CHARS
    reasons.add(text.str.contains("\x00", regex=False).to_numpy(), f"{name}: contains a NUL byte")
    lengths = text.str.len().to_numpy()
    too_long = lengths > limit
    if too_long.any():
        message = np.full(len(text), None, dtype=object)
        message[too_long] = [f"{name}: {n:,} characters; at most {limit:,} expected" for n in lengths[too_long]]
        reasons.add(too_long, message)


class IngestError(ValueError):
    """A file that cannot be ingested at all; the message is one line: file + what was expected."""


@dataclass(frozen=True)
class IngestReport:
    """What ingesting one file did."""
    file: str
    accepted: int
    rejected: int
    reasons: tuple[str, ...] = ()   # first few, "row 17: ts: 'abc' is not a timestamp (...)"
    skipped: bool = False           # the same bytes were ingested before; nothing added
    duplicates: int = 0             # valid events already in the file above or in the store: not stored

    def summary(self) -> str:
        """A short human summary (first line: counts; then the first reasons)."""
        if self.skipped:
            return f"{self.file}: already ingested, nothing added"
        lines = [f"{self.file}: {self.accepted:,} accepted, {self.rejected:,} rejected"
                 + (f", {self.duplicates:,} duplicate events skipped" if self.duplicates else "")]
        lines += [f"  rejected {r}" for r in self.reasons]
        return "\n".join(lines)


@dataclass(frozen=True)
class RawTable:
    """A file read as a table: `frame` indexed by row_number, and rows that did not even parse
    (wrong number of fields, invalid JSON) as `rejects` (file, row_number, reason, raw)."""
    frame: pd.DataFrame
    rejects: pd.DataFrame


# ---------------------------------------------------------------------------------- readers
def detect_format(path: str | Path, fmt: str | None = None) -> str:
    """The reader for a file: `fmt` if given (checked), else from the extension."""
    if fmt is not None:
        fmt = {"json": "jsonl", "ndjson": "jsonl", "pq": "parquet"}.get(fmt.lower(), fmt.lower())
        if fmt not in FORMATS:
            raise IngestError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
        return fmt
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    suffix = Path(name).suffix
    if suffix not in _EXTENSIONS:
        raise IngestError(f"{Path(path).name}: unknown file type {suffix or '(none)'!r}; expected "
                          ".csv, .tsv, .parquet, .jsonl/.ndjson/.json (or give a format)")
    return _EXTENSIONS[suffix]


def read_raw(path: str | Path, fmt: str | None = None, *, data: bytes | None = None) -> RawTable:
    """Read a file as a table of raw values (CSV cells as text), without validation."""
    name = Path(path).name
    fmt = detect_format(path, fmt)
    if data is None:
        data = _read_bytes(path)
    if str(path).lower().endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise IngestError(f"{name}: not a readable gzip file ({exc})") from None
    if not data.strip():
        raise IngestError(f"{name}: the file is empty; expected a {fmt} table")
    if fmt == "parquet":
        return _read_parquet(data, name)
    if b"\x00" in data[:65536]:
        raise IngestError(f"{name}: binary data, not {fmt.upper()} text (is it another format?)")
    if fmt == "jsonl":
        return _read_json(data, name)
    if fmt == "taobao":
        raw = _read_csv(data, name, ",", column_names=TAOBAO_COLUMNS, what="Taobao UserBehavior "
                        "(user,item,category,behavior,ts; no header)")
        frame = raw.frame.rename(columns={"behavior": "event_type"})
        frame["event_type"] = frame["event_type"].replace(TAOBAO_EVENT_TYPES)
        return RawTable(frame, raw.rejects)
    return _read_csv(data, name, "\t" if fmt == "tsv" else ",")


def read_table(path: str | Path, fmt: str | None = None) -> pd.DataFrame:
    """A CSV / TSV / Parquet / JSONL file as a DataFrame of raw values, indexed by row_number.

    Rows that do not parse (wrong number of CSV fields, invalid JSON lines) are left out here
    (`read_raw` returns them; ingest quarantines them). Raises IngestError on garbage.
    """
    return read_raw(path, fmt).frame


def read_taobao(path: str | Path) -> pd.DataFrame:
    """The Taobao UserBehavior CSV as event-schema columns (user_id, item_id, category,
    event_type, ts), raw values, indexed by line number. Behaviours are renamed by
    `TAOBAO_EVENT_TYPES`; `ts` stays unix seconds until `normalise_events`."""
    return read_raw(path, "taobao").frame


def _read_bytes(path: str | Path) -> bytes:
    p = Path(path)
    if p.is_dir():
        raise IngestError(f"{p}: is a directory; expected a file (give its files, e.g. {p}/*.parquet)")
    if not p.is_file():
        raise IngestError(f"{p}: no such file")
    return p.read_bytes()


def _read_parquet(data: bytes, name: str) -> RawTable:
    try:
        table = pq.read_table(io.BytesIO(data))
        frame = table.to_pandas()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise IngestError(f"{name}: not a readable Parquet file ({_first_line(exc)})") from None
    for column in table.column_names:
        _keep_nan_apart(frame, column, table.column(column))
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="row_number")
    return RawTable(frame, _rejects_frame())


def _keep_nan_apart(frame: pd.DataFrame, column: str, values: pa.ChunkedArray) -> None:
    """A stored NaN is a value, not a missing one: keep it as the text "NaN" so that the field
    rules reject it ("amount: 'NaN' is not a number") as they do for a CSV cell. pandas would
    otherwise merge it with null, and a missing amount is allowed."""
    if not pa.types.is_floating(values.type):
        return
    nan = pc.fill_null(pc.is_nan(values), False).to_numpy(zero_copy_only=False)
    if nan.any():
        col = frame[column].astype(object)
        col[nan] = "NaN"
        frame[column] = col


# a bare NaN / Infinity token (json.loads reads them as floats; JSON has no such values)
_JSON_NONFINITE = re.compile(r"[:\[,]\s*-?(?:NaN|Infinity)\b")


def _json_loads(text: str) -> Any:
    """json.loads with NaN / Infinity kept as text, so they are rejected like a CSV cell."""
    return json.loads(text, parse_constant=lambda token: token)


def _read_csv(data: bytes, name: str, delimiter: str, column_names: Sequence[str] | None = None,
              what: str | None = None) -> RawTable:
    what = what or ("TSV" if delimiter == "\t" else "CSV")
    if column_names is None:
        first = data.split(b"\n", 1)[0]
        try:
            header = next(csv.reader([first.decode("utf-8-sig").rstrip("\r")], delimiter=delimiter))
        except (UnicodeDecodeError, StopIteration) as exc:
            raise IngestError(f"{name}: the first line is not a UTF-8 {what} header") from exc
        header = [h.strip() for h in header]
        if len(set(header)) != len(header) or "" in header:
            raise IngestError(f"{name}: the header {header[:12]} has empty or repeated column "
                              f"names; expected a {what} header")
        names, first_line = header, 2
    else:
        names, first_line = list(column_names), 1

    def parse(threads: bool, block_size: int | None = None) -> tuple[pa.Table, list]:
        bad: list = []

        def handler(row: Any) -> str:
            bad.append(row)
            return "skip"
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(use_threads=threads, column_names=names,
                                           skip_rows=first_line - 1, block_size=block_size),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, ignore_empty_lines=False,
                                             invalid_row_handler=handler),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                 strings_can_be_null=True, null_values=[""],
                                                 quoted_strings_can_be_null=False),
        )
        return table, bad

    block = None
    try:
        try:
            table, bad = parse(threads=True)
        except pa.ArrowInvalid as exc:
            if "straddl" not in str(exc):
                raise
            # a row longer than a parse block (a huge field): read in one block, so the row is
            # checked and rejected by the field rules like a JSONL or Parquet one, not the file
            block = len(data) + 1
            table, bad = parse(threads=False, block_size=block)
        if bad:   # line numbers are only known when reading serially
            table, bad = parse(threads=False, block_size=block)
    except pa.ArrowInvalid as exc:
        msg = _first_line(exc)
        if "UTF8" in msg or "utf8" in msg.lower():
            raise IngestError(f"{name}: not UTF-8 text; expected a {what} file") from None
        raise IngestError(f"{name}: not a readable {what} file ({msg})") from None
    n_rows, n_bad = table.num_rows, len(bad)
    # every physical line is a record (ignore_empty_lines=False): good rows fill the line numbers
    # that the malformed ones do not take
    bad_lines = np.array([r.number for r in bad], dtype=np.int64)
    lines = np.arange(first_line, first_line + n_rows + n_bad, dtype=np.int64)
    lines = lines[~np.isin(lines, bad_lines)]
    frame = table.to_pandas()
    frame.index = pd.Index(lines, name="row_number")
    frame = frame[frame.notna().any(axis=1)]          # blank lines
    if n_bad and n_bad > MAX_BAD_SHAPE * (len(frame) + n_bad):
        raise IngestError(f"{name}: {n_bad} of {len(frame) + n_bad} lines do not have "
                          f"{len(names)} fields; expected a {what} file")
    rejects = _rejects_frame(
        row_number=bad_lines,
        reason=[f"expected {r.expected_columns} fields, found {r.actual_columns}" for r in bad],
        raw=[json.dumps({"line": r.text}) for r in bad],
    )
    return RawTable(frame, rejects)


_BLANK_LINE = re.compile(r"(^|\n)[ \t\r]*(\n|$)")


def _read_json(data: bytes, name: str) -> RawTable:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise IngestError(f"{name}: not UTF-8 text; expected JSON lines") from None
    stripped = text.lstrip()
    if stripped.startswith("["):   # one JSON array of objects
        try:
            records = _json_loads(stripped)
        except json.JSONDecodeError as exc:
            raise IngestError(f"{name}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise IngestError(f"{name}: a JSON array must hold objects (one per event)")
        frame = pd.DataFrame.from_records(records)
        frame.index = pd.RangeIndex(1, len(frame) + 1, name="row_number")
        return RawTable(frame, _rejects_frame())
    body = text.rstrip("\r\n\t ")
    if not _BLANK_LINE.search(body) and not _JSON_NONFINITE.search(body):
        try:   # fast path: every line one object
            frame = pd.read_json(io.StringIO(body), lines=True, dtype=False, convert_dates=False,
                                 precise_float=True)
            if len(frame) == body.count("\n") + 1 and len(frame.columns):
                frame.index = pd.RangeIndex(1, len(frame) + 1, name="row_number")
                return RawTable(frame, _rejects_frame())
        except ValueError:
            pass
    records, rows, bad_rows, reasons, raws = [], [], [], [], []
    for i, line in enumerate(text.split("\n"), start=1):
        line = line.strip()
        if not line:
            continue
        try:
            obj = _json_loads(line)
        except json.JSONDecodeError as exc:
            bad_rows.append(i)
            reasons.append(f"not valid JSON ({exc.msg})")
            raws.append(json.dumps({"line": line[:1000]}))
            continue
        if not isinstance(obj, dict):
            bad_rows.append(i)
            reasons.append(f"not a JSON object (a {type(obj).__name__})")
            raws.append(json.dumps({"line": line[:1000]}))
            continue
        records.append(obj)
        rows.append(i)
    if not records or len(bad_rows) > MAX_BAD_SHAPE * (len(records) + len(bad_rows)):
        raise IngestError(f"{name}: {len(bad_rows)} of {len(records) + len(bad_rows)} lines are not "
                          "JSON objects; expected JSON lines (one object per line)")
    frame = pd.DataFrame.from_records(records)
    frame.index = pd.Index(np.array(rows, dtype=np.int64), name="row_number")
    return RawTable(frame, _rejects_frame(bad_rows, reasons, raws))


def read_messages(values: Sequence[bytes | str | None], rows: Sequence[int], name: str) -> RawTable:
    """Stream messages (one JSON object each, e.g. Kafka values) as a raw table indexed by
    `rows` (their offsets); a message that is not UTF-8 JSON of an object is a reject naming
    its row, never an error for the batch (a stream cannot be fixed and sent again as a file)."""
    records, good, bad_rows, reasons, raws = [], [], [], [], []
    for row, value in zip(rows, values):
        text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else (value or "")
        try:
            obj = _json_loads(text)
            why = None if isinstance(obj, dict) else f"not a JSON object (a {type(obj).__name__})"
        except json.JSONDecodeError as exc:
            obj, why = None, f"not valid JSON ({exc.msg})"
        if why is None:
            records.append(obj)
            good.append(int(row))
        else:
            bad_rows.append(int(row))
            reasons.append(why)
            raws.append(json.dumps({"message": text[:1000]}))
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    for column in EVENT_REQUIRED:        # a field no message has is "missing" per row, not a batch error
        if column not in frame.columns:
            frame[column] = None
    frame.index = pd.Index(np.array(good, dtype=np.int64), name="row_number")
    return RawTable(frame, _rejects_frame(bad_rows, reasons, raws, file=name))


def _rejects_frame(row_number: Any = (), reason: Any = (), raw: Any = (), file: str = "") -> pd.DataFrame:
    return pd.DataFrame({
        "file": pd.Series([file] * len(reason), dtype="str"),
        "row_number": pd.Series(np.asarray(row_number, dtype=np.int64)),
        "reason": pd.Series(list(reason), dtype="str"),
        "raw": pd.Series(list(raw), dtype="str"),
    })


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


# ------------------------------------------------------------------------------ validation
class _Reasons:
    """Accumulates reject reasons per row, vectorised ('; '-joined when a row has several)."""

    def __init__(self, n: int):
        self.values = np.full(n, None, dtype=object)

    def add(self, mask: Any, message: Any) -> None:
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        msg = message[mask] if isinstance(message, np.ndarray) else np.full(mask.sum(), message, dtype=object)
        cur = self.values[mask]
        empty = pd.isna(cur)
        cur[empty] = msg[empty]
        cur[~empty] = cur[~empty] + "; " + msg[~empty]
        self.values[mask] = cur

    def add_value(self, mask: Any, prefix: str, values: pd.Series, suffix: str) -> None:
        """Add "<prefix>'<value>'<suffix>" for the masked rows (values quoted only there)."""
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            full = np.full(len(mask), None, dtype=object)
            full[mask] = prefix + _quoted(values[mask]) + suffix
            self.add(mask, full)

    @property
    def bad(self) -> np.ndarray:
        return ~pd.isna(self.values)


def _quoted(values: pd.Series | np.ndarray) -> np.ndarray:
    """"'value'" texts (cut to 60 chars) for reject messages."""
    s = pd.Series(np.asarray(values, dtype=object)).astype(str).str.slice(0, 60)
    return ("'" + s + "'").to_numpy(dtype=object)


def _text(s: pd.Series) -> pd.Series:
    """Any column as stripped text (`str` dtype); null and empty text -> NaN.

    Integral floats (ints with nulls, e.g. from JSON) print without '.0'.
    """
    out = pd.Series(np.nan, index=s.index, dtype="str")
    mask = s.notna().to_numpy()
    if not mask.any():
        return out
    vals = s[mask]
    if pd.api.types.is_float_dtype(vals.dtype) and np.all(np.mod(vals.to_numpy(dtype=float), 1) == 0):
        vals = vals.astype("int64")
    elif pd.api.types.is_datetime64_any_dtype(vals.dtype):
        vals = vals.map(lambda v: v.isoformat())
    text = vals.astype("str").str.strip()
    out[mask] = text
    return out.where(out != "")


def _unix_to_ts(num: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Unix seconds or ms (|value| >= 1e11 -> ms) -> (datetime64[us], bad mask)."""
    v = num.to_numpy(dtype=float)
    finite = np.isfinite(v)
    if not finite.any():
        return pd.Series(pd.NaT, index=num.index, dtype="datetime64[us]"), ~finite
    scale = np.where(np.abs(v) >= MS_THRESHOLD, 1e3, 1e6)   # each value by its own magnitude
    us = np.where(finite, v * scale, 0.0)
    lo, hi = TS_MIN.value / 1e3, TS_MAX.value / 1e3
    ok = finite & (us >= lo) & (us < hi)
    ts = pd.Series(np.where(ok, np.round(us), 0).astype("int64"), index=num.index)
    ts = pd.to_datetime(ts, unit="us").astype("datetime64[us]").where(ok)
    return ts, ~ok


def parse_timestamps(values: pd.Series, name: str = "ts") -> tuple[pd.Series, np.ndarray]:
    """Parse a timestamp column (see the module doc) into naive UTC datetime64[us].

    Returns (timestamps with NaT where missing or bad, reason per row: None, or a message such
    as "ts: 'abc' is not a timestamp (ISO text, unix s or ms)"; missing values have no reason).
    """
    n = len(values)
    reasons = np.full(n, None, dtype=object)
    dtype = values.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        ts = values.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")
        shown = values
    elif pd.api.types.is_datetime64_dtype(dtype):
        ts = values.astype("datetime64[us]")
        shown = values
    elif pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        ts, bad = _unix_to_ts(values.astype(float))
        bad &= values.notna().to_numpy()
        reasons[bad] = f"{name}: " + _quoted(values[bad]) + " is out of range (1970-01-01 .. 2100-01-01)"
        return ts, reasons
    else:
        text = shown = _text(values)
        num = pd.to_numeric(text, errors="coerce")
        is_num = num.notna().to_numpy()
        ts = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us]")
        if is_num.any():
            ts_num, bad_num = _unix_to_ts(num[is_num])
            ts[is_num] = ts_num
            bad = np.zeros(n, dtype=bool)
            bad[np.flatnonzero(is_num)[bad_num]] = True
            reasons[bad] = f"{name}: " + _quoted(text[bad]) + " is out of range (1970-01-01 .. 2100-01-01)"
        iso = ~is_num & text.notna().to_numpy()
        if iso.any():
            parsed = pd.to_datetime(text[iso], format="ISO8601", utc=True, errors="coerce")
            ts[iso] = parsed.dt.tz_localize(None).astype("datetime64[us]")
            unparsed = np.zeros(n, dtype=bool)
            unparsed[np.flatnonzero(iso)[parsed.isna().to_numpy()]] = True
            reasons[unparsed] = f"{name}: " + _quoted(text[unparsed]) + f" {_TS_HINT}"
    ok = ts.isna() | ((ts >= TS_MIN) & (ts < TS_MAX))
    bad = ~ok.to_numpy()
    reasons[bad] = f"{name}: " + _quoted(shown[bad]) + " is out of range (1970-01-01 .. 2100-01-01)"
    return ts.where(ok), reasons


def _row_numbers(raw: pd.DataFrame) -> np.ndarray:
    if raw.index.name == "row_number":
        return raw.index.to_numpy(dtype=np.int64)
    return np.arange(1, len(raw) + 1, dtype=np.int64)


def _apply_mapping(raw: pd.DataFrame, mapping: dict[str, str] | None, file: str) -> pd.DataFrame:
    df = raw.reset_index(drop=True)
    df.columns = [str(c) for c in df.columns]
    if mapping:
        unknown = [k for k in mapping if k not in df.columns]
        if unknown:
            raise IngestError(f"{file}: mapping names column(s) {unknown} that the file lacks; "
                              f"its columns are {list(df.columns)[:20]}")
        df = df.rename(columns=dict(mapping))
        dup = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
        if dup:
            raise IngestError(f"{file}: after the mapping, column(s) {dup} appear twice")
    return df


def _require(df: pd.DataFrame, required: Sequence[str], file: str, what: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise IngestError(f"{file}: missing required {what} column(s) {missing}; found "
                          f"{list(df.columns)[:20]} (rename with a column mapping)")


def _rejects(raw: pd.DataFrame, rows: np.ndarray, reasons: _Reasons, file: str) -> pd.DataFrame:
    bad = np.flatnonzero(reasons.bad)
    if not len(bad):
        return _rejects_frame(file=file)
    sub = raw.iloc[bad].reset_index(drop=True)
    sub.columns = [str(c) for c in sub.columns]
    text = sub.to_json(orient="records", lines=True, date_format="iso", default_handler=str)
    raws = text.rstrip("\n").split("\n")
    return _rejects_frame(rows[bad], reasons.values[bad], raws, file=file)


def _attrs(df: pd.DataFrame, reasons: _Reasons) -> pd.Series:
    """The attrs JSON per row: extra columns (+ an input `attrs` column of JSON objects)."""
    extras = [c for c in df.columns if c not in EVENT_COLUMNS]
    out = pd.Series(np.full(len(df), None, dtype=object), index=df.index)
    if extras:
        sub = df[extras]
        for c in extras:   # ints that became floats because of nulls: write 5, not 5.0
            col = sub[c]
            if pd.api.types.is_float_dtype(col.dtype):
                v = col.to_numpy(dtype=float)
                fin = np.isfinite(v)
                if (fin.any() and fin.sum() == col.notna().sum()
                        and np.array_equal(v[fin], np.round(v[fin])) and np.all(np.abs(v[fin]) < 2**53)):
                    sub = sub.assign(**{c: col.astype("Int64")})
        has = sub.notna().any(axis=1).to_numpy()
        if has.any():
            text = sub[has].to_json(orient="records", lines=True, date_format="iso",
                                    default_handler=str)
            out[has] = text.rstrip("\n").split("\n")
    if "attrs" in df.columns:
        given = df["attrs"]
        pos = np.flatnonzero(given.notna().to_numpy())
        bad = np.zeros(len(df), dtype=bool)
        for i in pos:       # row by row: only rows that carry an attrs value
            value = given.iat[i]
            obj = value
            if isinstance(value, (str, bytes)):
                try:
                    obj = json.loads(value)
                except json.JSONDecodeError:
                    obj = None
            if not isinstance(obj, dict):
                bad[i] = True
                continue
            if out.iat[i] is not None:
                obj = {**obj, **json.loads(out.iat[i])}
            elif isinstance(value, str):
                out.iat[i] = value
                continue
            out.iat[i] = json.dumps(obj, default=str)
        reasons.add(bad, "attrs: not a JSON object")
    return out.astype("str")


def normalise_events(raw: pd.DataFrame, mapping: dict[str, str] | None = None,
                     file: str = "") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate raw rows into (events frame in schema.EVENT_COLUMNS order, rejects frame).

    Rejects hold file, row_number, reason ('; '-joined if several), raw (the input row as JSON).
    Raises IngestError when a required column is missing altogether.
    """
    rows = _row_numbers(raw)
    df = _apply_mapping(raw, mapping, file)
    _require(df, EVENT_REQUIRED, file, "event")
    reasons = _Reasons(len(df))
    out: dict[str, pd.Series] = {}
    for c in ("user_id", "event_type"):
        out[c] = _text(df[c])
        reasons.add(out[c].isna().to_numpy(), f"{c}: missing")
    ts, ts_reasons = parse_timestamps(df["ts"], "ts")
    ts_missing = (ts.isna().to_numpy() & pd.isna(ts_reasons))
    reasons.add(ts_missing, "ts: missing")
    reasons.add(~pd.isna(ts_reasons), ts_reasons)
    out["ts"] = ts
    for c in EVENT_OPTIONAL:
        if FIELDS_BY_NAME[c].dtype == "float":
            out[c] = _number(df, c, reasons)
        else:
            out[c] = _text(df[c]) if c in df.columns else pd.Series(np.nan, index=df.index, dtype="str")
    out["attrs"] = _attrs(df, reasons)
    for c in EVENT_COLUMNS:
        if c != "ts" and FIELDS_BY_NAME[c].dtype != "float":
            _check_text(out[c], c, reasons)
    good_mask = ~reasons.bad
    events = pd.DataFrame({c: out[c] for c in EVENT_COLUMNS})[good_mask].reset_index(drop=True)
    return events, _rejects(raw, rows, reasons, file)


def _number(df: pd.DataFrame, name: str, reasons: _Reasons) -> pd.Series:
    """A numeric field: finite and not negative (amounts, counts); null when missing."""
    if name not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype="float64")
    col = df[name]
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        value = col.astype("float64")
        not_number = np.zeros(len(col), dtype=bool)
        shown = col
    else:
        shown = _text(col)
        value = pd.to_numeric(shown, errors="coerce").astype("float64")
        not_number = (shown.notna() & value.isna()).to_numpy()
    v = value.to_numpy()
    with np.errstate(invalid="ignore"):
        negative = v < 0
    infinite = np.isinf(v)
    reasons.add_value(not_number, name + ": ", shown, " is not a number")
    reasons.add_value(negative, name + ": ", shown, " is negative")
    reasons.add_value(infinite & ~negative, name + ": ", shown, " is not finite")
    return value.where(~negative & ~infinite)


def normalise_labels(raw: pd.DataFrame, file: str = "") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate raw label rows into (labels frame, rejects frame); see the module doc."""
    rows = _row_numbers(raw)
    df = _apply_mapping(raw, None, file)
    _require(df, LABEL_REQUIRED, file, "label")
    reasons = _Reasons(len(df))
    out: dict[str, pd.Series] = {}
    out["user_id"] = _text(df["user_id"])
    reasons.add(out["user_id"].isna().to_numpy(), "user_id: missing")
    text = _text(df["label"]).str.lower()
    label = text.map(LABEL_VALUES)
    reasons.add(text.isna().to_numpy(), "label: missing")
    bad_label = (text.notna() & label.isna()).to_numpy()
    reasons.add_value(bad_label, "label: ", text, " is not one of " + LABEL_HINT)
    out["label"] = label.fillna(0).astype("int8")
    for c in ("as_of", "decided_at"):
        if c in df.columns:
            ts, ts_reasons = parse_timestamps(df[c], c)
            reasons.add(~pd.isna(ts_reasons), ts_reasons)
            out[c] = ts
    for c, allowed in (("source", LABEL_SOURCES), ("split", LABEL_SPLITS)):
        if c in df.columns:
            val = _text(df[c]).str.lower()
            wrong = (val.notna() & ~val.isin(allowed)).to_numpy()
            reasons.add_value(wrong, f"{c}: ", val, f" is not one of {'/'.join(allowed)}")
            out[c] = val
    if "source" in out:   # a decision is made in the app (with its audit row), never imported
        forged = (out["source"] == "analyst").to_numpy()
        reasons.add(forged, "source: 'analyst' labels come from decisions in the app; an imported outcome "
                            "is source=import (or synthetic)")
    for c in ("analyst", "reason", "note", "pattern"):
        if c in df.columns:
            out[c] = _text(df[c])
    for c in ("user_id", "analyst", "reason", "note", "pattern"):
        if c in out:
            _check_text(out[c], c, reasons)
    labels = pd.DataFrame({c: out[c] for c in LABEL_COLUMNS if c in out})[~reasons.bad]
    return labels.reset_index(drop=True), _rejects(raw, rows, reasons, file)


# ---------------------------------------------------------------------------------- ingest
@dataclass(frozen=True)
class _Prepared:
    path: str
    sha256: str
    rows: pd.DataFrame | None
    rejects: pd.DataFrame | None
    skipped: bool
    duplicates: int = 0


def _report(p: _Prepared, stored: int | None = None) -> IngestReport:
    """The report of one prepared file; `stored`: how many of its rows the store took (default all)."""
    if p.skipped:
        return IngestReport(p.path, 0, 0, (), True)
    head = p.rejects.head(MAX_REASONS)
    reasons = tuple(f"row {r}: {why}" for r, why in zip(head["row_number"], head["reason"]))
    accepted = len(p.rows) if stored is None else stored
    return IngestReport(p.path, accepted, len(p.rejects), reasons, False, p.duplicates + len(p.rows) - accepted)


def _prepare(store: "Store", path: str | Path, kind: str, fmt: str | None,
             mapping: dict[str, str] | None, seen: set[str]) -> _Prepared:
    data = _read_bytes(path)
    sha = hashlib.sha256(data).hexdigest()
    if sha in seen or store.has_ingested(sha):
        return _Prepared(str(path), sha, None, None, True)
    seen.add(sha)
    raw = read_raw(path, fmt, data=data)
    file = str(Path(path).resolve())
    duplicates = 0
    if kind == "events":
        rows, rejects = validate_events(raw, mapping, file)
        repeated = rows.astype({"attrs": "str"}).duplicated(keep="first").to_numpy() if len(rows) else []
        duplicates = int(sum(repeated))
        if duplicates:                      # the same event twice in one file is stored once
            rows = rows[~repeated].reset_index(drop=True)
    else:
        rows, rejects = normalise_labels(raw.frame, file=file)
        rejects = _with_shape_rejects(raw, rejects, file)
    return _Prepared(str(path), sha, rows, rejects, False, duplicates)


def validate_events(raw: RawTable, mapping: dict[str, str] | None, file: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A raw table (a file's, or a stream batch's) -> (events, rejects): the field rules of
    `normalise_events` plus the rows that did not even parse, all rejects named by `file`."""
    rows, rejects = normalise_events(raw.frame, mapping, file=file)
    return rows, _with_shape_rejects(raw, rejects, file)


def _with_shape_rejects(raw: RawTable, rejects: pd.DataFrame, file: str) -> pd.DataFrame:
    shape = raw.rejects.assign(file=file)
    if not len(shape):
        return rejects
    return pd.concat([shape, rejects], ignore_index=True).sort_values("row_number", kind="stable",
                                                                      ignore_index=True)


def ingest_events(store: "Store", paths: str | Path | Iterable[str | Path], *,
                  fmt: str | None = None, mapping: dict[str, str] | None = None,
                  by: str | None = None) -> list[IngestReport]:
    """Ingest event files into the store: good rows to `events`, bad rows to `quarantine`.
    `by`: who ingests (recorded on each file's row in the ingest log).

    Every file is read and validated before anything is written, so an IngestError (garbage,
    missing columns) leaves the store unchanged. Each file is written in one transaction.
    `fmt="taobao"` reads the Taobao UserBehavior format.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    seen: set[str] = set()
    prepared = [_prepare(store, p, "events", fmt, mapping, seen) for p in paths]
    reports = []
    for p in prepared:
        stored = None
        if not p.skipped:
            # events already stored (an earlier file, the same rows re-encoded) are counted, not stored
            ingest_id = store.record_ingest(str(Path(p.path).resolve()), p.sha256, "events",
                                            events=p.rows, rejects=p.rejects, skip_stored=True, by=by)
            log = store.ingests()
            stored = int(log.loc[log["ingest_id"] == ingest_id, "rows_accepted"].iloc[0])
        reports.append(_report(p, stored))
    return reports


def ingest_labels(store: "Store", path: str | Path, *, fmt: str | None = None,
                  by: str | None = None) -> IngestReport:
    """Ingest a labels file (user_id, label, optional as_of, split, source, ...) into `labels`.
    The rows stay imports (source import/synthetic); `by`, the importing identity, is recorded on
    the ingest row and in one audit row `labels_imported` (same transaction)."""
    p = _prepare(store, path, "labels", fmt, None, set())
    if not p.skipped:
        store.record_ingest(str(Path(p.path).resolve()), p.sha256, "labels",
                            labels=p.rows, rejects=p.rejects, by=by)
    return _report(p)


def _read_checked(path: str | Path, kind: str, fmt: str | None, mapping: dict[str, str] | None,
                  strict: bool) -> pd.DataFrame:
    raw = read_raw(path, fmt)
    name = Path(path).name
    if kind == "events":
        rows, rejects = normalise_events(raw.frame, mapping, file=name)
    else:
        rows, rejects = normalise_labels(raw.frame, file=name)
    rejects = pd.concat([raw.rejects, rejects], ignore_index=True).sort_values(
        "row_number", kind="stable", ignore_index=True)
    if len(rejects):
        first = "; ".join(f"row {r}: {why}" for r, why in
                          zip(rejects["row_number"][:3], rejects["reason"][:3]))
        msg = f"{name}: {len(rejects):,} of {len(rows) + len(rejects):,} rows rejected ({first})"
        if strict:
            raise IngestError(msg)
        warnings.warn(msg, stacklevel=3)
    return rows


def read_events(path: str | Path, fmt: str | None = None, mapping: dict[str, str] | None = None,
                *, strict: bool = False) -> pd.DataFrame:
    """Read and validate an events file without a store: the good rows (EVENT_COLUMNS).

    Rejected rows are left out with a warning (count and first reasons); `strict=True` raises
    IngestError instead.
    """
    return _read_checked(path, "events", fmt, mapping, strict)


def read_labels(path: str | Path, fmt: str | None = None, *, strict: bool = False) -> pd.DataFrame:
    """Read and validate a labels file without a store (as `read_events`)."""
    return _read_checked(path, "labels", fmt, None, strict)


def parse_mapping(items: Iterable[str] | None) -> dict[str, str]:
    """'SRC=DST' strings (or 'a=b,c=d') -> {SRC: DST}; ValueError naming a malformed item."""
    mapping: dict[str, str] = {}
    for item in items or ():
        for part in str(item).split(","):
            src, sep, dst = part.partition("=")
            if not sep or not src.strip() or not dst.strip():
                raise ValueError(f"mapping {part!r}: expected SRC=DST, e.g. customer=user_id")
            mapping[src.strip()] = dst.strip()
    return mapping
