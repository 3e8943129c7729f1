"""What a training run came to: the engine's answer, which the entry point turns into the
final event and the exit code. A leaf module (no torch)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Ending(enum.Enum):
    COMPLETED = "completed"  # every epoch trained and checkpointed
    ALREADY_DONE = "already_done"  # nothing to train: the newest checkpoint is the last epoch
    STOPPED = "stopped"  # a signal (on this rank or another): checkpointed where it stopped
    FAILED = "failed"  # `error` says why


@dataclass(frozen=True)
class Outcome:
    ending: Ending
    epoch: int  # full epochs done
    total_epochs: int
    step: int = 0  # batches done of the next epoch (a stopped run)
    checkpoint_id: str | None = None  # the newest committed checkpoint
    metrics: dict[str, float] = field(default_factory=dict)  # the last epoch's
    best_metric: float | None = None
    error: Exception | None = None
