"""Level-based reconciliation: observed state (spec, status, the session's pods, telemetry) in,
a plan out (the status to have, pods to delete and create, Events to post).

Pure functions, so the attempt/backoff/preemption machine is unit-tested without a cluster.
The handlers run `decide` to a fixed point: patch status (guarded by resourceVersion), delete,
create, look again. Every decision is derived from what is stored (status.attempt,
status.launchedAttempt, the pods' attempt labels), so an operator killed at any point resumes
where it was and never makes a second pod for a rank of an attempt (pod names are per attempt).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pivot_schema.config import EXIT_CONFIG_ERROR, ConfigError, check_config
from pivot_schema.crd import (
    ANNOTATION_STARTED_AT,
    ANNOTATION_STOPPED_AT,
    DEFAULT_BACKOFF_LIMIT,
    LABEL_ATTEMPT,
    LABEL_RANK,
    TERMINAL_PHASES,
    ConditionReason,
    ConditionType,
    Phase,
)

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
MAX_BACKOFF_SECONDS = 300.0
EVENT_NORMAL, EVENT_WARNING = "Normal", "Warning"


def format_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


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
            if state.get("terminated"):
                term = state["terminated"]
                exit_code, reason, message = (
                    term.get("exitCode"),
                    term.get("reason"),
                    term.get("message"),
                )
            if state.get("waiting"):
                waiting_reason = state["waiting"].get("reason")
                waiting_message = state["waiting"].get("message")
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


@dataclass
class Plan:
    status: dict[str, Any] = field(default_factory=dict)  # fields that differ from now
    delete: list[str] = field(default_factory=list)
    create: list[int] = field(default_factory=list)  # ranks of status.attempt to create
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    requeue_after: float | None = None  # seconds until the plan may change by itself

    @property
    def idle(self) -> bool:
        return not (self.status or self.delete or self.create)


def total_epochs(spec: dict[str, Any]) -> int:
    return int(((spec.get("config") or {}).get("epochs")) or 0)


def backoff_delay(restarts: int, base: float) -> float:
    """Seconds before retry number `restarts + 1`: base, 2·base, 4·base… capped."""
    return float(min(MAX_BACKOFF_SECONDS, base * (2**restarts)))


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


def config_problem(spec: dict[str, Any]) -> str | None:
    """Why the trainer would refuse this spec's config (pivot_schema.config, the trainer's own
    validation), or None. What the CRD's schema cannot state is caught here, before any pod."""
    try:
        check_config(spec.get("config"))
    except ConfigError as exc:
        return str(exc)
    return None


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


