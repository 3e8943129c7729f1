"""The checkpoint thread: serialises and uploads checkpoints while training goes on.

One long-lived thread fed through a queue: starting a thread per checkpoint blocked the loop
~4 ms (Thread.start waits for the new thread, which takes the GIL for torch.save and keeps it
for a 5 ms switch interval). One job in flight at a time, so checkpoints commit in order; a
job's failure is raised on the training thread at the next wait or submit.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable


class CheckpointWriter:
    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, job: Callable[[], None]) -> None:
        """Run `job` on the thread, after the job in flight (whose failure this raises)."""
        self.wait()
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="pivot-checkpoint", daemon=True)
            self._thread.start()
        self._idle.clear()
        self._jobs.put(job)

    def wait(self) -> None:
        """Wait for the job in flight; its failure is the run's failure."""
        self._idle.wait()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def close(self) -> None:
        """Let a job in flight finish (also when the run is failing), then end the thread."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except BaseException as exc:  # handed to the training thread by wait()
                self._error = exc
            finally:
                self._idle.set()
