"""Pure builders: a TrainingSession in, plain manifests out. No cluster, no I/O."""

from __future__ import annotations

import json
from typing import Any

from pivot_operator.config import OperatorConfig
from pivot_schema import env as tenv
from pivot_schema.crd import (
    API_VERSION,
    COMPONENT_TRAINER,
    KIND,
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    LABEL_SESSION,
    MANAGED_BY,
)

GPU_RESOURCE = "nvidia.com/gpu"


def trainer_pod_name(session_name: str) -> str:
    """Deterministic, so a re-run of the handler finds the pod instead of making a second one."""
    return f"{session_name}-trainer"


def session_labels(session_name: str) -> dict[str, str]:
    return {
        LABEL_SESSION: session_name,
        LABEL_COMPONENT: COMPONENT_TRAINER,
        LABEL_MANAGED_BY: MANAGED_BY,
    }


def owner_reference(session: dict[str, Any]) -> dict[str, Any]:
    meta = session["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _quantity(value: int | str) -> str:
    return str(value)


def build_resources(spec: dict[str, Any]) -> dict[str, Any]:
    res = spec.get("resources") or {}
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    for key in ("cpu", "memory"):
        if res.get(key) is not None:
            requests[key] = limits[key] = _quantity(res[key])
    gpu = int(res.get("gpu") or 0)
    if gpu > 0:
        # Extended resources are set as limits; Kubernetes copies them into requests.
        limits[GPU_RESOURCE] = str(gpu)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def build_env(session: dict[str, Any], config: OperatorConfig) -> list[dict[str, Any]]:
    name = session["metadata"]["name"]
    spec = session.get("spec") or {}
    secret = config.s3_secret_name
    return [
        {"name": tenv.SESSION_ID, "value": name},
        {"name": tenv.REDIS_URL, "value": config.redis_url},
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
        {"name": tenv.CONFIG_JSON, "value": json.dumps(spec.get("config") or {}, sort_keys=True)},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]


def build_trainer_pod(session: dict[str, Any], config: OperatorConfig) -> dict[str, Any]:
    """The trainer Pod for a TrainingSession."""
    meta = session["metadata"]
    spec = session.get("spec") or {}
    name = meta["name"]
    checkpoint = spec.get("checkpoint") or {}
    tolerations = [
        {k: v for k, v in t.items() if v is not None} for t in (spec.get("tolerations") or [])
    ]
    gpu = int((spec.get("resources") or {}).get("gpu") or 0)
    if gpu > 0 and not any(t.get("key") == GPU_RESOURCE for t in tolerations):
        # GPU node pools are usually tainted nvidia.com/gpu:NoSchedule.
        tolerations.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})

    container: dict[str, Any] = {
        "name": "trainer",
        "image": spec.get("image") or config.trainer_image,
        "command": list(tenv.TRAINER_COMMAND),
        "env": build_env(session, config),
    }
    resources = build_resources(spec)
    if resources:
        container["resources"] = resources

    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": int(
            checkpoint.get("gracePeriodSeconds") or config.default_grace_period_seconds
        ),
        "containers": [container],
    }
    if spec.get("nodeSelector"):
        pod_spec["nodeSelector"] = dict(spec["nodeSelector"])
    if tolerations:
        pod_spec["tolerations"] = tolerations

    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": trainer_pod_name(name),
            "namespace": meta.get("namespace") or "default",
            "labels": session_labels(name),
            "ownerReferences": [owner_reference(session)],
        },
        "spec": pod_spec,
    }
