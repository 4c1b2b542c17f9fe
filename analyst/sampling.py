"""Which unlabelled users the label queue serves, and what their labels say without selection bias.

A queue that only serves the riskiest users teaches the model about what it already believes and
tells nothing about the frauds it misses. `select_cases` mixes a daily budget (`QueueMix`) of three
kinds of case, each carrying `why` (the `cases.why` column of the store):

- ``high_risk``: the top `top_share` of the budget by score (the alerts proper).
- ``uncertain``: where a label teaches the model most. Half of them (rounded up) are the users whose
  score is closest to the decision threshold; the other half are the users on whom the two signals
  of the model disagree most: |percentile rank of head_logit - percentile rank of surprise|
  (computed over all candidates). Without a usable head_logit / surprise (missing, non-finite, or
  constant: e.g. a zero-label model whose risk head was never trained; the caller drops the column
  then) all of them are near-threshold picks.
- ``control``: a uniform random sample of the remaining (unflagged) candidates.

The decision threshold defaults to the score of the `budget`-th riskiest candidate: the line an
all-top-risk queue of the same budget would draw. We use that rather than 0.5 because the
score is a calibrated probability only for supervised models (a zero-label model ranks by the
ECDF of surprise, where 0.5 is the median user) and because with a few percent of fraud almost no
user scores near 0.5, whereas the budget cut is the operational boundary between "alerted" and
"not alerted". Pass `threshold=` (e.g. 0.5) to use a fixed operating point instead.

Sampling design and weights (Horvitz-Thompson): with the scores fixed, high-risk and uncertain
users are included with certainty (`sample_weight` 1); each control user stands for
|R| / n_control users of the remainder R it was drawn from (`sample_weight` = |R| / n_control), so
the weights of one draw sum to the number of candidates. `estimate_rates` turns decided cases into
the base rate, the precision of the high-risk part and the number of frauds the queue did not
serve, with confidence intervals that are honest about how few control labels there are.

Pure pandas / numpy / scipy; no store, no UI.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
from scipy.stats import norm

from analyst.store.checks import check_scores
from analyst.vocab import CASE_WHY

WHY_VALUES: tuple[str, ...] = CASE_WHY
FLAGGED: tuple[str, ...] = ("high_risk", "uncertain")                  # served with certainty
SELECT_COLUMNS: tuple[str, ...] = ("user_id", "score", "why", "sample_weight")


@dataclass(frozen=True)
class QueueMix:
    """A daily label budget and how it is shared between high-risk, uncertain and control cases.

    The shares must sum to 1. Case counts come from the largest-remainder rounding of
    budget x share (ties go to high_risk, then uncertain), so they always sum to `budget`.
    `seed` makes the control draw reproducible.
    """

    budget: int = 50
    top_share: float = 0.6
    uncertain_share: float = 0.2
    control_share: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.budget, bool) or not isinstance(self.budget, (int, np.integer)) or self.budget < 1:
            raise ValueError(f"QueueMix.budget={self.budget!r}: expected an integer >= 1")
        for name in ("top_share", "uncertain_share", "control_share"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
                    or not math.isfinite(float(value)) or not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"QueueMix.{name}={value!r}: expected a share in [0, 1]")
        total = float(self.top_share) + float(self.uncertain_share) + float(self.control_share)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"QueueMix.control_share={self.control_share!r}: top_share + uncertain_share + "
                f"control_share = {total:g}, expected 1")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"QueueMix.seed={self.seed!r}: expected a non-negative integer")

    @classmethod
    def from_shares(cls, budget: int = 50, *, uncertain_share: float = 0.2, control_share: float = 0.2,
                    seed: int = 0) -> "QueueMix":
        """The mix with high-risk taking what the uncertain and control shares leave."""
        for name, value in (("uncertain_share", uncertain_share), ("control_share", control_share)):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"QueueMix.{name}={value!r}: expected a share in [0, 1]")
        top = 1.0 - float(uncertain_share) - float(control_share)
        if top < -1e-9:
            raise ValueError(f"QueueMix.control_share={control_share!r}: uncertain_share + control_share = "
                             f"{uncertain_share + control_share:g} exceeds 1")
        return cls(budget=budget, top_share=max(top, 0.0), uncertain_share=float(uncertain_share),
                   control_share=float(control_share), seed=seed)

    def counts(self) -> dict[str, int]:
        """Cases per `why` for the full budget (largest remainder; they sum to `budget`)."""
        shares = np.array([self.top_share, self.uncertain_share, self.control_share], dtype=float)
        raw = shares / shares.sum() * int(self.budget)
        base = np.floor(raw + 1e-9).astype(int)
        left = int(self.budget) - int(base.sum())
        order = sorted(range(3), key=lambda i: (-(raw[i] - base[i]), i))
        for i in order[:left]:
            base[i] += 1
        return dict(zip(WHY_VALUES, (int(b) for b in base)))


def daily_seed(day: date | None = None) -> int:
    """The control draw's default seed: the day as YYYYMMDD (one reproducible draw per day)."""
    return int((day or date.today()).strftime("%Y%m%d"))


