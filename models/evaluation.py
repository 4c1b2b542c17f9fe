"""The evaluation protocol behind `sleuth evaluate` (DESIGN.md section 4) and its JSON contract.

`evaluate(events, labels, config)` splits the labels, fits the model and both baselines on the
train part, scores the test part and returns

    {"n_train", "n_test", "positives_test", "model": M,
     "baselines": {"isolation_forest": M, "gradient_boosting": M}, ...extras}

with `M` from `models.metrics.classification_metrics`. Extras (never replacing contract keys):
`positives_train`, `split`, `cutoff`, `n_labels_dropped`, `n_labels_unused`, `threshold_rule`,
`fitted`, `seconds`, and `recall_by_pattern` + `recall_rule` when the labels carry `pattern`.

Labels. `label` 1/0 (or fraud/legit); `as_of` defaults to the user's last event; rows naming a
user with no event at or before `as_of` cannot be scored and are dropped (counted). When the
labels carry `decided_at` (a decision history) the latest decision per (user_id, as_of) wins;
without it every row is its own label (e.g. two card transactions in the same second).

Split. A `split` column (train/test) is honoured when it holds any value; rows with a null split
are left out (counted as unused). Otherwise `config.split`:
- "time": labels sorted by as_of; the last `test_frac` are test; every label tied with the
  first test as_of is test too, so all train as_of < all test as_of.
- "random": seeded, by user (a user's labels are all train or all test), stratified by the
  user's label when both classes have at least two users.

Leakage rules.
- The model and both baselines are fitted on the train labels only.
- Temporal split (any split where every train as_of is before every test as_of, including an
  empty train part): they see only events with ts < cutoff (the first test as_of). The
  self-supervised pretraining of the model uses the events of *all* users before the cutoff,
  test users included (their labels are never seen): that is what a deployed model has.
- Other splits (random by user): they see only the events of users without a test label.
- Test rows are scored at their as_of with the full events frame: every method reads only the
  user's events with ts <= as_of.
- The IsolationForest needs no labels: it learns from the train label points plus every other
  user of the fitting events as of that user's last fitting event.
- Signals (models/signals.py: per-event velocity and entity signals, `config.signals`) are
  computed here, after the split, from the events and the *train* labels only, each label counted
  from when it was known (as_of + delay, or decided_at); signal columns the frame already carries
  are dropped first (they may hold test labels). `signals=None` leaves them out entirely. The
  baselines read their own per-user aggregates and ignore these columns.
- A supervised baseline needs both classes in the train part; otherwise it is "not fittable"
  and reports null metrics. The model is always fitted: with one class (or none) it ranks by
  surprise (the scorer's job).

Threshold (for f1 / precision / recall) is never chosen with test labels: each method flags as
many test rows as the train part's positive rate predicts (`prevalence_threshold`); when the
train part does not hold both classes (rate unknown) the threshold and its metrics are null.
`precision_at_k` uses `config.k`, default the number of test positives (R-precision).
"""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from models.baselines import GradientBoostingBaseline, IsolationForestBaseline, binary_labels
from models.metrics import (
    classification_metrics, null_metrics, prevalence_threshold, recall_by_group,
)
from models.signals import SignalConfig, with_signals

METHODS: tuple[str, ...] = ("model", "isolation_forest", "gradient_boosting")
SPLITS: tuple[str, ...] = ("time", "random")
THRESHOLD_RULE = ("flag the top round(p * n_test) test scores of each method, p = positive rate "
                  "of the train labels (no test labels used); null when p is unknown")


@dataclass(frozen=True)
class EvaluateConfig:
    """Knobs of `evaluate` (the CLI flags of `sleuth evaluate`).

    split: "time" or "random" (ignored when the labels carry a split column).
    test_frac: share of labels in the test part, in (0, 1).
    seed: seed of the random split and of the models.
    k: analyst budget for precision_at_k (None -> number of test positives).
    scorer_config: a `models.scorer.ScorerConfig` for the model (None -> its defaults with seed).
    signals: the `models.signals.SignalConfig` of the signal columns added after the split (None:
      none; the model then reads the timeline alone).
    """

    split: str = "time"
    test_frac: float = 0.3
    seed: int = 0
    k: int | None = None
    scorer_config: Any = None
    signals: SignalConfig | None = field(default_factory=SignalConfig)

    def __post_init__(self) -> None:
        if self.signals is not None and not isinstance(self.signals, SignalConfig):
            raise ValueError(f"signals={self.signals!r}: expected a models.signals.SignalConfig or None")
        if self.split not in SPLITS:
            raise ValueError(f"split={self.split!r}: expected one of {SPLITS}")
        if not 0.0 < float(self.test_frac) < 1.0:
            raise ValueError(f"test_frac={self.test_frac!r} must be in (0, 1)")
        if self.k is not None and (int(self.k) != self.k or self.k < 1):
            raise ValueError(f"k={self.k!r} must be a positive integer or None")


