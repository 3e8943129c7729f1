"""ModelServers: what to serve (a resolved, verified checkpoint), the pods that serve it, and
how they change. Pure: a ModelServer and its pods in, a plan out (pods to create and delete,
the status to have, Events to post). serving_handlers.py reads the cluster and applies it.

A server's pods carry a revision: a hash of everything that shapes what a pod serves (the
checkpoint and its digest, batching, threshold, compile, image, resources, placement). When the
revision changes, pods of the new one are started one at a time (a surge of one) and a pod of
the old one goes each time a new one is Ready, so the Ready count never drops during a rollout:
no request finds nothing to serve it. A new revision whose pods fail verification (exit code 3:
checksum mismatch, 4: unloadable) is not retried; the old pods keep serving and the
CheckpointVerified condition says why. Scaling follows `replicas`: up at once, down by removing
not-ready pods first, then the newest.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pivot_operator.builders import build_resources, build_tolerations
from pivot_operator.config import OperatorConfig
from pivot_schema import env as tenv
from pivot_schema import modelserver as ms
from pivot_schema.crd import API_VERSION, LABEL_COMPONENT, LABEL_MANAGED_BY, MANAGED_BY, Condition
from pivot_schema.modelserver import (
    COMPONENT_SERVER,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_DELAY_MS,
    DEFAULT_THRESHOLD,
    EXIT_CHECKSUM,
    EXIT_UNLOADABLE,
    LABEL_MODEL_SERVER,
    LABEL_REVISION,
    MS_KIND,
    READY_PATH,
    SERVER_PORT,
    ServerConditionReason,
    ServerConditionType,
    ServerPhase,
    StoredModelServer,
)

# What a failed server pod says about its checkpoint (pivot_trainer.serve's exit codes).
VERIFY_FAILURES = {
    EXIT_CHECKSUM: ServerConditionReason.CHECKSUM_MISMATCH,
    EXIT_UNLOADABLE: ServerConditionReason.LOAD_FAILED,
}
ANNOTATION_CHECKPOINT = "pivot.dev/checkpoint-id"
ANNOTATION_SHA256 = "pivot.dev/sha256"
# A crashed server pod (not a verification failure) is replaced after this long.
CRASH_BACKOFF_S = 2.0
RESYNC_S = 10.0


@dataclass(frozen=True)
class Resolved:
    """The checkpoint a ModelServer's source names, as found in S3."""

    checkpoint_id: str
    uri: str
    sha256: str


@dataclass(frozen=True)
class ServerPod:
    name: str
    revision: str
    phase: str
    ready: bool
    terminating: bool
    exit_code: int | None
    created: str
    checkpoint_id: str | None
    sha256: str | None

    @property
    def live(self) -> bool:
        return not self.terminating and self.phase not in ("Succeeded", "Failed")

    @classmethod
    def from_pod(cls, pod: dict[str, Any]) -> ServerPod:
        meta = pod.get("metadata") or {}
        status = pod.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        exit_code = None
        for cs in status.get("containerStatuses") or []:
            terminated = (cs.get("state") or {}).get("terminated")
            if terminated is not None:
                exit_code = terminated.get("exitCode")
        annotations = meta.get("annotations") or {}
        return cls(
            name=meta.get("name", ""),
            revision=(meta.get("labels") or {}).get(LABEL_REVISION, ""),
            phase=status.get("phase") or "Pending",
            ready=ready and not meta.get("deletionTimestamp"),
            terminating=bool(meta.get("deletionTimestamp")),
            exit_code=exit_code,
            created=meta.get("creationTimestamp") or "",
            checkpoint_id=annotations.get(ANNOTATION_CHECKPOINT),
            sha256=annotations.get(ANNOTATION_SHA256),
        )


def revision_of(server: StoredModelServer, resolved: Resolved, config: OperatorConfig) -> str:
    spec = server.spec
    shaping = {
        "checkpoint": [resolved.checkpoint_id, resolved.uri, resolved.sha256],
        "batching": spec.batching.model_dump(mode="json") if spec.batching else None,
        "threshold": spec.threshold,
        "compile": spec.compile,
        "image": spec.image or config.trainer_image,
        "resources": spec.resources.model_dump(mode="json") if spec.resources else None,
        "nodeSelector": spec.node_selector,
        "tolerations": [t.model_dump(mode="json") for t in spec.tolerations or []],
    }
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:10]


def service_url(server: StoredModelServer) -> str:
    meta = server.metadata
    return f"http://{meta.name}.{meta.namespace}.svc.cluster.local:{SERVER_PORT}"


@dataclass
class ServingPlan:
    create: int = 0
    delete: list[str] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    requeue_after: float | None = None