def _check_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """The store's score check (user_id, score in [0, 1], optional head_logit / surprise) plus one
    row per user, which a draw over users needs."""
    frame = check_scores(scores)
    if frame["user_id"].duplicated().any():
        dup = frame.loc[frame["user_id"].duplicated(), "user_id"].iloc[0]
        raise ValueError(f"scores.user_id: {dup!r} appears more than once; expected one row per user")
    return frame[["user_id", "score", "head_logit", "surprise"]]


def _usable(values: pd.Series | None) -> bool:
    return values is not None and bool(np.isfinite(values).all()) and values.nunique() > 1


def disagreement(frame: pd.DataFrame) -> pd.Series | None:
    """|percentile rank of head_logit - percentile rank of surprise| per row, or None if unusable."""
    head, surprise = frame.get("head_logit"), frame.get("surprise")
    if not (_usable(head) and _usable(surprise)):
        return None
    return (head.rank(pct=True) - surprise.rank(pct=True)).abs()


def default_threshold(scores: pd.Series, budget: int) -> float:
    """The score of the `budget`-th riskiest candidate (the lowest score when there are fewer)."""
    if len(scores) == 0:
        return float("nan")
    ranked = np.sort(np.asarray(scores, dtype=float))[::-1]
    return float(ranked[min(int(budget), len(ranked)) - 1])


def select_cases(scores: pd.DataFrame, exclude: set | frozenset | None = None, mix: QueueMix | None = None,
                 threshold: float | None = None, rng: np.random.Generator | None = None) -> pd.DataFrame:
    """The users to serve for labelling: high-risk, uncertain and control picks (see module doc).

    scores: one row per user with user_id, score (higher = riskier) and optionally head_logit and
      surprise (for the disagreement picks). exclude: user ids never to serve (labelled users,
      users with an open case). threshold: the decision threshold for the near-threshold picks
      (default: `default_threshold(candidate scores, mix.budget)`). rng: the control draw's
      generator (default: `np.random.default_rng(mix.seed)`).

    Returns user_id, score, why, sample_weight: high-risk (riskiest first), then uncertain (nearest
    the threshold first, then most disagreeing), then control (riskiest first). No user twice. When
    there are fewer candidates than the budget, high-risk fills first, then uncertain, then control;
    a short stratum is not topped up from another (so the shares stay what they say).
    """
    mix = mix if mix is not None else QueueMix()
    if not isinstance(mix, QueueMix):
        raise ValueError(f"mix={mix!r}: expected a QueueMix")
    frame = _check_scores(scores)
    excluded = {str(u) for u in (exclude or ())}
    cand = frame[~frame["user_id"].isin(excluded)]
    cand = cand.sort_values(["score", "user_id"], ascending=[False, True], kind="mergesort").reset_index(drop=True)
    if threshold is None:
        threshold = default_threshold(cand["score"], mix.budget)
    elif isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating, np.integer)) \
            or not math.isfinite(float(threshold)):
        raise ValueError(f"threshold={threshold!r}: expected a finite number")
    rng = rng if rng is not None else np.random.default_rng(mix.seed)
    counts = mix.counts()

    taken = np.zeros(len(cand), dtype=bool)
    top = np.arange(min(counts["high_risk"], len(cand)))
    taken[top] = True

    n_unc = min(counts["uncertain"], int((~taken).sum()))
    gap = disagreement(cand)
    n_dis = n_unc // 2 if gap is not None else 0
    n_near = n_unc - n_dis
    distance = (cand["score"] - float(threshold)).abs().to_numpy()
    pool = np.flatnonzero(~taken)
    near = pool[np.lexsort((cand["user_id"].to_numpy()[pool], distance[pool]))][:n_near]
    taken[near] = True
    dis = np.array([], dtype=int)
    if n_dis:
        pool = np.flatnonzero(~taken)
        dis = pool[np.lexsort((cand["user_id"].to_numpy()[pool], -gap.to_numpy()[pool]))][:n_dis]
        taken[dis] = True

    rest = np.flatnonzero(~taken)
    n_ctrl = min(counts["control"], len(rest))
    control = np.sort(rng.choice(rest, size=n_ctrl, replace=False)) if n_ctrl else np.array([], dtype=int)
    weight = len(rest) / n_ctrl if n_ctrl else float("nan")

    parts = [(top, "high_risk", 1.0), (np.concatenate([near, dis]).astype(int), "uncertain", 1.0),
             (control, "control", weight)]
    out = pd.concat([
        pd.DataFrame({"user_id": cand["user_id"].to_numpy()[idx], "score": cand["score"].to_numpy()[idx],
                      "why": why, "sample_weight": float(w)})
        for idx, why, w in parts
    ], ignore_index=True)
    return out[list(SELECT_COLUMNS)]


