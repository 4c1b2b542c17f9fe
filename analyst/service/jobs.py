"""Background jobs started from the app (retrain): a thread per job, progress the pages poll."""
from __future__ import annotations

import threading
import time
import uuid
from typing import Callable

from analyst.service.records import Job, ProgressFn


class Jobs:
    """The jobs of one process, by id."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}

    def start(self, kind: str, work: Callable[[ProgressFn], dict], done_message: Callable[[dict], str]) -> Job:
        """Run `work(report)` in a daemon thread; its result dict lands in `job.result`, any
        error in `job.error` as one line."""
        job = Job(job_id=uuid.uuid4().hex[:8], kind=kind, started_at=time.time())
        self._jobs[job.job_id] = job

        def report(fraction: float, message: str) -> None:
            job.progress, job.message = float(fraction), message

        def run() -> None:
            try:
                job.result = work(report)
                job.message = done_message(job.result)
            except Exception as exc:  # shown to the user as one line
                job.error = f"{type(exc).__name__}: {exc}"
            finally:
                job.done = True

        threading.Thread(target=run, name=f"sleuth-{kind}-{job.job_id}", daemon=True).start()
        return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)
