"""Records to Redis streams: a log call only queues, a background thread sends.

Every record is queued in memory first and removed only after Redis answered for it; batches
go out in one pipelined round trip. While Redis is unreachable, sends back off exponentially
and training goes on; `close` gives the queue a bounded last chance.

Metric and step records are written through a script that appends a record only if it is
newer (by `keys.METRICS_ORDER` / `keys.STEPS_ORDER`) than the stream's last one, so resending
a batch whose reply was lost, or a restarted run re-emitting an epoch, never duplicates a
point. Events are at-least-once. Nothing is dropped unless the buffer overflows (logged).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from pivot_schema import keys

EVENTS_MAXLEN = keys.EVENTS_MAXLEN
BUFFER_LIMIT = 1_000_000
BATCH = 512  # records per pipelined round trip
INTERVAL_S = 0.25  # how often the background thread sends what has queued

# KEYS[1]: stream. ARGV[1]: k, the number of ordering fields; ARGV[2..k+1]: their names;
# ARGV[k+2..]: records (JSON), oldest first. Appends each record that is newer than the
# stream's last one (compared field by field) and returns how many it appended.
_APPEND_IF_NEWER = f"""
local k = tonumber(ARGV[1])
local function newer(a, b)
  for i = 2, k + 1 do
    local x, y = tonumber(a[ARGV[i]]) or 0, tonumber(b[ARGV[i]]) or 0
    if x ~= y then return x > y end
  end
  return false
end
local last = nil
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #top > 0 then
  local fields = top[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == '{keys.DATA_FIELD}' then last = cjson.decode(fields[i + 1]) end
  end
end
local added = 0
for i = k + 2, #ARGV do
  local record = cjson.decode(ARGV[i])
  if last == nil or newer(record, last) then
    redis.call('XADD', KEYS[1], '*', '{keys.DATA_FIELD}', ARGV[i])
    last = record
    added = added + 1
  end
end
return added
"""


@dataclass
class _Pending:
    stream: str
    fields: dict[str, str]
    maxlen: int | None
    order: Sequence[str] = ()  # non-empty: append only if newer (idempotent)


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
        self._script = self._client.register_script(_APPEND_IF_NEWER) if self._client else None
        self._queue: deque[_Pending] = deque()
        self._lock = threading.Lock()  # guards the queue's head against a concurrent append
        self._send_lock = threading.Lock()  # one sender at a time (thread, flush, close)
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._backoff = backoff_initial
        self._next_try = 0.0
        self._warned = False
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.duplicates = 0

    @property
    def enabled(self) -> bool:
        return self._client is not None

    @property
    def pending(self) -> int:
        return len(self._queue)

    # -- recording (microseconds: only a queue append) ----------------------------------

    def metric(self, epoch: int, metrics: dict[str, float]) -> None:
        record = keys.epoch_record(epoch, metrics)
        self._enqueue(keys.metrics_stream(self.session_id), record, None, keys.METRICS_ORDER)

    def step(self, epoch: int, step: int, global_step: int, train_loss: float) -> None:
        record = keys.step_record(epoch, step, global_step, train_loss)
        self._enqueue(keys.steps_stream(self.session_id), record, None, keys.STEPS_ORDER)

    def gpu(self, gpus: list[dict[str, Any]]) -> None:
        self._enqueue(keys.gpu_stream(self.session_id), keys.gpu_record(gpus), keys.GPU_MAXLEN)

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

    def _enqueue(
        self, stream: str, record: dict[str, Any], maxlen: int | None, order: Sequence[str] = ()
    ) -> None:
        if self._client is None:
            return
        item = _Pending(stream, keys.encode_record(record), maxlen, order)
        with self._lock:
            if len(self._queue) >= BUFFER_LIMIT:
                self._queue.popleft()
                print(
                    "pivot-trainer: redis buffer full, dropped the oldest record", file=sys.stderr
                )
            self._queue.append(item)

    # -- sending -------------------------------------------------------------------------

    def start(self, interval: float = INTERVAL_S) -> None:
        """Send from a background thread from now on (every `interval` s, or on `wake`)."""
        if self._client is None or self._thread is not None:
            return

        def loop() -> None:
            while not self._stopping:
                self._wake.wait(interval)
                self._wake.clear()
                self.flush()

        self._thread = threading.Thread(target=loop, name="pivot-sink", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Ask the background thread to send now (e.g. at the end of an epoch)."""
        if self._thread is None:
            self.flush()
        else:
            self._wake.set()

    def _send(self, batch: list[_Pending]) -> None:
        assert self._client is not None and self._script is not None
        pipe = self._client.pipeline(transaction=False)
        # Consecutive idempotent records of one stream go in one script call.
        calls: list[list[_Pending]] = []
        for item in batch:
            run = calls[-1] if calls else None
            if item.order and run and run[0].order == item.order and run[0].stream == item.stream:
                run.append(item)
            else:
                calls.append([item])
        for run in calls:
            item = run[0]
            if item.order:
                records = [i.fields[keys.DATA_FIELD] for i in run]
                args: list[str | int] = [len(item.order), *item.order, *records]
                self._script(keys=[item.stream], args=args, client=pipe)
            elif item.maxlen is None:
                pipe.xadd(item.stream, item.fields)  # type: ignore[arg-type]
            else:
                pipe.xadd(item.stream, item.fields, maxlen=item.maxlen, approximate=True)  # type: ignore[arg-type]
        results = pipe.execute(raise_on_error=False)
        for run, result in zip(calls, results, strict=True):
            if isinstance(result, redis.ConnectionError | redis.TimeoutError):
                raise result
            if isinstance(result, redis.ResponseError):
                # Will never succeed (e.g. a key of another type): report it, don't block on it.
                print(f"pivot-trainer: redis refused records for {run[0].stream}: {result}")
                continue
            added = int(result) if run[0].order else len(run)
            self.sent += added
            self.duplicates += len(run) - added

    def flush(self, *, force: bool = False) -> bool:
        """Send queued records in order; True when the queue is empty. Never raises."""
        if self._client is None or not self._queue:
            return True
        if not force and time.monotonic() < self._next_try:
            return False
        with self._send_lock:
            try:
                while self._queue:
                    with self._lock:
                        batch = [self._queue[i] for i in range(min(BATCH, len(self._queue)))]
                    self._send(batch)
                    with self._lock:
                        for _ in batch:
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
        if self._thread is not None:
            self._stopping = True
            self._wake.set()
            self._thread.join()
            self._thread = None
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