# -------------------------------------------------------------------------------------- estimates
@dataclass(frozen=True)
class RateEstimate:
    """What decided cases of a mixed queue say about the population they were drawn from.

    n_population: the candidates the queue drew from. n_flagged: users served as high_risk or
    uncertain (each counted, not estimated). control_rate: the fraud rate among the candidates the
    queue did not flag, estimated from the control sample alone (weighted mean; Wilson interval on
    the Kish effective sample size). base_rate: (frauds found among flagged + control_rate x
    unflagged) / n_population. missed_frauds: control_rate x unflagged, the frauds the queue left
    unserved. precision_top: the share of fraud among decided high_risk cases (Wilson interval);
    it is the precision of the alerts themselves, not of the whole queue. Intervals are at
    `confidence`; None where the needed labels are missing (e.g. no decided control case).
    """

    n_population: int
    n_flagged: int
    n_top: int
    n_uncertain: int
    n_control: int
    frauds_flagged: int
    precision_top: float | None
    precision_top_ci: tuple[float, float] | None
    control_rate: float | None
    control_rate_ci: tuple[float, float] | None
    base_rate: float | None
    base_rate_ci: tuple[float, float] | None
    missed_frauds: float | None
    missed_frauds_ci: tuple[float, float] | None
    naive_rate: float | None
    confidence: float

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def wilson_interval(p: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion p observed on n (possibly effective, fractional) trials."""
    if n <= 0:
        raise ValueError(f"n={n!r}: expected a positive number of trials")
    z = float(norm.ppf(0.5 + confidence / 2))
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(p * (1 - p) / n + z * z / (4 * n * n), 0.0)) / denom
    return max(0.0, min(centre - half, p)), min(1.0, max(centre + half, p))   # contains p (rounding)


def estimate_rates(decided: pd.DataFrame, n_population: int, *, n_flagged: int | None = None,
                   confidence: float = 0.95) -> RateEstimate:
    """Base rate, precision of the alerts and missed frauds from decided cases of one queue draw.

    decided: one row per decided case with why (high_risk / uncertain / control), label (1 fraud,
      0 legit; rows with a missing label, e.g. escalations, are ignored) and optionally
      sample_weight (control rows; default equal weights). n_population: the number of candidate
      users the queue drew from. n_flagged: the users the queue served as high_risk or uncertain
      (default: those among `decided`; pass it when some flagged cases are still undecided, then
      their frauds count as zero and base_rate is a lower bound).

    Honest about: the control sample is the only unbiased look at the unflagged users, so with 10
    control labels the base-rate interval is wide, and it says so. `naive_rate` (the fraud share of
    all decided cases) is reported only to show the selection bias the estimate removes.
    """
    if not isinstance(decided, pd.DataFrame):
        raise ValueError(f"decided={type(decided).__name__}: expected a DataFrame with why and label")
    missing = [c for c in ("why", "label") if c not in decided.columns]
    if missing:
        raise ValueError(f"decided lacks column(s) {missing}: expected why, label[, sample_weight]")
    if isinstance(n_population, bool) or not isinstance(n_population, (int, np.integer)) or n_population < 1:
        raise ValueError(f"n_population={n_population!r}: expected a positive integer")
    if not 0.5 <= float(confidence) < 1.0:
        raise ValueError(f"confidence={confidence!r}: expected a level in [0.5, 1)")
    bad = sorted(set(decided["why"].dropna().astype(str)) - set(WHY_VALUES))
    if bad or decided["why"].isna().any():
        raise ValueError(f"decided.why values {bad or ['null']}: expected one of {WHY_VALUES}")
    frame = decided[decided["label"].notna()].copy()
    labels = pd.to_numeric(frame["label"], errors="coerce")
    if not labels.isin([0, 1]).all():
        raise ValueError("decided.label: expected 0 (legit) or 1 (fraud)")
    frame["label"] = labels.astype(int)
    if "sample_weight" in frame.columns:
        frame["sample_weight"] = pd.to_numeric(frame["sample_weight"], errors="coerce")
    else:
        frame["sample_weight"] = 1.0

    top = frame[frame["why"] == "high_risk"]
    unc = frame[frame["why"] == "uncertain"]
    ctrl = frame[frame["why"] == "control"]
    flagged_decided = len(top) + len(unc)
    n_flag = flagged_decided if n_flagged is None else int(n_flagged)
    if n_flag < flagged_decided or n_flag > n_population:
        raise ValueError(f"n_flagged={n_flagged!r}: expected between the {flagged_decided} decided flagged "
                         f"cases and n_population={n_population}")
    frauds_flagged = int(top["label"].sum() + unc["label"].sum())
    n_unflagged = int(n_population) - n_flag

    precision = precision_ci = None
    if len(top):
        precision = float(top["label"].mean())
        precision_ci = wilson_interval(precision, len(top), confidence)

    control_rate = control_ci = base = base_ci = missed = missed_ci = None
    if len(ctrl):
        w = ctrl["sample_weight"].to_numpy(dtype=float)
        if not (np.isfinite(w).all() and (w > 0).all()):
            raise ValueError("decided.sample_weight: control rows need positive finite weights")
        y = ctrl["label"].to_numpy(dtype=float)
        control_rate = float((w * y).sum() / w.sum())
        n_eff = float(w.sum() ** 2 / (w ** 2).sum())                     # Kish effective sample size
        control_ci = wilson_interval(control_rate, n_eff, confidence)
        missed = control_rate * n_unflagged
        missed_ci = (control_ci[0] * n_unflagged, control_ci[1] * n_unflagged)
        base = (frauds_flagged + missed) / n_population
        base_ci = ((frauds_flagged + missed_ci[0]) / n_population, (frauds_flagged + missed_ci[1]) / n_population)

    return RateEstimate(
        n_population=int(n_population), n_flagged=n_flag, n_top=int(len(top)), n_uncertain=int(len(unc)),
        n_control=int(len(ctrl)), frauds_flagged=frauds_flagged,
        precision_top=precision, precision_top_ci=precision_ci,
        control_rate=control_rate, control_rate_ci=control_ci,
        base_rate=base, base_rate_ci=base_ci, missed_frauds=missed, missed_frauds_ci=missed_ci,
        naive_rate=float(frame["label"].mean()) if len(frame) else None, confidence=float(confidence),
    )


def queue_draw(scores: pd.DataFrame, exclude: set | frozenset | None, mix: QueueMix, *,
               use_head: bool = True, threshold: float | None = None) -> tuple[pd.DataFrame, dict]:
    """`select_cases` plus a JSON-able record of the draw (kept in the audit trail by the service).

    use_head=False drops head_logit (a zero-label model's risk head is untrained, so its
    disagreement with surprise is noise): the uncertain picks are then all near the threshold.
    The record holds what `estimate_rates` needs later: n_population (candidates), n_flagged,
    the cases per why, the control weight, the threshold and the mix.
    """
    frame = _check_scores(scores)
    if not use_head:
        frame = frame.drop(columns=["head_logit"], errors="ignore")
    excluded = {str(u) for u in (exclude or ())}
    cand_scores = frame.loc[~frame["user_id"].isin(excluded), "score"]
    if threshold is None and len(cand_scores):
        threshold = default_threshold(cand_scores, mix.budget)
    chosen = select_cases(frame, excluded, mix, threshold=threshold)
    by_why = chosen["why"].value_counts()
    control = chosen[chosen["why"] == "control"]
    record = {
        "n_population": int(len(cand_scores)),
        "n_flagged": int(by_why.get("high_risk", 0) + by_why.get("uncertain", 0)),
        "cases": {why: int(by_why.get(why, 0)) for why in WHY_VALUES},
        "control_weight": float(control["sample_weight"].iloc[0]) if len(control) else None,
        "threshold": None if threshold is None or not math.isfinite(float(threshold)) else float(threshold),
        "disagreement": disagreement(frame[~frame["user_id"].isin(excluded)]) is not None,
        "mix": {"budget": int(mix.budget), "top_share": float(mix.top_share),
                "uncertain_share": float(mix.uncertain_share), "control_share": float(mix.control_share),
                "seed": int(mix.seed)},
    }
    return chosen, record
