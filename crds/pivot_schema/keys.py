"""Redis keys and record formats. Every Redis key in PIVOT is built here.

Keys carry the session id in a hash tag (`{...}`) so that one session's keys live on one
Redis Cluster slot and can be read together in a pipeline.
"""

from __future__ import annotations

import json
import math
import sys
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

PREFIX = "pivot"


def metrics_stream(session_id: str) -> str:
    """Per-epoch metric records (one stream entry per epoch; the entry id is the event id)."""
    return f"{PREFIX}:{{{session_id}}}:metrics"


def events_stream(session_id: str) -> str:
    """Trainer lifecycle events: started, checkpoint, completed, failed."""
    return f"{PREFIX}:{{{session_id}}}:events"


def steps_stream(session_id: str) -> str:
    """Step-level records (train_loss every N optimizer steps; see `step_record`), packed up
    to STEPS_CHUNK an entry, oldest first (one entry per point would cap ingest at Redis's
    XADD rate): the trainer writes column entries (`encode_step_columns`); entries holding a
    JSON array of records, or one record, are read too. Read entries with `decode_records`
    or, column-wise, `decode_step_columns`."""
    return f"{PREFIX}:{{{session_id}}}:steps"


def gpu_stream(session_id: str) -> str:
    """GPU telemetry samples every few seconds (see `gpu_record`); trimmed to GPU_MAXLEN."""
    return f"{PREFIX}:{{{session_id}}}:gpu"


def series_rollups(session_id: str) -> str:
    """A hash of min/max rollups of the metrics and steps streams' series (derived from the
    streams, rebuilt from them when missing; fields named by `rollup_field`)."""
    return f"{PREFIX}:{{{session_id}}}:rollups"


def series_rollups_lock(session_id: str) -> str:
    """Held (SET NX PX) by the one API worker that brings `series_rollups` up to date."""
    return f"{PREFIX}:{{{session_id}}}:rollups:lock"


def rollup_field(stream: str, metric: str | None, part: str) -> str:
    """A field of `series_rollups`: `stream` is "metrics" or "steps"; `part` is "meta" (with
    no metric), "tail" or "<level>.<chunk>" (CHUNK level records from chunk * CHUNK on)."""
    return f"{stream}\0{metric or ''}\0{part}"


def session_keys(session_id: str) -> list[str]:
    """Every key that belongs to one session (the operator's finalizer removes them)."""
    return [
        metrics_stream(session_id),
        events_stream(session_id),
        steps_stream(session_id),
        gpu_stream(session_id),
        series_rollups(session_id),
        series_rollups_lock(session_id),
    ]


# -- the API's own records ---------------------------------------------------------------------

WEBHOOK_PARTS = ("outbox", "payloads", "attempts", "seen", "log", "dead", "dead_order")


@dataclass(frozen=True)
class ApiKeys:
    """Redis keys of the API's own records (event bus, alerts, webhooks, notifications,
    leases, rate limits), scoped to the namespace the API serves: one Redis can serve several
    installs (and tests) without their records meeting."""

    namespace: str

    def key(self, *parts: str) -> str:
        return ":".join((PREFIX, "api", self.namespace, *parts))

    # The platform event bus (a stream) and what publishes to it.
    @property
    def events(self) -> str:
        return self.key("events")

    def transitions(self, kind: str) -> str:
        """Hash: subject -> the state last published for it (one event per change)."""
        return self.key("transitions", kind)

    @property
    def lifecycle_since(self) -> str:
        """When lifecycle events were first recorded (older sessions are not announced)."""
        return self.key("lifecycle-since")

    def leader(self, job: str) -> str:
        """The lease of a job one API worker runs at a time."""
        return self.key("leader", job)

    @property
    def read_mark(self) -> str:
        """The newest TrainingSession resourceVersion any worker has shown a client (see
        pivot_api.consistency)."""
        return self.key("read-mark")

    @property
    def ratelimit(self) -> str:
        """The prefix of the rate limiter's windows."""
        return self.key("ratelimit")

    # Alerts: rules (hash id -> JSON), one hash per alert, ids by trigger time (index) and by
    # resolve time (resolved), and the open map "<rule_id>|<subject>" -> open alert id.
    @property
    def alert_rules(self) -> str:
        return self.key("alerts", "rules")

    @property
    def alert_index(self) -> str:
        return self.key("alerts", "index")

    @property
    def alerts_resolved(self) -> str:
        return self.key("alerts", "resolved")

    @property
    def alerts_open(self) -> str:
        return self.key("alerts", "open")

    def alert(self, alert_id: str) -> str:
        return self.key("alerts", "alert", alert_id)

    # Notifications: ids by creation time, one hash each, the set of unread ids.
    @property
    def notification_index(self) -> str:
        return self.key("notifications", "index")

    @property
    def notifications_unread(self) -> str:
        return self.key("notifications", "unread")

    def notification(self, notif_id: str) -> str:
        return self.key("notifications", "n", notif_id)

    # Webhooks: records (hash id -> JSON), when each outbox is due (zset), the scheduler's
    # wake-up list, and per webhook the WEBHOOK_PARTS: outbox (zset, bus order), payloads
    # (hash event id -> body), attempts (hash), seen (zset event id -> enqueued ms), log
    # (list), dead (hash) and dead_order (zset).
    @property
    def webhook_records(self) -> str:
        return self.key("webhooks", "records")

    @property
    def webhooks_due(self) -> str:
        return self.key("webhooks", "due")

    @property
    def webhooks_wake(self) -> str:
        return self.key("webhooks", "wake")

    def webhook(self, webhook_id: str, part: str) -> str:
        return self.key("webhooks", webhook_id, part)

    def webhook_keys(self, webhook_id: str) -> list[str]:
        """Every key of one webhook (deleted with it)."""
        return [self.webhook(webhook_id, p) for p in WEBHOOK_PARTS]


