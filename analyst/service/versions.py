"""Model versions: load (cached, on the configured device), train + register + promote in one
store transaction, promote, roll back, and how a version ranks the cases it never saw.

Training writes the version's files to a hidden `.partial` directory and renames it into place
as the last step of the one transaction that registers it (with its audit rows, and the promotion
of a store's first model), so the current model never changes until the commit. What a killed
train leaves (see `model_files`) is removed by the next train of the same store.
"""
from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from typing import Sequence

import numpy as np
import pandas as pd

from analyst.config import Settings
from analyst.service import model_files
from analyst.service.records import ModelHandle, ProgressFn
from analyst.store import Store
from analyst.vocab import REVIEWED_SOURCES

BACKTEST_SHARE = 0.2   # most recent share of reviewed labels a retrain holds out for the backtest
BACKTEST_MIN = 10      # fewer reviewed labels than this: no backtest hold-out (too few to measure)


def new_version_name() -> str:
    """v<UTC time>-<4 hex>: sortable by creation, unique across processes."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    return "v" + now.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]


class ModelRegistry:
    """The model versions of one store; loaded scorers are cached per process (thread-safe)."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._scorers: dict[str, object] = {}
        self._metrics: dict[tuple, dict] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ loading
    def current_version(self) -> str | None:
        current = self.store.current_model()
        return current["version"] if current else None

    def handle(self, version: str | None = None) -> ModelHandle:
        """A loaded version (default: the current one) bound for one use case."""
        version = version or self.current_version()
        if version is None:
            raise LookupError("no model yet: run `sleuth train` (or retrain from the Model page)")
        return ModelHandle(version=version, scorer=self.scorer(version))

    def scorer(self, version: str | None = None):
        """The loaded Scorer of a version (default: current), on `Settings.device`."""
        from models.scorer import Scorer

        version = version or self.current_version()
        if version is None:
            raise LookupError("no model yet: run `sleuth train` (or retrain from the Model page)")
        with self._lock:
            if version not in self._scorers:
                row = self.store.model(version)
                if row is None:
                    raise LookupError(f"no model version {version!r}")
                self._scorers[version] = Scorer.from_pretrained(row["path"], device=self.settings.device)
            return self._scorers[version]

    # ------------------------------------------------------------------ training
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
        until someone promotes them. `Settings.device` (SLEUTH_DEVICE) other than auto overrides
        the config's device.
        """
        if not 0.0 <= backtest_share < 1.0:
            raise ValueError(f"backtest_share={backtest_share!r}: expected a share in [0, 1)")
        from models.scorer import Scorer, ScorerConfig

        config = config or ScorerConfig()
        if self.settings.device != "auto":
            config = replace(config, device=self.settings.device)
        self.sweep_orphans()
        if on_progress:
            on_progress(0.02, "loading events and labels")
        if config.tokenizer.use_signals:   # incremental: costs the events / labels since the last one
            if on_progress:
                on_progress(0.03, "refreshing velocity and entity signals")
            self.store.refresh_signals()
        self.store.refresh_links()   # incremental too; the links follow the events trained on
        events = self.store.events(signals=config.tokenizer.use_signals)
        if events.empty:
            raise ValueError(f"the store {self.settings.db_path} holds no events: run `sleuth ingest` first")
        labels = self._training_labels()
        held = backtest_ids(labels, backtest_share)
        labels = labels[~labels["label_id"].isin(held)].reset_index(drop=True) if held else labels
        version = new_version_name()
        if on_progress:
            on_progress(0.05, f"training on {events['user_id'].nunique():,} users, {len(labels):,} labels")
        t0 = time.perf_counter()
        scorer = Scorer(config).fit(events, labels if len(labels) else None, progress=progress)
        snapshot = {
            "events": int(len(events)), "users": int(events["user_id"].nunique()),
            "labels": int(len(labels)), "positives": int(labels["label"].sum()) if len(labels) else 0,
            "max_label_id": int(labels["label_id"].max()) if len(labels) else None,
            "backtest_label_ids": held,
            "last_event_ts": str(events["ts"].max()), "seconds": round(time.perf_counter() - t0, 1),
        }
        path = self.settings.model_dir / version
        partial = model_files.partial_dir(self.settings.model_dir, version, self.settings.db_path)
        first = promote_if_first and self.current_version() is None
        try:
            scorer.save_pretrained(partial)
            self.store.register_model(
                version, str(path), metrics=_jsonable(dict(getattr(scorer, "fit_info_", {}) or {})),
                status="current" if first else "candidate", created_by=analyst or self.settings.analyst,
                data_snapshot=snapshot, actor=analyst or "system",
                place_files=lambda: partial.rename(path))
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            if path.exists() and self.store.model(version) is None:
                shutil.rmtree(path, ignore_errors=True)   # moved, but the commit failed
            raise
        with self._lock:
            self._scorers[version] = scorer
        if on_progress:
            on_progress(1.0, f"trained {version}")
        return version

    def sweep_orphans(self) -> list[str]:
        """Remove the directories killed trains of this store left; returns their names."""
        registered = set(self.store.models()["version"])
        removed = model_files.sweep_orphans(self.settings.model_dir, self.settings.db_path, registered)
        return [p.name for p in removed]

    def _training_labels(self) -> pd.DataFrame:
        labels = self.store.latest_labels()
        cols = [c for c in ("user_id", "label", "as_of", "split", "source", "label_id") if c in labels.columns]
        return labels[cols].reset_index(drop=True)

    # ------------------------------------------------------------------ promote / roll back
    def promote(self, version: str, analyst: str) -> None:
        """Make `version` current (status change and audit row in one transaction)."""
        self.store.set_model_status(version, "current", actor=analyst, action="promote")

    def rollback(self, analyst: str) -> str:
        """Make the previously current version current again."""
        version = self.store.previous_model()
        if version is None:
            raise LookupError("no earlier version to roll back to")
        self.store.set_model_status(version, "current", actor=analyst, action="rollback")
        return version

    # ------------------------------------------------------------------ backtest metrics
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

        rows = {}
        for v in (version, compare_with):
            if v is not None:
                rows[v] = self.store.model(v)
                if rows[v] is None:
                    raise LookupError(f"no model version {v!r}")
        reviewed = self.store.latest_labels(sources=REVIEWED_SOURCES)
        for v, row in rows.items():
            reviewed = reviewed[unseen_by(row["data_snapshot"] or {}, reviewed["label_id"])]
        counts = self.store.counts()
        key = (version, compare_with, int(counts.get("labels", 0)), len(reviewed))
        with self._lock:
            if key in self._metrics:
                return self._metrics[key]
        out: dict = {"n": int(len(reviewed)), "positives": int(reviewed["label"].sum()) if len(reviewed) else 0}
        if len(reviewed):
            handle = self.handle(version)
            events = self.store.events(user_ids=list(reviewed["user_id"]), signals=handle.reads_signals)
            at = reviewed[["user_id", "as_of"]].reset_index(drop=True)
            score = handle.scorer.predict_proba(events, at=at)[:, 1]
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


def backtest_ids(labels: pd.DataFrame, share: float) -> list[int]:
    """label_ids of the most recent `share` of reviewed labels (analyst / import), held out of a
    retrain for the backtest; none when fewer than BACKTEST_MIN reviewed labels exist."""
    if share <= 0 or "label_id" not in labels.columns:
        return []
    reviewed = labels[labels["source"].isin(REVIEWED_SOURCES)].sort_values("label_id")
    if len(reviewed) < BACKTEST_MIN:
        return []
    n = int(np.ceil(share * len(reviewed)))
    return [int(i) for i in reviewed["label_id"].iloc[-n:]]


def unseen_by(snapshot: dict, label_ids: pd.Series) -> pd.Series:
    """Mask of the label ids a version did not train on (after its snapshot, or held out)."""
    seen = snapshot.get("max_label_id")
    unseen = label_ids > int(seen) if seen is not None else pd.Series(True, index=label_ids.index)
    return unseen | label_ids.isin(snapshot.get("backtest_label_ids") or [])


def _jsonable(value):
    """Make numpy scalars / arrays JSON-safe."""
    return json.loads(json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