@dataclass(frozen=True)
class LabelSplit:
    """Normalised labels cut into train and test, with how and where the cut was made."""

    train: pd.DataFrame
    test: pd.DataFrame
    kind: str                       # "time", "random" or "column"
    cutoff: pd.Timestamp | None     # first test as_of when the split is temporal, else None
    n_dropped: int                  # labels that could not be scored (no events by as_of)
    n_unused: int                   # labels with a null split value

    @property
    def temporal(self) -> bool:
        return self.cutoff is not None


@dataclass(frozen=True)
class ProtocolResult:
    """Everything `evaluate` measured, before it is reduced to the JSON dict."""

    split: LabelSplit
    scores: pd.DataFrame                  # test labels + one score column per fitted method
    fitted: dict[str, bool]
    thresholds: dict[str, float | None]
    seconds: dict[str, float]
    models: dict[str, Any] = field(repr=False)


# ----------------------------------------------------------------------------------- labels

def _ts(values: Any) -> pd.Series:
    values = pd.Series(values)
    if values.isna().all():  # e.g. an empty as_of column read from CSV as float NaN
        return pd.Series(pd.NaT, index=values.index, dtype="datetime64[us]")
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        raise ValueError(f"timestamps must be datetimes or ISO text, got numbers like {values.iloc[:2].tolist()}")
    ts = pd.to_datetime(values, utc=True).dt.tz_localize(None)
    return ts.astype("datetime64[us]")


