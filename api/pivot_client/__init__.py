"""PIVOT's Python SDK and the `pivot` command.

from pivot_client import PIVOTClient
client = PIVOTClient()              # PIVOT_URL / PIVOT_API_KEY, or pass them
"""

from pivot_client._async_client import AsyncEventStream, AsyncPIVOTClient
from pivot_client._base import RetryPolicy
from pivot_client._client import EventStream, PIVOTClient
from pivot_client._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    PIVOTError,
    RateLimitError,
    ServiceUnavailableError,
    TrainingFailedError,
    TrainingStoppedError,
    ValidationError,
    WaitTimeoutError,
)

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncEventStream",
    "AsyncPIVOTClient",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "EventStream",
    "InternalServerError",
    "NotFoundError",
    "PIVOTClient",
    "PIVOTError",
    "PermissionDeniedError",
    "RateLimitError",
    "RetryPolicy",
    "ServiceUnavailableError",
    "TrainingFailedError",
    "TrainingStoppedError",
    "ValidationError",
    "WaitTimeoutError",
    "__version__",
]
