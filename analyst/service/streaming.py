"""Streaming scoring (issue 16): micro-batches of new events stored exactly once, only the users
they touch rescored, their cases opened or marked, in the process that owns the store.

One batch (`Streamer.process`):
1. its events, quarantined rows and source position (Kafka offsets; a file's sha256) are stored
   in ONE transaction, the events appended to the store's unsorted tail (no table rebuild per
   batch), and its users listed as pending a rescore (analyst/store/stream.py);
2. every pending user is rescored by the current model (the model is loaded once and kept; the
   users' windows are read from the store, with the signals brought up to date incrementally and
   each last event reading the entity fraud labels known now, as `sleuth score` does), the
   scores stored (the linked accounts' ranking follows), the users taken off the pending list;
3. a user with an open case whose risk moved by at least `RISE_MIN` gets an audit row
   `risk_changed` (old, new): the queue shows "risk changed with new events" and the new risk,
   and the open case page says so without a reload. A user without a label or an undecided
   case whose risk reaches `open_at` gets a case (why "high_risk", its explanation frozen now).

`open_at` defaults to the risk of the least risky open high-risk case of the current model (a
new user is flagged when it would have made the current queue), or 0.5 with no such case
(decided 2026-12-04; `sleuth stream --open-at` sets it).

`StreamWorker` runs the loop in a thread (the app, `sleuth app --stream SOURCE`) or in the
foreground (`sleuth stream SOURCE`). A failed batch is rolled back and read again from the
stored position after a pause; the error is kept in `status()`.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from analyst.service.explanations import Explanations
from analyst.service.records import ModelHandle
from analyst.service.rescoring import RISE_MIN, STREAM_ACTION
from analyst.service.stream_sources import POLL_S, Batch, open_source
from analyst.store import Store, utcnow
from analyst.vocab import OPEN_STATUSES

DEFAULT_OPEN_AT = 0.5
RETRY_PAUSE_S = 1.0
STREAM_ACTOR = "stream"


@dataclass(frozen=True)
class BatchResult:
    """What one batch did. `latency_ms`: per event whose produce time the source knows, from
    produce to its user's new score stored (cases opened after that are not in it);
    `stored_s` / `scored_s`: the seconds of storing and of rescoring + cases."""
    source: str
    events: int
    rejected: int
    users: int
    rescored: int
    opened: tuple[str, ...] = ()
    changed: tuple[dict, ...] = ()
    stored_s: float = 0.0
    scored_s: float = 0.0
    latency_ms: np.ndarray = field(default_factory=lambda: np.empty(0))


@dataclass(frozen=True)
class Rescore:
    """One rescore of the pending users: how many, whose case opened, the open cases whose risk
    changed, and the wall clock (ms since the epoch) when their new scores were stored."""
    rescored: int = 0
    opened: tuple[str, ...] = ()
    changed: tuple[dict, ...] = ()
    scored_at_ms: float | None = None


class Streamer:
    """Stores batches and rescores their users (see the module docstring)."""

    def __init__(self, store: Store, explanations: Explanations,
                 model: Callable[[], ModelHandle | None], *, open_at: float | None = None,
                 explain_cases: bool = True) -> None:
        if open_at is not None and not 0.0 <= float(open_at) <= 1.0:
            raise ValueError(f"open_at={open_at}: expected a risk in [0, 1]")
        self.store = store
        self.explanations = explanations
        self._model = model
        self.open_at = None if open_at is None else float(open_at)
        self.explain_cases = explain_cases

    def process(self, batch: Batch) -> BatchResult:
        """Store `batch` exactly once, then rescore every pending user."""
        t0 = time.perf_counter()
        self.store.record_ingest(batch.name, batch.sha256, "events", events=batch.events,
                                 rejects=batch.rejects, position=batch.position, append_only=True,
                                 by=STREAM_ACTOR)
        batch.done()
        stored_s = time.perf_counter() - t0
        done = self.rescore_pending()
        scored_ms = done.scored_at_ms if done.scored_at_ms is not None else time.time() * 1000.0
        scored_s = time.perf_counter() - t0 - stored_s
        users = batch.events["user_id"].nunique() if len(batch.events) else 0
        return BatchResult(batch.name, len(batch.events), len(batch.rejects), int(users), done.rescored,
                           done.opened, done.changed, stored_s, scored_s,
                           latency_ms=scored_ms - batch.produced_ms if len(batch.produced_ms) else np.empty(0))

    def rescore_pending(self) -> "Rescore":
        """Rescore the users listed as pending (this batch's, and any a kill left)."""
        pending = self.store.stream_pending()
        model = self._model()
        if pending.empty or model is None:      # no model yet: they stay pending until one exists
            return Rescore()
        marked = pending["since"].max()
        users = sorted(pending["user_id"].astype(str))
        before = self.store.latest_scores(model.version, user_ids=users)
        before = dict(zip(before["user_id"].astype(str), before["score"].astype(float)))
        if model.reads_signals:
            self.store.refresh_signals()
        self.store.refresh_links(append_only=True)
        events = self.store.events(user_ids=users, signals=model.reads_signals, known_at=utcnow())
        scores = model.scorer.score_users(events, progress=False)
        self.store.add_scores(scores, model.version)
        scored_at_ms = time.time() * 1000.0          # the new risks are readable from here on
        self.store.clear_stream_pending(users, marked)
        opened, changed = self._cases(model, scores, before)
        return Rescore(len(scores), opened, changed, scored_at_ms)

    def _cases(self, model: ModelHandle, scores: pd.DataFrame,
               before: dict[str, float]) -> tuple[tuple[str, ...], tuple[dict, ...]]:
        labelled = self.store.labelled_user_ids()
        open_at = self.open_at if self.open_at is not None else self.default_open_at(model.version)
        to_open, changed = [], []
        cases = self.store.latest_cases(scores["user_id"].astype(str).tolist())
        for uid, new in zip(scores["user_id"].astype(str), scores["score"].astype(float)):
            case = cases.get(uid)
            if case is not None and case["status"] in OPEN_STATUSES:
                old = before.get(uid, float(case["score"]))
                if abs(new - old) >= RISE_MIN:
                    self.store.add_audit(STREAM_ACTOR, STREAM_ACTION, user_id=uid, case_id=int(case["case_id"]),
                                         old=f"{old:.4f}", new=f"{new:.4f}",
                                         detail={"model_version": model.version})
                    changed.append({"user_id": uid, "case_id": int(case["case_id"]), "old": old, "new": new})
            elif new >= open_at and uid not in labelled and (case is None or case["status"] == "decided"):
                to_open.append((uid, new))
        if to_open:
            reasons = {}
            for uid, _ in to_open:
                if self.explain_cases:
                    exp = self.explanations.explanation(model, uid)
                    reasons[uid] = exp.reasons[0] if exp.reasons else ""
            self.store.open_cases(pd.DataFrame({
                "user_id": [u for u, _ in to_open], "score": [s for _, s in to_open],
                "why": "high_risk", "top_reason": [reasons.get(u, "") for u, _ in to_open]}), model.version)
        return tuple(u for u, _ in to_open), tuple(changed)

    def default_open_at(self, version: str) -> float:
        """The risk of the least risky open high-risk case of `version` (DEFAULT_OPEN_AT if none)."""
        cases = self.store.cases()
        mine = cases[(cases["model_version"] == version) & (cases["why"] == "high_risk")
                     & cases["status"].isin(OPEN_STATUSES)]
        return float(mine["score"].min()) if len(mine) else DEFAULT_OPEN_AT


@dataclass
class StreamStatus:
    """What a running stream has done (mutable: the worker updates it; `snapshot()` copies)."""
    source: str
    running: bool = False
    batches: int = 0
    events: int = 0
    rejected: int = 0
    rescored: int = 0
    opened: int = 0
    changed: int = 0
    last_batch_at: object = None
    last_error: str | None = None
    failures: int = 0

    def snapshot(self) -> dict:
        return dict(self.__dict__)


class StreamWorker:
    """Polls a source and hands its batches to a `Streamer`, in a thread (`start`) or in the
    caller's (`run`). `on_batch` sees every BatchResult (the CLI prints it, the bench times it)."""

    def __init__(self, streamer: Streamer, source_text: str, *,
                 on_batch: Callable[[BatchResult], None] | None = None,
                 max_messages: int | None = None) -> None:
        self.streamer = streamer
        store = streamer.store
        kwargs = {} if max_messages is None else {"max_messages": max_messages}
        self.source = open_source(source_text, has_ingested=store.has_ingested,
                                  offsets=store.stream_offsets, **kwargs)
        self.status = StreamStatus(self.source.name)
        self._on_batch = on_batch
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> "StreamWorker":
        self._thread = threading.Thread(target=self.run, name="sleuth-stream", daemon=True)
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Ask `run` to return after the batch in hand (safe from a signal handler)."""
        self._stop.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the thread started by `start` and close the source."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.source.close()

    def snapshot(self) -> dict:
        with self._lock:
            return self.status.snapshot()

    def run(self, *, idle_exit_s: float | None = None, max_batches: int | None = None) -> dict:
        """Poll until stopped (or `idle_exit_s` seconds with nothing new, or `max_batches`
        batches); returns the final status."""
        with self._lock:
            self.status.running = True
        idle_since = time.monotonic()
        try:
            self._guarded(self.streamer.rescore_pending)       # what a kill left pending
            while not self._stop.is_set():
                batch = self._guarded(lambda: self.source.poll(POLL_S), rewind=True)
                if batch is None:
                    if idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s:
                        break
                    continue
                result = self._guarded(lambda: self.streamer.process(batch), rewind=True)
                if result is None:
                    continue
                idle_since = time.monotonic()
                self._record(result)
                if max_batches is not None and self.status.batches >= max_batches:
                    break
        finally:
            with self._lock:
                self.status.running = False
        return self.snapshot()

    def _guarded(self, work: Callable, rewind: bool = False):
        """`work()`, or None after recording its error (and re-reading from the stored position)."""
        try:
            return work()
        except Exception as exc:   # a stream keeps going: the batch is read again, the error shown
            with self._lock:
                self.status.last_error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                self.status.failures += 1
            if rewind:
                try:
                    self.source.rewind()
                except Exception:  # the broker is gone too: the next poll reports it
                    pass
            self._stop.wait(RETRY_PAUSE_S)
            return None

    def _record(self, result: BatchResult) -> None:
        with self._lock:
            s = self.status
            s.batches += 1
            s.events += result.events
            s.rejected += result.rejected
            s.rescored += result.rescored
            s.opened += len(result.opened)
            s.changed += len(result.changed)
            s.last_batch_at = utcnow()
            s.last_error = None
        if self._on_batch is not None:
            self._on_batch(result)
