"""Use cases shared by the CLI and the Streamlit pages: queue, case, decide, review, train, score.

Plain Python over the store and the models; no streamlit here. The package, bottom to top:

- `records.py`: what use cases return (CaseView, Decision, Job, ModelHandle, ConflictError);
- `demo.py`, `labels.py`, `links.py` (linked accounts), `jobs.py`: small use cases with no model;
- `versions.py`: model versions (load on the configured device, train + register + promote in
  one transaction, promote, roll back, backtest metrics);
- `explanations.py`: the window a model reads, explanations, what-if, neighbours;
- `scoring.py`: score every user, open cases; `cases.py`: queue, claim, case view, decide;
- `review.py`: blind second reviews, agreement, adjudication;
- `rings.py`: ring cases (flagged users linked through small shared values), one decision for
  a ring; `rescoring.py`: after a fraud decision, rescore the linked accounts in the background
  and mark the open cases whose risk rose;
- `export.py`, `ray_scoring.py`: scale-out batch scoring on Ray Data over a Parquet export;
  `stream_sources.py`, `streaming.py`: new events from Kafka or a drop folder, stored exactly
  once, their users rescored and their cases opened or marked (one stream per Workbench);
- this file: `Workbench`, the thin facade one process holds (the app in `resources.py`). It owns
  the `Store` (one DuckDB connection) and binds ONE model version per use case: a case view,
  its explanation, what-if and neighbours all come from the version it started with. Every call
  that writes checks the caller's role first (analyst/access.py): `analyst=` takes an `Actor`
  (the app passes the signed-in one) or a plain name, which is a local operator (CLI, scripts).

Nothing here imports a module above it; `tests/test_layers.py` keeps that true.
"""
from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import pandas as pd

from analyst.access import Actor, require
from analyst.config import Settings
from analyst.service import labels as label_cases
from analyst.service import links as link_cases
from analyst.service import rescoring
from analyst.service import rings as ring_cases
from analyst.service.cases import Cases
from analyst.service.explanations import Explanations
from analyst.service.jobs import Jobs
from analyst.service.export import DEFAULT_PARTITIONS, export_events
from analyst.service.records import CaseView, ConflictError, Decision, Job, ModelHandle, ProgressFn
from analyst.service.review import Reviews
from analyst.service.rings import Ring, RingDecision
from analyst.service.scoring import DEFAULT_ALERT_BUDGET, score_all, score_on_ray
from analyst.service.streaming import Streamer, StreamWorker
from analyst.service.versions import BACKTEST_MIN, BACKTEST_SHARE, ModelRegistry
from analyst.store import Store
from analyst.vocab import ALERT_QUALITY, DECISIONS, OPEN_STATUSES, REASON_CODES

if TYPE_CHECKING:
    from analyst.sampling import QueueMix

__all__ = [
    "ALERT_QUALITY", "BACKTEST_MIN", "BACKTEST_SHARE", "DECISIONS", "DEFAULT_ALERT_BUDGET", "REASON_CODES",
    "Actor", "CaseView", "ConflictError", "Decision", "Job", "ModelHandle", "Ring", "RingDecision", "Workbench",
]
Who = Actor | str   # the caller of a writing use case (see the module docstring)

JOB_WAIT_ON_CLOSE_S = 120.0   # close() lets a running rescore finish before the store closes