def _condition(
    kind: ServerConditionType,
    ok: bool | None,
    reason: ServerConditionReason,
    message: str,
    previous: list[Condition],
    now: str,
    generation: int | None,
) -> dict[str, Any]:
    status = "Unknown" if ok is None else ("True" if ok else "False")
    before = next((c for c in previous if c.type == kind.value), None)
    since = (
        before.last_transition_time
        if before is not None and before.status == status and before.last_transition_time
        else now
    )
    return {
        "type": kind.value,
        "status": status,
        "reason": reason.value,
        "message": message,
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }


def plan(
    server: StoredModelServer,
    pods: list[ServerPod],
    now: datetime,
    *,
    revision: str | None,
    resolved: Resolved | None,
    resolve_error: str | None,
) -> ServingPlan:
    """The next step for one ModelServer. `revision` and `resolved` are None when its
    checkpoint could not be resolved (`resolve_error` says why)."""
    out = ServingPlan()
    wanted = server.replicas
    now_s = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    new = [p for p in pods if revision is not None and p.revision == revision]
    old = [p for p in pods if p not in new]
    new_live = [p for p in new if p.live]
    old_live = [p for p in old if p.live]
    new_ready = [p for p in new_live if p.ready]
    old_ready = [p for p in old_live if p.ready]
    failed_verify = [p for p in new if not p.terminating and p.exit_code in VERIFY_FAILURES]
    crashed = [
        p for p in new if not p.terminating and not p.live and p.exit_code not in VERIFY_FAILURES
    ]

    # Dead pods of other revisions go; crashed pods of this one are replaced.
    out.delete += [p.name for p in old if not p.live and not p.terminating]
    out.delete += [p.name for p in crashed]
    if crashed:
        out.requeue_after = CRASH_BACKOFF_S

    verify_reason: ServerConditionReason | None = None
    if resolve_error is not None:
        verify_reason = ServerConditionReason.CHECKPOINT_NOT_FOUND
        out.requeue_after = 5.0  # a session still training may produce it yet
    elif failed_verify:
        verify_reason = VERIFY_FAILURES[failed_verify[0].exit_code or EXIT_CHECKSUM]

    if verify_reason is None and revision is not None:
        if len(new_live) < wanted and not crashed:
            if not old_live:
                out.create = wanted - len(new_live)  # nothing to roll from: all at once
            elif len(new_ready) == len(new_live):
                out.create = 1  # a surge of one: the next when the last is Ready
        if len(new_live) > wanted:
            excess = sorted(new_live, key=lambda p: (p.ready, p.created), reverse=False)
            # Not-ready first, then the newest of the ready ones.
            ordered = [p for p in excess if not p.ready] + sorted(
                (p for p in excess if p.ready), key=lambda p: p.created, reverse=True
            )
            out.delete += [p.name for p in ordered[: len(new_live) - wanted]]
        keep_old = max(0, wanted - len(new_ready))
        by_value = [p for p in old_live if not p.ready] + old_ready
        out.delete += [p.name for p in by_value[: max(0, len(old_live) - keep_old)]]

    # ---- status ------------------------------------------------------------------------------
    ready = len(new_ready) + len(old_ready)
    serving = new_ready[0] if new_ready else (old_ready[0] if old_ready else None)
    previous = server.status.conditions or []
    generation = server.metadata.generation
    if verify_reason is not None:
        phase = ServerPhase.FAILED if ready == 0 else ServerPhase.READY
    elif (wanted == 0 and not old_live and not new_live) or (
        len(new_ready) >= wanted and not old_live
    ):
        phase = ServerPhase.READY
    elif ready > 0:
        phase = ServerPhase.UPDATING
    elif new_live or old_live:
        phase = ServerPhase.LOADING
    else:
        phase = ServerPhase.PENDING

    if resolve_error is not None:
        message = resolve_error
    elif failed_verify:
        message = (
            f"pod {failed_verify[0].name} could not serve checkpoint "
            f"{resolved.checkpoint_id if resolved else '?'}: {verify_reason}"
            + ("; the pods already serving go on" if ready else "")
        )
    elif phase is ServerPhase.READY:
        message = (
            f"{ready} of {wanted} replica(s) serve {serving.checkpoint_id if serving else '-'}"
        )
    else:
        message = f"{ready} of {wanted} replica(s) ready"

    conditions = [
        _condition(
            ServerConditionType.READY,
            ready > 0,
            ServerConditionReason.SERVING if ready else ServerConditionReason.NO_READY_PODS,
            f"{ready} ready",
            previous,
            now_s,
            generation,
        ),
        _condition(
            ServerConditionType.CHECKPOINT_VERIFIED,
            False if verify_reason else (True if new_ready else None),
            verify_reason or ServerConditionReason.VERIFIED,
            message if verify_reason else "loaded and checked against its manifest's sha256",
            previous,
            now_s,
            generation,
        ),
        _condition(
            ServerConditionType.PROGRESSING,
            bool(old_live) or len(new_ready) < wanted,
            ServerConditionReason.ROLLING
            if old_live or len(new_ready) < wanted
            else ServerConditionReason.COMPLETE,
            f"{len(new_ready)} of {wanted} on revision {revision or '-'}",
            previous,
            now_s,
            generation,
        ),
    ]
    out.status = {
        "phase": phase.value,
        "replicas": len(new_live) + len(old_live),
        "readyReplicas": ready,
        "updatedReplicas": len(new_live),
        "checkpointId": serving.checkpoint_id if serving else None,
        "sha256": serving.sha256 if serving else None,
        "url": service_url(server),
        "message": message,
        "conditions": conditions,
        "observedGeneration": generation,
    }
    before = server.status.phase
    if before != phase:
        etype = "Warning" if phase is ServerPhase.FAILED else "Normal"
        out.events.append((etype, phase.value, message))
    elif verify_reason and server.status.message != message:
        out.events.append(("Warning", verify_reason.value, message))
    if out.requeue_after is None and (out.create or out.delete or phase is not ServerPhase.READY):
        out.requeue_after = RESYNC_S
    return out


