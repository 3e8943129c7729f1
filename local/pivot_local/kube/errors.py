"""API errors rendered as meta/v1 Status objects."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error the server answers with a Status object and the given HTTP code."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            out["details"] = self.details
        return out


def not_found(qualified: str, name: str, group: str, plural: str) -> ApiError:
    return ApiError(404, "NotFound", f'{qualified} "{name}" not found',
                    {"name": name, "group": group, "kind": plural})


def already_exists(qualified: str, name: str, group: str, plural: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{qualified} "{name}" already exists',
                    {"name": name, "group": group, "kind": plural})


def conflict(qualified: str, name: str, group: str, plural: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        {"name": name, "group": group, "kind": plural},
    )


def invalid(kind: str, group: str, name: str, causes: list[dict[str, str]]) -> ApiError:
    gk = f"{kind}.{group}" if group else kind
    text = "; ".join(f"{c['field']}: {c['message']}" if c.get("field") else c["message"]
                     for c in causes)
    if len(causes) > 1:
        text = "[" + ", ".join(f"{c['field']}: {c['message']}" for c in causes) + "]"
    return ApiError(422, "Invalid", f'{gk} "{name}" is invalid: {text}',
                    {"name": name, "group": group, "kind": kind, "causes": causes})


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)
