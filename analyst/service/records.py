"""What the use cases hand back: frozen records, the model handle, the conflict error.

The bottom of the service package: every use-case module imports this, it imports none of them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd

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
class ModelHandle:
    """One loaded model version, bound for the length of a use case: a case view, its
    explanation, what-if and neighbours all read the same version, even when someone promotes
    another one meanwhile."""
    version: str
    scorer: Any  # models.scorer.Scorer (kept loose so this module needs no torch)

    @property
    def max_events(self) -> int:
        """How many events the model reads at once (its context window)."""
        return int(self.scorer.max_events)

    @property
    def reads_signals(self) -> bool:
        """Whether the model reads the store's velocity / entity signal columns."""
        return bool(getattr(self.scorer, "signal_columns", ()))


@dataclass(frozen=True)
class CaseView:
    """Everything the case page shows about one user, made by one model version."""
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
    """A recorded analyst decision and the case to go to next."""
    label_id: int | None
    case_id: int | None
    user_id: str
    decision: str
    next_case_id: int | None
    rescore_job: str | None = None   # the background rescore of linked accounts (a fraud decision)


@dataclass
class Job:
    """A background job (retrain / rescore) with progress the UI polls (mutable on purpose:
    its thread writes progress, pages read it)."""
    job_id: str
    kind: str
    started_at: float
    progress: float = 0.0
    message: str = "starting"
    done: bool = False
    error: str | None = None
    result: dict = field(default_factory=dict)
