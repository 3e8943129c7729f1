"""Level-based reconciliation: observed state (spec, status, the session's pods, telemetry) in,
a plan out (the status to have, pods to delete and create, Events to post).

Pure functions, so the attempt/backoff/preemption machine is unit-tested without a cluster.
The handlers run `decide` to a fixed point: patch status (guarded by resourceVersion), delete,
create, look again. Every decision is derived from what is stored (status.attempt,
status.launchedAttempt, the pods' attempt labels), so an operator killed at any point resumes
where it was and never makes a second pod for a rank of an attempt (pod names are per attempt).

`decide` dispatches over one function per branch of the state machine, in priority order (as
kubeflow trainer's `set*Condition` helpers): each either settles the step, returning its Plan,
or adds to it and leaves the rest to the next.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pivot_operator.pods import PodView, failure_of, preempted
from pivot_operator.status import condition, format_time, merge_conditions, parse_time, status_diff
from pivot_operator.telemetry import telemetry_fields
from pivot_schema.config import ConfigError, check_config
from pivot_schema.crd import (
    ANNOTATION_STARTED_AT,
    ANNOTATION_STOPPED_AT,
    DEFAULT_BACKOFF_LIMIT,
    TERMINAL_PHASES,
    ConditionReason,
    ConditionType,
    Phase,
    StoredTrainingSessionSpec,
    StoredTrainingSessionStatus,
)

MAX_BACKOFF_SECONDS = 300.0
EVENT_NORMAL, EVENT_WARNING = "Normal", "Warning"


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


def total_epochs(spec: StoredTrainingSessionSpec) -> int:
    return int((spec.config or {}).get("epochs") or 0)


def backoff_delay(restarts: int, base: float) -> float:
    """Seconds before retry number `restarts + 1`: base, 2·base, 4·base… capped."""
    return float(min(MAX_BACKOFF_SECONDS, base * (2**restarts)))


def config_problem(spec: StoredTrainingSessionSpec) -> str | None:
    """Why the trainer would refuse this spec's config (pivot_schema.config, the trainer's own
    validation), or None. What the CRD's schema cannot state is caught here, before any pod."""
    try:
        check_config(spec.config)
    except ConfigError as exc:
        return str(exc)
    return None


@dataclass
class Step:
    """One decision in the making: what was observed, and the plan and status built so far."""

    spec: StoredTrainingSessionSpec
    status: StoredTrainingSessionStatus
    stored: dict[str, Any]  # status as stored: the plan carries the difference to it
    now: datetime
    replicas: int
    backoff_base: float
    schedule_timeout: float
    telemetry_ok: bool
    asked_start: str | None  # when the API answered a start (an annotation), or None
    asked_stop: str | None
    attempt: int
    launched: bool  # status.launchedAttempt is this attempt: every pod of it was made
    current: dict[int, PodView]  # this attempt's pods by rank
    stale: list[PodView]  # pods of other attempts
    plan: Plan = field(default_factory=Plan)
    out: dict[str, Any] = field(default_factory=dict)  # the status to have
    conditions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def now_s(self) -> str:
        return format_time(self.now)

    @property
    def pods_now(self) -> list[PodView]:
        return [self.current[r] for r in sorted(self.current)]

    def stop_unfinished(self) -> None:
        """Delete this attempt's pods that still run (finished ones stay for their logs)."""
        self.plan.delete += [
            p.name for p in self.current.values() if not p.terminating and not p.finished
        ]

    def finish(self, phase: Phase, reason: str, message: str, suspended: bool = False) -> Plan:
        """Settle the step on `phase`: the summary conditions, and the status diff."""
        self.out["phase"] = phase.value
        self.out["message"] = message
        if 0 in self.current:
            self.out["podName"] = self.current[0].name
        self.out["podNames"] = [p.name for p in self.pods_now]
        now = self.now_s
        self.conditions += [
            condition(ConditionType.SUSPENDED, suspended, reason, message, now),
            condition(ConditionType.RUNNING, phase == Phase.RUNNING, reason, message, now),
            condition(ConditionType.SUCCEEDED, phase == Phase.COMPLETED, reason, message, now),
        ]
        if not any(c["type"] == ConditionType.FAILED for c in self.conditions):
            self.conditions.append(
                condition(ConditionType.FAILED, phase == Phase.FAILED, reason, message, now)
            )
        self.out["conditions"] = merge_conditions(self.stored.get("conditions"), self.conditions)
        self.plan.status = status_diff(self.stored, self.out)
        if self.status.phase != phase.value:
            kind = EVENT_WARNING if phase == Phase.FAILED else EVENT_NORMAL
            self.plan.events.append((kind, phase.value, message))
        return self.plan

    def fail(self, reason: str, message: str) -> Plan:
        """Failed for good: no further attempt."""
        self.out["stoppedAt"] = self.out["finishedAt"] = self.now_s
        self.out["nextAttemptAt"] = None
        self.conditions.append(condition(ConditionType.FAILED, True, reason, message, self.now_s))
        return self.finish(Phase.FAILED, reason, message)


