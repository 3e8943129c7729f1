"""S3 layout and the checkpoint manifest. S3 is the truth for checkpoints.

checkpoints/<session_id>/<checkpoint_id>/model.pth
checkpoints/<session_id>/<checkpoint_id>/manifest.json   written last: no manifest, no checkpoint
checkpoints/<session_id>/latest                          text: the latest committed checkpoint id
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

ROOT = "checkpoints"
MODEL_FILE = "model.pth"
MANIFEST_FILE = "manifest.json"
LATEST_FILE = "latest"

_CKPT_ID = re.compile(r"^ckpt_(?P<session>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)_(?P<tag>[a-z0-9]+)$")


def checkpoint_id(session_id: str, epoch: int) -> str:
    """Stable id of the trainer's checkpoint for an epoch; the session is recoverable from it."""
    return f"ckpt_{session_id}_e{epoch:05d}"


def parse_checkpoint_id(ckpt_id: str) -> str | None:
    """The session id inside a checkpoint id, or None when it is not one of ours."""
    match = _CKPT_ID.match(ckpt_id)
    return match.group("session") if match else None


def session_prefix(session_id: str) -> str:
    return f"{ROOT}/{session_id}/"


def checkpoint_prefix(session_id: str, ckpt_id: str) -> str:
    return f"{ROOT}/{session_id}/{ckpt_id}/"


def model_key(session_id: str, ckpt_id: str) -> str:
    return checkpoint_prefix(session_id, ckpt_id) + MODEL_FILE


def manifest_key(session_id: str, ckpt_id: str) -> str:
    return checkpoint_prefix(session_id, ckpt_id) + MANIFEST_FILE


def latest_key(session_id: str) -> str:
    return f"{ROOT}/{session_id}/{LATEST_FILE}"


class CheckpointManifest(BaseModel):
    checkpoint_id: str
    session_id: str
    epoch: int = Field(ge=0)
    metrics: dict[str, float | None] = Field(default_factory=dict)
    metric_name: str | None = None
    metric_value: float | None = None
    is_best: bool = False
    size_bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    object_key: str
    created_at: str
    # The uploader's file name (sanitised) for checkpoints uploaded through the API.
    file_name: str | None = None


def partial_checkpoint_id(session_id: str, epoch: int, step: int) -> str:
    """A checkpoint taken mid-epoch (on SIGTERM): `epoch` full epochs plus `step` batches of the
    next one. Its manifest's `epoch` is the number of full epochs; it sorts after that epoch's
    own checkpoint and before the next one."""
    return f"{checkpoint_id(session_id, epoch)}s{step:06d}"
