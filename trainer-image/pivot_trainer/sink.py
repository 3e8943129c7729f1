"""Records to Redis streams that survive a Redis outage.

Every record is queued in memory first and removed only after its XADD succeeded, in order.
While Redis is unreachable, flushes back off exponentially and training goes on; `close`
gives the queue a bounded last chance. A record lost to a reply that never came back may be
written twice; nothing is silently dropped unless the buffer overflows (logged).
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from pivot_schema import keys

EVENTS_MAXLEN = keys.EVENTS_MAXLEN
BUFFER_LIMIT = 100_000


@dataclass
class _Pending:
    stream: str
    fields: dict[str, str]
    maxlen: int | None


class RecordSink:
    def __init__(
        self,
        url: str | None,
        session_id: str,
        *,
        backoff_initial: float = 0.5,
        backoff_max: float = 15.0,
    ) -> None:
        self.session_id = session_id
        self._client: redis.Redis | None = (
            redis.Redis.from_url(url, socket_timeout=3.0, socket_connect_timeout=2.0)
            if url
            else None
        )
        self._queue: deque[_Pending] = deque()
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._backoff = backoff_initial
        self._next_try = 0.0
        self._warned = False

    @property
    def pending(self) -> int:
        return len(self._queue)

    def metric(self, epoch: int, metrics: dict[str, float]) -> None:
        record = keys.epoch_record(epoch, metrics)
        self._enqueue(keys.metrics_stream(self.session_id), record, None)

    def event(self, event_type: str, **fields: Any) -> None:
        record = keys.event_record(event_type, **fields)
        self._enqueue(keys.events_stream(self.session_id), record, EVENTS_MAXLEN)

    def last_metric_epoch(self) -> int:
        """The newest epoch already in the metrics stream (0 if none or unreachable)."""
        if self._client is None:
            return 0
        try:
            entries = self._client.xrevrange(keys.metrics_stream(self.session_id), count=1)
        except redis.RedisError:
            return 0
        if not entries:
            return 0
        epoch = keys.decode_record(entries[0][1]).get("epoch")
        return int(epoch) if isinstance(epoch, int | float) else 0

    def _enqueue(self, stream: str, record: dict[str, Any], maxlen: int | None) -> None:
        if self._client is None:
            return
        if len(self._queue) >= BUFFER_LIMIT:
            self._queue.popleft()
            print("pivot-trainer: redis buffer full, dropping the oldest record", file=sys.stderr)
        self._queue.append(_Pending(stream, keys.encode_record(record), maxlen))

    def flush(self, *, force: bool = False) -> bool:
        """Send queued records in order; True when the queue is empty. Never raises."""
        if self._client is None or not self._queue:
            return True
        if not force and time.monotonic() < self._next_try:
            return False
        try:
            while self._queue:
                item = self._queue[0]
                if item.maxlen is None:
                    self._client.xadd(item.stream, item.fields)  # type: ignore[arg-type]
                else:
                    self._client.xadd(
                        item.stream,
                        item.fields,  # type: ignore[arg-type]
                        maxlen=item.maxlen,
                        approximate=True,
                    )
                self._queue.popleft()
        except redis.RedisError as exc:
            if not self._warned:
                print(
                    f"pivot-trainer: redis unavailable ({exc}); buffering "
                    f"{len(self._queue)} record(s) and retrying",
                    file=sys.stderr,
                )
                self._warned = True
            self._next_try = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, self._backoff_max)
            return False
        if self._warned:
            print("pivot-trainer: redis reachable again; buffered records sent", file=sys.stderr)
        self._warned = False
        self._backoff = self._backoff_initial
        return True

    def close(
        self, timeout: float, *, hurry: Callable[[], bool] | None = None, hurry_timeout: float = 3.0
    ) -> bool:
        """Flush with retries for at most `timeout` seconds (`hurry_timeout` from the moment
        `hurry()` turns true, e.g. on SIGTERM); True when everything was sent."""
        deadline = time.monotonic() + timeout
        self._backoff = min(self._backoff, 1.0)  # short waits at the end: the deadline bounds it
        while True:
            if self.flush(force=True):
                break
            if hurry is not None and hurry():
                deadline = min(deadline, time.monotonic() + hurry_timeout)
                hurry = None
            wait = min(self._backoff, 2.0, deadline - time.monotonic())
            if wait <= 0:
                break
            time.sleep(wait)
        sent = not self._queue
        if not sent:
            print(
                f"pivot-trainer: giving up on {len(self._queue)} record(s): redis unreachable",
                file=sys.stderr,
            )
        if self._client is not None:
            self._client.close()
        return sent