def set_suspended(s: Step) -> Plan | None:
    """spec.suspend: the pods go; Created if the session never ran, else Stopped."""
    if not s.spec.suspend:
        return None
    s.plan.delete += [p.name for p in s.current.values() if not p.terminating]
    # Pods the operator stops are not preempted: forget that this attempt was launched.
    s.out["launchedAttempt"] = None
    if s.status.phase in (None, Phase.CREATED) and not s.status.started_at and not s.asked_start:
        return s.finish(
            Phase.CREATED,
            ConditionReason.NOT_STARTED,
            "Created; start the session to run it",
            suspended=True,
        )
    # A stop the API answered carries its time: the status says the same.
    s.out["stoppedAt"] = (
        s.status.stopped_at if s.status.phase == Phase.STOPPED else s.asked_stop or s.now_s
    )
    return s.finish(Phase.STOPPED, ConditionReason.SUSPENDED_BY_USER, "Stopped by the user", True)


def clear_unlaunched(s: Step) -> None:
    """An attempt not launched yet (a stop/start, or a crash mid-launch): a stopped pod of it
    is no preemption, just one to clear away and create again under its name."""
    if not s.launched:
        s.plan.delete += [p.name for p in s.current.values() if preempted(p) and not p.terminating]


def set_invalid_config(s: Step) -> Plan | None:
    """A config the trainer would refuse: no pod for it, no retry (it cannot get better).
    Checked before launching only, so a running attempt is not disturbed."""
    problem = None if s.launched else config_problem(s.spec)
    if problem is None:
        return None
    message = f"Failed: {ConditionReason.INVALID_CONFIG.value}: {problem} (not retried)"
    s.stop_unfinished()
    return s.fail(ConditionReason.INVALID_CONFIG, message)


def set_failed_attempt(s: Step) -> Plan | None:
    """A pod of this attempt failed: the gang goes, and the session retries after a growing
    backoff, or fails once spec.backoffLimit retries are spent (a config error at once)."""
    failure = next((f for p in s.current.values() if (f := failure_of(p)) is not None), None)
    if failure is None:
        return None
    reason, detail = failure
    restarts = s.status.restarts or 0
    limit = DEFAULT_BACKOFF_LIMIT if s.spec.backoff_limit is None else s.spec.backoff_limit
    s.plan.events.append((EVENT_WARNING, reason.value, f"attempt {s.attempt} failed: {detail}"))
    s.stop_unfinished()
    if reason == ConditionReason.INVALID_CONFIG:
        return s.fail(reason, f"Failed: {reason.value}: {detail} (a config error is not retried)")
    if restarts >= limit:
        if limit > 0:
            message = f"Failed after {restarts + 1} attempt(s): {reason.value}: {detail}"
            return s.fail(ConditionReason.BACKOFF_LIMIT_EXCEEDED, message)
        return s.fail(reason, f"Failed: {reason.value}: {detail}")
    delay = backoff_delay(restarts, s.backoff_base)
    s.out["attempt"] = s.attempt + 1
    s.out["restarts"] = restarts + 1
    s.out["nextAttemptAt"] = format_time(s.now + timedelta(seconds=delay))
    message = (
        f"Attempt {s.attempt} failed ({reason.value}); retry {restarts + 1} of {limit} "
        f"in {delay:g}s from the latest checkpoint"
    )
    s.plan.events.append((EVENT_WARNING, ConditionReason.RETRYING.value, message))
    s.plan.requeue_after = delay
    s.conditions.append(
        condition(ConditionType.FAILED, False, ConditionReason.RETRYING, message, s.now_s)
    )
    return s.finish(Phase.PENDING, ConditionReason.RETRYING, message)


