"""One error hierarchy for the SDK, mapped from the API's error envelope
`{"error": {"code", "message", "details"}}` by HTTP status (as openai-python does)."""

from __future__ import annotations

from typing import Any

import httpx

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "InternalServerError",
    "NotFoundError",
    "PIVOTError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServiceUnavailableError",
    "TrainingFailedError",
    "TrainingStoppedError",
    "ValidationError",
    "WaitTimeoutError",
]


class PIVOTError(Exception):
    """Base of every error the client raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class APIError(PIVOTError):
    """A failed exchange with the API (an error answer or no answer at all)."""

    def __init__(self, message: str, *, request: httpx.Request | None = None) -> None:
        super().__init__(message)
        self.request = request


class APIConnectionError(APIError):
    """No HTTP answer: refused, reset, DNS failure, broken stream."""

    def __init__(
        self, message: str = "connection error", *, request: httpx.Request | None = None
    ) -> None:
        super().__init__(message, request=request)


class APITimeoutError(APIConnectionError):
    def __init__(self, *, request: httpx.Request | None = None) -> None:
        tried = f" ({request.method} {request.url})" if request is not None else ""
        super().__init__(f"request timed out{tried}", request=request)


class APIStatusError(APIError):
    """The API answered with a 4xx/5xx; `code` and `details` come from the envelope."""

    status_code: int = 0

    def __init__(
        self,
        message: str,
        *,
        response: httpx.Response,
        code: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{response.status_code} {code}: {message}", request=response.request)
        self.message = message
        self.response = response
        self.status_code = response.status_code
        self.code = code
        self.details = details or {}


class BadRequestError(APIStatusError):
    status_code = 400


class AuthenticationError(APIStatusError):
    status_code = 401


class PermissionDeniedError(APIStatusError):
    status_code = 403


class NotFoundError(APIStatusError):
    status_code = 404


class ConflictError(APIStatusError):
    status_code = 409


class ValidationError(APIStatusError):
    status_code = 422


class RateLimitError(APIStatusError):
    status_code = 429


class InternalServerError(APIStatusError):
    """Any 5xx."""

    status_code = 500


class ServiceUnavailableError(InternalServerError):
    status_code = 503


class TrainingFailedError(PIVOTError):
    """wait_for_completion: the session ended without completing."""

    def __init__(self, session_id: str, status: str, reason: str | None) -> None:
        super().__init__(f"session {session_id} {status}: {reason or 'no reason given'}")
        self.session_id = session_id
        self.status = status
        self.reason = reason


class TrainingStoppedError(TrainingFailedError):
    """wait_for_completion: the session was stopped before it completed."""


class WaitTimeoutError(PIVOTError, TimeoutError):
    """wait_for_completion: the session did not finish within `timeout`."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def error_from_response(response: httpx.Response) -> APIStatusError:
    """The error class for an answer, with the envelope's code, message and details (or the
    raw text when the body is not the envelope, e.g. a proxy's HTML page)."""
    code, message, details = f"HTTP_{response.status_code}", "", {}
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or code)
        message = str(error.get("message") or "")
        raw_details = error.get("details")
        details = raw_details if isinstance(raw_details, dict) else {}
    elif isinstance(body, dict) and "detail" in body:  # a plain FastAPI/Starlette answer
        message = str(body["detail"])
    if not message:
        message = response.text[:500] or response.reason_phrase
    cls = _BY_STATUS.get(response.status_code)
    if cls is None:
        cls = InternalServerError if response.status_code >= 500 else APIStatusError
    return cls(message, response=response, code=code, details=details)
