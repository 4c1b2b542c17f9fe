"""Ranking and alert metrics for fraud scores (higher score = riskier), as plain dicts/floats.

`classification_metrics` returns exactly the keys of the `evaluate` contract (DESIGN.md section 4):

| key              | meaning                                                                    |
|------------------|----------------------------------------------------------------------------|
| `auprc`          | average precision (sklearn `average_precision_score`)                      |
| `auroc`          | area under the ROC curve (sklearn `roc_auc_score`)                         |
| `threshold`      | the alert threshold used for the three next keys (flag = score >= it)      |
| `precision`      | precision of the flagged rows                                              |
| `recall`         | recall of the flagged rows                                                 |
| `f1`             | F1 of the flagged rows                                                     |
| `precision_at_k` | share of positives among the `k` highest scores (an analyst's budget)      |
| `k`              | that budget; default = number of positives in `y_true` (R-precision)       |

This module never *chooses* a threshold by looking at labels: the caller passes one. Picking the
max-F1 threshold on the test labels would be optimistic; `models.evaluation` passes a threshold
fixed without test labels (`prevalence_threshold`: flag as many test rows as the train part's
positive rate predicts). With `threshold=None` the threshold-based values are `None`.
When `y_true` holds one class only, every label-dependent value is `None` (not a crash, not NaN).

`card_precision_at_k` is the Fraud Detection Handbook's "Card Precision top-k" (Le Borgne et al.,
chapter 4.2, `card_precision_top_k`): for each day in order, drop the cards (customers) already
detected as compromised on earlier days; group that day's transactions by card taking the max
score and the max label; take the k cards with the highest max score; the day's value is the
number of fraudulent cards among them divided by k (always by k, even if fewer cards are left);
the result is the mean over days.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_fscore_support, roc_auc_score

METRIC_KEYS: tuple[str, ...] = (
    "auprc", "auroc", "f1", "precision", "recall", "threshold", "precision_at_k", "k",
)


def _as_binary(y_true: Any, name: str = "y_true") -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {y.shape}")
    if y.dtype == bool:
        return y.astype(np.int64)
    try:
        yf = y.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be 0/1, got values like {y[:3].tolist()!r}") from exc
    bad = ~np.isin(yf, (0.0, 1.0))
    if bad.any():
        raise ValueError(f"{name} must be 0/1, got {y[bad][:3].tolist()!r}")
    return yf.astype(np.int64)


def _as_scores(y_score: Any, n: int, name: str = "y_score") -> np.ndarray:
    s = np.asarray(y_score, dtype=np.float64)
    if s.ndim != 1 or s.shape[0] != n:
        raise ValueError(f"{name} must be 1-D with {n} values, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError(f"{name} holds {int((~np.isfinite(s)).sum())} non-finite values")
    return s


def top_k_threshold(y_score: Any, k: int) -> float:
    """The score of the k-th highest row: `score >= it` flags (at least) the top k rows."""
    s = np.asarray(y_score, dtype=np.float64)
    if not 1 <= k <= s.shape[0]:
        raise ValueError(f"k={k} must be in [1, {s.shape[0]}]")
    return float(np.partition(s, s.shape[0] - k)[s.shape[0] - k])


def prevalence_threshold(y_score: Any, rate: float) -> float:
    """Threshold that flags about round(rate * n) rows (at least one): label-free, for alerts.

    `rate` is the positive rate the caller expects (e.g. from the train labels). Rows tied with
    the k-th highest score are either all flagged or all left out, whichever count is closer to
    k (fewer flags on a draw); at least the top score is always flagged.
    """
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"rate={rate!r} must be in (0, 1]")
    s = np.asarray(y_score, dtype=np.float64)
    if s.shape[0] == 0:
        raise ValueError("y_score is empty")
    k = int(min(s.shape[0], max(1, round(rate * s.shape[0]))))
    v = top_k_threshold(s, k)
    n_ge = int((s >= v).sum())
    above = s[s > v]
    if n_ge == k or above.size == 0:
        return v
    return float(above.min()) if k - above.size <= n_ge - k else v


def precision_at_k(y_true: Any, y_score: Any, k: int) -> float:
    """Share of positives among the k highest scores (ties broken by original order)."""
    y = _as_binary(y_true)
    s = _as_scores(y_score, y.shape[0])
    if not 1 <= k <= y.shape[0]:
        raise ValueError(f"k={k} must be in [1, {y.shape[0]}]")
    top = np.argsort(-s, kind="stable")[:k]
    return float(y[top].mean())


def classification_metrics(
    y_true: Any, y_score: Any, k: int | None = None, threshold: float | None = None
) -> dict[str, float | int | None]:
    """The contract's metric dict `M` for one method (see the module docstring).

    k: alert budget for `precision_at_k` (default: number of positives, i.e. R-precision).
    threshold: alert threshold chosen by the caller without test labels (None -> the
    threshold-based values are None).
    """
    y = _as_binary(y_true)
    s = _as_scores(y_score, y.shape[0])
    if k is not None and (int(k) != k or k < 1):
        raise ValueError(f"k={k!r} must be a positive integer")
    n_pos = int(y.sum())
    k_used = int(k) if k is not None else (n_pos if n_pos > 0 else None)
    if k_used is not None:
        k_used = min(k_used, y.shape[0]) if y.shape[0] else None
    out: dict[str, float | int | None] = dict.fromkeys(METRIC_KEYS)
    out["k"] = k_used
    out["threshold"] = None if threshold is None else float(threshold)
    if n_pos == 0 or n_pos == y.shape[0]:
        return out  # one class: every label-dependent metric is undefined
    out["auprc"] = float(average_precision_score(y, s))
    out["auroc"] = float(roc_auc_score(y, s))
    if threshold is not None:
        pred = (s >= threshold).astype(np.int64)
        p, r, f, _ = precision_recall_fscore_support(
            y, pred, average="binary", zero_division=0.0
        )
        out["precision"], out["recall"], out["f1"] = float(p), float(r), float(f)
    if k_used is not None:
        out["precision_at_k"] = precision_at_k(y, s, k_used)
    return out


def null_metrics(k: int | None = None) -> dict[str, float | int | None]:
    """The metric dict of a method that could not be fitted: every value None except `k`."""
    out: dict[str, float | int | None] = dict.fromkeys(METRIC_KEYS)
    out["k"] = k
    return out


def recall_by_group(
    y_true: Any, y_pred_or_score: Any, groups: Any, threshold: float | None = None
) -> dict[str, float]:
    """Recall among the positives of each group (e.g. each fraud pattern).

    y_pred_or_score: 0/1 predictions (threshold=None) or scores flagged at `score >= threshold`.
    Only positive rows count; positives with a null group are reported under "unknown".
    Returns {group: recall} sorted by group name.
    """
    y = _as_binary(y_true)
    s = _as_scores(y_pred_or_score, y.shape[0], "y_pred_or_score")
    g = pd.Series(np.asarray(groups, dtype=object))
    if g.shape[0] != y.shape[0]:
        raise ValueError(f"groups has {g.shape[0]} values, y_true {y.shape[0]}")
    if threshold is None:
        if not np.isin(s, (0.0, 1.0)).all():
            raise ValueError("y_pred_or_score holds scores: pass a threshold")
        flagged = s.astype(bool)
    else:
        flagged = s >= threshold
    pos = y == 1
    frame = pd.DataFrame({"group": g[pos].fillna("unknown").astype(str).to_numpy(),
                          "hit": flagged[pos]})
    rec = frame.groupby("group", sort=True)["hit"].mean()
    return {str(k): float(v) for k, v in rec.items()}


def card_precision_at_k(
    days: Any, cards: Any, y_true: Any, y_score: Any, k: int = 100,
    remove_detected: bool = True,
) -> float:
    """The handbook's mean daily Card Precision top-k (definition in the module docstring).

    days: day of each transaction (any sortable value, e.g. a date or day index);
    cards: card/customer id of each transaction.
    """
    if k < 1:
        raise ValueError(f"k={k!r} must be >= 1")
    y = _as_binary(y_true)
    s = _as_scores(y_score, y.shape[0])
    frame = pd.DataFrame({"day": np.asarray(days), "card": np.asarray(cards), "y": y, "s": s})
    if frame.shape[0] != y.shape[0]:
        raise ValueError("days, cards, y_true and y_score must have the same length")
    if frame.empty:
        raise ValueError("no transactions")
    per_card_day = frame.groupby(["day", "card"], sort=True).agg(s=("s", "max"), y=("y", "max"))
    detected: set = set()
    values = []
    for _, day_cards in per_card_day.groupby(level="day", sort=True):
        day_cards = day_cards.droplevel("day")
        if remove_detected and detected:
            day_cards = day_cards[~day_cards.index.isin(list(detected))]
        top = day_cards.sort_values("s", ascending=False, kind="stable").head(k)
        hits = top.index[top["y"].to_numpy() == 1]
        values.append(len(hits) / k)
        if remove_detected:
            detected.update(hits.tolist())
    return float(np.mean(values))
