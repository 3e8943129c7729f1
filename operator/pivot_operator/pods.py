"""The trainer pods as the reconciler sees them: one PodView per pod, and what its state means
(failed, preempted, neither)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pivot_schema.config import EXIT_CONFIG_ERROR
from pivot_schema.crd import LABEL_ATTEMPT, LABEL_RANK, ConditionReason

# A container stuck waiting for one of these will never start: the attempt has failed.
FATAL_WAITING = {
    "ImagePullBackOff": ConditionReason.IMAGE_PULL_BACK_OFF,
    "ErrImagePull": ConditionReason.ERR_IMAGE_PULL,
    "InvalidImageName": ConditionReason.INVALID_IMAGE_NAME,
    "CreateContainerConfigError": ConditionReason.CREATE_CONTAINER_CONFIG_ERROR,
}
# Exit code of a trainer that checkpointed and stopped on SIGTERM (128 + 15).
SIGTERM_EXIT = 143
# Pod reasons for "the node or the cluster stopped it", not the trainer: the kubelet's
# eviction, graceful node shutdown, a lost node, the process kubelet's lost container.
PREEMPTION_REASONS = frozenset({"Evicted", "Shutdown", "Terminated", "NodeLost", "ContainerLost"})


@dataclass(frozen=True)
class PodView:
    """What the operator needs to know about one trainer pod."""

    name: str
    phase: str  # Pending | Running | Succeeded | Failed | Unknown
    terminating: bool = False
    attempt: int = 0
    rank: int = 0
    node: str | None = None
    created_at: str | None = None
    exit_code: int | None = None
    reason: str | None = None  # the container's terminated reason, or the pod's
    message: str | None = None
    waiting_reason: str | None = None
    waiting_message: str | None = None
    unschedulable: tuple[str, str] | None = None  # PodScheduled=False: (reason, message)
    disrupted: bool = False  # DisruptionTarget=True: evicted or preempted

    @classmethod
    def from_pod(cls, pod: dict[str, Any]) -> PodView:
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        status = pod.get("status") or {}
        exit_code = reason = message = waiting_reason = waiting_message = None
        for cs in status.get("containerStatuses") or []:
            state = cs.get("state") or {}
            if term := state.get("terminated"):
                exit_code, reason, message = (
                    term.get("exitCode"),
                    term.get("reason"),
                    term.get("message"),
                )
            if waiting := state.get("waiting"):
                waiting_reason = waiting.get("reason")
                waiting_message = waiting.get("message")
        unschedulable = None
        disrupted = False
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                unschedulable = (
                    cond.get("reason") or ConditionReason.UNSCHEDULABLE.value,
                    cond.get("message") or "",
                )
            if cond.get("type") == "DisruptionTarget" and cond.get("status") == "True":
                disrupted = True
        return cls(
            name=meta.get("name", ""),
            phase=status.get("phase") or "Pending",
            terminating=bool(meta.get("deletionTimestamp")),
            attempt=_int(labels.get(LABEL_ATTEMPT)),
            rank=_int(labels.get(LABEL_RANK)),
            node=(pod.get("spec") or {}).get("nodeName"),
            created_at=meta.get("creationTimestamp"),
            exit_code=exit_code,
            reason=reason or status.get("reason"),
            message=message or status.get("message"),
            waiting_reason=waiting_reason,
            waiting_message=waiting_message,
            unschedulable=unschedulable,
            disrupted=disrupted,
        )

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def owned_by(pod: dict[str, Any], uid: str) -> bool:
    """The pod belongs to the session with this uid (not to an earlier one of its name)."""
    refs = (pod.get("metadata") or {}).get("ownerReferences") or []
    return uid in {r.get("uid") for r in refs}


def failure_of(pod: PodView) -> tuple[ConditionReason, str] | None:
    """Why this pod's attempt failed, or None when it did not (running, done, preempted)."""
    if pod.terminating:
        return None
    if pod.phase == "Pending" and pod.waiting_reason in FATAL_WAITING:
        return FATAL_WAITING[pod.waiting_reason], pod.waiting_message or pod.waiting_reason
    if pod.phase != "Failed" or preempted(pod):
        return None
    if pod.reason == "OOMKilled":
        return ConditionReason.OOM_KILLED, f"pod {pod.name} ran out of memory (OOMKilled)"
    detail = f"pod {pod.name} exited with code {pod.exit_code}"
    if pod.exit_code == EXIT_CONFIG_ERROR:
        detail = f"{detail}, a config error"
    if pod.message:
        detail = f"{detail}: {pod.message[-400:]}"
    if pod.exit_code == EXIT_CONFIG_ERROR:
        # The trainer refused its config (or environment): every retry would too.
        return ConditionReason.INVALID_CONFIG, detail
    return ConditionReason.EXIT_CODE, detail


def preempted(pod: PodView) -> bool:
    """Stopped by someone other than the user or the operator: an eviction, a node drain, a
    preemption, `kubectl delete pod`. The trainer checkpointed on SIGTERM; nothing is lost."""
    return (
        pod.terminating
        or pod.disrupted
        or (
            pod.phase == "Failed"
            and (pod.exit_code == SIGTERM_EXIT or pod.reason in PREEMPTION_REASONS)
        )
    )
