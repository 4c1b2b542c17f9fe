"""Baselines for the risk model: per-user aggregate features + IsolationForest / gradient boosting.

`user_aggregates(events, at)` turns an events frame (DESIGN.md section 4 schema) into one row of
features per query `(user_id, as_of)`, using only the user's events with `ts <= as_of`:

- activity: number of events, account age, hours since the last event, events per day;
- event types (open vocabulary: the `max_types` most frequent types, the rest bucketed as
  `other`): count and rate of each, and the type of the last event;
- statuses (top values, plus a `failed` flag for values like failed/declined/rejected/error):
  rates, and whether the last event failed;
- amounts: count, sum, mean, std, max, mean log, last amount and its ratio to the user's
  earlier mean amount;
- gaps between consecutive events: mean / std / min of log-seconds, share of gaps under 10 s;
- clock: share of events at night (00-05 h) and at weekends;
- novelty: distinct devices / ips / countries / payment methods / addresses / items /
  categories / sessions seen so far, and whether the last event brought a new one;
- windows (1 h, 1 d, 7 d, 30 d before `as_of`): number of events, mean amount, failures and
  new values (the handbook's own customer features are the 1/7/30-day counts and mean amounts).

It is vectorised for many query rows (10^5-10^6, e.g. one per card transaction): events are
sorted once by (user, ts), every per-event quantity is turned into a running sum (or running
max/min) over that order, each query finds its last event with a vectorised binary search inside
its user's block, and a feature is a difference of two running sums. No per-user Python loop.

Both baselines follow scikit-learn conventions: `fit(...) -> self`, learned attributes end in `_`,
`NotFittedError` before fit, `predict_proba` (n, 2) with column 1 = risk, `decision_function`
higher = riskier.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from models.contracts import label_values

ID_COLUMNS: tuple[str, str] = ("user_id", "as_of")
SMALL_FIT_ROWS = 20_000  # below this, boosting runs on one OpenMP thread (less overhead)
NOVELTY_COLUMNS: tuple[str, ...] = (
    "device_id", "ip", "country", "payment_method", "address_id", "item_id", "category",
    "session_id",
)
WINDOWS_S: dict[str, int] = {"1h": 3600, "1d": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400}
FAILED_PATTERN = r"fail|declin|reject|error|denied|invalid|chargeback|blocked|wrong|insufficient"
FAST_GAP_S = 10.0
OTHER = "other"
_US = 1_000_000  # microseconds per second


# ----------------------------------------------------------------------------- feature building

def _check_events(events: pd.DataFrame) -> None:
    if not isinstance(events, pd.DataFrame):
        raise ValueError(f"events must be a pandas DataFrame, got {type(events).__name__}")
    missing = [c for c in ("user_id", "ts", "event_type") if c not in events.columns]
    if missing:
        raise ValueError(f"events lack required column(s) {missing}")
    if events.empty:
        raise ValueError("events is empty")


def _ts_us(values: Any) -> np.ndarray:
    """Datetimes or ISO text -> int64 microseconds (naive UTC). Numbers are refused: unix
    seconds vs ms is the ingest step's call (analyst.ingest normalises ts)."""
    values = pd.Series(values)
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        raise ValueError(f"ts must be datetimes or ISO text, got numbers like {values.iloc[:2].tolist()}")
    ts = pd.to_datetime(values, utc=True).dt.tz_localize(None)
    if ts.isna().any():
        raise ValueError(f"{int(ts.isna().sum())} timestamp(s) are null or unparseable")
    return ts.to_numpy().astype("datetime64[us]").astype(np.int64)


def top_values(values: pd.Series, max_values: int) -> tuple[str, ...]:
    """The `max_values` most frequent non-null values (ties by name), as strings."""
    counts = values.dropna().astype(str).value_counts()
    counts = counts.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
    return tuple(str(v) for v in counts.index[:max_values])


