"""What the server refuses, as the API's error envelope, and its exit codes.

{"error": {"code": "INVALID_IMAGE", "message": "...", "details": {...}}}: the same envelope and
codes as pivot_api.errors, so the API can pass a pod's refusal through unchanged.
"""

from __future__ import annotations

from typing import Any

from pivot_schema.config import EXIT_CONFIG_ERROR
from pivot_schema.modelserver import EXIT_CHECKSUM as EXIT_CHECKSUM_MISMATCH
from pivot_schema.modelserver import EXIT_UNLOADABLE as EXIT_CHECKPOINT_UNLOADABLE

# Exit codes the operator reads from a failed pod (pivot_operator.serving.VERIFY_FAILURES):
# 3 and 4 are permanent (the new revision is not retried, the old pods keep serving); 1 is a
# crash the operator replaces after a backoff (S3 unreachable, say).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = EXIT_CONFIG_ERROR
EXIT_CHECKSUM = EXIT_CHECKSUM_MISMATCH
EXIT_UNLOADABLE = EXIT_CHECKPOINT_UNLOADABLE


class ServeError(Exception):
    """A request the server refuses; subclasses fix the HTTP status and code."""

    status = 500
    code = "INTERNAL_ERROR"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(ServeError):
    status = 400
    code = "BAD_REQUEST"


class InvalidImage(ServeError):
    status = 400
    code = "INVALID_IMAGE"


class PayloadTooLarge(ServeError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(ServeError):
    status = 415
    code = "UNSUPPORTED_MEDIA_TYPE"


class Unavailable(ServeError):
    status = 503
    code = "SERVICE_UNAVAILABLE"


class CheckpointError(Exception):
    """The checkpoint cannot be served; `exit_code` says whether that is permanent."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
