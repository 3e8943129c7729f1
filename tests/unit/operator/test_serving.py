"""serving.plan: a ModelServer's pods through start, rollout, scaling and failure, simulated
step by step the way serving_handlers applies plans (pods created Pending, then Ready)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from pivot_operator.config import OperatorConfig
from pivot_operator.serving import (
    EXIT_CHECKSUM,
    Resolved,
    ServerPod,
    build_server_pod,
    build_service,
    plan,
    revision_of,
)
from pivot_schema.modelserver import LABEL_MODEL_SERVER, LABEL_REVISION, StoredModelServer

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
V1 = Resolved("ckpt_sess-1_e00003", "s3://pivot/checkpoints/sess-1/e3/model.pth", "a" * 64)
V2 = Resolved("ckpt_sess-1_e00007", "s3://pivot/checkpoints/sess-1/e7/model.pth", "b" * 64)


def server(replicas: int = 1, **status: Any) -> StoredModelServer:
    return StoredModelServer.model_validate(
        {
            "metadata": {"name": "lesions", "namespace": "ml", "uid": "u-1", "generation": 1},
            "spec": {"source": {"session": "sess-1"}, "replicas": replicas},
            "status": status,
        }
    )


def pod(name: str, revision: str, *, ready: bool = False, **kw: Any) -> ServerPod:
    fields: dict[str, Any] = {
        "phase": "Running",
        "terminating": False,
        "exit_code": None,
        "created": name,
        "checkpoint_id": None,
        "sha256": None,
    }
    fields.update(kw)
    return ServerPod(name=name, revision=revision, ready=ready, **fields)


def converge(
    ms: StoredModelServer, pods: list[ServerPod], revision: str, resolved: Resolved
) -> tuple[list[ServerPod], list[int]]:
    """Apply plans until idle, making each created pod Ready on the next step; the Ready
    count after every step."""
    ready_counts = []
    for step in range(50):
        out = plan(ms, pods, NOW, revision=revision, resolved=resolved, resolve_error=None)
        if not out.create and not out.delete and all(p.ready for p in pods):
            return pods, ready_counts
        pods = [p for p in pods if p.name not in out.delete]
        ready_counts.append(sum(p.ready for p in pods))  # right after the deletions
        pods = [replace(p, ready=True) for p in pods]  # what was started is Ready now
        pods += [
            pod(f"{revision}-{step}-{i}", revision, checkpoint_id=resolved.checkpoint_id)
            for i in range(out.create)
        ]
    raise AssertionError("no fixed point")


def test_a_new_server_starts_every_replica_at_once_and_is_ready_when_they_are() -> None:
    ms = server(replicas=3)
    first = plan(ms, [], NOW, revision="r1", resolved=V1, resolve_error=None)
    assert first.create == 3 and first.status["phase"] == "Pending"
    assert first.status["url"] == "http://lesions.ml.svc.cluster.local:8080"
    loading = [pod(f"p{i}", "r1") for i in range(3)]
    assert (
        plan(ms, loading, NOW, revision="r1", resolved=V1, resolve_error=None).status["phase"]
        == "Loading"
    )
    ready = [
        replace(p, ready=True, checkpoint_id=V1.checkpoint_id, sha256=V1.sha256) for p in loading
    ]
    done = plan(
        server(replicas=3, phase="Loading"),
        ready,
        NOW,
        revision="r1",
        resolved=V1,
        resolve_error=None,
    )
    assert (done.create, done.delete) == (0, [])
    assert done.status["phase"] == "Ready" and done.status["readyReplicas"] == 3
    assert done.status["checkpointId"] == V1.checkpoint_id
    assert ("Normal", "Ready", done.status["message"]) in done.events


def test_a_rollout_never_has_fewer_ready_pods_than_wanted() -> None:
    for replicas in (1, 2, 3):
        old = [pod(f"old{i}", "r1", ready=True) for i in range(replicas)]
        pods, ready_counts = converge(server(replicas=replicas), old, "r2", V2)
        assert min(ready_counts) >= replicas, (replicas, ready_counts)
        assert {p.revision for p in pods} == {"r2"} and len(pods) == replicas


def test_scaling_up_and_down_follows_replicas() -> None:
    pods, _ = converge(server(replicas=1), [], "r1", V1)
    pods, _ = converge(server(replicas=3), pods, "r1", V1)
    assert len(pods) == 3
    # Down: the not-ready pod goes first, then the newest Ready ones.
    pods = [*pods, pod("zz-loading", "r1")]
    out = plan(server(replicas=1), pods, NOW, revision="r1", resolved=V1, resolve_error=None)
    assert "zz-loading" in out.delete and len(out.delete) == 3
    assert out.create == 0


def test_a_checkpoint_that_fails_verification_is_not_retried_and_old_pods_keep_serving() -> None:
    old = pod("old", "r1", ready=True, checkpoint_id=V1.checkpoint_id, sha256=V1.sha256)
    bad = pod("new", "r2", phase="Failed", exit_code=EXIT_CHECKSUM)
    out = plan(
        server(phase="Ready"), [old, bad], NOW, revision="r2", resolved=V2, resolve_error=None
    )
    assert out.create == 0 and out.delete == []  # the failed pod stays, for its log
    assert out.status["phase"] == "Ready" and out.status["checkpointId"] == V1.checkpoint_id
    verified = {c["type"]: c for c in out.status["conditions"]}["CheckpointVerified"]
    assert (verified["status"], verified["reason"]) == ("False", "ChecksumMismatch")
    assert any(e[:2] == ("Warning", "ChecksumMismatch") for e in out.events)
    # With nothing serving, the server is Failed.
    alone = plan(server(), [bad], NOW, revision="r2", resolved=V2, resolve_error=None)
    assert alone.status["phase"] == "Failed" and alone.create == 0


def test_a_crashed_pod_is_replaced_after_a_pause_and_an_unresolvable_source_waits() -> None:
    crashed = pod("p", "r1", phase="Failed", exit_code=1)
    out = plan(server(), [crashed], NOW, revision="r1", resolved=V1, resolve_error=None)
    assert out.delete == ["p"] and out.create == 0 and out.requeue_after == 2.0
    missing = plan(server(), [], NOW, revision=None, resolved=None, resolve_error="no best yet")
    assert missing.create == 0 and missing.status["phase"] == "Failed"
    assert missing.status["message"] == "no best yet" and missing.requeue_after == 5.0


def test_manifests_serve_what_was_resolved_behind_one_service() -> None:
    ms = server()
    config = OperatorConfig()
    revision = revision_of(ms, V1, config)
    assert revision != revision_of(ms, V2, config)
    manifest = build_server_pod(ms, config, revision, V1)
    labels = manifest["metadata"]["labels"]
    assert labels[LABEL_MODEL_SERVER] == "lesions" and labels[LABEL_REVISION] == revision
    env = {
        e["name"]: e.get("value", e.get("valueFrom"))
        for e in manifest["spec"]["containers"][0]["env"]
    }
    assert env["PIVOT_SERVE_CHECKPOINT_URI"] == V1.uri
    assert env["PIVOT_SERVE_SHA256"] == V1.sha256
    assert env["PIVOT_SERVE_HOST"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    container = manifest["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert manifest["metadata"]["ownerReferences"][0]["kind"] == "ModelServer"
    service = build_service(ms)
    assert service["spec"]["selector"] == {LABEL_MODEL_SERVER: "lesions"}
