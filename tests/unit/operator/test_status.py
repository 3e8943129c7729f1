"""The reconciler's decisions, from observed state alone (no cluster)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pivot_operator.pods import PodView
from pivot_operator.reconcile import Plan, backoff_delay, decide
from pivot_operator.status import format_time, merge_conditions, status_diff
from pivot_operator.telemetry import best_checkpoint, telemetry_fields
from pivot_operator.ttl import ttl_remaining

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = format_time(T0)
SPEC: dict[str, Any] = {"config": {"epochs": 4}}


def pod(
    phase: str,
    *,
    attempt: int = 0,
    rank: int = 0,
    node: str | None = "n1",
    **kw: Any,
) -> PodView:
    name = f"s-trainer-r{attempt}-{rank}"
    return PodView(name=name, phase=phase, attempt=attempt, rank=rank, node=node, **kw)


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def apply(status: dict[str, Any], plan: Plan) -> dict[str, Any]:
    merged = {**status, **plan.status}
    return {k: v for k, v in merged.items() if v is not None}


def test_suspended_and_never_started_is_created_without_pods() -> None:
    plan = decide({**SPEC, "suspend": True}, {}, [], T0)
    assert plan.status["phase"] == "Created"
    assert plan.status["totalEpochs"] == 4
    assert conditions(plan.status)["Suspended"][0] == "True"
    assert plan.create == []


def test_new_session_creates_its_pod_then_records_the_launch() -> None:
    plan = decide(SPEC, {}, [], T0)
    assert plan.create == [0]
    assert plan.status["phase"] == "Pending"
    status = apply({}, plan)
    again = decide(SPEC, status, [pod("Pending", node=None, created_at=NOW)], T0)
    assert again.create == []
    assert again.status["launchedAttempt"] == 0


def test_lifecycle_pending_running_completed_with_telemetry() -> None:
    status = {"launchedAttempt": 0, "phase": "Pending"}
    running = decide(SPEC, status, [pod("Running")], T0)
    assert running.status["phase"] == "Running"
    assert running.status["startedAt"] == NOW
    assert conditions(running.status)["Running"] == ("True", "PodRunning")
    assert conditions(running.status)["Schedulable"][0] == "True"
    assert ("Normal", "Running", "Training") in running.events
    status = apply(status, running)
    latest = {"epoch": 4, "timestamp": NOW, "train_loss": 0.1, "val_loss": 0.2}
    later = T0 + timedelta(minutes=5)
    done = decide(SPEC, status, [pod("Succeeded")], later, latest=latest)
    assert done.status["phase"] == "Completed"
    assert done.status["currentEpoch"] == 4 and done.status["progress"] == 1.0
    assert done.status["completedAt"] == format_time(later)
    assert "startedAt" not in done.status  # kept from the Running status
    assert conditions(done.status)["Succeeded"] == ("True", "PodSucceeded")
    assert done.status["latestMetrics"] == {"train_loss": 0.1, "val_loss": 0.2}


def test_unchanged_state_gives_an_idle_plan() -> None:
    status = apply(
        {"launchedAttempt": 0}, decide(SPEC, {"launchedAttempt": 0}, [pod("Running")], T0)
    )
    plan = decide(SPEC, status, [pod("Running")], T0 + timedelta(seconds=30))
    assert plan.idle and plan.events == []


def test_terminal_phases_never_change() -> None:
    assert decide(SPEC, {"phase": "Completed"}, [pod("Running")], T0).idle
    assert decide({**SPEC, "suspend": True}, {"phase": "Failed"}, [], T0).idle


def test_failed_session_stops_the_rest_of_its_gang() -> None:
    plan = decide(SPEC, {"phase": "Failed"}, [pod("Failed"), pod("Running", rank=1)], T0)
    assert plan.delete == ["s-trainer-r0-1"]


def test_stop_deletes_the_pods_and_is_not_a_preemption() -> None:
    running = {"phase": "Running", "startedAt": NOW, "launchedAttempt": 0}
    plan = decide({**SPEC, "suspend": True}, running, [pod("Running")], T0)
    assert plan.status["phase"] == "Stopped"
    assert plan.status["launchedAttempt"] is None
    assert plan.delete == ["s-trainer-r0-0"]
    status = apply(running, plan)
    # Started again while the old pod still terminates: wait, then reuse the attempt's name.
    terminating = [pod("Running", terminating=True)]
    wait = decide(SPEC, status, terminating, T0)
    assert wait.create == [] and "preemptions" not in wait.status
    assert decide(SPEC, apply(status, wait), [], T0).create == [0]


def test_failure_retries_with_growing_backoff_then_fails_with_a_reason() -> None:
    spec = {**SPEC, "backoffLimit": 2}
    status: dict[str, Any] = {"launchedAttempt": 0, "phase": "Running"}
    delays = []
    for attempt in range(3):
        failed = pod("Failed", attempt=attempt, exit_code=1, reason="Error", message="boom")
        plan = decide(spec, status, [failed], T0, backoff_base=1.0)
        if attempt < 2:
            assert plan.status["attempt"] == attempt + 1
            assert plan.status["restarts"] == attempt + 1
            assert apply(status, plan)["phase"] == "Pending"
            assert conditions(plan.status)["Failed"] == ("False", "Retrying")
            assert ("Warning", "ExitCode") in [(e[0], e[1]) for e in plan.events]
            delays.append(plan.requeue_after)
            status = apply(status, plan)
            status["launchedAttempt"] = attempt + 1
        else:
            assert plan.status["phase"] == "Failed"
            assert conditions(plan.status)["Failed"] == ("True", "BackoffLimitExceeded")
            assert "exited with code 1" in plan.status["message"]
            assert plan.status["finishedAt"] == NOW
    assert delays == [1.0, 2.0]


def test_a_config_error_exit_fails_at_once_with_invalid_config_and_is_not_retried() -> None:
    refused = pod(
        "Failed",
        exit_code=2,
        reason="Error",
        message="pivot-trainer: config error: 'optimizer' must be one of adam, adamw, sgd",
    )
    # The default backoff limit (3) and a larger one alike: a config error is never retried.
    for spec in (SPEC, {**SPEC, "backoffLimit": 10}):
        plan = decide(spec, {"launchedAttempt": 0, "phase": "Running"}, [refused], T0)
        assert plan.status["phase"] == "Failed"
        assert conditions(plan.status)["Failed"] == ("True", "InvalidConfig")
        assert "attempt" not in plan.status and "restarts" not in plan.status
        assert plan.create == [] and plan.requeue_after is None
        assert "Retrying" not in [e[1] for e in plan.events]
        assert ("Warning", "InvalidConfig") in [(e[0], e[1]) for e in plan.events]
        message = plan.status["message"]
        assert "config error" in message and "not retried" in message
        assert "'optimizer' must be one of" in message
        assert plan.status["finishedAt"] == NOW


def test_a_config_the_trainer_would_refuse_fails_before_any_pod_is_made() -> None:
    # The CRD cannot state what `checkpoint` may hold; the operator checks it as the trainer does.
    spec = {"config": {"epochs": 4, "checkpoint": {"metric": "f1"}}}
    plan = decide(spec, {}, [], T0)
    assert plan.create == []
    assert plan.status["phase"] == "Failed"
    assert conditions(plan.status)["Failed"] == ("True", "InvalidConfig")
    assert "'checkpoint.metric' must be one of" in plan.status["message"]
    assert ("Warning", "Failed") in [(e[0], e[1]) for e in plan.events]
    # Suspended, it waits to be started; a running attempt is not disturbed.
    assert decide({**spec, "suspend": True}, {}, [], T0).status["phase"] == "Created"
    running = decide(spec, {"launchedAttempt": 0, "phase": "Running"}, [pod("Running")], T0)
    assert running.idle or running.status.get("phase") != "Failed"


def test_backoff_limit_zero_fails_with_the_failure_reason() -> None:
    oom = pod("Failed", reason="OOMKilled", exit_code=137)
    plan = decide({**SPEC, "backoffLimit": 0}, {"launchedAttempt": 0}, [oom], T0)
    assert conditions(plan.status)["Failed"] == ("True", "OOMKilled")


def test_next_attempt_waits_for_the_backoff_and_for_old_pods_to_go() -> None:
    retry_at = format_time(T0 + timedelta(seconds=4))
    status = {"attempt": 1, "launchedAttempt": 0, "nextAttemptAt": retry_at, "restarts": 1}
    old = pod("Failed", attempt=0, exit_code=1)
    plan = decide(SPEC, status, [old], T0)
    assert plan.delete == [old.name] and plan.create == []
    plan = decide(SPEC, status, [], T0)
    assert plan.create == [] and plan.requeue_after == 4.0
    plan = decide(SPEC, status, [], T0 + timedelta(seconds=5))
    assert plan.create == [0]


def test_waiting_image_pull_error_is_a_failure() -> None:
    stuck = pod("Pending", waiting_reason="ImagePullBackOff", waiting_message="no such image")
    plan = decide(SPEC, {"launchedAttempt": 0}, [stuck], T0)
    assert plan.status["restarts"] == 1
    assert ("Warning", "ImagePullBackOff", "attempt 0 failed: no such image") in plan.events
    assert stuck.name in plan.delete


def test_deleted_pod_is_a_preemption_not_a_failure() -> None:
    status = {"launchedAttempt": 0, "phase": "Running", "restarts": 0}
    plan = decide(SPEC, status, [pod("Running", terminating=True)], T0)
    assert plan.status["attempt"] == 1
    assert plan.status["preemptions"] == 1
    assert "restarts" not in plan.status
    assert ("Warning", "Preempted") in [e[:2] for e in plan.events]
    assert "Failed" not in [e[1] for e in plan.events]


def test_sigterm_exit_eviction_and_lost_containers_are_preemptions() -> None:
    status = {"launchedAttempt": 0, "phase": "Running"}
    for p in (
        pod("Failed", exit_code=143),
        pod("Failed", reason="Evicted"),
        pod("Failed", reason="ContainerLost"),  # the node's kubelet lost the process
    ):
        plan = decide(SPEC, status, [p], T0)
        assert plan.status["preemptions"] == 1, p


def test_vanished_pod_of_a_launched_attempt_is_a_preemption() -> None:
    plan = decide(SPEC, {"launchedAttempt": 0, "phase": "Running"}, [], T0)
    assert plan.status["preemptions"] == 1 and plan.status["attempt"] == 1


def test_any_failed_pod_replaces_the_whole_gang() -> None:
    gang = [pod("Failed", rank=0, exit_code=1), pod("Running", rank=1), pod("Running", rank=2)]
    plan = decide({**SPEC, "replicas": 3}, {"launchedAttempt": 0}, gang, T0, replicas=3)
    assert plan.status["attempt"] == 1
    assert sorted(plan.delete) == ["s-trainer-r0-1", "s-trainer-r0-2"]


def test_gang_runs_only_when_every_rank_runs_and_completes_when_all_succeed() -> None:
    status = {"launchedAttempt": 0}
    half = decide(SPEC, status, [pod("Running", rank=0), pod("Pending", rank=1)], T0, replicas=2)
    assert half.status["phase"] == "Pending"
    mixed = [pod("Succeeded", rank=0), pod("Running", rank=1)]
    assert decide(SPEC, status, mixed, T0, replicas=2).status["phase"] == "Running"
    done = [pod("Succeeded", rank=0), pod("Succeeded", rank=1)]
    assert decide(SPEC, status, done, T0, replicas=2).status["phase"] == "Completed"


def test_missing_ranks_of_a_launching_attempt_are_created() -> None:
    plan = decide(SPEC, {"attempt": 2}, [pod("Pending", attempt=2, rank=1)], T0, replicas=3)
    assert plan.create == [0, 2]


def test_unbound_pod_is_unschedulable_after_the_timeout_with_the_scheduler_named() -> None:
    spec = {**SPEC, "schedulerName": "volcano"}
    unbound = pod("Pending", node=None, created_at=NOW)
    early = decide(
        spec, {"launchedAttempt": 0}, [unbound], T0 + timedelta(seconds=2), schedule_timeout=10
    )
    assert "Schedulable" not in conditions(early.status)
    assert early.requeue_after == 8.0
    late = decide(
        spec, {"launchedAttempt": 0}, [unbound], T0 + timedelta(seconds=11), schedule_timeout=10
    )
    ok, reason = conditions(late.status)["Schedulable"]
    assert (ok, reason) == ("False", "NotScheduled")
    assert "volcano" in late.status["message"]
    # Waiting longer changes nothing: a resync of a waiting session writes no new status.
    before = {"launchedAttempt": 0, **late.status}
    later = decide(spec, before, [unbound], T0 + timedelta(seconds=300), schedule_timeout=10)
    assert status_diff(before, later.status) == {}


def test_scheduler_message_is_reported_verbatim() -> None:
    msg = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    unbound = pod("Pending", node=None, created_at=NOW, unschedulable=("Unschedulable", msg))
    plan = decide(SPEC, {"launchedAttempt": 0}, [unbound], T0)
    cond = next(c for c in plan.status["conditions"] if c["type"] == "Schedulable")
    assert (cond["status"], cond["reason"], cond["message"]) == ("False", "Unschedulable", msg)


def test_pod_view_reads_attempt_rank_and_failure_details() -> None:
    view = PodView.from_pod(
        {
            "metadata": {
                "name": "s-trainer-r1-1",
                "labels": {"pivot.dev/attempt": "1", "pivot.dev/rank": "1"},
                "creationTimestamp": NOW,
            },
            "spec": {"nodeName": "n1"},
            "status": {
                "phase": "Failed",
                "conditions": [{"type": "DisruptionTarget", "status": "True"}],
                "containerStatuses": [
                    {"state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}
                ],
            },
        }
    )
    assert (view.attempt, view.rank, view.exit_code, view.reason) == (1, 1, 137, "OOMKilled")
    assert view.disrupted and view.node == "n1"


def test_pods_of_the_walking_skeleton_without_labels_are_attempt_zero() -> None:
    view = PodView.from_pod({"metadata": {"name": "s-trainer"}, "status": {"phase": "Running"}})
    assert (view.attempt, view.rank) == (0, 0)


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_delay(n, 2.0) for n in range(4)] == [2.0, 4.0, 8.0, 16.0]
    assert backoff_delay(20, 2.0) == 300.0


def test_conditions_keep_transition_time_and_untouched_types() -> None:
    old = [
        {"type": "Running", "status": "True", "lastTransitionTime": "t0"},
        {"type": "Schedulable", "status": "True", "lastTransitionTime": "t0"},
    ]
    new = [{"type": "Running", "status": "True", "lastTransitionTime": "t1"}]
    merged = {c["type"]: c for c in merge_conditions(old, new)}
    assert merged["Running"]["lastTransitionTime"] == "t0"
    assert "Schedulable" in merged


def test_telemetry_and_diff() -> None:
    latest = {"epoch": 2, "timestamp": NOW, "train_loss": 1.0, "flag": True}
    fields = telemetry_fields(latest, 4)
    assert fields == {"currentEpoch": 2, "latestMetrics": {"train_loss": 1.0}, "progress": 0.5}
    assert status_diff(fields, {**fields, "currentEpoch": 3}) == {"currentEpoch": 3}


def test_best_checkpoint_is_the_newest_marked_best() -> None:
    events = [
        {"type": "started"},
        {
            "type": "checkpoint",
            "checkpoint_id": "c1",
            "epoch": 1,
            "is_best": True,
            "metric_name": "val_loss",
            "metric_value": 0.5,
        },
        {
            "type": "checkpoint",
            "checkpoint_id": "c2",
            "epoch": 2,
            "is_best": False,
            "metric_name": "val_loss",
            "metric_value": 0.7,
        },
    ]
    assert best_checkpoint(events) == {"id": "c1", "epoch": 1, "metric": "val_loss", "value": 0.5}
    assert best_checkpoint([{"type": "started"}]) is None


def test_ttl_counts_from_the_finish() -> None:
    spec = {**SPEC, "ttlSecondsAfterFinished": 60}
    done = {"phase": "Completed", "finishedAt": NOW}
    assert ttl_remaining(spec, done, T0 + timedelta(seconds=45)) == 15.0
    assert ttl_remaining(spec, done, T0 + timedelta(seconds=90)) == 0.0
    assert ttl_remaining(spec, {"phase": "Running"}, T0) is None
    assert ttl_remaining(SPEC, done, T0) is None


def test_status_records_the_generation_it_answers() -> None:
    plan = decide(SPEC, {}, [], T0, generation=3)
    assert plan.status["observedGeneration"] == 3


def test_a_session_stopped_before_the_operator_saw_it_run_is_stopped_at_the_asked_time() -> None:
    # Started and stopped through the API before any reconcile: the phase is still Created,
    # but the stop was answered `stopped` with this time, so the status says the same.
    asked = {"pivot.dev/started-at": NOW, "pivot.dev/stopped-at": "2026-01-01T00:00:01Z"}
    plan = decide({**SPEC, "suspend": True}, {"phase": "Created"}, [], T0, annotations=asked)
    assert plan.status["phase"] == "Stopped"
    assert plan.status["stoppedAt"] == "2026-01-01T00:00:01Z"
    # Never started: still Created.
    plan = decide({**SPEC, "suspend": True}, {}, [], T0, annotations={})
    assert plan.status["phase"] == "Created"


def test_the_start_time_the_api_answered_is_the_status_start_time() -> None:
    asked = {"pivot.dev/started-at": "2025-12-31T23:59:59Z"}
    status = {"launchedAttempt": 0, "attempt": 0}
    plan = decide(SPEC, status, [pod("Running")], T0, annotations=asked)
    assert plan.status["phase"] == "Running"
    assert plan.status["startedAt"] == "2025-12-31T23:59:59Z"


def test_all_pods_succeeded_waits_for_the_final_metrics_when_redis_cannot_be_read() -> None:
    status = {"phase": "Running", "launchedAttempt": 0, "attempt": 0, "currentEpoch": 3}
    waiting = decide(SPEC, status, [pod("Succeeded")], T0, telemetry_ok=False)
    assert waiting.status.get("phase", "Running") == "Running"
    assert waiting.requeue_after is not None and waiting.requeue_after <= 1.0
    latest = {"epoch": 4, "val_loss": 0.25, "timestamp": NOW}
    done = decide(SPEC, status, [pod("Succeeded")], T0, latest=latest)
    assert done.status["phase"] == "Completed"
    assert done.status["currentEpoch"] == 4
    assert done.status["latestMetrics"] == {"val_loss": 0.25}