def set_preempted(s: Step) -> Plan | None:
    """A launched attempt lost a pod without the user asking (deleted, evicted, SIGTERMed,
    vanished): the gang is replaced under the next attempt; no retry is spent."""
    if not s.launched:
        return None
    interrupted = [p for p in s.current.values() if preempted(p)]
    gone = [r for r in range(s.replicas) if r not in s.current]
    if not (interrupted or gone):
        return None
    names = [p.name for p in interrupted] or [f"rank {r}" for r in gone]
    message = (
        f"Attempt {s.attempt} preempted ({', '.join(names)} stopped without the user asking); "
        "the gang is replaced and resumes from the latest checkpoint"
    )
    s.out["attempt"] = s.attempt + 1
    s.out["preemptions"] = (s.status.preemptions or 0) + 1
    s.out["nextAttemptAt"] = None
    s.stop_unfinished()
    s.plan.events.append((EVENT_WARNING, ConditionReason.PREEMPTED.value, message))
    return s.finish(Phase.PENDING, ConditionReason.PREEMPTED, message)


def launch(s: Step) -> Plan | None:
    """Wait for an earlier attempt's pods to go and for the retry's backoff; then create the
    missing ranks, and record the launch once every rank exists."""
    if s.stale:
        return s.finish(
            Phase.PENDING,
            ConditionReason.POD_CREATED,
            f"Waiting for {len(s.stale)} pod(s) of an earlier attempt to stop",
        )
    if s.launched:
        return None
    retry_at = parse_time(s.status.next_attempt_at)
    if retry_at is not None and s.now < retry_at:
        s.plan.requeue_after = (retry_at - s.now).total_seconds()
        return s.finish(
            Phase.PENDING,
            ConditionReason.RETRYING,
            f"Retrying attempt {s.attempt} at {s.status.next_attempt_at}",
        )
    s.plan.create = [r for r in range(s.replicas) if r not in s.current]
    if not s.plan.create and not any(p.terminating for p in s.current.values()):
        s.out["launchedAttempt"] = s.attempt
        s.out["nextAttemptAt"] = None
    return None