# ---- manifests ----------------------------------------------------------------------------


def owner_reference(server: StoredModelServer) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": MS_KIND,
        "name": server.metadata.name,
        "uid": server.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def labels_of(server: StoredModelServer) -> dict[str, str]:
    return {
        LABEL_MODEL_SERVER: server.metadata.name,
        LABEL_COMPONENT: COMPONENT_SERVER,
        LABEL_MANAGED_BY: MANAGED_BY,
    }


def build_service(server: StoredModelServer) -> dict[str, Any]:
    """The server's Service: every Ready pod of any revision serves behind it."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": server.metadata.name,
            "labels": labels_of(server),
            "ownerReferences": [owner_reference(server)],
        },
        "spec": {
            "selector": {LABEL_MODEL_SERVER: server.metadata.name},
            "ports": [
                {"name": "http", "port": SERVER_PORT, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def build_server_pod(
    server: StoredModelServer, config: OperatorConfig, revision: str, resolved: Resolved
) -> dict[str, Any]:
    spec = server.spec
    name = f"{server.metadata.name}-{revision[:8]}-{secrets.token_hex(3)}"
    batching = spec.batching
    secret = config.s3_secret_name
    env: list[dict[str, Any]] = [
        {"name": ms.SERVE_HOST, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": ms.SERVE_PORT, "value": str(SERVER_PORT)},
        {"name": ms.SERVE_MODEL, "value": server.metadata.name},
        {"name": ms.SERVE_CHECKPOINT_URI, "value": resolved.uri},
        {"name": ms.SERVE_SHA256, "value": resolved.sha256},
        {"name": ms.SERVE_CHECKPOINT_ID, "value": resolved.checkpoint_id},
        {
            "name": ms.SERVE_MAX_BATCH_SIZE,
            "value": str((batching.max_batch_size if batching else None) or DEFAULT_MAX_BATCH_SIZE),
        },
        {
            "name": ms.SERVE_MAX_DELAY_MS,
            "value": str(
                DEFAULT_MAX_DELAY_MS
                if batching is None or batching.max_delay_ms is None
                else batching.max_delay_ms
            ),
        },
        {
            "name": ms.SERVE_THRESHOLD,
            "value": str(DEFAULT_THRESHOLD if spec.threshold is None else spec.threshold),
        },
        {"name": ms.SERVE_COMPILE, "value": "true" if spec.compile else "false"},
        {"name": tenv.S3_ENDPOINT, "value": config.s3_endpoint},
        {"name": tenv.S3_BUCKET, "value": config.s3_bucket},
        {"name": tenv.S3_REGION, "value": config.s3_region},
        {
            "name": tenv.S3_ACCESS_KEY,
            "valueFrom": {"secretKeyRef": {"name": secret, "key": tenv.SECRET_ACCESS_KEY_FIELD}},
        },
        {
            "name": tenv.S3_SECRET_KEY,
            "valueFrom": {"secretKeyRef": {"name": secret, "key": tenv.SECRET_SECRET_KEY_FIELD}},
        },
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    container: dict[str, Any] = {
        "name": "server",
        "image": spec.image or config.trainer_image,
        "command": ["python", "-m", "pivot_trainer.serve"],
        "env": env,
        "ports": [{"name": "http", "containerPort": SERVER_PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": READY_PATH, "port": "http"},
            "periodSeconds": 1,
            "failureThreshold": 2,
            "timeoutSeconds": 1,
        },
    }
    resources = build_resources(spec)
    if resources:
        container["resources"] = resources
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "restartPolicy": "Never",  # the operator replaces a crashed server (and sees why)
        # Long enough to finish what is queued: /ready turns 503 at once on SIGTERM.
        "terminationGracePeriodSeconds": 30,
    }
    tolerations = build_tolerations(spec)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {**labels_of(server), LABEL_REVISION: revision},
            "annotations": {
                ANNOTATION_CHECKPOINT: resolved.checkpoint_id,
                ANNOTATION_SHA256: resolved.sha256,
            },
            "ownerReferences": [owner_reference(server)],
        },
        "spec": pod_spec,
    }
