"""The predictions running now, one per browser session, and how each is stopped.

The web framework cannot stop a function that runs in a worker thread, so each run checks its
job's token between tiles (the engine's ``progress`` callback) and raises
:class:`~geoseg.errors.RunCancelledError` once the token is set: by the Cancel button, by the
session going away (a closed tab), or by the server shutting down. The engine publishes nothing
from a run stopped that way.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

from geoseg.errors import RunCancelledError

__all__ = ["Job", "JobBoard"]


@dataclass
class Job:
    """One running prediction.

    Attributes:
        session: the browser session (or API client) that asked for it.
        step: what it was doing when it last reported (e.g. ``predicting: tile 3 of 40``).
        outcome: how it ended (``done``, ``refused``, ``cancelled``, ``failed``); empty while it
            runs.
        why: why it was asked to stop (empty while it may run).
        stop_requested: ``time.monotonic()`` when it was asked to stop, else None.
        stopped: set once the run has returned or raised.
    """

    session: str
    step: str = ""
    outcome: str = ""
    why: str = ""
    stop_requested: float | None = None
    stopped: threading.Event = field(default_factory=threading.Event)
    _token: threading.Event = field(default_factory=threading.Event)

    def check(self, step: str | None = None) -> None:
        """Note ``step``, and raise :class:`RunCancelledError` when the job was asked to stop."""
        if step is not None:
            self.step = step
        if self._token.is_set():
            raise RunCancelledError(f"cancelled: {self.why}; nothing was kept")

    def cancel(self, why: str) -> None:
        """Ask the run to stop at its next check (the first reason given is kept)."""
        if not self._token.is_set():
            self.why = why
            self.stop_requested = time.monotonic()
            self._token.set()

    @property
    def cancelled(self) -> bool:
        return self._token.is_set()


class JobBoard:
    """The running jobs, by session: started by a run, stopped by a cancel, a gone session or
    shutdown."""

    def __init__(self) -> None:
        self._jobs: dict[str, list[Job]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.stop_latencies: list[float] = []  # seconds from a stop request to the run's end
        self.finished: deque[Job] = deque(maxlen=64)  # the last jobs that ended, oldest first

    def start(self, session: str | None) -> Job:
        """Register a run for ``session``; a board that is shutting down refuses new runs."""
        job = Job(session or "")
        with self._lock:
            if self._closed:
                raise RunCancelledError("cancelled: the server is shutting down; try again later")
            self._jobs.setdefault(job.session, []).append(job)
        return job

    def finish(self, job: Job, outcome: str) -> None:
        """The run of ``job`` has ended with ``outcome`` (``done``, ``refused``...)."""
        job.outcome = outcome
        with self._lock:
            jobs = self._jobs.get(job.session, [])
            if job in jobs:
                jobs.remove(job)
            if not jobs:
                self._jobs.pop(job.session, None)
            if job.stop_requested is not None:
                self.stop_latencies.append(time.monotonic() - job.stop_requested)
            self.finished.append(job)
        job.stopped.set()

    def running(self, session: str | None = None) -> list[Job]:
        """The running jobs of ``session`` (all sessions when None)."""
        with self._lock:
            if session is None:
                return [j for jobs in self._jobs.values() for j in jobs]
            return list(self._jobs.get(session, []))

    def cancel(self, session: str | None, why: str, *, wait: float = 0.0) -> list[Job]:
        """Ask the runs of ``session`` to stop; wait up to ``wait`` seconds for them to end.

        Returns:
            The jobs asked to stop (empty when the session had none running).
        """
        jobs = self.running(session or "")
        return self._stop(jobs, why, wait)

    def close(self, why: str = "the server is shutting down", *, wait: float = 30.0) -> bool:
        """Refuse new runs, stop every running one and wait up to ``wait`` seconds for them.

        Returns:
            True when no run is left.
        """
        with self._lock:
            self._closed = True
        jobs = self._stop(self.running(), why, wait)
        return all(j.stopped.is_set() for j in jobs)

    @staticmethod
    def _stop(jobs: list[Job], why: str, wait: float) -> list[Job]:
        for job in jobs:
            job.cancel(why)
        deadline = time.monotonic() + wait
        for job in jobs:
            job.stopped.wait(max(0.0, deadline - time.monotonic()))
        return jobs
