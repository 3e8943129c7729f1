"""Keeps the platform's processes running, as a kubelet keeps a pod's containers: a part that
dies is reported (which one, its exit code or signal) and restarted after a backoff that doubles
while it keeps dying; one that dies too often makes the supervisor give up, so that `pivot up`
stops rather than serve without it.

The supervisor's thread must outlive every process it restarts: children get PR_SET_PDEATHSIG
(pivot_local.procs), which fires when the *thread* that spawned them ends.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pivot_local.procs import kill_group

log = logging.getLogger("pivot.supervisor")


@dataclass
class Part:
    """One supervised process: `current()` is its Popen (None while there is none, e.g. a
    server run in a thread), `restart()` brings it back on the same address."""

    name: str
    current: Callable[[], subprocess.Popen[Any] | None]
    restart: Callable[[], None]
    # Said with the death: what is down until it is back.
    down_note: str = ""
    # Called when it is found dead, before the backoff (e.g. to expire its heartbeat).
    on_death: Callable[[int], None] | None = None
    deaths: deque[float] = field(default_factory=deque)
    due: float | None = None  # when the pending restart runs


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-returncode).name}"
        return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


class Supervisor:
    def __init__(
        self,
        parts: list[Part],
        *,
        report: Callable[[str], None] | None = None,
        on_give_up: Callable[[str], None] | None = None,
        backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        max_restarts: int = 5,
        window_s: float = 60.0,
        poll_s: float = 0.2,
    ):
        self.parts = {p.name: p for p in parts}
        self._report = report or log.warning
        self._on_give_up = on_give_up
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_restarts = max_restarts
        self.window_s = window_s
        self.poll_s = poll_s
        self.failure: str | None = None  # set when it gave up
        self._held: set[str] = set()
        self._restarting = threading.Lock()  # a restart and a stop never interleave
        self._quiet = threading.Event()  # no more restarts (stopping, or gave up)
        self._exit = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pivot-supervisor", daemon=True)

    def start(self) -> Supervisor:
        self._thread.start()
        return self

    def quiesce(self) -> None:
        """No more restarts; returns once a restart under way has finished. The thread stays
        (its children live while it does) until `join()`."""
        self._quiet.set()
        with self._restarting:
            pass

    def join(self) -> None:
        self.quiesce()
        self._exit.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    @contextlib.contextmanager
    def held(self, name: str) -> Iterator[None]:
        """While held, a death of `name` is seen and said but its restart waits (a test keeps
        a part down); released, the restart runs once its backoff is over."""
        self._held.add(name)
        try:
            yield
        finally:
            self._held.discard(name)

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._exit.wait(self.poll_s):
            if self._quiet.is_set():
                continue
            for part in list(self.parts.values()):
                if self._quiet.is_set():
                    break
                try:
                    self._tend(part, held=part.name in self._held)
                except Exception:  # the supervisor itself must not die
                    log.exception("supervising %s failed", part.name)

    def _tend(self, part: Part, *, held: bool) -> None:
        now = time.monotonic()
        if part.due is None:
            proc = part.current()
            if proc is None or proc.poll() is None:
                return
            kill_group(proc)  # its children would hold what the restart needs (its port)
            if part.on_death is not None:
                try:
                    part.on_death(proc.pid)
                except Exception:  # best effort: the restart matters more
                    log.exception("after %s died", part.name)
            self._died(part, f"(pid {proc.pid}) died: {describe_exit(proc.returncode)}", now)
        elif now >= part.due and not held:
            with self._restarting:
                if self._quiet.is_set():
                    return
                part.due = None
                try:
                    part.restart()
                except Exception as exc:
                    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                    self._died(part, f"failed to restart: {reason}", time.monotonic())
                    return
            if not self._quiet.is_set():  # stopping: what came back is stopped next
                proc = part.current()
                self._report(f"{part.name} is back" + (f" (pid {proc.pid})" if proc else ""))

    def _died(self, part: Part, what: str, now: float) -> None:
        """Count a death (a crash, or a restart that failed) and schedule the next restart,
        or give up when it has died more than `max_restarts` times within `window_s`."""
        part.deaths.append(now)
        while part.deaths and part.deaths[0] < now - self.window_s:
            part.deaths.popleft()
        note = f"; {part.down_note}" if part.down_note else ""
        if len(part.deaths) > self.max_restarts:
            self.failure = (
                f"{part.name} {what}{note}; it died {len(part.deaths)} times within "
                f"{self.window_s:.0f}s, giving up"
            )
            self._quiet.set()
            self._report(self.failure)
            if self._on_give_up is not None:
                self._on_give_up(self.failure)
            return
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** (len(part.deaths) - 1))
        part.due = now + delay
        self._report(f"{part.name} {what}{note}; restarting it in {delay:.1f}s")
