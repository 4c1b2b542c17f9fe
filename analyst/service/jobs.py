"""Background jobs started from the app (retrain, linked rescore): a thread per job, progress the
pages poll; `wait` lets the owner finish them before it closes the store."""
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
        self._threads: dict[str, threading.Thread] = {}

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

        thread = threading.Thread(target=run, name=f"sleuth-{kind}-{job.job_id}", daemon=True)
        self._threads[job.job_id] = thread
        thread.start()
        return job

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for every running job (at most `timeout` seconds in all); True when none is left."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in list(self._threads.values()):
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            thread.join(left)
        return not any(t.is_alive() for t in self._threads.values())

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)