def _vocab_codes(values: pd.Series, vocab: tuple[str, ...]) -> np.ndarray:
    """Map values to their index in vocab; unknown -> len(vocab) (other), null -> -1."""
    null = values.isna().to_numpy()
    codes = pd.Index(list(vocab), dtype=object).get_indexer(
        values.astype(object).where(~null, "").astype(str).to_numpy(dtype=object))
    codes = np.where(codes < 0, len(vocab), codes)
    return np.where(null, -1, codes)


def _first_seen(ucode: np.ndarray, values: pd.Series) -> np.ndarray:
    """1.0 where a row is the user's first occurrence (in time order) of a non-null value."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    key = ucode.astype(np.int64) * (len(uniques) + 1) + codes
    first = ~pd.Series(key).duplicated().to_numpy()
    return (first & (codes >= 0)).astype(np.float64)


def _last_at_or_before(t: np.ndarray, start: np.ndarray, stop: np.ndarray,
                       limit: np.ndarray) -> np.ndarray:
    """Vectorised binary search: per query, last index i in [start, stop) with t[i] <= limit.

    Returns start - 1 where no event qualifies.
    """
    lo, hi = start.copy(), stop.copy()
    while True:
        active = lo < hi
        if not active.any():
            return lo - 1
        mid = (lo + hi) // 2
        ok = np.zeros_like(active)
        ok[active] = t[mid[active]] <= limit[active]
        lo = np.where(active & ok, mid + 1, lo)
        hi = np.where(active & ~ok, mid, hi)


class _Prefix:
    """Running sums over the (user, ts)-sorted events, read back per query as differences."""

    def __init__(self, start: np.ndarray, end: np.ndarray, valid: np.ndarray):
        self.start, self.end, self.valid = start, end, valid  # per query: first, last index

    def total(self, x: np.ndarray, lo: np.ndarray | None = None) -> np.ndarray:
        """Sum of x over events (lo, end] of each query (lo defaults to start - 1)."""
        c = np.concatenate([[0.0], np.cumsum(x, dtype=np.float64)])
        lo = self.start - 1 if lo is None else np.maximum(lo, self.start - 1)
        out = c[self.end + 1] - c[lo + 1]
        return np.where(self.valid, out, 0.0)

    def at_end(self, x: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """Value of x at the last event of each query."""
        out = x[np.clip(self.end, 0, None)].astype(np.float64)
        return np.where(self.valid, out, fill)


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def user_aggregates(
    events: pd.DataFrame,
    at: pd.DataFrame | None = None,
    *,
    event_types: tuple[str, ...] | None = None,
    statuses: tuple[str, ...] | None = None,
    max_types: int = 16,
) -> pd.DataFrame:
    """Aggregate features of each user as of a time (the feature list is in the module doc).

    events: events frame (user_id, ts, event_type required; optional columns used if present).
    at: DataFrame[user_id, as_of] of queries; None -> one row per sorted unique user as of its
        last event. A query only sees the user's events with ts <= as_of; a user without such
        events gets zero counts and NaN statistics.
    event_types / statuses: the vocabularies to use (fit them on training events and reuse them
        at prediction time); None -> the `max_types` most frequent values of these events.
    Returns a DataFrame with `user_id`, `as_of` and then the feature columns, one row per query,
    in the order of `at`.
    """
    _check_events(events)
    if max_types < 1:
        raise ValueError(f"max_types={max_types!r} must be >= 1")
    if event_types is None:
        event_types = top_values(events["event_type"], max_types)
    has_status = "status" in events.columns
    if statuses is None:
        statuses = top_values(events["status"], max_types) if has_status else ()

    # --- sort events once by (user, ts) ------------------------------------------------------
    user_codes, users = pd.factorize(events["user_id"].astype(str), sort=True)
    t_raw = _ts_us(events["ts"])
    order = np.lexsort((t_raw, user_codes))
    ev = events.iloc[order].reset_index(drop=True)
    u = user_codes[order]
    t = t_raw[order]
    n_ev = u.shape[0]
    user_start = np.searchsorted(u, np.arange(len(users)), side="left")
    user_stop = np.searchsorted(u, np.arange(len(users)), side="right")

    # --- queries -----------------------------------------------------------------------------
    if at is None:
        q_user = np.arange(len(users))
        q_user_id = np.asarray(users, dtype=object)
        q_end = user_stop - 1
        q_asof = t[q_end]
    else:
        if not isinstance(at, pd.DataFrame) or not {"user_id", "as_of"} <= set(at.columns):
            raise ValueError("at must be a DataFrame with columns user_id and as_of")
        q_user_id = at["user_id"].astype(str).to_numpy(dtype=object)
        q_user = pd.Index(users).get_indexer(q_user_id)
        q_asof = _ts_us(at["as_of"]) if len(at) else np.zeros(0, dtype=np.int64)
        known = q_user >= 0
        lo = np.where(known, user_start[np.clip(q_user, 0, None)], 0)
        hi = np.where(known, user_stop[np.clip(q_user, 0, None)], 0)
        q_end = _last_at_or_before(t, lo, hi, q_asof)
    known = q_user >= 0
    q_start = np.where(known, user_start[np.clip(q_user, 0, None)], 0)
    valid = known & (q_end >= q_start)
    q_end = np.where(valid, q_end, q_start - 1)
    pre = _Prefix(q_start, q_end, valid)
    n = pre.total(np.ones(n_ev))
    feats: dict[str, np.ndarray] = {"n_events": n}

    # --- activity ------------------------------------------------------------------------------
    first_t = np.where(valid, t[np.clip(q_start, 0, n_ev - 1)], 0)
    last_t = np.where(valid, t[np.clip(q_end, 0, n_ev - 1)], 0)
    age_h = np.where(valid, (q_asof - first_t) / (3600 * _US), np.nan)
    feats["account_age_h"] = age_h
    feats["since_last_h"] = np.where(valid, (q_asof - last_t) / (3600 * _US), np.nan)
    feats["events_per_day"] = _safe_div(n, np.maximum(age_h / 24.0, 1.0 / 24.0))

    # --- event types ---------------------------------------------------------------------------
    type_codes = _vocab_codes(ev["event_type"], event_types)
    for i, name in enumerate((*event_types, OTHER)):
        x = (type_codes == i).astype(np.float64)
        cnt = pre.total(x)
        feats[f"n_type_{name}"] = cnt
        feats[f"rate_type_{name}"] = _safe_div(cnt, n)
        feats[f"last_is_{name}"] = pre.at_end(x)

    # --- statuses ------------------------------------------------------------------------------
    status = ev["status"] if has_status else pd.Series([None] * n_ev, dtype=object)
    status_codes = _vocab_codes(status, statuses)
    for i, name in enumerate(statuses):
        feats[f"rate_status_{name}"] = _safe_div(pre.total((status_codes == i).astype(float)), n)
    failed = status.astype(object).where(status.notna(), "").astype(str).str.contains(
        FAILED_PATTERN, case=False, regex=True).to_numpy(dtype=np.float64)
    feats["n_failed"] = pre.total(failed)
    feats["rate_failed"] = _safe_div(feats["n_failed"], n)
    feats["last_failed"] = pre.at_end(failed)

    # --- amounts -------------------------------------------------------------------------------
    if "amount" in ev.columns:
        amount = pd.to_numeric(ev["amount"], errors="coerce").to_numpy(dtype=np.float64)
    else:
        amount = np.full(n_ev, np.nan)
    has_amt = np.isfinite(amount).astype(np.float64)
    amt0 = np.where(has_amt > 0, amount, 0.0)
    n_amt = pre.total(has_amt)
    s_amt = pre.total(amt0)
    mean_amt = _safe_div(s_amt, n_amt)
    feats["n_amount"] = n_amt
    feats["amount_sum"] = s_amt
    feats["amount_mean"] = mean_amt
    var = _safe_div(pre.total(amt0 ** 2), n_amt) - mean_amt ** 2
    feats["amount_std"] = np.sqrt(np.clip(var, 0.0, None))
    feats["amount_logmean"] = _safe_div(pre.total(np.log1p(np.abs(amt0))), n_amt)
    run_max = pd.Series(np.where(has_amt > 0, amount, -np.inf)).groupby(u).cummax().to_numpy()
    amax = pre.at_end(run_max)
    feats["amount_max"] = np.where(np.isfinite(amax), amax, np.nan)
    last_amt = pre.at_end(np.where(has_amt > 0, amount, np.nan))
    feats["last_amount"] = last_amt
    last_has = np.isfinite(last_amt)
    prev_mean = _safe_div(s_amt - np.where(last_has, last_amt, 0.0), n_amt - last_has)
    feats["last_amount_ratio"] = np.where(last_has, _safe_div(last_amt, prev_mean), np.nan)

    # --- gaps ----------------------------------------------------------------------------------
    first_of_user = np.r_[True, u[1:] != u[:-1]]
    gap_s = np.where(first_of_user, np.nan, np.diff(t, prepend=t[0]) / _US)
    has_gap = np.isfinite(gap_s).astype(np.float64)
    lg = np.where(has_gap > 0, np.log1p(np.clip(gap_s, 0, None)), 0.0)
    n_gap = pre.total(has_gap)
    lg_mean = _safe_div(pre.total(lg), n_gap)
    feats["gap_log_mean"] = lg_mean
    feats["gap_log_std"] = np.sqrt(np.clip(_safe_div(pre.total(lg ** 2), n_gap) - lg_mean ** 2,
                                           0.0, None))
    run_min = pd.Series(np.where(has_gap > 0, lg, np.inf)).groupby(u).cummin().to_numpy()
    gmin = pre.at_end(run_min)
    feats["gap_log_min"] = np.where(np.isfinite(gmin), gmin, np.nan)
    feats["fast_gap_share"] = _safe_div(pre.total((gap_s < FAST_GAP_S).astype(float)), n_gap)
    feats["last_gap_log"] = pre.at_end(np.where(has_gap > 0, lg, np.nan))

    # --- clock ---------------------------------------------------------------------------------
    stamps = pd.DatetimeIndex(t.astype("datetime64[us]"))
    feats["night_share"] = _safe_div(pre.total((stamps.hour < 6).astype(float)), n)
    feats["weekend_share"] = _safe_div(pre.total((stamps.dayofweek >= 5).astype(float)), n)

    # --- novelty -------------------------------------------------------------------------------
    new_any = np.zeros(n_ev)
    for col in NOVELTY_COLUMNS:
        first = _first_seen(u, ev[col]) if col in ev.columns else np.zeros(n_ev)
        if col != "session_id":
            new_any += first
        feats[f"distinct_{col}"] = pre.total(first)
        feats[f"last_new_{col}"] = pre.at_end(first)

    # --- windows before as_of ------------------------------------------------------------------
    q_lo, q_hi = q_start, np.where(valid, q_end + 1, q_start)
    for name, secs in WINDOWS_S.items():
        lo = _last_at_or_before(t, q_lo, q_hi, q_asof - secs * _US)
        cnt = pre.total(np.ones(n_ev), lo)
        feats[f"n_{name}"] = cnt
        feats[f"amount_mean_{name}"] = _safe_div(pre.total(amt0, lo), pre.total(has_amt, lo))
        feats[f"n_failed_{name}"] = pre.total(failed, lo)
        feats[f"n_new_{name}"] = pre.total(new_any, lo)

    out = pd.DataFrame(feats)
    out.insert(0, "as_of", pd.to_datetime(q_asof.astype("datetime64[us]")))
    out.insert(0, "user_id", q_user_id)
    return out


def _query_points(labels: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """labels -> DataFrame[user_id, as_of]; a missing/null as_of means the user's last event."""
    if "user_id" not in labels.columns:
        raise ValueError("labels lack the user_id column")
    pts = pd.DataFrame({"user_id": labels["user_id"].astype(str).to_numpy()})
    last = events.groupby(events["user_id"].astype(str))["ts"].max()
    fallback = pd.to_datetime(pts["user_id"].map(last))
    if "as_of" in labels.columns:
        as_of = pd.to_datetime(labels["as_of"].reset_index(drop=True))
        pts["as_of"] = as_of.where(as_of.notna(), fallback)
    else:
        pts["as_of"] = fallback
    if pts["as_of"].isna().any():
        bad = pts.loc[pts["as_of"].isna(), "user_id"].head(3).tolist()
        raise ValueError(f"labels name user(s) without events and without as_of: {bad}")
    return pts


