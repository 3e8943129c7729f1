"""Records to Redis streams: a log call only queues, a background thread sends.

Every record is queued in memory first and removed only after Redis answered for it; batches
go out in one pipelined round trip. While Redis is unreachable, sends back off exponentially
and training goes on; beyond `memory_records` the oldest queued records move to an on-disk
spool (`pivot_trainer.spool`, bounded by bytes), which is sent first once Redis is back and
which a restarted trainer in the same pod directory picks up. `close` gives the queue a bounded
last chance, then spools what is left.

Appends are idempotent, so resending (a reply lost in an outage, a spool replayed after a kill)
never duplicates a point: metric and step records go through a script that appends a record
only if it is newer (by `keys.METRICS_ORDER` / `keys.STEPS_ORDER`) than the stream's last one,
which also covers a restarted run re-emitting an epoch; events and GPU samples carry a `rid`
field (`run:seq`, unique per sink) and are appended only if the stream's last entry is not the
same run at the same or a later seq.

Step points are the bulk (one every N optimizer steps): a log call appends its numbers, and the
sender packs them into column entries (`keys.encode_step_columns`: binary columns, no per-value
formatting), up to `keys.STEPS_CHUNK` points an entry (one XADD per point would cap ingest at
Redis's XADD rate). The memory bound, the spool's bound and every count (`sent`,
`duplicates`, `dropped`, `pending`) are in points, not entries.
"""

from __future__ import annotations

import itertools
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis

from pivot_schema import keys
from pivot_trainer.spool import Record, Spool, SpoolLocked

EVENTS_MAXLEN = keys.EVENTS_MAXLEN
MEMORY_RECORDS = 100_000  # points queued in memory before an outage spills to disk
SPOOL_MAX_BYTES = 512 * 2**20
MEMORY_ONLY_LIMIT = 1_000_000  # without a spool: the oldest records beyond this are dropped
BATCH = 2048  # entries per pipelined round trip
STEPS_CHUNK = keys.STEPS_CHUNK
STEP_WIDTH = len(keys.STEP_COLUMNS)  # values a step point holds
INTERVAL_S = 0.25  # how often the background thread sends what has queued
RID_FIELD = "rid"  # beside keys.DATA_FIELD; readers decode DATA_FIELD only


def default_spool_dir() -> Path:
    return Path(tempfile.gettempdir()) / "pivot-spool"