def set_schedulable(s: Step) -> None:
    """Schedulable: False with the scheduler's own words, or once a pod stays unbound past the
    timeout; True when every pod is bound."""
    pods = s.pods_now
    unbound = [p for p in pods if p.phase == "Pending" and not p.node]
    if not unbound:
        if len(pods) == s.replicas:
            s.conditions.append(
                condition(
                    ConditionType.SCHEDULABLE,
                    True,
                    ConditionReason.SCHEDULED,
                    "every pod is bound to a node",
                    s.now_s,
                )
            )
        return
    explicit = next((p.unschedulable for p in unbound if p.unschedulable), None)
    oldest = min((parse_time(p.created_at) or s.now for p in unbound), default=s.now)
    age = (s.now - oldest).total_seconds()
    if explicit:
        reason, message = explicit
        s.conditions.append(condition(ConditionType.SCHEDULABLE, False, reason, message, s.now_s))
    elif age >= s.schedule_timeout:
        scheduler = s.spec.scheduler_name or "default-scheduler"
        # The timeout, not the pod's age: a message that changed every resync would rewrite
        # the status (a PATCH and a watch event) of every waiting session each time.
        message = (
            f"pod {unbound[0].name} not bound to a node within {int(s.schedule_timeout)}s "
            f"(scheduler {scheduler}); waiting since {oldest.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        )
        s.conditions.append(
            condition(
                ConditionType.SCHEDULABLE, False, ConditionReason.NOT_SCHEDULED, message, s.now_s
            )
        )
    else:
        s.plan.requeue_after = s.schedule_timeout - age


def set_phase_from_pods(s: Step) -> Plan:
    """The phase the pods add up to: Completed when every rank succeeded (with its final
    metrics), Running when every rank runs, else Pending (and why)."""
    pods = s.pods_now
    everyone = len(pods) == s.replicas
    if everyone and all(p.phase == "Succeeded" for p in pods):
        s.out["startedAt"] = s.status.started_at or s.asked_start or s.now_s
        if not s.telemetry_ok:
            # Completed is final: it must carry the last epoch's metrics, so not yet.
            s.plan.requeue_after = 1.0
            return s.finish(
                Phase.RUNNING,
                ConditionReason.POD_SUCCEEDED,
                "Training finished; waiting to read its final metrics",
            )
        s.out["completedAt"] = s.out["finishedAt"] = s.now_s
        s.out["currentEpoch"] = max(
            int(s.out.get("currentEpoch") or 0), s.status.current_epoch or 0
        )
        total = s.out["totalEpochs"]
        if total and s.out["currentEpoch"] >= total:
            s.out["progress"] = 1.0
        return s.finish(Phase.COMPLETED, ConditionReason.POD_SUCCEEDED, "Training completed")
    if everyone and all(p.phase in ("Running", "Succeeded") for p in pods):
        s.out["startedAt"] = s.status.started_at or s.asked_start or s.now_s
        return s.finish(Phase.RUNNING, ConditionReason.POD_RUNNING, "Training")
    unschedulable = next((c for c in s.conditions if c["type"] == ConditionType.SCHEDULABLE), None)
    if unschedulable and unschedulable["status"] == "False":
        return s.finish(
            Phase.PENDING,
            unschedulable["reason"],
            f"Unschedulable: {unschedulable['message']}",
        )
    return s.finish(Phase.PENDING, ConditionReason.POD_CREATED, "Waiting for the trainer pod(s)")


# The branches that may settle a step, in priority order; what none settles, the pods decide.
BRANCHES: tuple[Callable[[Step], Plan | None], ...] = (
    set_suspended,
    clear_unlaunched,
    set_invalid_config,
    set_failed_attempt,
    set_preempted,
    launch,
)


def decide(
    spec: StoredTrainingSessionSpec | Mapping[str, Any],
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
    annotations: Mapping[str, Any] | None = None,
    telemetry_ok: bool = True,
) -> Plan:
    """One step towards what the spec asks, from what is observed now.

    `status` is the CR's status as stored; `annotations` are the CR's (the times the API
    answered a start or stop with); `telemetry_ok` is False when Redis could not be read this
    time, so a session whose pods have all succeeded waits for its final metrics instead of
    completing without them."""
    typed_status = StoredTrainingSessionStatus.model_validate(status)
    if typed_status.phase in TERMINAL_PHASES:
        return stay_finished(typed_status, pods)
    step = _observe(
        StoredTrainingSessionSpec.model_validate(spec),
        typed_status,
        status,
        pods,
        now,
        replicas=replicas,
        backoff_base=backoff_base,
        schedule_timeout=schedule_timeout,
        annotations=annotations or {},
        telemetry_ok=telemetry_ok,
    )
    _observed_fields(step, generation=generation, latest=latest, best=best)
    for branch in BRANCHES:
        if (plan := branch(step)) is not None:
            return plan
    set_schedulable(step)
    return set_phase_from_pods(step)


def stay_finished(status: StoredTrainingSessionStatus, pods: list[PodView]) -> Plan:
    """A terminal phase never changes; a failed gang leaves no pod running (finished ones
    stay for their logs)."""
    plan = Plan()
    if status.phase == Phase.FAILED:
        plan.delete = [p.name for p in pods if not p.terminating and not p.finished]
    return plan


def _observe(
    spec: StoredTrainingSessionSpec,
    status: StoredTrainingSessionStatus,
    stored: dict[str, Any],
    pods: list[PodView],
    now: datetime,
    *,
    replicas: int,
    backoff_base: float,
    schedule_timeout: float,
    annotations: Mapping[str, Any],
    telemetry_ok: bool,
) -> Step:
    attempt = status.attempt or 0
    stale = [p for p in pods if p.attempt != attempt]
    step = Step(
        spec=spec,
        status=status,
        stored=stored,
        now=now,
        replicas=replicas,
        backoff_base=backoff_base,
        schedule_timeout=schedule_timeout,
        telemetry_ok=telemetry_ok,
        asked_start=annotations.get(ANNOTATION_STARTED_AT),
        asked_stop=annotations.get(ANNOTATION_STOPPED_AT),
        attempt=attempt,
        launched=status.launched_attempt == attempt,
        current={p.rank: p for p in pods if p.attempt == attempt},
        stale=stale,
    )
    step.plan.delete = [p.name for p in stale if not p.terminating]
    return step


def _observed_fields(
    s: Step,
    *,
    generation: int | None,
    latest: dict[str, Any] | None,
    best: dict[str, Any] | None,
) -> None:
    """What status reports whatever the branch: epochs, the generation answered, telemetry."""
    total = total_epochs(s.spec)
    s.out["totalEpochs"] = total
    if generation is not None:
        s.out["observedGeneration"] = generation  # the spec this status answers
    if latest:
        s.out.update(telemetry_fields(latest, total))
    if best:
        s.out["bestCheckpoint"] = best
