"""Training lifecycle events (started, completed, failed, stopped, preempted, resumed) from
the TrainingSession cache onto the platform event bus.

The CR is the truth about a session, not the trainer's own events: a pod killed by the OOM
killer never says it failed, but its session's phase does. Runs as a leader job; every
change is published through `publish_transition`, so a new leader never repeats one.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from pivot_api.consistency import ReadMarks
from pivot_api.events import (
    TRAINING_COMPLETED,
    TRAINING_FAILED,
    TRAINING_PREEMPTED,
    TRAINING_RESUMED,
    TRAINING_STARTED,
    TRAINING_STOPPED,
    forget_transitions,
    publish_transition,
)
from pivot_api.kube import SessionCache
from pivot_api.redis_util import text, utcnow_iso
from pivot_api.sessions.service import created_at, status_of
from pivot_schema.crd import SessionStatus
from pivot_schema.keys import ApiKeys

log = logging.getLogger(__name__)

_KIND = "session"

_ON_STATUS = {
    SessionStatus.RUNNING: TRAINING_STARTED,
    SessionStatus.COMPLETED: TRAINING_COMPLETED,
    SessionStatus.FAILED: TRAINING_FAILED,
    SessionStatus.STOPPED: TRAINING_STOPPED,
}

Obj = dict[str, Any]


def lifecycle_state(obj: Obj) -> tuple[str, str, int]:
    """(recorded state, status, preemptions): the state changes on every status change and
    on every preemption, so each of those is one event."""
    status = status_of(obj)
    preemptions = int((obj.get("status") or {}).get("preemptions") or 0)
    return f"{status.value}|{preemptions}", status.value, preemptions


def event_for(previous: str | None, obj: Obj) -> tuple[str | None, dict[str, Any]]:
    """The event type a move from `previous` (a recorded state) to the object's state is."""
    _, status, preemptions = lifecycle_state(obj)
    prev_status, _, prev_pre = (previous or "|").partition("|")
    st = obj.get("status") or {}
    spec = obj.get("spec") or {}
    data: dict[str, Any] = {
        "session_id": obj["metadata"]["name"],
        "session_name": spec.get("sessionName") or obj["metadata"]["name"],
        "status": status,
        "previous_status": prev_status or None,
        "tags": list(spec.get("tags") or []),
        "epoch": st.get("currentEpoch"),
        "total_epochs": st.get("totalEpochs"),
        "message": st.get("message"),
        "final_metrics": dict(st.get("latestMetrics") or {}),
        "observed_at": utcnow_iso(),
    }
    if preemptions > int(prev_pre or 0):
        data["preemptions"] = preemptions
        return TRAINING_PREEMPTED, data
    if status == prev_status:
        return None, data
    if (
        status == SessionStatus.RUNNING.value
        and int(prev_pre or 0) > 0
        and prev_status
        in (
            SessionStatus.PENDING.value,
            SessionStatus.RUNNING.value,
        )
    ):
        return TRAINING_RESUMED, data
    return _ON_STATUS.get(SessionStatus(status)), data


class LifecycleWatcher:
    def __init__(
        self,
        cache: SessionCache,
        redis: Redis,
        keys: ApiKeys,
        *,
        interval_s: float = 1.0,
        marks: ReadMarks | None = None,
    ) -> None:
        self._cache = cache
        # A receiver of an event may read the session from any worker at once: the state
        # the event tells is recorded as shown first (see pivot_api.consistency).
        self._marks = marks
        self._redis = redis
        self._keys = keys
        self._interval_s = interval_s
        # What this worker last recorded, so an unchanged session costs no Redis call.
        self._seen: dict[str, str] = {}

    async def run(self) -> None:
        self._seen.clear()  # a new term: Redis's record is the truth, not ours
        since = await self.since()
        while True:
            if self._cache.synced:
                await self.scan(since)
            await asyncio.sleep(self._interval_s)

    async def since(self) -> datetime:
        """When lifecycle events were first recorded: sessions older than that are recorded
        silently, so switching the feature on does not replay history. Called once at
        startup too, before any request is served, so no session created later can count as
        old however late this worker becomes the leader."""
        key = self._keys.lifecycle_since
        await self._redis.set(key, utcnow_iso(), nx=True)
        raw = await self._redis.get(key)
        return datetime.fromisoformat(text(raw).replace("Z", "+00:00"))

    async def scan(self, since: datetime) -> int:
        published = 0
        present: set[str] = set()
        for obj in self._cache.all():
            name = obj["metadata"]["name"]
            present.add(name)
            state, _, _ = lifecycle_state(obj)
            if self._seen.get(name) == state:
                continue
            previous = await self._redis.hget(self._keys.transitions(_KIND), name)
            prev_text = None if previous is None else text(previous)
            type_, data = event_for(prev_text, obj)
            if prev_text is None and _older_than(obj, since):
                type_ = None
            if type_ is not None and self._marks is not None:
                await self._marks.shown(obj)
            event = await publish_transition(
                self._redis,
                self._keys,
                kind=_KIND,
                subject=name,
                state=state,
                type_=type_,
                data=data,
            )
            self._seen[name] = state
            if event is not None:
                published += 1
                log.info("%s: %s", name, event.type)
        gone = [n for n in self._seen if n not in present]
        for name in gone:
            del self._seen[name]
        await forget_transitions(self._redis, self._keys, _KIND, gone)
        return published


def _older_than(obj: Obj, since: datetime) -> bool:
    stamp = created_at(obj)
    if not stamp:
        return True
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")) < since
    except ValueError:
        return True