def binary_labels(labels: pd.DataFrame) -> np.ndarray:
    """labels.label as 0/1 int64 (models.contracts.label_values: 1/0, True/False, "fraud"/"legit")."""
    if "label" not in labels.columns:
        raise ValueError("labels lack the label column")
    return label_values(labels["label"], "labels.label")


class _AggregateBaseline(BaseEstimator):
    """Shared plumbing: learn the vocabularies and the feature list, build feature matrices."""

    max_types: int

    def _fit_features(self, events: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
        _check_events(events)
        self.event_types_ = top_values(events["event_type"], self.max_types)
        self.statuses_ = (top_values(events["status"], self.max_types)
                          if "status" in events.columns else ())
        feats = user_aggregates(events, points, event_types=self.event_types_,
                                statuses=self.statuses_)
        X = feats.drop(columns=list(ID_COLUMNS))
        informative = X.nunique(dropna=False) > 1
        self.feature_names_ = tuple(X.columns[informative.to_numpy()])
        return X.loc[:, list(self.feature_names_)]

    def _features(self, events: pd.DataFrame, at: pd.DataFrame | None) -> pd.DataFrame:
        check_is_fitted(self, "feature_names_")
        _check_events(events)
        feats = user_aggregates(events, at, event_types=self.event_types_,
                                statuses=self.statuses_)
        return feats.loc[:, list(self.feature_names_)]


class IsolationForestBaseline(_AggregateBaseline):
    """Unsupervised: an IsolationForest over `user_aggregates` (log-scaled, median-imputed).

    fit(events, labels=None): labels only give the query points (user_id, as_of) to learn from
    (their label values are ignored); None -> every user as of its last event.
    decision_function: the forest's anomaly score in (0, 1], higher = riskier; predict_proba
    column 1 is that score (a rank score, not a calibrated probability).
    """

    def __init__(self, n_estimators: int = 300, max_samples: int | str = 512,
                 max_features: float = 1.0, max_types: int = 16, random_state: int = 0):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.max_features = max_features
        self.max_types = max_types
        self.random_state = random_state

    def _scaled(self, X: pd.DataFrame) -> np.ndarray:
        A = X.to_numpy(dtype=np.float64, copy=True)
        A[:, self.log_mask_] = np.log1p(np.clip(A[:, self.log_mask_], 0.0, None))
        return A

    def _prepare(self, X: pd.DataFrame) -> np.ndarray:
        A = self._scaled(X)
        return np.where(np.isnan(A), self.medians_, A)

    def fit(self, events: pd.DataFrame, labels: pd.DataFrame | None = None) -> "IsolationForestBaseline":
        points = None if labels is None else _query_points(labels, events)
        X = self._fit_features(events, points)
        if X.shape[0] < 2:
            raise ValueError(f"IsolationForest needs at least 2 query rows, got {X.shape[0]}")
        A = X.to_numpy(dtype=np.float64)
        lo = np.where(np.isnan(A), np.inf, A).min(axis=0)
        hi = np.where(np.isnan(A), -np.inf, A).max(axis=0)
        self.log_mask_ = (lo >= 0) & (hi > 1)   # non-negative, heavy-tailed: counts, amounts
        A = self._scaled(X)
        all_nan = np.isnan(A).all(axis=0)
        self.medians_ = np.where(all_nan, 0.0, np.nanmedian(np.where(all_nan, 0.0, A), axis=0))
        max_samples = self.max_samples
        if isinstance(max_samples, int):
            max_samples = min(max_samples, X.shape[0])
        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators, max_samples=max_samples,
            max_features=self.max_features, random_state=self.random_state, n_jobs=1,
        ).fit(self._prepare(X))
        return self

    def decision_function(self, events: pd.DataFrame, at: pd.DataFrame | None = None) -> np.ndarray:
        """Anomaly score per query row, in (0, 1], higher = riskier."""
        check_is_fitted(self, "forest_")
        return -self.forest_.score_samples(self._prepare(self._features(events, at)))

    def predict_proba(self, events: pd.DataFrame, at: pd.DataFrame | None = None) -> np.ndarray:
        """(n, 2): column 1 = anomaly score (a rank score in (0, 1], not calibrated)."""
        s = self.decision_function(events, at)
        return np.column_stack([1.0 - s, s])