def normalise_labels(labels: pd.DataFrame, events: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Labels ready to evaluate, and the number dropped as unscorable (see module docstring)."""
    if not isinstance(labels, pd.DataFrame):
        raise ValueError(f"labels must be a pandas DataFrame, got {type(labels).__name__}")
    for col in ("user_id", "label"):
        if col not in labels.columns:
            raise ValueError(f"labels lack required column {col!r}")
    out = labels.reset_index(drop=True).copy()
    out["user_id"] = out["user_id"].astype(str)
    out["label"] = binary_labels(out)
    ev_user = events["user_id"].astype(str)
    ev_ts = _ts(events["ts"])
    first = ev_ts.groupby(ev_user.to_numpy()).min()
    last = ev_ts.groupby(ev_user.to_numpy()).max()
    fallback = out["user_id"].map(last)
    as_of = _ts(out["as_of"]) if "as_of" in out.columns else pd.Series(pd.NaT, index=out.index)
    out["as_of"] = as_of.where(as_of.notna(), fallback).astype("datetime64[us]")
    scorable = out["as_of"].notna() & (out["as_of"] >= out["user_id"].map(first))
    n_dropped = int((~scorable).sum())
    out = out[scorable.to_numpy()]
    if "decided_at" in out.columns:  # a decision history: the latest decision wins
        out = out.assign(_d=_ts(out["decided_at"])).sort_values("_d", kind="stable")
        out = out.drop(columns="_d").drop_duplicates(subset=["user_id", "as_of"], keep="last")
    return out.sort_values(["as_of", "user_id"], kind="stable").reset_index(drop=True), n_dropped


def split_labels(labels: pd.DataFrame, events: pd.DataFrame,
                 config: EvaluateConfig = EvaluateConfig()) -> LabelSplit:
    """Normalise labels and cut them into train and test (rules in the module docstring)."""
    lab, n_dropped = normalise_labels(labels, events)
    if lab.empty:
        raise ValueError("no scorable labels: every label names a user without events by its as_of")
    n_unused = 0
    if "split" in lab.columns and lab["split"].notna().any():
        kind = "column"
        split = lab["split"].astype(object).where(lab["split"].notna(), None)
        split = split.map(lambda v: None if v is None else str(v).strip().lower())
        bad = split.notna() & ~split.isin(("train", "test"))
        if bad.any():
            raise ValueError(f"split values must be train/test, got {split[bad].unique()[:3].tolist()}")
        n_unused = int(split.isna().sum())
        is_test = (split == "test").to_numpy()
        is_train = (split == "train").to_numpy()
    elif config.split == "time":
        kind = "time"
        n_test = max(1, int(round(config.test_frac * len(lab))))
        cut = lab["as_of"].iloc[len(lab) - n_test]          # lab is sorted by as_of
        is_test = (lab["as_of"] >= cut).to_numpy()
        is_train = ~is_test
    else:
        kind = "random"
        is_test = _random_user_split(lab, config.test_frac, config.seed)
        is_train = ~is_test
    train = lab[is_train].reset_index(drop=True)
    test = lab[is_test].reset_index(drop=True)
    if test.empty:
        raise ValueError("the test part is empty")
    temporal = train.empty or train["as_of"].max() < test["as_of"].min()
    cutoff = pd.Timestamp(test["as_of"].min()) if temporal else None
    if not temporal and train["user_id"].isin(test["user_id"]).any():
        raise ValueError("a non-temporal split must keep each user in one part (train or test)")
    return LabelSplit(train, test, kind, cutoff, n_dropped, n_unused)


def _random_user_split(lab: pd.DataFrame, test_frac: float, seed: int) -> np.ndarray:
    from sklearn.model_selection import train_test_split

    users = lab.groupby("user_id", sort=True)["label"].max()
    strat = users.to_numpy() if users.value_counts().min() >= 2 and users.nunique() == 2 else None
    n_test = max(1, int(round(test_frac * len(users))))
    if n_test >= len(users):
        raise ValueError(f"test_frac={test_frac} leaves no train user among {len(users)}")
    _, test_users = train_test_split(users.index.to_numpy(), test_size=n_test,
                                     random_state=seed, stratify=strat)
    return lab["user_id"].isin(set(test_users)).to_numpy()


def fitting_events(events: pd.DataFrame, split: LabelSplit) -> pd.DataFrame:
    """The events the methods may learn from under the leakage rules."""
    if split.temporal:
        keep = (_ts(events["ts"]) < split.cutoff).to_numpy()
    else:
        keep = ~events["user_id"].astype(str).isin(set(split.test["user_id"])).to_numpy()
    out = events[keep]
    if out.empty:
        raise ValueError("no events are left to fit on (all are at or after the cutoff)")
    return out


def _unlabelled_points(fit_events: pd.DataFrame, train: pd.DataFrame) -> pd.DataFrame:
    """Train label points plus every other fitting user as of its last fitting event."""
    last = fit_events.groupby(fit_events["user_id"].astype(str))["ts"].max()
    others = last[~last.index.isin(set(train["user_id"]))]
    pts = pd.DataFrame({"user_id": others.index.to_numpy(), "as_of": _ts(others.to_numpy())})
    return pd.concat([train[["user_id", "as_of"]], pts], ignore_index=True)


# --------------------------------------------------------------------------------- protocol

def _default_model_factory(config: EvaluateConfig) -> Callable[[], Any]:
    def make() -> Any:
        from models.scorer import Scorer, ScorerConfig  # imported late: torch is heavy

        cfg = config.scorer_config if config.scorer_config is not None else ScorerConfig(seed=config.seed)
        return Scorer(cfg)
    return make


def _fit(model: Any, events: pd.DataFrame, labels: pd.DataFrame, progress: bool) -> Any:
    params = inspect.signature(model.fit).parameters
    if "progress" in params:
        return model.fit(events, labels, progress=progress)
    return model.fit(events, labels)


def _risk(model: Any, events: pd.DataFrame, points: pd.DataFrame) -> np.ndarray:
    proba = np.asarray(model.predict_proba(events, at=points), dtype=np.float64)
    if proba.ndim != 2 or proba.shape != (len(points), 2):
        raise ValueError(f"predict_proba returned shape {proba.shape}, expected ({len(points)}, 2)")
    if not np.isfinite(proba[:, 1]).all():
        raise ValueError("predict_proba returned non-finite risk values")
    return proba[:, 1]


def run_protocol(
    events: pd.DataFrame,
    labels: pd.DataFrame,
    config: EvaluateConfig = EvaluateConfig(),
    *,
    model_factory: Callable[[], Any] | None = None,
    progress: bool = True,
) -> ProtocolResult:
    """Split, fit the model and both baselines, score the test part (no metrics yet).

    model_factory: zero-argument callable returning an unfitted model with
    `fit(events, labels[, progress])` and `predict_proba(events, at) -> (n, 2)`;
    None -> `models.scorer.Scorer(config.scorer_config)`.
    """
    if not isinstance(events, pd.DataFrame) or events.empty:
        raise ValueError("events must be a non-empty pandas DataFrame")
    missing = [c for c in ("user_id", "ts", "event_type") if c not in events.columns]
    if missing:
        raise ValueError(f"events lack required column(s) {missing}")
    split = split_labels(labels, events, config)
    events = with_signals(events, split.train, config.signals)
    fit_events = fitting_events(events, split)
    points = split.test[["user_id", "as_of"]]
    factory = model_factory or _default_model_factory(config)
    scores = split.test.copy()
    fitted: dict[str, bool] = {}
    seconds: dict[str, float] = {}
    models: dict[str, Any] = {}
    steps = tqdm(total=len(METHODS), desc="evaluate", disable=not progress, unit="method")
    try:
        for name in METHODS:
            steps.set_postfix_str(name)
            t0 = time.perf_counter()
            if name == "model":
                est = _fit(factory(), fit_events, split.train, progress)
            elif name == "isolation_forest":
                est = IsolationForestBaseline(random_state=config.seed).fit(
                    fit_events, _unlabelled_points(fit_events, split.train))
            else:
                est = (GradientBoostingBaseline(random_state=config.seed).fit(fit_events, split.train)
                       if GradientBoostingBaseline.can_fit(split.train) else None)
            fitted[name] = est is not None
            if est is not None:
                scores[name] = _risk(est, events, points)
                models[name] = est
            seconds[name] = round(time.perf_counter() - t0, 3)
            steps.update(1)
    finally:
        steps.close()
    rate = _train_rate(split.train)
    thresholds = {
        name: (prevalence_threshold(scores[name].to_numpy(), rate)
               if fitted[name] and rate is not None else None)
        for name in METHODS
    }
    return ProtocolResult(split, scores, fitted, thresholds, seconds, models)


def _train_rate(train: pd.DataFrame) -> float | None:
    if train.empty or train["label"].nunique() < 2:
        return None
    return float(train["label"].mean())


def report(result: ProtocolResult, config: EvaluateConfig = EvaluateConfig()) -> dict[str, Any]:
    """Reduce a ProtocolResult to the evaluate JSON dict (contract keys + extras)."""
    split, scores = result.split, result.scores
    y = scores["label"].to_numpy()
    n_pos = int(y.sum())
    k = config.k if config.k is not None else (n_pos if n_pos > 0 else None)
    if k is not None:
        k = min(int(k), len(y))

    def metrics(name: str) -> dict[str, Any]:
        if not result.fitted[name]:
            return null_metrics(k)
        return classification_metrics(y, scores[name].to_numpy(), k=k,
                                      threshold=result.thresholds[name])

    out: dict[str, Any] = {
        "n_train": int(len(split.train)),
        "n_test": int(len(split.test)),
        "positives_test": n_pos,
        "model": metrics("model"),
        "baselines": {"isolation_forest": metrics("isolation_forest"),
                      "gradient_boosting": metrics("gradient_boosting")},
        "positives_train": int(split.train["label"].sum()) if len(split.train) else 0,
        "split": split.kind,
        "cutoff": None if split.cutoff is None else split.cutoff.isoformat(),
        "n_labels_dropped": split.n_dropped,
        "n_labels_unused": split.n_unused,
        "threshold_rule": THRESHOLD_RULE,
        "fitted": dict(result.fitted),
        "seconds": dict(result.seconds),
    }
    if "pattern" in scores.columns and n_pos > 0 and scores.loc[y == 1, "pattern"].notna().any():
        out["recall_by_pattern"] = {}
        for name in METHODS:
            if not result.fitted[name]:
                out["recall_by_pattern"][name] = None
                continue
            s = scores[name].to_numpy()
            thr = result.thresholds[name]
            if thr is None:  # no train rate: recall within the top-k (k = budget above)
                thr = float(np.sort(s)[::-1][k - 1]) if k else None
            out["recall_by_pattern"][name] = (
                None if thr is None else recall_by_group(y, s, scores["pattern"], thr))
        out["recall_rule"] = ("recall among test positives of each pattern at the method's "
                              "threshold (top-k when the threshold is null)")
    return out


def evaluate(
    events: pd.DataFrame,
    labels: pd.DataFrame,
    config: EvaluateConfig = EvaluateConfig(),
    *,
    model_factory: Callable[[], Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the protocol and return the evaluate JSON dict (see the module docstring).

    The dict is JSON-serialisable as is (`json.dumps(evaluate(...))`).
    """
    result = run_protocol(events, labels, config, model_factory=model_factory, progress=progress)
    return report(result, config)
