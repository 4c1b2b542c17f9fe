"""Use cases shared by the CLI and the Streamlit pages: queue, case, decide, train, score, retrain.

Plain Python over the store and the models; no streamlit here. One `Workbench` per process (the
app holds one in `resources.py`): it owns the `Store` (one DuckDB connection) and a cache of loaded
model versions. Everything a page shows comes back as a DataFrame or a frozen dataclass.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import pandas as pd

from analyst.config import Settings
from analyst.store import Store

if TYPE_CHECKING:
    from analyst.sampling import QueueMix

DECISIONS: dict[str, int | None] = {"fraud": 1, "legit": 0, "escalate": None}
REASON_CODES: tuple[str, ...] = (
    "account_takeover", "payment_fraud", "promo_abuse", "refund_abuse", "fake_reviews",
    "bot_activity", "order_brushing", "legitimate_behaviour", "insufficient_evidence", "other",
)
ALERT_QUALITY: tuple[str, ...] = ("useful", "partly useful", "not useful")
DEFAULT_ALERT_BUDGET = 50
REVIEWED_SOURCES = ("analyst", "import")  # labels that count as reviewed cases (not synthetic truth)
BACKTEST_SHARE = 0.2   # most recent share of reviewed labels a retrain holds out for the backtest
BACKTEST_MIN = 10      # fewer reviewed labels than this: no backtest hold-out (too few to measure)
ProgressFn = Callable[[float, str], None]


class ConflictError(RuntimeError):
    """The case changed (someone else decided or claimed it) since the caller last read it.

    Nothing was written. `note` is the caller's note, handed back so the UI can keep it; `case`
    is the case as read right after the conflict (when a case was given; in a race the winner's
    commit may still be in flight, so reload to see who decided).
    """

    def __init__(self, message: str, *, note: str | None = None, case: dict | None = None) -> None:
        super().__init__(message)
        self.note = note
        self.case = case


@dataclass(frozen=True)
class CaseView:
    user_id: str
    header: dict
    timeline: pd.DataFrame          # events + risk, surprise, attribution columns
    explanation: object | None      # models.explain.Explanation
    model_version: str | None
    risk: float | None
    case: dict | None
    labels: pd.DataFrame
    audit: pd.DataFrame
    neighbours: pd.DataFrame
    ground_truth: dict | None       # synthetic label / pattern when the data carries it


@dataclass(frozen=True)
class Decision:
    label_id: int | None
    case_id: int | None
    user_id: str
    decision: str
    next_case_id: int | None


@dataclass
class Job:
    """A background job (retrain / rescore) with progress the UI polls."""
    job_id: str
    kind: str
    started_at: float
    progress: float = 0.0
    message: str = "starting"
    done: bool = False
    error: str | None = None
    result: dict = field(default_factory=dict)


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _new_version() -> str:
    return "v" + _now().strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]


class Workbench:
    """The application's use cases; thread-safe for the Streamlit server's session threads."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store if store is not None else Store(settings.db_path)
        self._scorers: dict[str, object] = {}
        self._refs: dict[str, tuple[list[str], np.ndarray, np.ndarray]] = {}
        self._metrics: dict[tuple, dict] = {}
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._synthetic: bool | None = None

    def close(self) -> None:
        self.store.close()

    # ------------------------------------------------------------------ models
    def current_version(self) -> str | None:
        current = self.store.current_model()
        return current["version"] if current else None

    def scorer(self, version: str | None = None):
        """The loaded Scorer of a model version (default: current), cached per process."""
        from models.scorer import Scorer

        version = version or self.current_version()
        if version is None:
            raise LookupError("no model yet: run `sleuth train` (or retrain from the Model page)")
        with self._lock:
            if version not in self._scorers:
                row = self.store.models().set_index("version").loc[version]
                self._scorers[version] = Scorer.from_pretrained(row["path"])
            return self._scorers[version]

    def train(self, *, config=None, analyst: str | None = None, progress: bool = True,
              promote_if_first: bool = True, on_progress: ProgressFn | None = None,
              backtest_share: float = BACKTEST_SHARE) -> str:
        """Fit a new model version on all events and the latest labels; register it as candidate.

        Backtest: when at least BACKTEST_MIN reviewed labels (analyst decisions and imported
        outcomes) exist, the most recent `backtest_share` of them (by label_id, i.e. by time) are
        held out of this fit, so the new version can be compared with the current one on cases
        neither has seen (`model_metrics(..., compare_with=...)`); the next retrain includes them.
        The held-out label ids are kept in the version's data snapshot. The first model of a store
        is promoted to current (there is nothing to compare it with); later ones stay candidates
        until someone promotes them.
        """
        if not 0.0 <= backtest_share < 1.0:
            raise ValueError(f"backtest_share={backtest_share!r}: expected a share in [0, 1)")
        from models.scorer import Scorer, ScorerConfig

        if on_progress:
            on_progress(0.02, "loading events and labels")
        events = self.store.events()
        if events.empty:
            raise ValueError(f"the store {self.settings.db_path} holds no events: run `sleuth ingest` first")
        labels = self._training_labels()
        held = _backtest_ids(labels, backtest_share)
        labels = labels[~labels["label_id"].isin(held)].reset_index(drop=True) if held else labels
        version = _new_version()
        path = self.settings.model_dir / version
        if on_progress:
            on_progress(0.05, f"training on {events['user_id'].nunique():,} users, {len(labels):,} labels")
        t0 = time.perf_counter()
        scorer = Scorer(config or ScorerConfig()).fit(events, labels if len(labels) else None, progress=progress)
        path.mkdir(parents=True, exist_ok=True)
        scorer.save_pretrained(path)
        snapshot = {
            "events": int(len(events)), "users": int(events["user_id"].nunique()),
            "labels": int(len(labels)), "positives": int(labels["label"].sum()) if len(labels) else 0,
            "max_label_id": int(labels["label_id"].max()) if len(labels) else None,
            "backtest_label_ids": held,
            "last_event_ts": str(events["ts"].max()), "seconds": round(time.perf_counter() - t0, 1),
        }
        metrics = dict(getattr(scorer, "fit_info_", {}) or {})
        self.store.register_model(version, str(path), metrics=_jsonable(metrics), status="candidate",
                                  created_by=analyst or self.settings.analyst, data_snapshot=snapshot)
        self.store.add_audit(analyst or "system", "train", new=version, detail=snapshot)
        with self._lock:
            self._scorers[version] = scorer
        if promote_if_first and self.current_version() is None:
            self.promote(version, analyst or "system")
        if on_progress:
            on_progress(1.0, f"trained {version}")
        return version

    def _training_labels(self) -> pd.DataFrame:
        labels = self.store.latest_labels()
        cols = [c for c in ("user_id", "label", "as_of", "split", "source", "label_id") if c in labels.columns]
        return labels[cols].reset_index(drop=True)

    def promote(self, version: str, analyst: str) -> None:
        old = self.current_version()
        self.store.set_model_status(version, "current")
        self.store.add_audit(analyst, "promote", old=old, new=version)

    def rollback(self, analyst: str) -> str:
        """Make the previously current version current again."""
        models = self.store.models()
        retired = models[models["status"] == "retired"].sort_values("created_at")
        if retired.empty:
            raise LookupError("no earlier version to roll back to")
        version = str(retired.iloc[-1]["version"])
        old = self.current_version()
        self.store.set_model_status(version, "current")
        self.store.add_audit(analyst, "rollback", old=old, new=version)
        return version

    def models(self) -> pd.DataFrame:
        return self.store.models()

    def model_metrics(self, version: str, ks: Sequence[int] = (10, 50, 100), *,
                      compare_with: str | None = None) -> dict:
        """How a version ranks the cases analysts reviewed that it never saw (held out by time).

        Reviewed = the latest label of each user from an analyst decision or an imported outcome
        (source analyst / import) that the version did not train on: a label_id above its training
        snapshot, or one of the labels its retrain held out for the backtest. With `compare_with`
        (another version), only the labels NEITHER version saw, so the two are measured on the same
        cases. Each is scored as of its `as_of`. Returns n, positives,
        precision_at_k {k: precision among the k riskiest} for k <= n, and, with both outcomes
        present, average_precision, auc_roc, pr_curve {recall, precision} and calibration
        {prob_pred, prob_true} (scikit-learn's curves). Cached per version and label count.
        """
        from sklearn.calibration import calibration_curve
        from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

        models = self.store.models().set_index("version")
        for v in (version, compare_with):
            if v is not None and v not in models.index:
                raise LookupError(f"no model version {v!r}")
        labels = self.store.latest_labels()
        reviewed = labels[labels["source"].isin(REVIEWED_SOURCES)]
        for v in (version, compare_with):
            if v is not None:
                reviewed = reviewed[_unseen_by(_loads(models.loc[v, "data_snapshot"]), reviewed["label_id"])]
        key = (version, compare_with, int(len(labels)), int(labels["label_id"].max()) if len(labels) else 0)
        with self._lock:
            if key in self._metrics:
                return self._metrics[key]
        out: dict = {"n": int(len(reviewed)), "positives": int(reviewed["label"].sum()) if len(reviewed) else 0}
        if len(reviewed):
            events = self.store.events(user_ids=list(reviewed["user_id"]))
            at = reviewed[["user_id", "as_of"]].reset_index(drop=True)
            score = self.scorer(version).predict_proba(events, at=at)[:, 1]
            y = reviewed["label"].to_numpy(dtype=int)
            order = np.argsort(-score, kind="stable")
            out["precision_at_k"] = {int(k): float(y[order[:k]].mean()) for k in ks if k <= len(y)} \
                or {int(len(y)): float(y.mean())}
            if 0 < y.sum() < len(y):
                precision, recall, _ = precision_recall_curve(y, score)
                prob_true, prob_pred = calibration_curve(y, score, n_bins=min(10, max(2, len(y) // 5)),
                                                         strategy="quantile")
                out.update(
                    average_precision=float(average_precision_score(y, score)),
                    auc_roc=float(roc_auc_score(y, score)),
                    pr_curve={"recall": recall.tolist(), "precision": precision.tolist()},
                    calibration={"prob_pred": prob_pred.tolist(), "prob_true": prob_true.tolist()},
                )
        with self._lock:
            self._metrics[key] = out
        return out

    # ------------------------------------------------------------------ scoring
    def score(self, *, version: str | None = None, budget: int | None = DEFAULT_ALERT_BUDGET,
              top_pct: float | None = None, explain_cases: bool = True, progress: bool = False,
              on_progress: ProgressFn | None = None, mix: QueueMix | None = None) -> dict:
        """Score every user with a version, store the scores and open cases by an alert budget.

        Cases go to the riskiest users without a label yet: the top `budget` users, or the top
        `top_pct` percent when given. With `mix` (an `analyst.sampling.QueueMix`) the label queue
        mixes high-risk, uncertain and random-control cases instead (`why` says which); its
        `mix.budget` is the number of cases (`top_pct`, when given, replaces it; `budget` is then
        unused), users with a label or an undecided case are never drawn, and the draw (sizes,
        control weight, threshold) is kept in the audit trail as action "queue_draw".
        Explanations of opened cases are computed now and stored with the model version (frozen
        at alert time).
        """
        version = version or self.current_version()
        scorer = self.scorer(version)
        if on_progress:
            on_progress(0.05, "loading events")
        events = self.store.events()
        if on_progress:
            on_progress(0.15, f"scoring {events['user_id'].nunique():,} users")
        scores = scorer.score_users(events, progress=progress)
        self.store.add_scores(scores, version)
        labelled = set(self.store.latest_labels()["user_id"])
        candidates = scores[~scores["user_id"].isin(labelled)].sort_values("score", ascending=False)
        if top_pct is not None:
            if not 0 < top_pct <= 100:
                raise ValueError(f"top_pct={top_pct}: expected a percentage in (0, 100]")
            n_open = int(np.ceil(len(scores) * top_pct / 100))
        else:
            n_open = int(budget or 0)
        if mix is None:
            chosen = candidates.head(n_open).assign(why="high_risk")
        else:
            chosen = self._mixed_queue(scorer, scores, labelled, mix, n_open if top_pct is not None else None,
                                       version)
        reasons: dict[str, str] = {}
        if explain_cases:
            for i, user_id in enumerate(chosen["user_id"]):
                if on_progress:
                    on_progress(0.5 + 0.5 * i / max(len(chosen), 1), f"explaining case {i + 1}/{len(chosen)}")
                exp = self.explanation(str(user_id), version=version)
                reasons[str(user_id)] = exp.reasons[0] if exp.reasons else ""
        opened = self.store.open_cases(
            pd.DataFrame({
                "user_id": chosen["user_id"].astype(str),
                "score": chosen["score"].astype(float),
                "why": chosen["why"].astype(str),
                "top_reason": [reasons.get(str(u), "") for u in chosen["user_id"]],
            }),
            version,
        )
        if on_progress:
            on_progress(1.0, f"scored {len(scores):,} users, opened {opened} cases")
        return {"version": version, "scored": int(len(scores)), "opened": int(opened)}

    def _mixed_queue(self, scorer, scores: pd.DataFrame, labelled: set, mix: QueueMix, n_open: int | None,
                     version: str) -> pd.DataFrame:
        """The mixed label queue of a scoring run (see `analyst.sampling`), its draw audited."""
        from dataclasses import replace

        from analyst.sampling import QueueMix, queue_draw

        if not isinstance(mix, QueueMix):
            raise ValueError(f"mix={mix!r}: expected an analyst.sampling.QueueMix")
        if n_open is not None:
            mix = replace(mix, budget=max(int(n_open), 1))
        cases = self.store.cases()
        busy = set(cases.loc[cases["status"] != "decided", "user_id"]) if not cases.empty else set()
        supervised = getattr(scorer, "mode_", "supervised") != "surprise"
        chosen, record = queue_draw(scores, labelled | busy, mix, use_head=supervised)
        self.store.add_audit("system", "queue_draw", new=version, detail=record)
        return chosen

    # ------------------------------------------------------------------ explanations
    def explanation(self, user_id: str, *, version: str | None = None, fresh: bool = False, until=None):
        """The stored explanation of a user's latest event (<= `until`) for a version; computed and
        stored when missing or made by an older attribution method (explanations are kept with
        the model version that made them; a recomputed one is a new row, the newest wins)."""
        from models.explain import METHOD, Explanation, explain

        version = version or self.current_version()
        timeline, history = self.model_window(user_id, until=until)
        at_ts = timeline["ts"].iloc[-1]
        if not fresh:
            payload = self.store.get_explanation(user_id, version, at_ts)
            if payload is not None:
                stored = Explanation.from_dict(payload)
                if stored.method == METHOD:
                    return stored
        exp = explain(self.scorer(version), timeline, user_id=user_id, model_version=version, history=history)
        self.store.save_explanation(user_id, version, at_ts, exp.to_dict())
        return exp

    def model_window(self, user_id: str, until=None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(window, history) up to `until` when given: the most recent events the model reads (its
        max_events) and the user's earlier ones. The history sets the first-time flags and the
        first gap (models.tokenizer), so the case page's risk is the one the queue scored."""
        scorer = self.scorer()
        limit = int(getattr(getattr(scorer, "config", None), "max_events", 256))
        full = self.store.timeline(user_id, until=until)
        if full.empty:
            when = f" at or before {until}" if until is not None else ""
            raise LookupError(f"user {user_id!r} has no events{when} in {self.settings.db_path}")
        cut = max(0, len(full) - limit)
        return full.iloc[cut:].reset_index(drop=True), full.iloc[:cut].reset_index(drop=True)

    def what_if(self, user_id: str, remove: Sequence[int]) -> float:
        """Risk at the user's latest event with the given timeline rows (indexes) removed."""
        from models.explain import what_if

        timeline, history = self.model_window(user_id)
        bad = [i for i in remove if not 0 <= int(i) < len(timeline)]
        if bad:
            raise ValueError(f"event indexes {bad} out of range 0..{len(timeline) - 1}")
        return float(what_if(self.scorer(), timeline, [int(i) for i in remove], history=history))

    def neighbours(self, user_id: str, k: int = 5) -> pd.DataFrame:
        """The k labelled users closest to this one in sequence embedding, with their labels."""
        from models.explain import nearest_cases

        version = self.current_version()
        ref_ids, ref_emb, ref_labels = self._reference_embeddings(version)
        if len(ref_ids) == 0:
            return pd.DataFrame(columns=["user_id", "label", "similarity"])
        _, query = self.scorer(version).embed(self.store.timeline(user_id))  # as the references: whole history
        keep = np.array([u != user_id for u in ref_ids])
        return nearest_cases(query[0], ref_emb[keep], [u for u, m in zip(ref_ids, keep) if m],
                             ref_labels[keep], k=k)

    def _reference_embeddings(self, version: str):
        with self._lock:
            cached = self._refs.get(version)
        if cached is not None:
            return cached
        labels = self.store.latest_labels()
        if labels.empty:
            return [], np.zeros((0, 1)), np.zeros(0, dtype=int)
        events = self.store.events(user_ids=list(labels["user_id"]))
        ids, emb = self.scorer(version).embed(events)
        label_of = dict(zip(labels["user_id"], labels["label"].astype(int)))
        result = (list(ids), emb, np.array([label_of[u] for u in ids], dtype=int))
        with self._lock:
            self._refs[version] = result
        return result

    # ------------------------------------------------------------------ queue and cases
    def queue(self, *, statuses: Sequence[str] = ("open", "claimed", "escalated"), min_risk: float = 0.0,
              max_risk: float = 1.0, event_types: Sequence[str] = (), since=None, until=None,
              sort: str = "risk") -> pd.DataFrame:
        """Open cases, riskiest first, with what an analyst needs to pick one."""
        cases = self.store.cases()
        columns = ["case_id", "user_id", "risk", "top_reason", "tags", "age_days", "status", "assignee",
                   "why", "model_version", "opened_at", "version"]
        if cases.empty:
            return pd.DataFrame(columns=columns)
        cases = cases[cases["status"].isin(list(statuses))].copy()
        cases["risk"] = cases["score"].astype(float)
        cases = cases[(cases["risk"] >= min_risk) & (cases["risk"] <= max_risk)]
        if since is not None:
            cases = cases[cases["opened_at"] >= pd.Timestamp(since)]
        if until is not None:
            cases = cases[cases["opened_at"] <= pd.Timestamp(until)]
        summary = self.store.users()
        summary = summary[summary["user_id"].isin(cases["user_id"])]
        types = {u: set(t) for u, t in zip(summary["user_id"], summary["event_types"])}
        if event_types:
            wanted = set(event_types)
            cases = cases[cases["user_id"].map(lambda u: bool(wanted & types.get(u, set())))]
        first = dict(zip(summary["user_id"], summary["first_ts"]))
        last = dict(zip(summary["user_id"], summary["last_ts"]))
        cases["age_days"] = [
            round((pd.Timestamp(last[u]) - pd.Timestamp(first[u])).total_seconds() / 86400, 1) if u in first else None
            for u in cases["user_id"]
        ]
        cases["tags"] = [_tags(types.get(u, set())) for u in cases["user_id"]]
        order = {"risk": ("risk", False), "age": ("age_days", True), "opened": ("opened_at", False)}
        if sort not in order:
            raise ValueError(f"sort={sort!r}: expected one of {sorted(order)}")
        by, ascending = order[sort]
        return cases.sort_values(by, ascending=ascending)[columns].reset_index(drop=True)

    def claim(self, case_id: int, analyst: str) -> bool:
        case = self.store.case(case_id)
        if case is None:
            raise LookupError(f"no case {case_id}")
        if case["status"] not in ("open", "escalated") and case.get("assignee") not in (None, analyst):
            return False
        ok = self.store.update_case(case_id, expected_version=case["version"], status="claimed", assignee=analyst)
        if ok:
            self.store.add_audit(analyst, "claim", user_id=case["user_id"], case_id=case_id,
                                 old=case["status"], new="claimed")
        return ok

    def next_case(self, analyst: str | None = None, after_case_id: int | None = None) -> int | None:
        """The riskiest open case nobody else has claimed (skipping `after_case_id`)."""
        queue = self.queue(statuses=("open", "claimed"))
        if queue.empty:
            return None
        mine_or_free = queue["assignee"].isna() | (queue["assignee"] == analyst)
        queue = queue[mine_or_free & (queue["case_id"] != after_case_id)]
        return None if queue.empty else int(queue.iloc[0]["case_id"])

    def case(self, user_id: str, *, fresh: bool = False) -> CaseView:
        """Everything the case page shows about one user."""
        version = self.current_version()
        timeline, history = self.model_window(user_id)
        exp = self.explanation(user_id, version=version, fresh=fresh) if version else None
        if exp is not None:
            timeline = timeline.assign(
                risk=np.asarray(exp.risk_history, dtype=float),
                surprise=np.asarray(exp.surprise, dtype=float),
                attribution=np.asarray(exp.event_attribution, dtype=float),
            )
        cases = self.store.cases()
        user_cases = cases[cases["user_id"] == user_id].sort_values("opened_at") if not cases.empty else cases
        case = user_cases.iloc[-1].to_dict() if len(user_cases) else None
        labels = self.store.label_history(user_id)
        return CaseView(
            user_id=user_id,
            header=self._header(timeline, history),
            timeline=timeline,
            explanation=exp,
            model_version=version,
            risk=float(exp.risk) if exp is not None else None,
            case=case,
            labels=labels,
            audit=self.store.audit(user_id),
            neighbours=self.neighbours(user_id) if version else pd.DataFrame(),
            ground_truth=_ground_truth(timeline) if self.has_ground_truth() else None,
        )

    def has_ground_truth(self) -> bool:
        """True when the events are synthetic and carry planted-pattern marks (demo reveal)."""
        if self._synthetic is None:
            self._synthetic = self.store.has_planted_events()
        return self._synthetic

    def _header(self, window: pd.DataFrame, history: pd.DataFrame) -> dict:
        full = pd.concat([history, window], ignore_index=True) if len(history) else window
        money = full["amount"].fillna(0.0)
        payments = full["event_type"].eq("payment")
        return {
            "events": int(len(full)),
            "events_in_model_window": int(len(window)),
            "first_seen": full["ts"].min(),
            "last_seen": full["ts"].max(),
            "account_age_days": round((full["ts"].max() - full["ts"].min()).total_seconds() / 86400, 1),
            "devices": int(full["device_id"].nunique()),
            "ips": int(full["ip"].nunique()),
            "countries": sorted(full["country"].dropna().unique().tolist()),
            "payments": int(payments.sum()),
            "paid_total": round(float(money[payments].sum()), 2),
            "refunds": int(full["event_type"].isin(["refund", "refund_request"]).sum()),
        }

    def decide(self, user_id: str, decision: str, *, analyst: str, reason_code: str, quality: str,
               note: str, case_id: int | None = None, expected_version: int | None = None) -> Decision:
        """Record an analyst's decision: a label row (not for escalate), an audit row, the case update.

        All three are written in one transaction by the store. When `expected_version` is given and
        the case changed since (another analyst decided it), raises ConflictError and writes nothing.
        """
        if decision not in DECISIONS:
            raise ValueError(f"decision={decision!r}: expected one of {sorted(DECISIONS)}")
        if not (note or "").strip():
            raise ValueError("note: a note is required to record a decision")
        if not (analyst or "").strip():
            raise ValueError("analyst: the analyst's name is required")
        if reason_code not in REASON_CODES:
            raise ValueError(f"reason_code={reason_code!r}: expected one of {list(REASON_CODES)}")
        if quality not in ALERT_QUALITY:
            raise ValueError(f"quality={quality!r}: expected one of {list(ALERT_QUALITY)}")
        timeline = self.store.timeline(user_id, limit=1)
        if timeline.empty:
            raise LookupError(f"user {user_id!r} has no events")
        label = DECISIONS[decision]
        result = self.store.record_decision(
            user_id=user_id,
            label=label,
            as_of=timeline["ts"].iloc[-1],
            analyst=analyst,
            reason=reason_code,
            note=note.strip(),
            quality=quality,
            decision=decision,
            case_id=case_id,
            expected_version=expected_version,
            model_version=self.current_version(),
        )
        if result is None:
            raise ConflictError(f"case {case_id} was changed by someone else; reload it (your note was not lost)",
                                note=note.strip(), case=self.store.case(case_id) if case_id is not None else None)
        return Decision(label_id=result, case_id=case_id, user_id=user_id, decision=decision,
                        next_case_id=self.next_case(analyst, after_case_id=case_id))

    # ------------------------------------------------------------------ second review (analyst/review.py)
    def second_reviews_due(self, analyst: str) -> pd.DataFrame:
        """Blind second reviews `analyst` may do (nothing of the first decision); see analyst/review.py."""
        from analyst import review
        return review.due(self, analyst)

    def blind_case(self, case_id: int, reviewer: str) -> CaseView:
        """A decided case without its labels, audit and decision fields, for a blind second review."""
        from analyst import review
        return review.blind_case(self, case_id, reviewer)

    def second_review(self, case_id: int, decision: str, *, reviewer: str, reason_code: str, note: str):
        """Record a blind second review (a `reviews` row, not a label) -> review.Review."""
        from analyst import review
        return review.second_review(self, case_id, decision, reviewer=reviewer, reason_code=reason_code, note=note)

    def agreement(self, threshold: float = 0.5):
        """Cohen's kappa per analyst pair and analyst vs the current model -> review.Agreement."""
        from analyst import review
        return review.agreement(self, threshold)

    def disagreements(self, *, include_adjudicated: bool = False) -> pd.DataFrame:
        """Second reviews that disagree with the first decision and await adjudication."""
        from analyst import review
        return review.disagreements(self, include_adjudicated=include_adjudicated)

    def adjudicate(self, review_id: int, decision: str, *, adjudicator: str, reason_code: str, note: str):
        """A third analyst's final label of a disagreement (a new label row) -> review.Adjudication."""
        from analyst import review
        return review.adjudicate(self, review_id, decision, adjudicator=adjudicator, reason_code=reason_code,
                                 note=note)

    # ------------------------------------------------------------------ labels
    def label_history(self) -> pd.DataFrame:
        return self.store.label_history()

    def audit(self, user_id: str | None = None) -> pd.DataFrame:
        return self.store.audit(user_id)

    def export_labels(self, path: str | Path, fmt: str | None = None) -> Path:
        """Write the full label history (every decision, latest last) as CSV or Parquet."""
        path = Path(path)
        fmt = (fmt or path.suffix.lstrip(".") or "csv").lower()
        history = self.store.label_history()
        if fmt == "csv":
            history.to_csv(path, index=False)
        elif fmt == "parquet":
            history.to_parquet(path, index=False)
        else:
            raise ValueError(f"format {fmt!r}: expected csv or parquet")
        return path

    # ------------------------------------------------------------------ background jobs
    def start_retrain(self, analyst: str, *, config=None) -> Job:
        """Retrain from the labels in a background thread; the new version stays a candidate."""
        job = Job(job_id=uuid.uuid4().hex[:8], kind="retrain", started_at=time.time())
        self._jobs[job.job_id] = job

        def report(fraction: float, message: str) -> None:
            job.progress, job.message = float(fraction), message

        def run() -> None:
            try:
                version = self.train(config=config, analyst=analyst, progress=False,
                                     promote_if_first=True, on_progress=report)
                job.result = {"version": version}
                job.message = f"trained {version} (candidate)"
            except Exception as exc:  # shown to the user as one line
                job.error = f"{type(exc).__name__}: {exc}"
            finally:
                job.done = True

        threading.Thread(target=run, name=f"sleuth-retrain-{job.job_id}", daemon=True).start()
        return job

    def job(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)


def _tags(types: set[str]) -> list[str]:
    """Short pattern-like tags from the event types a user has (cheap, for the queue)."""
    rules = {
        "account change": {"password_change", "address_change", "payment_method_change"},
        "refunds": {"refund", "refund_request"},
        "reviews": {"review"},
        "promo": {"coupon_redeem"},
    }
    return [tag for tag, needed in rules.items() if types & needed]


def _ground_truth(timeline: pd.DataFrame) -> dict:
    """Synthetic ground truth carried in `attrs` ({"planted": pattern}) of the window's events."""
    planted: list[int] = []
    patterns: set[str] = set()
    for i, raw in enumerate(timeline["attrs"]):
        if not isinstance(raw, str) or not raw:
            continue
        pattern = json.loads(raw).get("planted")
        if pattern:
            planted.append(i)
            patterns.add(str(pattern))
    return {"label": int(bool(planted)), "patterns": sorted(patterns), "planted_events": planted}


def _backtest_ids(labels: pd.DataFrame, share: float) -> list[int]:
    """label_ids of the most recent `share` of reviewed labels (analyst / import), held out of a
    retrain for the backtest; none when fewer than BACKTEST_MIN reviewed labels exist."""
    if share <= 0 or "label_id" not in labels.columns:
        return []
    reviewed = labels[labels["source"].isin(REVIEWED_SOURCES)].sort_values("label_id")
    if len(reviewed) < BACKTEST_MIN:
        return []
    n = int(np.ceil(share * len(reviewed)))
    return [int(i) for i in reviewed["label_id"].iloc[-n:]]


def _unseen_by(snapshot: dict, label_ids: pd.Series) -> pd.Series:
    """Mask of the label ids a version did not train on (after its snapshot, or held out)."""
    seen = snapshot.get("max_label_id")
    unseen = label_ids > int(seen) if seen is not None else pd.Series(True, index=label_ids.index)
    return unseen | label_ids.isin(snapshot.get("backtest_label_ids") or [])


def _loads(value) -> dict:
    """A JSON column (dict, JSON text or null) as a dict."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value:
        return json.loads(value)
    return {}


def _jsonable(value):
    """Make numpy scalars / arrays JSON-safe."""
    return json.loads(json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
