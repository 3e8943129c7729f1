"""The per-session wake-up scheduler: when a session's daemon looks next, and what wakes it
sooner (no cluster, a clock the test moves)."""

from __future__ import annotations

import asyncio
import contextlib
import time

from pivot_operator.scheduler import MIN_NAP, Action, Cadence, Scheduler, nap
from tests.support.kopf_stand_ins import Stop

KEY = ("default", "s1")
OTHER = ("default", "s2")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cadence(clock: Clock, scheduler: Scheduler) -> Cadence:
    return Cadence.start(scheduler, KEY, resync=30.0, progress=2.0)


def test_a_requeue_is_due_after_its_delay_and_the_newest_request_wins() -> None:
    clock = Clock()
    scheduler = Scheduler(clock)
    assert scheduler.due_at(KEY) is None
    scheduler.requeue(KEY, 5.0)
    assert scheduler.due_at(KEY) == 1005.0
    scheduler.requeue(KEY, 60.0)  # a later sync knows better, even when later
    assert scheduler.due_at(KEY) == 1060.0
    assert scheduler.due_at(OTHER) is None
    scheduler.clear(KEY)
    assert scheduler.due_at(KEY) is None


async def test_wake_and_requeue_set_only_the_attached_daemons_event() -> None:
    scheduler = Scheduler()
    scheduler.wake(KEY)  # no daemon yet: nothing to wake, no error
    with scheduler.attach(KEY) as wakeup, scheduler.attach(OTHER) as other:
        scheduler.wake(KEY)
        assert wakeup.is_set() and not other.is_set()
        wakeup.clear()
        scheduler.requeue(KEY, 10.0)
        assert wakeup.is_set() and not other.is_set()
    scheduler.wake(KEY)
    assert wakeup.is_set()  # still set from before: detached, it is no longer the target


async def test_an_old_daemon_leaving_does_not_detach_its_successor() -> None:
    scheduler = Scheduler()
    with contextlib.ExitStack() as old:
        old_wakeup = old.enter_context(scheduler.attach(KEY))
        successor = contextlib.ExitStack()
        new_wakeup = successor.enter_context(scheduler.attach(KEY))  # kopf restarted it
    # The old one has left; the successor is still the one woken.
    scheduler.wake(KEY)
    assert new_wakeup.is_set() and not old_wakeup.is_set()
    successor.close()


def test_the_cadence_naps_until_the_earliest_deadline() -> None:
    clock = Clock()
    scheduler = Scheduler(clock)
    c = cadence(clock, scheduler)
    assert c.wait(running=False) == 30.0  # only the resync
    assert c.wait(running=True) == 2.0  # telemetry while it runs
    scheduler.requeue(KEY, 0.5)
    assert c.wait(running=True) == 0.5
    clock.now += 10
    assert c.wait(running=False) == MIN_NAP  # overdue: look soon, without spinning


def test_a_due_request_syncs_once_and_is_used_up() -> None:
    clock = Clock()
    scheduler = Scheduler(clock)
    c = cadence(clock, scheduler)
    scheduler.requeue(KEY, 4.0)
    clock.now += 3.9
    assert c.next(running=False) is None
    clock.now += 0.1
    assert c.next(running=False) is Action.SYNC
    assert scheduler.due_at(KEY) is None
    assert c.next(running=False) is None


def test_the_resync_comes_without_any_request_and_takes_a_pending_one() -> None:
    clock = Clock()
    scheduler = Scheduler(clock)
    c = cadence(clock, scheduler)
    clock.now += 29
    assert c.next(running=False) is None
    scheduler.requeue(KEY, 100.0)
    clock.now += 1
    assert c.next(running=False) is Action.SYNC
    assert scheduler.due_at(KEY) is None  # the sync answers it as well
    clock.now += 29
    assert c.next(running=False) is None  # counted from the last sync


def test_progress_is_tracked_only_while_running_and_a_sync_comes_first() -> None:
    clock = Clock()
    scheduler = Scheduler(clock)
    c = cadence(clock, scheduler)
    clock.now += 2
    assert c.next(running=False) is None
    assert c.next(running=True) is Action.PROGRESS
    assert c.next(running=True) is None  # not again until the interval passed
    clock.now += 2
    scheduler.requeue(KEY, 0.0)
    assert c.next(running=True) is Action.SYNC
    assert c.next(running=True) is Action.PROGRESS


async def test_a_nap_lasts_its_time_unless_woken_or_stopped() -> None:
    stop, wakeup = Stop(), asyncio.Event()
    started = time.monotonic()
    await nap(stop, wakeup, 0.2)
    assert time.monotonic() - started >= 0.19

    started = time.monotonic()
    asyncio.get_running_loop().call_later(0.05, wakeup.set)
    await nap(stop, wakeup, 5.0)
    assert time.monotonic() - started < 2.0
    assert not wakeup.is_set()  # used up: the next nap sleeps again

    wakeup.set()  # woken before it naps: it does not sleep at all
    started = time.monotonic()
    await nap(stop, wakeup, 5.0)
    assert time.monotonic() - started < 1.0 and not wakeup.is_set()

    started = time.monotonic()
    asyncio.get_running_loop().call_later(0.05, stop.event.set)
    await nap(stop, wakeup, 5.0)
    assert time.monotonic() - started < 2.0 and stop
