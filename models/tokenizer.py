"""Events frame -> per-field integer ids, one token per event (DESIGN.md section 5).

`EventTokenizer.fit` learns what the data has: the top-N values of each categorical column (open
vocabulary: event types may be shop actions or system-log template ids alike), log-quantile amount
bins. `transform` turns an events frame into `TokenizedEvents`: flat arrays sorted by
(user_id, ts) plus per-user offsets, with these per-event fields

| field          | ids                                                                          |
|----------------|------------------------------------------------------------------------------|
| event_type, category, status, currency | 0 PAD, 1 null, 2 out-of-vocabulary, 3.. top-N values |
| amount         | 0 PAD, 1 null, 2.. log-quantile bin; plus `amount_value` (standardised signed log1p) |
| gap            | 0 PAD, 1 first event of the user, 2.. log2 bucket of seconds since the previous event |
| hour, weekday  | 0 PAD, 1.. hour 0-23 / weekday Mon-Sun (of the naive UTC timestamp)          |
| new_device, new_ip, new_country, new_address, new_payment, new_session, new_item |
|                | 0 PAD, 1 null, 2 seen before for this user, 3 first time for this user       |
| query          | (K slots) 0 PAD, 1.. hashed word unigrams and bigrams of the search query    |
| velocity, entity | (floats, optional) the signal columns of models/signals.py found in the frame |
|                | at fit: per column its standardised signed log1p value (0 when null) and a   |
|                | null flag; "velocity" = the user_* columns, "entity" = the shared-entity ones |

"First time" flags and gaps are computed on the user's whole history before any truncation, so
a window that starts mid-timeline still knows a device is new. Columns used (they come from the
field table of models/contracts.py: the required ones from `EVENT_REQUIRED`, the columns the
first-time flags watch from `NOVELTY_COLUMNS`): user_id, ts, event_type, category, status,
currency, amount, query, device_id, ip, country, address_id, payment_method, session_id, item_id.
Which columns get which treatment (CATEGORICAL_FIELDS, amount, query) is this module's own choice;
each categorical one is checked at import to be a contracts field of role "categorical".
Every optional column may be missing or entirely null. `attrs` is never read (it may hold truth).
The vocabulary is saved as JSON next to the model (`save` / `load`).

Signals (decided 2026-12-02): they travel as columns of the events frame (the store joins
`sleuth.event_signals`, evaluations call `models.signals.frame_signals` with the labels known
there), because the entity ones depend on other users and on labels, which one user's timeline
does not hold. A tokenizer fitted on a frame with signal columns needs them at transform (a clear
error names the missing ones); one fitted without them (`use_signals=False`, or none present)
ignores them, so older models keep working.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from models.contracts import EVENT_REQUIRED, FIELDS_BY_NAME, NOVELTY_COLUMNS
from models.signals import USER_SIGNALS, known_signal_columns

PAD, NULL, OOV = 0, 1, 2
SEEN, NEW = 2, 3

# The tokenizer's own treatment list (each a top-N + OOV vocabulary and a softmax head); the order
# is the order of the ids columns, so saved models depend on it.
CATEGORICAL_FIELDS: tuple[str, ...] = ("event_type", "category", "status", "currency")
_NOT_CATEGORICAL = [f for f in CATEGORICAL_FIELDS
                    if f not in FIELDS_BY_NAME or FIELDS_BY_NAME[f].role != "categorical"]
if _NOT_CATEGORICAL:
    raise RuntimeError(f"CATEGORICAL_FIELDS {_NOT_CATEGORICAL} are not categorical fields of models/contracts.py")
# flag name -> the column it watches, in the field table's order (models.contracts.NOVELTY_COLUMNS:
# new_device, new_ip, new_country, new_address, new_payment, new_session, new_item)
NOVELTY_FIELDS: dict[str, str] = dict(NOVELTY_COLUMNS)
# Order of the columns of TokenizedEvents.ids.
ID_FIELDS: tuple[str, ...] = (
    CATEGORICAL_FIELDS + ("amount", "gap", "hour", "weekday") + tuple(NOVELTY_FIELDS)
)
# Fields the encoder predicts for the next event (their surprise is the anomaly signal).
HEAD_FIELDS: tuple[str, ...] = (
    CATEGORICAL_FIELDS + ("amount", "gap", "hour") + tuple(NOVELTY_FIELDS)
)
REQUIRED_COLUMNS: tuple[str, ...] = EVENT_REQUIRED
# Signal groups (each one embedding module of the encoder, one attribution "field").
SIGNAL_GROUPS: tuple[str, ...] = ("velocity", "entity")
SIGNAL_CLIP = 8.0   # standardised values beyond +-8 std are clipped (one huge hub cannot blow up)


def signal_group(column: str) -> str:
    return "velocity" if column in USER_SIGNALS else "entity"


@dataclass(frozen=True)
class TokenizerConfig:
    """Vocabulary sizes and bins; small on purpose (each categorical field is also a softmax head)."""

    max_event_types: int = 256
    max_categories: int = 256
    max_statuses: int = 32
    max_currencies: int = 16
    n_amount_bins: int = 16
    n_gap_buckets: int = 24  # log2 seconds: the last bucket holds gaps >= 2**22 s (~48 days)
    n_query_buckets: int = 1024
    query_slots: int = 8
    use_signals: bool = True   # read the signal columns present in the fitting frame

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if name == "use_signals":
                if not isinstance(value, bool):
                    raise ValueError(f"TokenizerConfig.use_signals={value!r}: expected true or false")
                continue
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TokenizerConfig.{name}={value!r}: expected a positive int")

    def max_vocab(self, name: str) -> int:
        return {
            "event_type": self.max_event_types,
            "category": self.max_categories,
            "status": self.max_statuses,
            "currency": self.max_currencies,
        }[name]


@dataclass(frozen=True)
class TokenizedEvents:
    """An events frame as flat per-event arrays, sorted by (user_id, ts), with per-user offsets.

    User i owns rows offsets[i]:offsets[i+1]. `row` maps each token back to its row position in
    the frame given to `transform` (so results can be attached to the caller's rows).
    """

    user_ids: np.ndarray  # (U,) object, sorted
    offsets: np.ndarray  # (U+1,) int64
    ids: np.ndarray  # (N, len(ID_FIELDS)) int64
    amount_value: np.ndarray  # (N,) float32
    query: np.ndarray  # (N, query_slots) int64
    ts: np.ndarray  # (N,) datetime64[ns]
    row: np.ndarray  # (N,) int64
    field_names: tuple[str, ...] = field(default=ID_FIELDS)
    signals: dict[str, np.ndarray] = field(default_factory=dict)  # group -> (N, 2 * columns) float32

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def gather(self, index: np.ndarray) -> dict[str, np.ndarray]:
        """Per-field arrays for a (B, T) matrix of token indices; -1 marks padding (ids 0)."""
        pad = index < 0
        safe = np.where(pad, 0, index)
        ids = np.where(pad[..., None], PAD, self.ids[safe])  # (B, T, F)
        out = {name: ids[..., j] for j, name in enumerate(self.field_names)}
        out["amount_value"] = np.where(pad, 0.0, self.amount_value[safe]).astype(np.float32)
        out["query"] = np.where(pad[..., None], PAD, self.query[safe])  # (B, T, K)
        for group, values in self.signals.items():
            out[group] = np.where(pad[..., None], 0.0, values[safe]).astype(np.float32)  # (B, T, W)
        return out


def checked_history(events: pd.DataFrame, history: pd.DataFrame | None) -> pd.DataFrame:
    """The rows of `history` of users in `events` (empty when None); ValueError when a user's
    history has an event after that user's first event in `events`."""
    if history is None or history.empty:
        return pd.DataFrame(columns=events.columns)
    check_events(history)
    check_events(events)
    users = events["user_id"].astype(str)
    history = history[history["user_id"].astype(str).isin(set(users))]
    if history.empty:
        return history
    first = pd.Series(naive_utc_ns(events["ts"])).groupby(users.to_numpy()).min()
    last = pd.Series(naive_utc_ns(history["ts"])).groupby(history["user_id"].astype(str).to_numpy()).max()
    late = last[last > first.reindex(last.index)]
    if len(late):
        user = late.index[0]
        raise ValueError(f"history of user {user!r} has an event at {late.iloc[0]} after that user's "
                         f"first event {first[user]}: expected history to end before the events start")
    return history


def _signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def _as_text(col: pd.Series) -> pd.Series:
    """Values as strings (nulls stay null) so that 7 and "7" are the same category."""
    return col.astype("string")


def _column(events: pd.DataFrame, name: str) -> pd.Series:
    if name in events.columns:
        return events[name]
    return pd.Series(pd.NA, index=events.index, dtype="string")


def _hash_grams(text: str, n_buckets: int, slots: int) -> list[int]:
    words = text.lower().split()
    grams = words + [f"{a} {b}" for a, b in zip(words, words[1:])]
    out: list[int] = []
    for g in grams:
        h = zlib.crc32(g.encode("utf-8")) % n_buckets + 1
        if h not in out:
            out.append(h)
        if len(out) == slots:
            break
    return out


def check_events(events: pd.DataFrame) -> None:
    """ValueError naming what is wrong with an events frame (missing columns, bad ts)."""
    if not isinstance(events, pd.DataFrame):
        raise ValueError(f"events must be a pandas DataFrame, got {type(events).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"events frame lacks required column(s) {missing}")
    if len(events) == 0:
        raise ValueError("events frame is empty")
    if not pd.api.types.is_datetime64_any_dtype(events["ts"]):
        raise ValueError(f"events.ts must be datetime64 (naive UTC), got dtype {events['ts'].dtype}")
    if events["ts"].isna().any():
        raise ValueError(f"events.ts has {int(events['ts'].isna().sum())} null value(s)")
    if events["user_id"].isna().any():
        raise ValueError(f"events.user_id has {int(events['user_id'].isna().sum())} null value(s)")


def naive_utc_ns(ts: pd.Series) -> np.ndarray:
    """Timestamps as naive-UTC datetime64[ns] values."""
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    return ts.to_numpy().astype("datetime64[ns]")


class EventTokenizer:
    """Learns per-field vocabularies from an events frame; turns frames into `TokenizedEvents`.

    Learned attributes: vocab_ (field -> list of values, most frequent first), amount_edges_
    (inner log-quantile bin edges), amount_mean_ / amount_std_ (of signed log1p amounts).
    """

    def __init__(self, config: TokenizerConfig | None = None) -> None:
        self.config = config or TokenizerConfig()

    # ------------------------------------------------------------------ fitting
    def fit(self, events: pd.DataFrame) -> "EventTokenizer":
        check_events(events)
        cfg = self.config
        self.vocab_: dict[str, list[str]] = {}
        for name in CATEGORICAL_FIELDS:
            counts = _as_text(_column(events, name)).dropna().value_counts()
            # most frequent first, ties by value: deterministic whatever the row order
            order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            self.vocab_[name] = [v for v, _ in order[: cfg.max_vocab(name)]]
        amounts = pd.to_numeric(_column(events, "amount"), errors="coerce").to_numpy(float)
        amounts = _signed_log1p(amounts[np.isfinite(amounts)])
        if len(amounts):
            qs = np.linspace(0, 1, cfg.n_amount_bins + 1)[1:-1]
            self.amount_edges_ = [float(e) for e in np.unique(np.quantile(amounts, qs))]
            self.amount_mean_ = float(amounts.mean())
            self.amount_std_ = float(amounts.std()) or 1.0
        else:
            self.amount_edges_, self.amount_mean_, self.amount_std_ = [], 0.0, 1.0
        self.signal_columns_: list[str] = []
        self.signal_mean_: dict[str, float] = {}
        self.signal_std_: dict[str, float] = {}
        if cfg.use_signals:
            for name in known_signal_columns():
                if name not in events.columns:
                    continue
                values = pd.to_numeric(events[name], errors="coerce").to_numpy(float)
                values = _signed_log1p(values[np.isfinite(values)])
                self.signal_columns_.append(name)
                self.signal_mean_[name] = float(values.mean()) if len(values) else 0.0
                self.signal_std_[name] = float(values.std()) if len(values) and values.std() > 0 else 1.0
        return self

    @property
    def signal_groups(self) -> dict[str, list[str]]:
        """Signal group -> its columns, in order (empty groups left out)."""
        self._check_fitted()
        groups = {g: [c for c in self.signal_columns_ if signal_group(c) == g] for g in SIGNAL_GROUPS}
        return {g: cols for g, cols in groups.items() if cols}

    def _signals(self, df: pd.DataFrame) -> dict[str, np.ndarray]:
        """Group -> (n, 2k) float32: k standardised values (0 when null), then k null flags."""
        missing = [c for c in self.signal_columns_ if c not in df.columns]
        if missing:
            raise ValueError(
                f"events lack signal column(s) {missing[:4]}{' ...' if len(missing) > 4 else ''} that the "
                "model was trained with: read events with Store.events(signals=True) or add them with "
                "models.signals.frame_signals(events, labels)")
        out = {}
        for group, cols in self.signal_groups.items():
            raw = np.column_stack([pd.to_numeric(df[c], errors="coerce").to_numpy(float) for c in cols])
            null = ~np.isfinite(raw)
            z = (_signed_log1p(np.where(null, 0.0, raw)) - np.array([self.signal_mean_[c] for c in cols])) \
                / np.array([self.signal_std_[c] for c in cols])
            z = np.clip(np.where(null, 0.0, z), -SIGNAL_CLIP, SIGNAL_CLIP)
            out[group] = np.concatenate([z, null.astype(float)], axis=1).astype(np.float32)
        return out

    def _check_fitted(self) -> None:
        if not hasattr(self, "vocab_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("EventTokenizer is not fitted: call fit(events) first")

    @property
    def vocab_sizes(self) -> dict[str, int]:
        """Number of ids (embedding rows, softmax classes) per field in ID_FIELDS."""
        self._check_fitted()
        sizes = {name: 3 + len(self.vocab_[name]) for name in CATEGORICAL_FIELDS}
        sizes["amount"] = 3 + len(self.amount_edges_)
        sizes["gap"] = 2 + self.config.n_gap_buckets
        sizes["hour"] = 1 + 24
        sizes["weekday"] = 1 + 7
        sizes.update({name: 4 for name in NOVELTY_FIELDS})
        return sizes

    # ------------------------------------------------------------------ transform
    def transform(self, events: pd.DataFrame, history: pd.DataFrame | None = None) -> TokenizedEvents:
        """Tokenize a frame (any row order; ties in ts keep their frame order).

        history: the same users' earlier events (none after a user's first event in `events`).
        They are not tokenized; they only set what depends on the past: the first-time flags and
        the gap before each user's first event. So the tokens of a user's latest N events with
        the rest as history equal the last N tokens of the whole timeline.
        """
        history = checked_history(events, history)
        if history.empty:
            return self._transform(events)
        n_hist = len(history)
        tok = self._transform(pd.concat([history, events], ignore_index=True))  # ties: history first
        keep = tok.row >= n_hist
        counts = np.bincount(np.repeat(np.arange(tok.n_users), tok.lengths)[keep], minlength=tok.n_users)
        return replace(
            tok, offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), ids=tok.ids[keep],
            amount_value=tok.amount_value[keep], query=tok.query[keep], ts=tok.ts[keep],
            row=tok.row[keep] - n_hist, signals={g: v[keep] for g, v in tok.signals.items()},
        )

    def _transform(self, events: pd.DataFrame) -> TokenizedEvents:
        self._check_fitted()
        check_events(events)
        if self.signal_columns_:   # checked before any work
            missing = [c for c in self.signal_columns_ if c not in events.columns]
            if missing:
                self._signals(events.iloc[:0])
        cfg = self.config
        user_codes, user_ids = pd.factorize(events["user_id"], sort=True)
        ts = naive_utc_ns(events["ts"])
        ts_int = ts.astype(np.int64)
        order = np.lexsort((ts_int, user_codes))  # stable: sorted by (user, ts), then frame order
        df = events.iloc[order]
        codes = user_codes[order]
        ts, ts_int = ts[order], ts_int[order]
        n = len(df)
        counts = np.bincount(codes, minlength=len(user_ids))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        first = np.zeros(n, dtype=bool)
        first[offsets[:-1]] = True

        ids = np.zeros((n, len(ID_FIELDS)), dtype=np.int64)
        col = {name: j for j, name in enumerate(ID_FIELDS)}
        for name in CATEGORICAL_FIELDS:
            # factorize, then look the (few) distinct values up in the vocabulary
            codes_, uniques = pd.factorize(_as_text(_column(df, name)))
            index = {v: i + 3 for i, v in enumerate(self.vocab_[name])}
            lookup = np.array([index.get(v, OOV) for v in uniques] + [NULL], dtype=np.int64)
            ids[:, col[name]] = lookup[codes_]  # code -1 (null) picks the trailing NULL

        amounts = pd.to_numeric(_column(df, "amount"), errors="coerce").to_numpy(float)
        has_amount = np.isfinite(amounts)
        logs = _signed_log1p(np.where(has_amount, amounts, 0.0))
        bins = 2 + np.searchsorted(np.asarray(self.amount_edges_, dtype=float), logs, side="right")
        ids[:, col["amount"]] = np.where(has_amount, bins, NULL)
        value = np.where(has_amount, (logs - self.amount_mean_) / self.amount_std_, 0.0)

        gap_s = np.diff(ts_int, prepend=ts_int[:1]) / 1e9
        bucket = np.floor(np.log2(1.0 + np.maximum(gap_s, 0.0))).astype(np.int64)
        ids[:, col["gap"]] = np.where(first, 1, 2 + np.minimum(bucket, cfg.n_gap_buckets - 1))
        when = pd.DatetimeIndex(ts)
        ids[:, col["hour"]] = 1 + when.hour.to_numpy()
        ids[:, col["weekday"]] = 1 + when.weekday.to_numpy()

        for name, source in NOVELTY_FIELDS.items():
            values = _as_text(_column(df, source))
            null = values.isna().to_numpy()
            value_codes = pd.factorize(values)[0]
            seen = pd.DataFrame({"u": codes, "v": value_codes}).duplicated().to_numpy()
            ids[:, col[name]] = np.where(null, NULL, np.where(seen, SEEN, NEW))

        query = np.zeros((n, cfg.query_slots), dtype=np.int64)
        q = _as_text(_column(df, "query"))
        q_codes, q_uniques = pd.factorize(q)
        if len(q_uniques):
            table = np.zeros((len(q_uniques), cfg.query_slots), dtype=np.int64)
            for i, text in enumerate(q_uniques):
                grams = _hash_grams(str(text), cfg.n_query_buckets, cfg.query_slots)
                table[i, : len(grams)] = grams
            has_q = q_codes >= 0
            query[has_q] = table[q_codes[has_q]]

        return TokenizedEvents(
            user_ids=np.asarray(user_ids, dtype=object),
            offsets=offsets,
            ids=ids,
            amount_value=value.astype(np.float32),
            query=query,
            ts=ts,
            row=order.astype(np.int64),
            signals=self._signals(df) if self.signal_columns_ else {},
        )

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        self._check_fitted()
        return {
            "config": asdict(self.config),
            "vocab": self.vocab_,
            "amount_edges": self.amount_edges_,
            "amount_mean": self.amount_mean_,
            "amount_std": self.amount_std_,
            "signal_columns": self.signal_columns_,
            "signal_mean": self.signal_mean_,
            "signal_std": self.signal_std_,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "EventTokenizer":
        tok = cls(TokenizerConfig(**{"use_signals": False, **data["config"]}))   # older files: none
        tok.vocab_ = {k: list(v) for k, v in data["vocab"].items()}
        tok.amount_edges_ = [float(e) for e in data["amount_edges"]]
        tok.amount_mean_ = float(data["amount_mean"])
        tok.amount_std_ = float(data["amount_std"])
        tok.signal_columns_ = list(data.get("signal_columns", []))
        tok.signal_mean_ = {k: float(v) for k, v in data.get("signal_mean", {}).items()}
        tok.signal_std_ = {k: float(v) for k, v in data.get("signal_std", {}).items()}
        return tok

    def save(self, path: str | Path) -> None:
        """Write tokenizer.json into the directory `path`."""
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "tokenizer.json").write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "EventTokenizer":
        file = Path(path) / "tokenizer.json"
        if not file.is_file():
            raise ValueError(f"no tokenizer.json in {str(path)!r}")
        return cls.from_dict(json.loads(file.read_text()))