def _condition(ctype: str, status: str, reason: str, message: str, now: str) -> dict[str, Any]:
    return {
        "type": ctype,
        "status": status,
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


def _bool(ok: bool) -> str:
    return "True" if ok else "False"


def decide(
    spec: dict[str, Any],
    status: dict[str, Any],
    pods: list[PodView],
    now: datetime,
    *,
    replicas: int = 1,
    latest: dict[str, Any] | None = None,
    best: dict[str, Any] | None = None,
    backoff_base: float = 2.0,
    schedule_timeout: float = 10.0,
    generation: int | None = None,
    annotations: dict[str, Any] | None = None,
    telemetry_ok: bool = True,
) -> Plan:
    """One step towards what the spec asks, from what is observed now.

    `annotations` are the CR's (the times the API answered a start or stop with);
    `telemetry_ok` is False when Redis could not be read this time, so a session whose pods
    have all succeeded waits for its final metrics instead of completing without them."""
    plan = Plan()
    asked = annotations or {}
    asked_start = asked.get(ANNOTATION_STARTED_AT)
    asked_stop = asked.get(ANNOTATION_STOPPED_AT)
    phase_now = status.get("phase")
    now_s = format_time(now)
    if phase_now in TERMINAL_PHASES:
        if phase_now == Phase.FAILED:
            # A failed gang leaves no pod running (finished ones stay for their logs).
            plan.delete = [p.name for p in pods if not p.terminating and not p.finished]
        return plan

    total = total_epochs(spec)
    out: dict[str, Any] = {"totalEpochs": total}
    if generation is not None:
        out["observedGeneration"] = generation  # the spec this status answers
    if latest:
        out.update(telemetry_fields(latest, total))
    if best:
        out["bestCheckpoint"] = best
    attempt = int(status.get("attempt") or 0)
    launched = status.get("launchedAttempt")
    current = {p.rank: p for p in pods if p.attempt == attempt}
    stale = [p for p in pods if p.attempt != attempt]
    plan.delete = [p.name for p in stale if not p.terminating]
    conditions: list[dict[str, Any]] = []

    def finish(phase: Phase, reason: str, message: str, suspended: bool = False) -> Plan:
        out["phase"] = phase.value
        out["message"] = message
        if 0 in current:
            out["podName"] = current[0].name
        out["podNames"] = [current[r].name for r in sorted(current)]
        conditions.extend(
            [
                _condition(ConditionType.SUSPENDED, _bool(suspended), reason, message, now_s),
                _condition(
                    ConditionType.RUNNING, _bool(phase == Phase.RUNNING), reason, message, now_s
                ),
                _condition(
                    ConditionType.SUCCEEDED, _bool(phase == Phase.COMPLETED), reason, message, now_s
                ),
            ]
        )
        if not any(c["type"] == ConditionType.FAILED for c in conditions):
            conditions.append(
                _condition(
                    ConditionType.FAILED, _bool(phase == Phase.FAILED), reason, message, now_s
                )
            )
        out["conditions"] = merge_conditions(status.get("conditions"), conditions)
        plan.status = status_diff(status, out)
        if phase_now != phase.value:
            kind = EVENT_WARNING if phase == Phase.FAILED else EVENT_NORMAL
            plan.events.append((kind, phase.value, message))
        return plan

    if spec.get("suspend"):
        plan.delete += [p.name for p in current.values() if not p.terminating]
        # Pods the operator stops are not preempted: forget that this attempt was launched.
        out["launchedAttempt"] = None
        if phase_now in (None, Phase.CREATED) and not status.get("startedAt") and not asked_start:
            return finish(
                Phase.CREATED,
                ConditionReason.NOT_STARTED,
                "Created; start the session to run it",
                suspended=True,
            )
        # A stop the API answered carries its time: the status says the same.
        out["stoppedAt"] = (
            status.get("stoppedAt") if phase_now == Phase.STOPPED else asked_stop or now_s
        )
        return finish(Phase.STOPPED, ConditionReason.SUSPENDED_BY_USER, "Stopped by the user", True)

    failures = [(p, f) for p in current.values() if (f := failure_of(p)) is not None]
    was_launched = launched == attempt
    gone = [r for r in range(replicas) if r not in current] if was_launched else []
    interrupted = [p for p in current.values() if preempted(p)]
    if not was_launched:
        # Not launched yet (a stop/start, or a crash mid-launch): a stopped pod is no
        # preemption, just one to clear away and create again under its name.
        plan.delete += [p.name for p in interrupted if not p.terminating]
        interrupted = []

    problem = None if was_launched else config_problem(spec)
    if problem is not None:
        # A config the trainer would refuse: no pod for it, no retry (it cannot get better).
        message = f"Failed: {ConditionReason.INVALID_CONFIG.value}: {problem} (not retried)"
        plan.delete += [p.name for p in current.values() if not p.terminating and not p.finished]
        out["stoppedAt"] = out["finishedAt"] = now_s
        out["nextAttemptAt"] = None
        conditions.append(
            _condition(ConditionType.FAILED, "True", ConditionReason.INVALID_CONFIG, message, now_s)
        )
        return finish(Phase.FAILED, ConditionReason.INVALID_CONFIG, message)

    if failures:
        _pod, (reason, detail) = failures[0]
        restarts = int(status.get("restarts") or 0)
        limit = spec.get("backoffLimit")
        limit = DEFAULT_BACKOFF_LIMIT if limit is None else int(limit)
        plan.events.append((EVENT_WARNING, reason.value, f"attempt {attempt} failed: {detail}"))
        plan.delete += [p.name for p in current.values() if not p.terminating and not p.finished]
        permanent = reason == ConditionReason.INVALID_CONFIG
        if permanent or restarts >= limit:
            final = ConditionReason.BACKOFF_LIMIT_EXCEEDED if limit > 0 else reason
            message = (
                f"Failed after {restarts + 1} attempt(s): {reason.value}: {detail}"
                if limit > 0
                else f"Failed: {reason.value}: {detail}"
            )
            if permanent:
                final = reason
                message = f"Failed: {reason.value}: {detail} (a config error is not retried)"
            out["stoppedAt"] = out["finishedAt"] = now_s
            out["nextAttemptAt"] = None
            conditions.append(_condition(ConditionType.FAILED, "True", final, message, now_s))
            return finish(Phase.FAILED, final, message)
        delay = backoff_delay(restarts, backoff_base)
        out["attempt"] = attempt + 1
        out["restarts"] = restarts + 1
        out["nextAttemptAt"] = format_time(now + timedelta(seconds=delay))
        message = (
            f"Attempt {attempt} failed ({reason.value}); retry {restarts + 1} of {limit} "
            f"in {delay:g}s from the latest checkpoint"
        )
        plan.events.append((EVENT_WARNING, ConditionReason.RETRYING.value, message))
        plan.requeue_after = delay
        conditions.append(
            _condition(ConditionType.FAILED, "False", ConditionReason.RETRYING, message, now_s)
        )
        return finish(Phase.PENDING, ConditionReason.RETRYING, message)

    if interrupted or gone:
        names = [p.name for p in interrupted] or [f"rank {r}" for r in gone]
        message = (
            f"Attempt {attempt} preempted ({', '.join(names)} stopped without the user asking); "
            "the gang is replaced and resumes from the latest checkpoint"
        )
        out["attempt"] = attempt + 1
        out["preemptions"] = int(status.get("preemptions") or 0) + 1
        out["nextAttemptAt"] = None
        plan.delete += [p.name for p in current.values() if not p.terminating and not p.finished]
        plan.events.append((EVENT_WARNING, ConditionReason.PREEMPTED.value, message))
        return finish(Phase.PENDING, ConditionReason.PREEMPTED, message)

    retry_at = parse_time(status.get("nextAttemptAt"))
    if stale:
        return finish(
            Phase.PENDING,
            ConditionReason.POD_CREATED,
            f"Waiting for {len(stale)} pod(s) of an earlier attempt to stop",
        )
    if not was_launched and retry_at is not None and now < retry_at:
        plan.requeue_after = (retry_at - now).total_seconds()
        return finish(
            Phase.PENDING,
            ConditionReason.RETRYING,
            f"Retrying attempt {attempt} at {status.get('nextAttemptAt')}",
        )
    if not was_launched:
        plan.create = [r for r in range(replicas) if r not in current]
        if not plan.create and not any(p.terminating for p in current.values()):
            out["launchedAttempt"] = attempt
            out["nextAttemptAt"] = None

    pods_now = [current[r] for r in sorted(current)]
    unbound = [p for p in pods_now if p.phase == "Pending" and not p.node]
    if unbound:
        explicit = next((p for p in unbound if p.unschedulable), None)
        oldest = min((parse_time(p.created_at) or now for p in unbound), default=now)
        age = (now - oldest).total_seconds()
        if explicit and explicit.unschedulable:
            reason_s, msg = explicit.unschedulable
            conditions.append(_condition(ConditionType.SCHEDULABLE, "False", reason_s, msg, now_s))
        elif age >= schedule_timeout:
            scheduler = spec.get("schedulerName") or "default-scheduler"
            msg = (
                f"pod {unbound[0].name} not bound to a node after {int(age)}s "
                f"(scheduler {scheduler})"
            )
            conditions.append(
                _condition(
                    ConditionType.SCHEDULABLE, "False", ConditionReason.NOT_SCHEDULED, msg, now_s
                )
            )
        else:
            plan.requeue_after = schedule_timeout - age
    elif len(pods_now) == replicas:
        conditions.append(
            _condition(
                ConditionType.SCHEDULABLE,
                "True",
                ConditionReason.SCHEDULED,
                "every pod is bound to a node",
                now_s,
            )
        )

    if len(pods_now) == replicas and all(p.phase == "Succeeded" for p in pods_now):
        out["startedAt"] = status.get("startedAt") or asked_start or now_s
        if not telemetry_ok:
            # Completed is final: it must carry the last epoch's metrics, so not yet.
            plan.requeue_after = 1.0
            return finish(
                Phase.RUNNING,
                ConditionReason.POD_SUCCEEDED,
                "Training finished; waiting to read its final metrics",
            )
        out["completedAt"] = out["finishedAt"] = now_s
        out["currentEpoch"] = max(
            int(out.get("currentEpoch") or 0), int(status.get("currentEpoch") or 0)
        )
        if total and out["currentEpoch"] >= total:
            out["progress"] = 1.0
        return finish(Phase.COMPLETED, ConditionReason.POD_SUCCEEDED, "Training completed")
    if len(pods_now) == replicas and all(p.phase in ("Running", "Succeeded") for p in pods_now):
        out["startedAt"] = status.get("startedAt") or asked_start or now_s
        return finish(Phase.RUNNING, ConditionReason.POD_RUNNING, "Training")
    unsched = next((c for c in conditions if c["type"] == ConditionType.SCHEDULABLE), None)
    if unsched and unsched["status"] == "False":
        return finish(Phase.PENDING, unsched["reason"], f"Unschedulable: {unsched['message']}")
    return finish(Phase.PENDING, ConditionReason.POD_CREATED, "Waiting for the trainer pod(s)")


def telemetry_fields(latest: dict[str, Any], total: int) -> dict[str, Any]:
    """currentEpoch, progress, latestMetrics and displayValLoss from the trainer's newest
    epoch record."""
    epoch = int(latest.get("epoch") or 0)
    metrics = {
        k: float(v)
        for k, v in latest.items()
        if k not in ("epoch", "timestamp")
        and isinstance(v, int | float)
        and not isinstance(v, bool)
    }
    out: dict[str, Any] = {"currentEpoch": epoch, "latestMetrics": metrics}
    if "val_loss" in metrics:
        out["displayValLoss"] = display_number(metrics["val_loss"])  # the Val-Loss column
    if total > 0:
        out["progress"] = round(min(1.0, epoch / total), 4)
    return out


def display_number(value: float) -> str:
    """A metric as a printer column shows it: 4 significant digits (kubectl prints a number
    column's float with all 17)."""
    return f"{value:.4g}"


def best_checkpoint(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest `checkpoint` event marked best (or, with no metric to rank by, the newest)."""
    from pivot_schema import keys

    checkpoints = [e for e in events if e.get("type") == keys.EVENT_CHECKPOINT]
    if not checkpoints:
        return None
    best = [e for e in checkpoints if e.get("is_best")]
    e = (best or checkpoints)[-1]
    out: dict[str, Any] = {"id": e.get("checkpoint_id"), "epoch": int(e.get("epoch") or 0)}
    if e.get("metric_name") and isinstance(e.get("metric_value"), int | float):
        out["metric"] = e["metric_name"]
        out["value"] = float(e["metric_value"])
    return {k: v for k, v in out.items() if v is not None}


def status_diff(current: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """Only the fields whose value differs: status is patched only when it changed."""
    return {k: v for k, v in desired.items() if current.get(k) != v}


def ttl_remaining(spec: dict[str, Any], status: dict[str, Any], now: datetime) -> float | None:
    """Seconds until a finished session is deleted; None when it is not to be."""
    ttl = spec.get("ttlSecondsAfterFinished")
    if ttl is None or status.get("phase") not in TERMINAL_PHASES:
        return None
    finished = parse_time(
        status.get("finishedAt") or status.get("completedAt") or status.get("stoppedAt")
    )
    if finished is None:
        return 0.0
    return max(0.0, float(ttl) - (now - finished).total_seconds())