class GradientBoostingBaseline(_AggregateBaseline):
    """Supervised: HistGradientBoostingClassifier over `user_aggregates` at the labels' as_of.

    Settings: balanced class weights (fraud is rare), learning rate 0.06, up to 400 trees with
    early stopping on a stratified 10 % validation split when there are >= 2,000 labelled rows
    and >= 50 positives; small label sets instead get 150 trees, smaller leaves and stronger L2.
    Not fittable when the labels hold one class only (`can_fit`).
    """

    def __init__(self, max_iter: int = 400, learning_rate: float = 0.06,
                 max_leaf_nodes: int = 31, l2_regularization: float = 1.0,
                 class_weight: str | dict | None = "balanced", max_types: int = 16,
                 random_state: int = 0):
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.l2_regularization = l2_regularization
        self.class_weight = class_weight
        self.max_types = max_types
        self.random_state = random_state

    @staticmethod
    def can_fit(labels: pd.DataFrame | None) -> bool:
        """True when the labels hold both classes (a supervised model can learn from them)."""
        if labels is None or len(labels) == 0:
            return False
        return np.unique(binary_labels(labels)).shape[0] == 2

    def fit(self, events: pd.DataFrame, labels: pd.DataFrame) -> "GradientBoostingBaseline":
        y = binary_labels(labels)
        if np.unique(y).shape[0] < 2:
            raise ValueError(f"labels hold one class only ({np.unique(y).tolist()}): "
                             "a supervised baseline cannot be fitted")
        X = self._fit_features(events, _query_points(labels, events))
        n_min = int(min(y.sum(), y.shape[0] - y.sum()))
        large = y.shape[0] >= 2000 and n_min >= 50
        model = HistGradientBoostingClassifier(
            learning_rate=self.learning_rate,
            max_iter=self.max_iter if large else min(self.max_iter, 150),
            max_leaf_nodes=self.max_leaf_nodes if large else min(self.max_leaf_nodes, 15),
            min_samples_leaf=20 if large else int(np.clip(n_min // 3, 2, 20)),
            l2_regularization=self.l2_regularization if large else 3.0 * self.l2_regularization,
            class_weight=self.class_weight,
            early_stopping=large,
            validation_fraction=0.1 if large else None,
            n_iter_no_change=30,
            random_state=self.random_state,
        )
        with threadpool_limits(1 if len(y) < SMALL_FIT_ROWS else None, user_api="openmp"):
            self.model_ = model.fit(X, y)
        return self

    def decision_function(self, events: pd.DataFrame, at: pd.DataFrame | None = None) -> np.ndarray:
        """Raw boosting score (log-odds under the training class weights), higher = riskier."""
        check_is_fitted(self, "model_")
        return self.model_.decision_function(self._features(events, at))

    def predict_proba(self, events: pd.DataFrame, at: pd.DataFrame | None = None) -> np.ndarray:
        """(n, 2): column 1 = P(fraud) under the (class-weighted) training distribution."""
        check_is_fitted(self, "model_")
        return self.model_.predict_proba(self._features(events, at))
