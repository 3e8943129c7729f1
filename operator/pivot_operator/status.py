"""Level-based status: observed state (spec, the trainer pod, telemetry) in, CR status out.

Pure functions, so the phase machine is unit-tested without a cluster. Handlers patch only
the fields that changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pivot_schema.crd import TERMINAL_PHASES, ConditionReason, ConditionType, Phase


@dataclass(frozen=True)
class PodView:
    """What the operator needs to know about the trainer pod."""

    name: str
    phase: str  # Pending | Running | Succeeded | Failed | Unknown
    terminating: bool
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None

    @classmethod
    def from_pod(cls, pod: dict[str, Any]) -> PodView:
        meta = pod.get("metadata") or {}
        status = pod.get("status") or {}
        exit_code = reason = message = None
        for cs in status.get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated")
            if term:
                exit_code = term.get("exitCode")
                reason = term.get("reason")
                message = term.get("message")
        return cls(
            name=meta.get("name", ""),
            phase=status.get("phase") or "Pending",
            terminating=bool(meta.get("deletionTimestamp")),
            exit_code=exit_code,
            reason=reason or status.get("reason"),
            message=message or status.get("message"),
        )


def total_epochs(spec: dict[str, Any]) -> int:
    return int(((spec.get("config") or {}).get("epochs")) or 0)


def _condition(ctype: str, ok: bool, reason: str, message: str, now: str) -> dict[str, Any]:
    return {
        "type": ctype,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": now,
    }


def _merge_conditions(
    old: list[dict[str, Any]] | None, new: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Keep lastTransitionTime where a condition's status did not change."""
    previous = {c.get("type"): c for c in old or []}
    merged = []
    for cond in new:
        before = previous.get(cond["type"])
        if before and before.get("status") == cond["status"]:
            cond = {
                **cond,
                "lastTransitionTime": before.get("lastTransitionTime", cond["lastTransitionTime"]),
            }
        merged.append(cond)
    return merged


def derive_status(
    spec: dict[str, Any],
    status: dict[str, Any],
    pod: PodView | None,
    latest: dict[str, Any] | None,
    now: str,
) -> dict[str, Any]:
    """The status a session should have now. Terminal phases never change again."""
    old_phase = status.get("phase")
    total = total_epochs(spec)
    out: dict[str, Any] = {"totalEpochs": total}

    if old_phase in TERMINAL_PHASES:
        return {}

    if latest:
        out.update(telemetry_fields(latest, total))

    if spec.get("suspend"):
        if old_phase in (None, Phase.CREATED) and not status.get("startedAt"):
            phase, msg = Phase.CREATED, "Created; start the session to run it"
            reason = ConditionReason.NOT_STARTED
        else:
            phase, msg, reason = (
                Phase.STOPPED,
                "Stopped by the user",
                ConditionReason.SUSPENDED_BY_USER,
            )
            out["stoppedAt"] = status.get("stoppedAt") if old_phase == Phase.STOPPED else now
        suspended = True
    elif pod is None or pod.terminating:
        # No pod yet, or one going away while the session should run: a new one is coming.
        phase, msg, reason = (
            Phase.PENDING,
            "Waiting for the trainer pod",
            ConditionReason.POD_CREATED,
        )
        suspended = False
    elif pod.phase == "Running":
        phase, msg, reason = Phase.RUNNING, "Training", ConditionReason.POD_RUNNING
        out["startedAt"] = status.get("startedAt") or now
        suspended = False
    elif pod.phase == "Succeeded":
        phase, msg, reason = Phase.COMPLETED, "Training completed", ConditionReason.POD_SUCCEEDED
        out["startedAt"] = status.get("startedAt") or now
        out["completedAt"] = now
        out["currentEpoch"] = max(
            int(out.get("currentEpoch") or 0), int(status.get("currentEpoch") or 0)
        )
        out["progress"] = 1.0 if out["currentEpoch"] >= total else out.get("progress", 0.0)
        suspended = False
    elif pod.phase == "Failed":
        detail = pod.reason or "Error"
        if pod.exit_code is not None:
            detail = f"{detail} (exit code {pod.exit_code})"
        if pod.message:
            detail = f"{detail}: {pod.message}"
        phase, msg, reason = Phase.FAILED, f"Trainer failed: {detail}", ConditionReason.POD_FAILED
        out["stoppedAt"] = now
        suspended = False
    else:
        phase, msg, reason = Phase.PENDING, "Trainer pod is pending", ConditionReason.POD_CREATED
        suspended = False

    out["phase"] = phase.value
    out["message"] = msg
    if pod is not None:
        out["podName"] = pod.name
    out["conditions"] = _merge_conditions(
        status.get("conditions"),
        [
            _condition(ConditionType.SUSPENDED, suspended, reason, msg, now),
            _condition(ConditionType.RUNNING, phase == Phase.RUNNING, reason, msg, now),
            _condition(ConditionType.SUCCEEDED, phase == Phase.COMPLETED, reason, msg, now),
            _condition(ConditionType.FAILED, phase == Phase.FAILED, reason, msg, now),
        ],
    )
    return out


def telemetry_fields(latest: dict[str, Any], total: int) -> dict[str, Any]:
    """currentEpoch, progress and latestMetrics from the trainer's newest epoch record."""
    epoch = int(latest.get("epoch") or 0)
    metrics = {
        k: float(v)
        for k, v in latest.items()
        if k not in ("epoch", "timestamp")
        and isinstance(v, int | float)
        and not isinstance(v, bool)
    }
    out: dict[str, Any] = {"currentEpoch": epoch, "latestMetrics": metrics}
    if total > 0:
        out["progress"] = round(min(1.0, epoch / total), 4)
    return out


def status_diff(current: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """Only the fields whose value differs: status is patched only when it changed."""
    return {k: v for k, v in desired.items() if current.get(k) != v}
