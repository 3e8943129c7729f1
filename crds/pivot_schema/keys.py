"""Redis keys and record formats. Every Redis key in PIVOT is built here.

Keys carry the session id in a hash tag (`{...}`) so that one session's keys live on one
Redis Cluster slot and can be read together in a pipeline.
"""

from __future__ import annotations

import json
import math
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
    """Step-level records (train_loss every N optimizer steps; see `step_record`), packed:
    an entry's data is a JSON array of up to STEPS_CHUNK records, oldest first (one entry per
    point would cap ingest at Redis's XADD rate). Read entries with `decode_records`."""
    return f"{PREFIX}:{{{session_id}}}:steps"


def gpu_stream(session_id: str) -> str:
    """GPU telemetry samples every few seconds (see `gpu_record`); trimmed to GPU_MAXLEN."""
    return f"{PREFIX}:{{{session_id}}}:gpu"


def session_keys(session_id: str) -> list[str]:
    """Every key that belongs to one session (the operator's finalizer removes them)."""
    return [
        metrics_stream(session_id),
        events_stream(session_id),
        steps_stream(session_id),
        gpu_stream(session_id),
    ]


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


def _decode(fields: dict[Any, Any]) -> Any:
    raw = fields.get(DATA_FIELD, fields.get(DATA_FIELD.encode()))
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode()
    return json.loads(raw)


def decode_record(fields: dict[Any, Any]) -> dict[str, Any]:
    """The record of a one-record entry (metrics, events, GPU samples)."""
    value = _decode(fields)
    return value if isinstance(value, dict) else {}


def decode_records(fields: dict[Any, Any]) -> list[dict[str, Any]]:
    """The records of an entry that may be packed (the steps stream), oldest first; a
    one-record entry gives a list of one."""
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