# KEYS[1]: stream. ARGV[1]: k, the number of ordering fields; ARGV[2..k+1]: their names
# (integer fields); then (data, columns) pairs, oldest first: a record (a flat JSON object) or
# a JSON array of records with empty columns, or a column entry (keys.encode_step_columns: a
# JSON head in data, binary columns). Appends what is newer than the stream's last record
# (compared field by field): a whole entry when its first record is, the newer part of a
# packed entry that straddles it (a restarted run re-emitting steps), nothing when even its
# last record is not. Only first and last records are ranked (a column entry's head names
# them), so a packed entry costs a few short matches however many records it holds. Returns
# how many records it appended.
_APPEND_IF_NEWER = f"""
local k = tonumber(ARGV[1])
local last = nil  -- the rank of the stream's last record
local names, patterns = {{}}, {{}}
for j = 1, k do
  names[j] = ARGV[j + 1]
  patterns[j] = '"' .. names[j] .. '":%s*(%-?[%d%.eE%+]+)'
end
local function rank(record)  -- a record's JSON text
  local r = {{}}
  for j = 1, k do r[j] = tonumber(string.match(record, patterns[j])) or 0 end
  return r
end
local function rank_of(t)  -- a decoded table (a column entry's first or last)
  local r = {{}}
  for j = 1, k do r[j] = tonumber(t[names[j]]) or 0 end
  return r
end
-- Plain finds (memchr speed) rather than patterns, which cost ~10 ns a byte.
local function count(entry)  -- records in a packed entry (records hold no braces)
  local n, at = 0, string.find(entry, '{{', 1, true)
  while at do n = n + 1; at = string.find(entry, '{{', at + 1, true) end
  return n
end
local function final(entry)  -- the last record of a packed entry; a record is its own
  -- Look only at the tail: a step record is ~120 bytes; a long one-record entry has no
  -- brace there and is returned whole.
  local at, found = string.find(entry, '{{', math.max(#entry - 512, 1), true), nil
  while at do found = at; at = string.find(entry, '{{', at + 1, true) end
  return found and string.sub(entry, found) or entry
end
local function newer(r, than)
  if than == nil then return true end
  for j = 1, k do
    if r[j] ~= than[j] then return r[j] > than[j] end
  end
  return false
end
-- Column entries: each column is n little-endian 8-byte values, one after the other.
local function column_rank(head, cols, at, row)
  local r = {{}}
  for j = 1, k do r[j] = struct.unpack('<i8', cols, (at[names[j]] * head.n + row - 1) * 8 + 1) end
  return r
end
local function column_tail(head, cols, from)  -- the entry from its first newer row on
  local at = {{}}
  for c, name in ipairs(head.columns) do at[name] = c - 1 end
  while not newer(column_rank(head, cols, at, from), last) do from = from + 1 end
  local parts, n = {{}}, head.n
  for c = 0, #head.columns - 1 do
    parts[#parts + 1] = string.sub(cols, (c * n + from - 1) * 8 + 1, (c + 1) * n * 8)
  end
  local first = column_rank(head, cols, at, from)
  head.first = {{}}
  for j = 1, k do head.first[names[j]] = first[j] end
  head.n = n - from + 1
  return cjson.encode(head), table.concat(parts), head.n
end
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #top > 0 then
  local fields, data, cols = top[1][2], nil, nil
  for i = 1, #fields, 2 do
    if fields[i] == '{keys.DATA_FIELD}' then data = fields[i + 1] end
    if fields[i] == '{keys.COLUMNS_FIELD}' then cols = fields[i + 1] end
  end
  if data and cols then last = rank_of(cjson.decode(data).last)
  elseif data then last = rank(final(data)) end
end
local added = 0
for i = k + 2, #ARGV, 2 do
  local entry, cols = ARGV[i], ARGV[i + 1]
  if cols ~= '' then
    local head = cjson.decode(entry)
    local r = rank_of(head.last)
    if newer(r, last) then
      local n = head.n
      if not newer(rank_of(head.first), last) then
        entry, cols, n = column_tail(head, cols, 2)
      end
      redis.call('XADD', KEYS[1], '*', '{keys.DATA_FIELD}', entry, '{keys.COLUMNS_FIELD}', cols)
      last = r
      added = added + n
    end
  else
    local packed = string.sub(entry, 1, 1) == '['
    local r = rank(packed and final(entry) or entry)
    if newer(r, last) then
      local n = 1
      if packed then
        if newer(rank(entry), last) then
          n = count(entry)
        else
          local kept = {{}}
          for record in string.gmatch(entry, '{{[^}}]*}}') do
            if newer(rank(record), last) then kept[#kept + 1] = record end
          end
          entry, n = '[' .. table.concat(kept, ',') .. ']', #kept
        end
      end
      redis.call('XADD', KEYS[1], '*', '{keys.DATA_FIELD}', entry)
      last = r
      added = added + n
    end
  end
end
return added
"""

# KEYS[1]: stream. ARGV[1]: MAXLEN (0: untrimmed); ARGV[2..]: (rid, record) pairs, oldest
# first. A rid is `run:seq`; a record is appended unless the stream's last entry has the same
# run and a seq at least as large (it was appended before). Returns how many it appended.
_APPEND_ONCE = f"""
local maxlen = tonumber(ARGV[1])
local run, seq = nil, -1
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #top > 0 then
  local fields = top[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == '{RID_FIELD}' then
      local r, s = string.match(fields[i + 1], '^(.*):(%d+)$')
      if r then run, seq = r, tonumber(s) end
    end
  end
end
local added = 0
for i = 2, #ARGV, 2 do
  local r, s = string.match(ARGV[i], '^(.*):(%d+)$')
  s = tonumber(s)
  if r ~= run or s > seq then
    if maxlen > 0 then
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*',
        '{keys.DATA_FIELD}', ARGV[i + 1], '{RID_FIELD}', ARGV[i])
    else
      redis.call('XADD', KEYS[1], '*', '{keys.DATA_FIELD}', ARGV[i + 1], '{RID_FIELD}', ARGV[i])
    end
    run, seq = r, s
    added = added + 1
  end
end
return added
"""


