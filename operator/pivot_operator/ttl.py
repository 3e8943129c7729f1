"""ttlSecondsAfterFinished: when a finished session is deleted."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pivot_operator.status import parse_time
from pivot_schema.crd import (
    TERMINAL_PHASES,
    StoredTrainingSessionSpec,
    StoredTrainingSessionStatus,
)


def ttl_remaining(
    spec: StoredTrainingSessionSpec | Mapping[str, Any],
    status: StoredTrainingSessionStatus | Mapping[str, Any],
    now: datetime,
) -> float | None:
    """Seconds until a finished session is deleted; None when it is not to be."""
    ttl = StoredTrainingSessionSpec.model_validate(spec).ttl_seconds_after_finished
    observed = StoredTrainingSessionStatus.model_validate(status)
    if ttl is None or observed.phase not in TERMINAL_PHASES:
        return None
    finished = parse_time(observed.finished_at or observed.completed_at or observed.stopped_at)
    if finished is None:
        return 0.0
    return max(0.0, float(ttl) - (now - finished).total_seconds())