# Stream entries hold one field, `data`, with the record as JSON.
DATA_FIELD = "data"

# Names every epoch record carries besides its metrics.
RESERVED_FIELDS = frozenset({"epoch", "timestamp"})


def utcnow_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def encode_record(record: dict[str, Any]) -> dict[str, str]:
    """A record as stream fields. Non-finite floats become null (JSON has no NaN)."""
    clean = {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()
    }
    return {DATA_FIELD: json.dumps(clean, separators=(",", ":"))}


def _field(fields: Mapping[Any, Any] | None, name: str) -> Any:
    if not fields:
        return None
    return fields.get(name, fields.get(name.encode()))


def _decode(fields: Mapping[Any, Any] | None) -> Any:
    raw = _field(fields, DATA_FIELD)
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode()
    return json.loads(raw)


def decode_record(fields: Mapping[Any, Any] | None) -> dict[str, Any]:
    """The record of a one-record entry (metrics, events, GPU samples)."""
    value = _decode(fields)
    return value if isinstance(value, dict) else {}


def decode_records(fields: Mapping[Any, Any] | None) -> list[dict[str, Any]]:
    """The records of an entry that may be packed (the steps stream), oldest first; a
    one-record entry gives a list of one. A column entry's rows come back as records
    (`time_us` as `timestamp` text, non-finite values as None); a malformed one raises
    ValueError."""
    columns = decode_step_columns(fields)
    if columns is not None:
        stamps = columns.pop(STEP_TIME_FIELD, None)
        names = list(columns)
        rows: list[dict[str, Any]] = []
        for i, values in enumerate(zip(*columns.values(), strict=True)):
            record = {
                k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in zip(names, values, strict=True)
            }
            if stamps is not None:
                record["timestamp"] = time_us_text(stamps[i])
            rows.append(record)
        return rows
    value = _decode(fields)
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [r for r in value if isinstance(r, dict)]
    return []


def epoch_record(
    epoch: int, metrics: dict[str, float], timestamp: str | None = None
) -> dict[str, Any]:
    """The reference's Metrics model: epoch, timestamp and the metric values side by side."""
    record: dict[str, Any] = {"epoch": epoch, "timestamp": timestamp or utcnow_iso()}
    record.update({k: float(v) for k, v in metrics.items() if k not in RESERVED_FIELDS})
    return record


# Trainer lifecycle event types (the `type` field of an events-stream record). `stopped` is
# written when the trainer checkpoints and exits on SIGTERM (a stop, preemption or eviction).
EVENT_STARTED = "started"
EVENT_CHECKPOINT = "checkpoint"
EVENT_COMPLETED = "completed"
EVENT_FAILED = "failed"
EVENT_STOPPED = "stopped"
EVENT_TYPES = frozenset(
    {EVENT_STARTED, EVENT_CHECKPOINT, EVENT_COMPLETED, EVENT_FAILED, EVENT_STOPPED}
)

# The events stream is trimmed (approximately) to this length; metrics streams are never trimmed.
EVENTS_MAXLEN = 10_000


def event_record(event_type: str, timestamp: str | None = None, **fields: Any) -> dict[str, Any]:
    """A lifecycle event: `type`, `timestamp` and the event's own fields side by side."""
    return {"type": event_type, "timestamp": timestamp or utcnow_iso(), **fields}


# Records in the metrics and steps streams are ordered by these integer fields; the trainer
# writes a record only if it is newer than the stream's last one, so a resend (a reply lost
# in an outage, a restart that retrains an epoch) never duplicates a point.
METRICS_ORDER = ("epoch",)
STEPS_ORDER = ("epoch", "step")

# Step records per steps-stream entry, at most.
STEPS_CHUNK = 512

