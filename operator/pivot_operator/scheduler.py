"""When each session's daemon looks next, and how to wake it sooner.

One Scheduler per operator process (memo.scheduler). A sync records when its session must be
looked at again (a retry's backoff, the Schedulable timeout), and a failed sync when to try
again; an event of the CR only wakes the daemon (kopf has already put the new body into its
view). Each daemon sleeps on its Cadence until the next thing is due, not on a fixed tick: a
thousand waiting sessions would otherwise wake the operator a thousand times a second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

Key = tuple[str, str]  # (namespace, name)
MIN_NAP = 0.05  # seconds: a deadline just passed is looked at after this, not in a busy loop


class Scheduler:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._due: dict[Key, float] = {}
        self._wakeups: dict[Key, asyncio.Event] = {}

    def requeue(self, key: Key, after: float) -> None:
        """Look at the session again `after` seconds from now (this replaces an earlier
        request: the newest sync knows best)."""
        self._due[key] = self.clock() + after
        self.wake(key)

    def due_at(self, key: Key) -> float | None:
        return self._due.get(key)

    def clear(self, key: Key) -> None:
        """Forget the session's request (a sync is under way, or the session is gone)."""
        self._due.pop(key, None)

    def wake(self, key: Key) -> None:
        """Have the session's daemon look again now, if one runs."""
        if (wakeup := self._wakeups.get(key)) is not None:
            wakeup.set()

    @contextmanager
    def attach(self, key: Key) -> Iterator[asyncio.Event]:
        """While the session's daemon runs: the event `wake` sets, for it to nap on."""
        wakeup = self._wakeups[key] = asyncio.Event()
        try:
            yield wakeup
        finally:
            # A restarted daemon may have attached already: leave its event alone.
            if self._wakeups.get(key) is wakeup:
                del self._wakeups[key]


class Stopped(Protocol):
    """kopf.DaemonStopped as a nap uses it."""

    def __bool__(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> Awaitable[Any]: ...


async def nap(stopped: Stopped, wakeup: asyncio.Event, seconds: float) -> None:
    """Wait `seconds`, or less if the daemon is stopped or woken."""
    if not wakeup.is_set():
        stop = asyncio.ensure_future(stopped.wait(seconds))  # ends after timeout or on stop
        woken = asyncio.ensure_future(wakeup.wait())
        try:
            await asyncio.wait({stop, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            woken.cancel()
    wakeup.clear()


class Action(Enum):
    SYNC = "sync"
    PROGRESS = "progress"


@dataclass
class Cadence:
    """One daemon's rhythm: a sync when the scheduler says one is due, or after `resync`
    seconds without one (a missed watch event heals); telemetry every `progress` seconds
    while the session runs."""

    scheduler: Scheduler
    key: Key
    resync: float
    progress: float
    last_sync: float
    last_progress: float

    @classmethod
    def start(cls, scheduler: Scheduler, key: Key, *, resync: float, progress: float) -> Cadence:
        now = scheduler.clock()
        return cls(scheduler, key, resync, progress, last_sync=now, last_progress=now)

    def wait(self, running: bool) -> float:
        """Seconds until the next thing is due."""
        deadlines = [self.last_sync + self.resync]
        if (due := self.scheduler.due_at(self.key)) is not None:
            deadlines.append(due)
        if running:
            deadlines.append(self.last_progress + self.progress)
        return max(MIN_NAP, min(deadlines) - self.scheduler.clock())

    def next(self, running: bool) -> Action | None:
        """What is due now (and is then counted as done), if anything; a sync first."""
        now = self.scheduler.clock()
        due = self.scheduler.due_at(self.key)
        if (due is not None and due <= now) or now - self.last_sync >= self.resync:
            self.scheduler.clear(self.key)
            self.last_sync = now
            return Action.SYNC
        if running and now - self.last_progress >= self.progress:
            self.last_progress = now
            return Action.PROGRESS
        return None
