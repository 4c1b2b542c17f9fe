"""Second review: a blind double check of decided cases, agreement (Cohen's kappa), adjudication.

The loop (issue 6, label feedback):
- A share of decided cases (`Settings.second_review_share`, env SLEUTH_SECOND_REVIEW_SHARE,
  default 0.1) is sampled for a second review. The sample is deterministic per case: a case is
  in it when the first 8 bytes of blake2b(case_id) read as a fraction of 2**64 fall below the share
  (`sampled`), so every process and every rerun agrees, and raising the share only adds cases.
  Only cases decided fraud / legit are sampled (an escalation is not a decision).
- The second reviewer must be another analyst than the one who decided, and works BLIND: the
  to-do list (`due`) and the case (`blind_case`) carry nothing of the first decision (no label,
  note, decision, assignee, label history or audit). Blindness is what the review page shows,
  not access control: the Labels page still lists every label.
- A second review is a row of the `reviews` table (one per case, UNIQUE case_id), never a
  label: until someone adjudicates, the first decision stays the label (the latest label wins,
  and a blind check must not silently overwrite it).
- Disagreements go to adjudication: a third analyst (neither of the two; a lead who took part
  cannot adjudicate their own case) records the final label as a NEW label row (source
  'analyst', reason 'adjudication', the adjudicator's reason code in the audit detail), which
  then wins as the latest label. Labels stay append-only.
- Agreement: Cohen's kappa (scikit-learn) per analyst pair (first decision vs second review;
  kappa is symmetric, so a pair is unordered) and overall; and analyst vs model, where the
  model's decision is "fraud" when the user's latest score by the CURRENT model version is
  >= `threshold` (default 0.5: the scores are calibrated probabilities, so 0.5 is the decision
  at equal costs). Analyst judgements for that table are every label row an analyst wrote
  (decisions and adjudications) and every second review, the latest per analyst and user. Kappa
  is None where it is undefined (fewer than 2 judgements, or both raters used one class only);
  the raw agreement share is given beside it.
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import pandas as pd

from analyst.service.records import CaseView, ConflictError
from analyst.store import Store
from analyst.vocab import LABEL_WORDS, REASON_CODES, REVIEW_DECISIONS, check_choice

DEFAULT_MODEL_THRESHOLD = 0.5
# the case fields a blind reviewer may see (nothing of the first decision)
BLIND_CASE_FIELDS: tuple[str, ...] = ("case_id", "user_id", "opened_at", "model_version", "score", "why",
                                      "top_reason")


@dataclass(frozen=True)
class Review:
    """A recorded blind second review; `agrees` compares it with the first decision."""
    review_id: int
    case_id: int
    user_id: str
    reviewer: str
    decision: str
    agrees: bool


@dataclass(frozen=True)
class Adjudication:
    """The final label of a disagreement (a new label row)."""
    label_id: int
    review_id: int
    user_id: str
    adjudicator: str
    decision: str


@dataclass(frozen=True)
class Agreement:
    """How often analysts agree with each other and with the model.

    pairs: rater_a, rater_b (sorted), n, agreement (share equal), kappa (None if undefined).
    model: analyst, n, agreement, kappa, positives_analyst, positives_model; last row "(all)".
    """
    n_reviews: int
    kappa: float | None
    agreement: float | None
    pairs: pd.DataFrame
    model: pd.DataFrame
    threshold: float
    model_version: str | None


def sampled(case_id: int, share: float) -> bool:
    """Whether a case is in the second-review sample (deterministic per case_id)."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share={share!r}: expected a share in [0, 1]")
    digest = hashlib.blake2b(str(int(case_id)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < share


def kappa(a: np.ndarray | list, b: np.ndarray | list) -> float | None:
    """Cohen's kappa of two raters' 0/1 labels; None when undefined (n < 2 or one class only)."""
    from sklearn.metrics import cohen_kappa_score

    a, b = np.asarray(a, dtype=int), np.asarray(b, dtype=int)
    if len(a) < 2 or len(set(a.tolist()) | set(b.tolist())) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(cohen_kappa_score(a, b))
    return value if np.isfinite(value) else None


def _check_text(value: str | None, name: str, what: str) -> str:
    if not (value or "").strip():
        raise ValueError(f"{name}: {what} is required")
    return value.strip()


def _check_decision(decision: str) -> int:
    check_choice(decision, REVIEW_DECISIONS, "decision")
    return REVIEW_DECISIONS[decision]


def _check_reason(reason_code: str) -> None:
    check_choice(reason_code, REASON_CODES, "reason_code")


class Reviews:
    """Second reviews over one store. `case_view(user_id)` draws a case by the current model
    (the case use case, handed in so this module needs nothing above it); `current_version()`
    names the model the analyst-vs-model agreement is measured against."""

    def __init__(self, store: Store, share: float, case_view: Callable[[str], CaseView],
                 current_version: Callable[[], str | None]) -> None:
        self.store = store
        self.share = share
        self.case_view = case_view
        self.current_version = current_version

    def _decided(self, case_id: int) -> dict:
        row = self.store.decided_case(int(case_id))
        if row is None:
            raise LookupError(f"case {case_id} is not decided fraud/legit: nothing to review")
        return row


    # ---------------------------------------------------------------------------------- second review
    def due(self, analyst: str) -> pd.DataFrame:
        """The blind second reviews `analyst` may do: sampled decided cases without a second review
        that someone else decided. Columns: case_id, user_id, opened_at, score (nothing of the first
        decision), oldest case first."""
        columns = ["case_id", "user_id", "opened_at", "score"]
        analyst = _check_text(analyst, "analyst", "the analyst's name")
        cases = self.store.decided_cases()
        if cases.empty:
            return pd.DataFrame(columns=columns)
        done = set(self.store.reviews()["case_id"].astype(int))
        share = self.share
        keep = (cases["case_id"].map(lambda c: sampled(int(c), share))
                & ~cases["case_id"].isin(done) & (cases["first_analyst"] != analyst))
        return cases.loc[keep, columns].reset_index(drop=True)

    def blind_for(self, analyst: str | None, case: dict | None) -> bool:
        """Whether `analyst` has an open blind second review of `case` (then the case page hides
        the first decision from them too). Only decided cases are sampled, so others are False
        without a lookup."""
        if not analyst or not case or case.get("status") != "decided":
            return False
        return int(case["case_id"]) in set(self.due(analyst)["case_id"].astype(int))

    def blind_case(self, case_id: int, reviewer: str) -> CaseView:
        """The case as a blind second reviewer sees it: timeline, risk and explanation, but no
        labels, audit or decision fields (only BLIND_CASE_FIELDS of the case)."""
        reviewer = _check_text(reviewer, "reviewer", "the reviewer's name")
        row = self._decided(case_id)
        if row["first_analyst"] == reviewer:
            raise ValueError(f"reviewer={reviewer!r}: decided case {case_id} first; another analyst reviews it")
        view = self.case_view(str(row["user_id"]))
        case = self.store.case(int(case_id)) or {}
        return replace(view, case={k: case.get(k) for k in BLIND_CASE_FIELDS},
                       labels=view.labels.iloc[0:0], audit=view.audit.iloc[0:0])

    def second_review(self, case_id: int, decision: str, *, reviewer: str, reason_code: str,
                      note: str) -> Review:
        """Record a blind second review (never a label). Raises ConflictError (carrying the note)
        when the case got its second review meanwhile."""
        label = _check_decision(decision)
        note = _check_text(note, "note", "a note")
        reviewer = _check_text(reviewer, "reviewer", "the reviewer's name")
        _check_reason(reason_code)
        row = self._decided(case_id)
        if row["first_analyst"] == reviewer:
            raise ValueError(f"reviewer={reviewer!r}: decided case {case_id} first; another analyst reviews it")
        first_label = int(row["first_label"])
        review_id = self.store.record_review(
            case_id=int(case_id), user_id=str(row["user_id"]), first_label_id=int(row["first_label_id"]),
            first_analyst=str(row["first_analyst"]), first_label=first_label, reviewer=reviewer,
            label=label, reason=reason_code, note=note)
        if review_id is None:
            raise ConflictError(f"case {case_id} already has a second review; yours was not recorded "
                                "(your note was not lost)", note=note)
        return Review(review_id=review_id, case_id=int(case_id), user_id=str(row["user_id"]), reviewer=reviewer,
                      decision=decision, agrees=label == first_label)


    # ---------------------------------------------------------------------------------- adjudication
    def disagreements(self, *, include_adjudicated: bool = False) -> pd.DataFrame:
        """Second reviews that disagree with the first decision and await adjudication (or all of
        them), oldest first: review_id, case_id, user_id, first_analyst, first_decision, first_note,
        reviewer, second_decision, second_reason, second_note, reviewed_at, adjudicator, final_decision."""
        columns = ["review_id", "case_id", "user_id", "first_analyst", "first_decision", "first_note", "reviewer",
                   "second_decision", "second_reason", "second_note", "reviewed_at", "adjudicator", "final_decision"]
        reviews = self.store.disagreeing_reviews(include_adjudicated=include_adjudicated)
        if reviews.empty:
            return pd.DataFrame(columns=columns)
        word = LABEL_WORDS
        out = reviews.assign(
            first_decision=reviews["first_label"].map(word),
            second_decision=reviews["label"].map(word),
            second_reason=reviews["reason"],
            second_note=reviews["note"],
            final_decision=reviews["final_label"].map(word),
        )
        return out[columns].reset_index(drop=True)

    def adjudicate(self, review_id: int, decision: str, *, adjudicator: str, reason_code: str,
                   note: str) -> Adjudication:
        """Record the final label of a disagreement as a new label row by a third analyst.
        Raises ConflictError (carrying the note) when it was adjudicated meanwhile."""
        label = _check_decision(decision)
        note = _check_text(note, "note", "a note")
        adjudicator = _check_text(adjudicator, "adjudicator", "the adjudicator's name")
        _check_reason(reason_code)
        row = self.store.review(int(review_id))
        if row is None:
            raise LookupError(f"no second review {review_id}")
        if int(row["label"]) == int(row["first_label"]):
            raise ValueError(f"review_id={review_id}: the two reviews agree; there is nothing to adjudicate")
        if adjudicator in (row["first_analyst"], row["reviewer"]):
            raise ValueError(f"adjudicator={adjudicator!r}: took part in case {int(row['case_id'])}; "
                             "a third analyst (or a lead who did not) adjudicates")
        history = self.store.label_history(str(row["user_id"]))
        first = history[history["label_id"] == row["first_label_id"]]
        as_of = first["as_of"].iloc[0] if len(first) else None
        label_id = self.store.record_adjudication(review_id=int(review_id), label=label, as_of=as_of,
                                                adjudicator=adjudicator, reason=reason_code, note=note)
        if label_id is None:
            raise ConflictError(f"review {review_id} was adjudicated by someone else meanwhile; "
                                "yours was not recorded (your note was not lost)", note=note)
        return Adjudication(label_id=label_id, review_id=int(review_id), user_id=str(row["user_id"]),
                            adjudicator=adjudicator, decision=decision)


    # ---------------------------------------------------------------------------------- agreement
    def agreement(self, threshold: float = DEFAULT_MODEL_THRESHOLD) -> Agreement:
        """Cohen's kappa per analyst pair (second reviews) and per analyst vs the current model."""
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold={threshold!r}: expected a score in [0, 1]")
        reviews = self.store.reviews()
        pair_rows = []
        if len(reviews):
            raters = [tuple(sorted((str(f), str(s)))) for f, s in zip(reviews["first_analyst"], reviews["reviewer"])]
            reviews = reviews.assign(rater_a=[r[0] for r in raters], rater_b=[r[1] for r in raters])
            for (ra, rb), group in reviews.groupby(["rater_a", "rater_b"], sort=True):
                n, share, k = _rate(group["first_label"], group["label"])
                pair_rows.append({"rater_a": ra, "rater_b": rb, "n": n, "agreement": share, "kappa": k})
        n_all, share_all, kappa_all = _rate(reviews["first_label"], reviews["label"]) if len(reviews) else (0, None, None)
        pairs = pd.DataFrame(pair_rows, columns=["rater_a", "rater_b", "n", "agreement", "kappa"])

        version = self.current_version()
        model_columns = ["analyst", "n", "agreement", "kappa", "positives_analyst", "positives_model"]
        model_rows = []
        if version is not None:
            history = self.store.label_history()
            by_analyst = history[(history["source"] == "analyst") & history["analyst"].notna()]
            judged = pd.concat([
                pd.DataFrame({"analyst": by_analyst["analyst"], "user_id": by_analyst["user_id"],
                              "label": by_analyst["label"], "at": by_analyst["decided_at"]}),
                pd.DataFrame({"analyst": reviews["reviewer"], "user_id": reviews["user_id"],
                              "label": reviews["label"], "at": reviews["reviewed_at"]}) if len(reviews) else None,
            ], ignore_index=True)
            judged = judged.sort_values("at", kind="stable").drop_duplicates(["analyst", "user_id"], keep="last")
            scores = self.store.latest_scores(version)[["user_id", "score"]]
            judged = judged.merge(scores, on="user_id", how="inner")
            judged["model"] = (judged["score"] >= float(threshold)).astype(int)
            groups = [(str(a), g) for a, g in judged.groupby("analyst", sort=True)]
            if len(judged):
                groups.append(("(all)", judged))
            for name, group in groups:
                n, share, k = _rate(group["label"], group["model"])
                model_rows.append({"analyst": name, "n": n, "agreement": share, "kappa": k,
                                   "positives_analyst": int(group["label"].sum()),
                                   "positives_model": int(group["model"].sum())})
        model = pd.DataFrame(model_rows, columns=model_columns)
        return Agreement(n_reviews=n_all, kappa=kappa_all, agreement=share_all, pairs=pairs, model=model,
                         threshold=float(threshold), model_version=version)


def _rate(a: pd.Series, b: pd.Series) -> tuple[int, float | None, float | None]:
    a, b = a.to_numpy(dtype=int), b.to_numpy(dtype=int)
    return len(a), (float((a == b).mean()) if len(a) else None), kappa(a, b)
