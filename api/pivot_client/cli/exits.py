"""Exit codes: a script can tell what went wrong without parsing messages."""

from __future__ import annotations

from pivot_client import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    PIVOTError,
    RateLimitError,
    ValidationError,
)

EXIT_OK = 0
EXIT_API_ERROR = 1  # the API answered with an error not listed below, or a 5xx
EXIT_USAGE = 2  # bad command line or input file (argparse uses 2 as well)
EXIT_NOT_FOUND = 3  # 404
EXIT_CONFLICT = 4  # 409: e.g. starting a session that is already running
EXIT_INVALID = 5  # 400 / 422: the API refused the request as invalid
EXIT_AUTH = 6  # 401 / 403
EXIT_RATE_LIMITED = 7  # 429 after the client's retries
EXIT_UNREACHABLE = 8  # no answer: connection refused, timeout, broken stream
EXIT_TRAINING_FAILED = 9  # `sessions watch`: the session failed or was stopped
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_BROKEN_PIPE = 141  # stdout closed early (`| head`): 128 + SIGPIPE, as a shell reports

EXIT_CODES_HELP = """exit codes:
  0 ok              1 API error          2 usage / bad input   3 not found
  4 conflict        5 invalid request    6 unauthorized        7 rate limited
  8 API unreachable 9 training failed or stopped (sessions watch)   130 interrupted
  141 output pipe closed (e.g. | head)"""

_ERROR_EXITS: list[tuple[type[PIVOTError], int]] = [
    (NotFoundError, EXIT_NOT_FOUND),
    (ConflictError, EXIT_CONFLICT),
    (ValidationError, EXIT_INVALID),
    (BadRequestError, EXIT_INVALID),
    (AuthenticationError, EXIT_AUTH),
    (PermissionDeniedError, EXIT_AUTH),
    (RateLimitError, EXIT_RATE_LIMITED),
    (APIConnectionError, EXIT_UNREACHABLE),
]


class UsageError(Exception):
    """Bad input that argparse could not catch (a manifest, a JSON argument)."""


def exit_code_for(exc: PIVOTError) -> int:
    for cls, code in _ERROR_EXITS:
        if isinstance(exc, cls):
            return code
    return EXIT_API_ERROR
