"""Writing status: its time format, conditions that keep their transition time, and the diff
that makes a status patch carry only what changed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def format_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def condition(ctype: str, ok: bool, reason: str, message: str, now: str) -> dict[str, Any]:
    return {
        "type": ctype,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": now,
    }


def merge_conditions(
    old: list[dict[str, Any]] | None, new: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """New conditions replace old ones of their type, keeping lastTransitionTime where the
    status did not change; conditions not mentioned stay as they were."""
    previous = {c.get("type"): c for c in old or []}
    merged = {c.get("type"): c for c in old or []}
    for cond in new:
        before = previous.get(cond["type"])
        if before and before.get("status") == cond["status"]:
            cond = {
                **cond,
                "lastTransitionTime": before.get("lastTransitionTime", cond["lastTransitionTime"]),
            }
        merged[cond["type"]] = cond
    return list(merged.values())


def status_diff(current: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """Only the fields whose value differs: status is patched only when it changed."""
    return {k: v for k, v in desired.items() if current.get(k) != v}
