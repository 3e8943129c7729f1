"""The operator on the local platform: Events and conditions, scheduling, retries, TTL and the
finalizer. Real emulator, kubelet, trainer, Redis and S3."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import redis

from pivot_local.platform import LocalPlatform
from pivot_schema import keys, storage
from tests.support.operator import (
    FAILING_CONFIG,
    create_session,
    delete_session,
    events_of,
    get_session,
    kubectl,
    pods_of,
    status_of,
    unique,
    wait_phase,
)
from tests.support.platform import TINY_CONFIG, logs_of
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.mark.process_kubelet
def test_session_completes_and_kubectl_wait_and_describe_tell_the_story(
    platform: LocalPlatform, kube: httpx.Client
) -> None:
    name = unique("story")
    create_session(kube, name)
    kubectl(platform, "wait", "--for=condition=Succeeded", f"ts/{name}", "--timeout=120s")
    status = status_of(kube, name)
    assert status["phase"] == "Completed"
    assert status["currentEpoch"] == TINY_CONFIG["epochs"]
    assert status["bestCheckpoint"]["id"].startswith(f"ckpt_{name}_")
    # Events are posted in the background: the last one may trail the status a little.
    wait_for(
        lambda: {"Running", "Completed"} <= {e["reason"] for e in events_of(kube, name)},
        30,
        "the Running and Completed events",
    )
    described = kubectl(platform, "describe", "ts", name)
    assert "Completed" in described and "Training completed" in described


def test_pods_never_bound_make_the_session_unschedulable_with_the_scheduler_named(
    platform: LocalPlatform, kube: httpx.Client
) -> None:
    name = unique("unsched")
    create_session(kube, name, schedulerName="volcano", queueName="team-a")
    try:
        status = wait_for(lambda: _unschedulable(kube, name), 30, "Schedulable=False")
        cond = next(c for c in status["conditions"] if c["type"] == "Schedulable")
        assert cond["reason"] == "NotScheduled"
        assert "volcano" in cond["message"]
        assert status["phase"] == "Pending"
        (pod,) = pods_of(kube, name)
        assert pod["spec"]["schedulerName"] == "volcano"
        assert pod["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    finally:
        delete_session(kube, name)


def _unschedulable(kube: httpx.Client, name: str) -> dict[str, Any] | None:
    status = status_of(kube, name)
    for cond in status.get("conditions") or []:
        if cond["type"] == "Schedulable" and cond["status"] == "False":
            return status
    return None


@pytest.mark.process_kubelet
def test_always_failing_trainer_is_retried_backoff_limit_times_then_fails_with_a_reason(
    platform: LocalPlatform, kube: httpx.Client
) -> None:
    name = unique("failing")
    # The trainer fails at run time (exit code 1) every time.
    create_session(kube, name, config=FAILING_CONFIG, backoffLimit=2)
    status = wait_phase(platform, kube, name, "Failed", timeout=180)
    assert status["restarts"] == 2
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "BackoffLimitExceeded")
    assert "exited with code 1" in failed["message"]
    # Earlier attempts' pods are cleared away; the last one stays for its logs.
    assert [p["metadata"]["name"] for p in pods_of(kube, name)] == [f"{name}-trainer-r2"]
    events = events_of(kube, name)
    retries = [e["message"] for e in events if e["reason"] == "Retrying"]
    # Growing delay: retry 1 after 1 s, retry 2 after 2 s (PIVOT_BACKOFF_BASE_SECONDS=1).
    delays = {int(m.split("retry ")[1].split()[0]): m.split(" in ")[1].split()[0] for m in retries}
    assert delays == {1: "1s", 2: "2s"}
    assert sum(e["reason"] == "ExitCode" for e in events) == 3


@pytest.mark.process_kubelet
def test_a_config_error_exit_fails_the_session_at_once_without_a_retry(
    platform: LocalPlatform, kube: httpx.Client
) -> None:
    name = unique("cfgerr")
    # Valid as a config; the trainer finds no shards under the prefix: a config error, exit 2.
    config = {**TINY_CONFIG, "dataset": {"source": "s3", "prefix": f"nothing-{name}"}}
    create_session(kube, name, config=config, backoffLimit=3)
    status = wait_phase(platform, kube, name, "Failed", timeout=120)
    assert not status.get("restarts")
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "InvalidConfig")
    assert "exited with code 2, a config error" in failed["message"]
    assert "not retried" in failed["message"] and "no .npz shards found" in failed["message"]
    assert [p["metadata"]["name"] for p in pods_of(kube, name)] == [f"{name}-trainer"]
    reasons = [e["reason"] for e in events_of(kube, name)]
    assert "Retrying" not in reasons and "InvalidConfig" in reasons


def test_a_config_the_crd_cannot_judge_is_refused_before_any_pod(
    platform: LocalPlatform, kube: httpx.Client
) -> None:
    name = unique("badckpt")
    # The CRD leaves the checkpoint section to the operator: it checks it as the trainer does.
    create_session(kube, name, config={**TINY_CONFIG, "checkpoint": {"metric": "f1"}})
    status = wait_phase(platform, kube, name, "Failed", timeout=60)
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "InvalidConfig")
    assert "'checkpoint.metric' must be one of" in failed["message"]
    assert pods_of(kube, name) == []
    assert not status.get("restarts")


@pytest.mark.process_kubelet
def test_ttl_deletes_a_finished_session_and_the_finalizer_cleans_redis_and_s3(
    platform: LocalPlatform, kube: httpx.Client, rds: redis.Redis
) -> None:
    name = unique("ttl")
    create_session(kube, name, ttlSecondsAfterFinished=1, checkpoint={"deleteOnFinalize": True})
    # Timestamps have whole seconds, so the TTL can end milliseconds after the session
    # completes, before a poll sees it Completed: its Events tell that it did.
    wait_for(lambda: get_session(kube, name) is None, 120, "the TTL to delete the session")
    reasons = {e["reason"] for e in events_of(kube, name)}
    assert "Completed" in reasons and "Failed" not in reasons, (reasons, logs_of(platform))
    assert rds.exists(*keys.session_keys(name)) == 0
    assert platform.s3 is not None
    listed = platform.s3.client().list_objects_v2(
        Bucket=platform.s3.bucket, Prefix=storage.session_prefix(name)
    )
    assert listed.get("KeyCount", 0) == 0


@pytest.mark.process_kubelet
def test_deleting_a_session_keeps_checkpoints_unless_asked(
    platform: LocalPlatform, kube: httpx.Client, rds: redis.Redis
) -> None:
    name = unique("keep")
    create_session(kube, name)
    wait_phase(platform, kube, name, "Completed")
    assert rds.exists(keys.metrics_stream(name))
    delete_session(kube, name)
    wait_for(lambda: get_session(kube, name) is None, 30, "the session to go")
    assert rds.exists(*keys.session_keys(name)) == 0
    assert platform.s3 is not None
    listed = platform.s3.client().list_objects_v2(
        Bucket=platform.s3.bucket, Prefix=storage.session_prefix(name)
    )
    assert listed.get("KeyCount", 0) > 0