class Workbench:
    """The application's use cases; thread-safe for the Streamlit server's session threads."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store if store is not None else Store(settings.db_path)
        self.versions = ModelRegistry(settings, self.store)
        self.explanations = Explanations(self.store)
        self.cases = Cases(self.store, self.explanations)
        self.reviews = Reviews(self.store, settings.second_review_share, self.case, self.current_version)
        self.jobs = Jobs()
        self._rescore_lock = threading.Lock()   # one linked rescore at a time (they share the tables)
        self._stream: StreamWorker | None = None
        self.stream_error: str | None = None     # why the configured stream could not start

    def close(self) -> None:
        self.stop_stream()
        self.jobs.wait(JOB_WAIT_ON_CLOSE_S)
        self.store.close()

    def __enter__(self) -> "Workbench":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ access
    def actor(self, who: Who) -> Actor:
        """`who` as an Actor: an Actor as given, a plain name as a local operator (admin
        unless SLEUTH_ROLES maps it; see analyst/access.py)."""
        if isinstance(who, Actor):
            return who
        name = str(who or "").strip()
        if not name:
            raise PermissionError("no identity given: sign in (or name the local operator with SLEUTH_ANALYST)")
        return self.settings.roles.local(name)

    def allowed(self, who: Who, role: str, action: str) -> str:
        """The name to record for `who` if it has `role`; PermissionError (nothing written) if not."""
        actor = self.actor(who)
        require(actor, role, action)
        return actor.name

    # ------------------------------------------------------------------ models
    def current_version(self) -> str | None:
        return self.versions.current_version()

    def model(self, version: str | None = None) -> ModelHandle:
        """A loaded model version (default: current) to pass to the calls below."""
        return self.versions.handle(version)

    def scorer(self, version: str | None = None):
        return self.versions.scorer(version)

    def train(self, *, config=None, analyst: Who | None = None, progress: bool = True,
              promote_if_first: bool = True, on_progress: ProgressFn | None = None,
              backtest_share: float = BACKTEST_SHARE) -> str:
        """A new model version (see `ModelRegistry.train`)."""
        name = self.allowed(analyst or self.settings.local_user, "admin", "train a model")
        return self.versions.train(config=config, analyst=name, progress=progress,
                                   promote_if_first=promote_if_first, on_progress=on_progress,
                                   backtest_share=backtest_share)

    def promote(self, version: str, analyst: Who) -> None:
        self.versions.promote(version, self.allowed(analyst, "admin", "promote a model"))

    def rollback(self, analyst: Who) -> str:
        return self.versions.rollback(self.allowed(analyst, "admin", "roll back the model"))

    def rollback_target(self) -> str | None:
        """The version a rollback would make current (the latest retired one), or None."""
        return self.store.previous_model()

    def models(self) -> pd.DataFrame:
        return self.store.models()

    def model_metrics(self, version: str, ks: Sequence[int] = (10, 50, 100), *,
                      compare_with: str | None = None) -> dict:
        return self.versions.model_metrics(version, ks, compare_with=compare_with)

    # ------------------------------------------------------------------ scoring
    def score(self, *, version: str | None = None, budget: int | None = DEFAULT_ALERT_BUDGET,
              top_pct: float | None = None, explain_cases: bool = True, progress: bool = False,
              on_progress: ProgressFn | None = None, mix: QueueMix | None = None, by: Who | None = None) -> dict:
        """Score every user with a version and open cases (see `scoring.score_all`); `by`: who
        asks (an admin; default the local operator)."""
        self.allowed(by or self.settings.local_user, "admin", "score users and open cases")
        return score_all(self.store, self.explanations, self.model(version), budget=budget, top_pct=top_pct,
                         explain_cases=explain_cases, progress=progress, on_progress=on_progress, mix=mix)

    def score_on_ray(self, events_dir: str | Path, out_dir: str | Path, *, version: str | None = None,
                     actors: int = 2, address: str | None = None, budget: int | None = DEFAULT_ALERT_BUDGET,
                     top_pct: float | None = None, explain_cases: bool = True, mix: QueueMix | None = None,
                     by: Who | None = None) -> dict:
        """Score an export on Ray Data, store the scores and open cases (`scoring.score_on_ray`);
        `by`: an admin (default the local operator)."""
        self.allowed(by or self.settings.local_user, "admin", "score users and open cases")
        model = self.model(version)
        path = self.store.model(model.version)["path"]
        return score_on_ray(self.store, self.explanations, model, path, str(events_dir), str(out_dir),
                            actors=actors, address=address, device=self.settings.device, budget=budget,
                            top_pct=top_pct, explain_cases=explain_cases, mix=mix)

    def export_events(self, out_dir: str | Path, *, partitions: int = DEFAULT_PARTITIONS,
                      signals: bool = True, by: Who | None = None) -> dict:
        """Every user's events as partitioned Parquet (`export.export_events`); an admin's."""
        self.allowed(by or self.settings.local_user, "admin", "export events")
        return export_events(self.store, out_dir, partitions=partitions, signals=signals)

    # ------------------------------------------------------------------ streaming
    def _current_model_or_none(self) -> ModelHandle | None:
        return self.model() if self.current_version() is not None else None

    def streamer(self, *, open_at: float | None = None, explain_cases: bool = True) -> Streamer:
        """Stores streamed batches and rescores their users by the current model (streaming.py)."""
        return Streamer(self.store, self.explanations, self._current_model_or_none, open_at=open_at,
                        explain_cases=explain_cases)

    def stream_worker(self, source: str, *, open_at: float | None = None, explain_cases: bool = True,
                      on_batch=None, max_messages: int | None = None, by: Who | None = None) -> StreamWorker:
        """A worker reading `source` (kafka://HOST:PORT/TOPIC or a drop folder) into this store;
        `run()` it in the foreground (the CLI) or use `start_stream`. An admin's."""
        self.allowed(by or self.settings.local_user, "admin", "stream events into the store")
        return StreamWorker(self.streamer(open_at=open_at, explain_cases=explain_cases), source,
                            on_batch=on_batch, max_messages=max_messages)

    def start_stream(self, source: str, *, open_at: float | None = None, by: Who | None = None) -> dict:
        """Stream `source` in a background thread of this process (one stream per Workbench;
        the app's when SLEUTH_STREAM is set). Returns its status."""
        if self._stream is not None:
            raise RuntimeError(f"already streaming {self._stream.status.source}: one stream per store")
        try:
            self._stream = self.stream_worker(source, open_at=open_at, by=by).start()
        except Exception as exc:
            self.stream_error = f"{source}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            raise
        self.stream_error = None
        return self._stream.snapshot()

    def stream_status(self) -> dict | None:
        """The running stream's counts, last batch time and last error; None without a stream."""
        return None if self._stream is None else self._stream.snapshot()

    def stop_stream(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream = None

    def risk_changes(self, since=None) -> pd.DataFrame:
        """Open cases whose risk changed with streamed events (audit `risk_changed`) after
        `since`: audit_id, at, user_id, case_id, old, new; newest first."""
        marks = self.store.audit_actions(rescoring.STREAM_ACTION)
        if since is not None and not marks.empty:
            marks = marks[marks["at"] > pd.Timestamp(since)]
        marks = marks.sort_values("audit_id", ascending=False)
        return pd.DataFrame({"audit_id": marks["audit_id"].astype(int), "at": marks["at"],
                             "user_id": marks["user_id"].astype(str), "case_id": marks["case_id"].astype(int),
                             "old": marks["old"].astype(float), "new": marks["new"].astype(float)})

    def latest_risk(self, user_id: str) -> float | None:
        """The user's most recent score by the current model (None if never scored)."""
        version = self.current_version()
        if version is None:
            return None
        row = self.store.latest_scores(version, user_ids=[str(user_id)])
        return None if row.empty else float(row["score"].iloc[0])

    # ------------------------------------------------------------------ explanations
    def explanation(self, user_id: str, *, version: str | None = None, fresh: bool = False, until=None,
                    model: ModelHandle | None = None):
        return self.explanations.explanation(model or self.model(version), user_id, fresh=fresh, until=until)

    def model_window(self, user_id: str, until=None, *, model: ModelHandle | None = None,
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
        return self.explanations.model_window(model or self.model(), user_id, until)

    def what_if(self, user_id: str, remove: Sequence[int], *, model: ModelHandle | None = None) -> float:
        return self.explanations.what_if(model or self.model(), user_id, remove)

    def neighbours(self, user_id: str, k: int = 5, *, model: ModelHandle | None = None) -> pd.DataFrame:
        return self.explanations.neighbours(model or self.model(), user_id, k)

    # ------------------------------------------------------------------ queue and cases
    def queue(self, *, statuses: Sequence[str] = OPEN_STATUSES, min_risk: float = 0.0, max_risk: float = 1.0,
              event_types: Sequence[str] = (), since=None, until=None, sort: str = "risk",
              group_rings: bool = False) -> pd.DataFrame:
        """Cases (see `Cases.queue`) with their ring (`ring_id`, `ring_size`), `risk_now` and the
        tag "risk rose after a linked decision"; `group_rings`: one row per ring."""
        queue = self.cases.queue(statuses=statuses, min_risk=min_risk, max_risk=max_risk,
                                 event_types=event_types, since=since, until=until, sort=sort)
        queue = ring_cases.with_rings(queue, self.rings())
        queue = rescoring.with_rises(queue, rescoring.risk_rises(self.store))
        return ring_cases.group_rings(queue) if group_rings else queue

    def event_types(self) -> list[str]:
        """The event types present in the store (queue filters)."""
        return self.store.event_types()

    def claim(self, case_id: int, analyst: Who) -> bool:
        return self.cases.claim(case_id, self.allowed(analyst, "analyst", "claim a case"))

    def next_case(self, analyst: str | None = None, after_case_id: int | None = None) -> int | None:
        return self.cases.next_case(analyst, after_case_id)

    def user_of_case(self, case_id: int | None) -> str | None:
        return self.cases.user_of_case(case_id)

    def case(self, user_id: str, *, fresh: bool = False, model: ModelHandle | None = None) -> CaseView:
        """Everything the case page shows about one user, by one model version (default: the
        current one, bound once for the whole view)."""
        if model is None and self.current_version() is not None:
            model = self.model()
        return self.cases.case(model, user_id, fresh=fresh)

    def has_ground_truth(self) -> bool:
        return self.cases.has_ground_truth()

    def decide(self, user_id: str, decision: str, *, analyst: Who, reason_code: str, quality: str,
               note: str, case_id: int | None = None, expected_version: int | None = None) -> Decision:
        """Record an analyst's decision (see `Cases.decide`). A confirmed fraud then rescores
        the accounts linked to the user in the background (`Decision.rescore_job`)."""
        analyst = self.allowed(analyst, "analyst", "decide a case")
        result = self.cases.decide(user_id, decision, analyst=analyst, reason_code=reason_code, quality=quality,
                                   note=note, case_id=case_id, expected_version=expected_version,
                                   model_version=self.current_version())
        if decision == "fraud" and self.current_version() is not None:
            job = self.start_linked_rescore([user_id], decision, analyst=analyst)
            result = replace(result, rescore_job=job.job_id)
        return result

    # ------------------------------------------------------------------ second review
    def second_reviews_due(self, analyst: str) -> pd.DataFrame:
        """Blind second reviews `analyst` may do (nothing of the first decision)."""
        return self.reviews.due(analyst)

    def blind_for(self, analyst: str | None, case: dict | None) -> bool:
        """Whether `analyst` has an open blind second review of `case`."""
        return self.reviews.blind_for(analyst, case)

    def blind_case(self, case_id: int, reviewer: str) -> CaseView:
        """A decided case without its labels, audit and decision fields, for a blind second review."""
        return self.reviews.blind_case(case_id, reviewer)

    def second_review(self, case_id: int, decision: str, *, reviewer: Who, reason_code: str, note: str):
        """Record a blind second review (a `reviews` row, not a label) -> review.Review."""
        reviewer = self.allowed(reviewer, "reviewer", "record a second review")
        return self.reviews.second_review(case_id, decision, reviewer=reviewer, reason_code=reason_code,
                                          note=note)

    def agreement(self, threshold: float = 0.5):
        """Cohen's kappa per analyst pair and analyst vs the current model -> review.Agreement."""
        return self.reviews.agreement(threshold)

    def disagreements(self, *, include_adjudicated: bool = False) -> pd.DataFrame:
        """Second reviews that disagree with the first decision and await adjudication."""
        return self.reviews.disagreements(include_adjudicated=include_adjudicated)

    def adjudicate(self, review_id: int, decision: str, *, adjudicator: Who, reason_code: str, note: str):
        """A third analyst's final label of a disagreement (a new label row) -> review.Adjudication."""
        adjudicator = self.allowed(adjudicator, "reviewer", "adjudicate a disagreement")
        return self.reviews.adjudicate(review_id, decision, adjudicator=adjudicator, reason_code=reason_code,
                                       note=note)

    # ------------------------------------------------------------------ linked accounts
    def links(self, user_id: str, depth: int = 1, max_users: int = link_cases.DEFAULT_MAX_USERS, *,
              viewer: str | None = None) -> dict:
        """Who shares a device, IP, address, payment method or item with `user_id`, riskiest
        first, one or two hops out (see `links.links`); LookupError for an unknown user. With
        `viewer`, the decisions of users in their open blind reviews are left out (None)."""
        doc = link_cases.links(self.store, user_id, depth=depth, max_users=max_users)
        return link_cases.hide_decisions(doc, self.blind_users(viewer))

    def refresh_links(self) -> int:
        """Bring the link tables up to date with the stored events (ingest, train and score do)."""
        return self.store.refresh_links()

    def entity(self, kind: str, value: str, max_users: int = link_cases.ENTITY_MAX_USERS, *,
               viewer: str | None = None) -> dict:
        """Everyone on one entity value, its use per day and fraud share (see `links.entity`);
        with `viewer`, no label or decision of the users in their open blind reviews."""
        doc = link_cases.entity(self.store, kind, value, max_users=max_users)
        return link_cases.hide_decisions(doc, self.blind_users(viewer))

    # ------------------------------------------------------------------ rings
    def rings(self) -> list[Ring]:
        """Flagged users linked through small shared values, riskiest ring first (rings.py)."""
        return ring_cases.rings(self.store)

    def ring_of(self, user_id: str) -> Ring | None:
        return ring_cases.ring_of(self.store, user_id)

    def decide_ring(self, ring: Ring, decision: str, *, analyst: Who, reason_code: str, quality: str,
                    note: str) -> RingDecision:
        """One decision and rationale for a ring as read (a label and audit row per member;
        conflicts reported); a fraud decision rescores the ring's linked accounts in the background."""
        analyst = self.allowed(analyst, "analyst", "decide a ring")
        result = ring_cases.decide_ring(self.cases, ring, decision, analyst=analyst, reason_code=reason_code,
                                        quality=quality, note=note, model_version=self.current_version())
        if decision == "fraud" and result.decided and self.current_version() is not None:
            job = self.start_linked_rescore([d.user_id for d in result.decided], decision, analyst=analyst)
            result = replace(result, rescore_job=job.job_id)
        return result

    def start_linked_rescore(self, user_ids: Sequence[str], decision: str | None = None, *,
                             analyst: str = "system") -> Job:
        """Rescore the accounts linked to `user_ids` with the current model, in a background
        thread (rescoring.rescore_linked); the job's result lists the cases whose risk rose."""
        model = self.model()

        def work(report: ProgressFn) -> dict:
            with self._rescore_lock:
                return rescoring.rescore_linked(self.store, model, list(user_ids), decision=decision,
                                                actor=analyst, on_progress=report)

        return self.jobs.start("rescore", work, lambda r: f"rescored {r['rescored']} linked account(s); "
                                                          f"{len(r['rose'])} case(s) rose")

    # ------------------------------------------------------------------ data in
    def ingest_events(self, paths, *, fmt: str | None = None, mapping: dict[str, str] | None = None,
                      by: Who | None = None) -> list:
        """Validate and load event files (analyst/ingest.py) -> one IngestReport per file; `by`
        (an admin, default the local operator) is recorded on each file's ingest row."""
        from analyst.ingest import ingest_events
        name = self.allowed(by or self.settings.local_user, "admin", "ingest events")
        reports = ingest_events(self.store, paths, fmt=fmt, mapping=mapping, by=name)
        self.store.refresh_signals()   # new events get their signals now (incremental)
        self.store.refresh_links()     # ... and their shared entities
        return reports

    def ingest_labels(self, path, *, fmt: str | None = None, by: Who | None = None):
        """Validate and load a labels file (analyst/ingest.py) -> IngestReport. The rows are
        imports (source import/synthetic, never an analyst's decision); `by` (an admin, default
        the local operator) is recorded as the importer on the ingest row and in the audit."""
        from analyst.ingest import ingest_labels
        name = self.allowed(by or self.settings.local_user, "admin", "import labels")
        report = ingest_labels(self.store, path, fmt=fmt, by=name)
        self.store.refresh_signals()   # the entity fraud shares the labels change
        return report

    def counts(self) -> dict[str, int]:
        """Rows per table (`users` = distinct users with events)."""
        return self.store.counts()

    # ------------------------------------------------------------------ labels
    def blind_users(self, viewer: str | None) -> set[str]:
        """Users whose first decision `viewer` may not see yet: their case waits for `viewer`'s
        blind second review (empty for no viewer)."""
        if not (viewer or "").strip():
            return set()
        return set(self.reviews.due(viewer)["user_id"].astype(str))

    def label_history(self, viewer: str | None = None) -> pd.DataFrame:
        """Every label row; with `viewer`, without the users of their open blind reviews."""
        return label_cases.without_users(self.store.label_history(), self.blind_users(viewer))

    def audit(self, user_id: str | None = None, viewer: str | None = None) -> pd.DataFrame:
        """Audit records (of one user); with `viewer`, without the users of their open blind reviews."""
        return label_cases.without_users(self.store.audit(user_id), self.blind_users(viewer))

    def export_labels(self, path: str | Path, fmt: str | None = None, viewer: str | None = None) -> Path:
        """Write the label history (every decision, latest last) as CSV or Parquet; with
        `viewer`, without the users of their open blind reviews (blind means blind in files too)."""
        return label_cases.export_labels(self.store, path, fmt, hidden=self.blind_users(viewer))

    # ------------------------------------------------------------------ background jobs
    def start_retrain(self, analyst: Who, *, config=None) -> Job:
        """Retrain from the labels in a background thread; the new version stays a candidate."""
        actor = self.actor(analyst)
        require(actor, "admin", "retrain the model")   # refused before any thread starts

        def work(report: ProgressFn) -> dict:
            return {"version": self.train(config=config, analyst=actor, progress=False,
                                          promote_if_first=True, on_progress=report)}
        return self.jobs.start("retrain", work, lambda result: f"trained {result['version']} (candidate)")

    def job(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)