def _json(record: dict[str, Any]) -> str:
    return keys.encode_record(record)[keys.DATA_FIELD]


class RecordSink:
    def __init__(
        self,
        url: str | None,
        session_id: str,
        *,
        backoff_initial: float = 0.5,
        backoff_max: float = 15.0,
        spool_dir: str | Path | None = None,
        spool_max_bytes: int = SPOOL_MAX_BYTES,
        memory_records: int = MEMORY_RECORDS,
    ) -> None:
        """`spool_dir` holds one directory per session (default: a `pivot-spool` folder in
        the temp dir); spooling is off when that directory is in use by a live process."""
        self.session_id = session_id
        self._client: redis.Redis | None = (
            redis.Redis.from_url(url, socket_timeout=3.0, socket_connect_timeout=2.0)
            if url
            else None
        )
        self._shas: tuple[str, str] | None = None  # the scripts' SHA1s, once loaded
        # Appended by the logging thread, popped only by the sender: deque ops are atomic, so
        # the hot path takes no lock.
        self._queue: deque[Record] = deque()
        # Logged step points not yet packed into the queue, flat: STEP_WIDTH values a point (in
        # keys.STEP_COLUMNS order). Numbers only, so a backlog of points is no work for the
        # garbage collector, and one list.extend a point, which is atomic under the GIL.
        self._steps: list[int | float] = []
        self._packed_extra = 0  # points in the queue beyond one per entry (sender thread only)
        self._send_lock = threading.Lock()  # one sender at a time (thread, flush, close)
        self._memory_records = max(1, memory_records)
        self._run = uuid.uuid4().hex[:12]
        self._seq = itertools.count(1)
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._backoff = backoff_initial
        self._next_try = 0.0
        self._down = False
        self._warned = False
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.duplicates = 0
        self.dropped = 0  # records given up by a bound (logged when it happens)
        self._metrics_key = keys.metrics_stream(session_id)
        self._steps_key = keys.steps_stream(session_id)
        self._gpu_key = keys.gpu_stream(session_id)
        self._events_key = keys.events_stream(session_id)
        self.spool: Spool | None = None
        if self._client is not None:
            directory = Path(spool_dir or default_spool_dir()) / session_id
            try:
                self.spool = Spool(directory, spool_max_bytes)
            except (SpoolLocked, OSError) as exc:
                print(
                    f"pivot-trainer: no disk spool ({exc}); buffering in memory only",
                    file=sys.stderr,
                )
            if self.spool:
                print(
                    f"pivot-trainer: {self.spool.points} record(s) left in {directory} by an "
                    "earlier run; sending them first",
                    file=sys.stderr,
                )

    @property
    def enabled(self) -> bool:
        return self._client is not None

    @property
    def pending(self) -> int:
        """Points (records) not yet confirmed by Redis, in memory and on disk."""
        return self.in_memory + (self.spool.points if self.spool else 0)

    @property
    def in_memory(self) -> int:
        return len(self._queue) + self._packed_extra + len(self._steps) // STEP_WIDTH

    @property
    def spool_dropped(self) -> int:
        return self.spool.dropped if self.spool else 0

    # -- recording (microseconds: only a queue append) ----------------------------------

    def metric(self, epoch: int, metrics: dict[str, float]) -> None:
        if self._client is None:
            return
        data = _json(keys.epoch_record(epoch, metrics))
        self._put(Record(self._metrics_key, data, None, keys.METRICS_ORDER))

    def step(self, epoch: int, step: int, global_step: int, train_loss: float) -> None:
        if self._client is None:
            return
        # Conversions here so that bad input fails in the caller; the sender packs.
        self._steps.extend(
            (int(epoch), int(step), int(global_step), float(train_loss), time.time_ns() // 1000)
        )
        if self._down and self.in_memory > self._memory_records:
            self._wake.set()  # the sender packs them and moves the excess to disk

    def gpu(self, gpus: list[dict[str, Any]]) -> None:
        if self._client is None:
            return
        data = _json(keys.gpu_record(gpus))
        self._put(Record(self._gpu_key, data, keys.GPU_MAXLEN, rid=self._rid(), droppable=True))

    def event(self, event_type: str, **fields: Any) -> None:
        if self._client is None:
            return
        data = _json(keys.event_record(event_type, **fields))
        self._put(Record(self._events_key, data, EVENTS_MAXLEN, rid=self._rid()))

    def _rid(self) -> str:
        return f"{self._run}:{next(self._seq)}"

    def _pack_steps(self) -> None:
        """Logged step points into the queue, STEPS_CHUNK per column entry (sender thread)."""
        steps = self._steps
        n = len(steps)  # whole points: each was one extend
        if not n:
            return
        flat = steps[:n]
        del steps[:n]  # the logger only appends: what it added meanwhile stays
        chunk = STEPS_CHUNK * STEP_WIDTH
        for at in range(0, n, chunk):
            part = flat[at : at + chunk]
            columns = [part[i::STEP_WIDTH] for i in range(STEP_WIDTH)]
            try:
                fields = keys.encode_step_columns(columns)
            except OverflowError:
                columns = self._fitting(columns)
                if not columns[0]:
                    continue
                fields = keys.encode_step_columns(columns)
            head, blob = fields[keys.DATA_FIELD], fields[keys.COLUMNS_FIELD]
            assert isinstance(head, str) and isinstance(blob, bytes)
            points = len(columns[0])
            self._queue.append(
                Record(
                    self._steps_key,
                    head,
                    order=keys.STEPS_ORDER,
                    droppable=True,
                    points=points,
                    columns=blob,
                )
            )
            self._packed_extra += points - 1

    def _fitting(self, columns: list[list[int | float]]) -> list[list[int | float]]:
        """The points of a chunk whose integers fit 64 bits; the others (an epoch or step no
        reader could order) are dropped, counted and reported."""
        keep = [
            i
            for i in range(len(columns[0]))
            if all(-(2**63) <= c[i] < 2**63 for c in columns if isinstance(c[i], int))
        ]
        lost = len(columns[0]) - len(keep)
        self.dropped += lost
        print(
            f"pivot-trainer: dropped {lost} step point(s) beyond 64-bit integers", file=sys.stderr
        )
        return [[c[i] for i in keep] for c in columns]

    def _pop(self) -> Record:
        record = self._queue.popleft()
        self._packed_extra -= record.points - 1
        return record

    def _put(self, record: Record) -> None:
        self._queue.append(record)
        if self._down and self.in_memory > self._memory_records:
            self._wake.set()  # the sender moves the excess to disk

    def last_metric_epoch(self) -> int:
        """The newest epoch already in the metrics stream (0 if none or unreachable)."""
        if self._client is None:
            return 0
        try:
            entries = self._client.xrevrange(self._metrics_key, count=1)
        except redis.RedisError:
            return 0
        if not entries:
            return 0
        epoch = keys.decode_record(entries[0][1]).get("epoch")
        return int(epoch) if isinstance(epoch, int | float) else 0

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

    def _send(self, batch: Sequence[Record], *, retry: bool = True) -> None:
        assert self._client is not None
        if self._shas is None:
            # EVALSHA directly: redis-py's Script objects check SCRIPT EXISTS on every
            # pipeline execute, a second round trip per batch.
            load = self._client.script_load
            self._shas = (str(load(_APPEND_IF_NEWER)), str(load(_APPEND_ONCE)))
        if_newer, once = self._shas
        pipe = self._client.pipeline(transaction=False)
        # Consecutive records of one stream go in one script call.
        calls: list[list[Record]] = []
        for item in batch:
            run = calls[-1] if calls else None
            if run and run[0].stream == item.stream:
                run.append(item)
            else:
                calls.append([item])
        for run in calls:
            item = run[0]
            args: list[str | int | bytes]
            if item.order:
                args = [len(item.order), *item.order]
                for i in run:
                    args += (i.data, i.columns)
                pipe.evalsha(if_newer, 1, item.stream, *args)
            else:
                args = [item.maxlen or 0]
                for i in run:
                    args += (i.rid, i.data)
                pipe.evalsha(once, 1, item.stream, *args)
        results = pipe.execute(raise_on_error=False)
        if any(isinstance(r, redis.exceptions.NoScriptError) for r in results):
            # A restarted Redis forgot the scripts: load them again and resend the batch
            # (the calls that did run discard their records the second time).
            self._shas = None
            if retry:
                self._send(batch, retry=False)
                return
            raise redis.ConnectionError("redis keeps forgetting the sink's scripts")
        for run, result in zip(calls, results, strict=True):
            if isinstance(result, redis.ConnectionError | redis.TimeoutError):
                raise result
            if isinstance(result, redis.ResponseError):
                # Will never succeed (e.g. a key of another type): report it, don't block on it.
                print(f"pivot-trainer: redis refused records for {run[0].stream}: {result}")
                continue
            added = int(result)
            self.sent += added
            self.duplicates += sum(r.points for r in run) - added

    def _send_all(self) -> None:
        """Spool first (it is older), then memory; each batch forgotten once Redis took it."""
        while self.spool:
            batch, end = self.spool.peek(BATCH)
            self._send(batch)
            self.spool.consume(batch, end)
        queue = self._queue
        while queue:
            batch = [queue[i] for i in range(min(BATCH, len(queue)))]
            self._send(batch)
            for _ in batch:
                self._pop()

    def _relieve(self) -> None:
        """In an outage: move the oldest queued records beyond the memory bound to disk (to
        half the bound, so this runs once per many records), or drop them with no spool."""
        queue = self._queue
        if self.in_memory <= self._memory_records:
            return
        if self.spool is not None:
            moved = []
            while queue and self.in_memory > self._memory_records // 2:
                moved.append(self._pop())
            self.spool.append(moved)
        elif self.in_memory > MEMORY_ONLY_LIMIT:
            n = 0
            while queue and self.in_memory > MEMORY_ONLY_LIMIT:
                n += self._pop().points
            self.dropped += n
            print(f"pivot-trainer: buffer full, dropped {n} oldest record(s)", file=sys.stderr)

    def flush(self, *, force: bool = False) -> bool:
        """Send queued records in order; True when nothing is pending. Never raises."""
        if self._client is None or not self.pending:
            return True
        with self._send_lock:
            self._pack_steps()
            if not force and time.monotonic() < self._next_try:
                self._relieve()
                return False
            try:
                self._send_all()
            except (redis.RedisError, OSError) as exc:
                self._down = True
                if not self._warned:
                    print(
                        f"pivot-trainer: redis unavailable ({exc}); buffering "
                        f"{self.pending} record(s) and retrying",
                        file=sys.stderr,
                    )
                    self._warned = True
                self._next_try = time.monotonic() + self._backoff
                self._backoff = min(self._backoff * 2, self._backoff_max)
                self._relieve()
                return False
            self._down = False
        if self._warned:
            print("pivot-trainer: redis reachable again; buffered records sent", file=sys.stderr)
        self._warned = False
        self._backoff = self._backoff_initial
        return True

    def persist(self) -> None:
        """Make what was logged so far outlive a kill of this process: sent to Redis, or, in an
        outage, moved to the disk spool (which the next start in this pod directory sends
        first). The checkpoint thread calls this before it commits: a committed checkpoint is
        where a restarted run resumes, so the records of the epochs it covers must not be
        only in this process's memory."""
        if self._client is None:
            return
        if not self._down and self.flush(force=True):
            return
        if self.spool is None:
            return
        with self._send_lock:
            self._pack_steps()
            self.spool.append([self._pop() for _ in range(len(self._queue))])

    def close(
        self, timeout: float, *, hurry: Callable[[], bool] | None = None, hurry_timeout: float = 3.0
    ) -> bool:
        """Flush with retries for at most `timeout` seconds (`hurry_timeout` from the moment
        `hurry()` turns true, e.g. on SIGTERM); True when everything was sent. What is left
        stays in the spool for the next start in this pod directory."""
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
        sent = not self.pending
        if not sent:
            where = "unsent"
            if self.spool is not None:
                try:
                    with self._send_lock:
                        self._pack_steps()
                        self.spool.append([self._pop() for _ in range(len(self._queue))])
                    where = f"kept in {self.spool.dir} for the next start"
                except OSError as exc:
                    where = f"lost ({exc})"
            print(
                f"pivot-trainer: redis unreachable: {self.pending} record(s) {where}",
                file=sys.stderr,
            )
        if self.spool is not None:
            self.spool.close()
        if self._client is not None:
            self._client.close()
        return sent