# A column entry of the steps stream: DATA_FIELD holds a small JSON head, COLUMNS_FIELD the
# values, column after column, each `n` little-endian 8-byte numbers (dtype `<i8` or `<f8`):
#   {"n":3,"columns":["epoch",...],"dtypes":["<i8",...],
#    "first":{"epoch":1,"step":1},"last":{"epoch":1,"step":3}}
# `first`/`last` carry the STEPS_ORDER fields of the first and last rows, so an appender ranks
# an entry without reading its columns. `time_us` is the point's time in microseconds since
# the epoch (UTC); non-finite values are stored as they are and read back as null. Binary
# columns, not JSON text: formatting a float as text costs the writer more than a microsecond a
# point, which would be most of the logging path.
COLUMNS_FIELD = "columns"
STEP_COLUMNS: tuple[tuple[str, str], ...] = (
    ("epoch", "<i8"),
    ("step", "<i8"),
    ("global_step", "<i8"),
    ("train_loss", "<f8"),
    ("time_us", "<i8"),
)
STEP_TIME_FIELD = "time_us"
_TYPECODES = {"<i8": "q", "<f8": "d"}
_SWAP = sys.byteorder != "little"
_STEP_HEAD = (
    '{"n":%d,"columns":'
    + json.dumps([name for name, _ in STEP_COLUMNS], separators=(",", ":"))
    + ',"dtypes":'
    + json.dumps([dtype for _, dtype in STEP_COLUMNS], separators=(",", ":"))
    + ',"first":{"epoch":%d,"step":%d},"last":{"epoch":%d,"step":%d}}'
)


def encode_step_columns(columns: Sequence[Sequence[int | float]]) -> dict[str, str | bytes]:
    """Stream fields of one column entry: `columns` holds STEP_COLUMNS' values in that order,
    one sequence each, rows in STEPS_ORDER (at most STEPS_CHUNK). A fraction of a microsecond
    a row: no per-value formatting. An integer beyond 64 bits raises OverflowError."""
    if len(columns) != len(STEP_COLUMNS):
        raise ValueError(f"a column entry holds {len(STEP_COLUMNS)} columns")
    n = len(columns[0])
    if not n or any(len(c) != n for c in columns):
        raise ValueError("a column entry holds one or more rows, as many in every column")
    blob = bytearray()
    for (_, dtype), values in zip(STEP_COLUMNS, columns, strict=True):
        column = array(_TYPECODES[dtype], values)
        if _SWAP:
            column.byteswap()
        blob += column.tobytes()
    epochs, steps = columns[0], columns[1]  # STEPS_ORDER
    head = _STEP_HEAD % (n, epochs[0], steps[0], epochs[-1], steps[-1])
    return {DATA_FIELD: head, COLUMNS_FIELD: bytes(blob)}


def decode_step_columns(fields: Mapping[Any, Any] | None) -> dict[str, array[Any]] | None:
    """The columns of a column entry by name (`array('q')` or `array('d')`; non-finite
    floats become NaN, the null of these columns); None for an entry of JSON records. A
    malformed column entry raises ValueError."""
    blob = _field(fields, COLUMNS_FIELD)
    if blob is None:
        return None
    try:
        head = json.loads(_field(fields, DATA_FIELD))
        n, names, dtypes = int(head["n"]), head["columns"], head["dtypes"]
        if not isinstance(names, list) or not isinstance(dtypes, list):
            raise TypeError("columns and dtypes are lists")
        if n < 0 or len(names) != len(dtypes) or len(blob) != 8 * n * len(names):
            raise ValueError("column entry of the wrong size")
        out: dict[str, array[Any]] = {}
        view = memoryview(blob)
        for i, (name, dtype) in enumerate(zip(names, dtypes, strict=True)):
            column: array[Any] = array(_TYPECODES[dtype])
            column.frombytes(view[8 * n * i : 8 * n * (i + 1)])
            if _SWAP:
                column.byteswap()
            if column.typecode == "d" and not math.isfinite(sum(column)):
                column = array("d", (v if math.isfinite(v) else math.nan for v in column))
            out[str(name)] = column
    except (KeyError, TypeError, json.JSONDecodeError, OverflowError) as exc:
        raise ValueError(f"malformed column entry: {exc}") from None
    return out


def time_us_text(us: int) -> str:
    """Microseconds since the epoch as the records' timestamp text (UTC, Z)."""
    seconds, micros = divmod(us, 1_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{micros:06d}Z"


# The GPU stream keeps about this many samples (hours at one sample every few seconds).
GPU_MAXLEN = 20_000


def step_record(
    epoch: int, step: int, global_step: int, train_loss: float, timestamp: str | None = None
) -> dict[str, Any]:
    """One step-level point: `epoch` is 1-based (the epoch in progress), `step` counts
    optimizer steps within it (1-based) and `global_step` across the run."""
    return {
        "epoch": epoch,
        "step": step,
        "global_step": global_step,
        "timestamp": timestamp or utcnow_iso(),
        "train_loss": float(train_loss),
    }


def gpu_record(gpus: list[dict[str, Any]], timestamp: str | None = None) -> dict[str, Any]:
    """One telemetry sample: `gpus` holds one dict per device with `index`, `name`,
    `utilization_percent`, `memory_used_bytes`, `memory_total_bytes`, `temperature_c` and
    `power_watts` (null where the driver does not report it)."""
    return {"timestamp": timestamp or utcnow_iso(), "gpus": gpus}
