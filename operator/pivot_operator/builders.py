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
    LABEL_ATTEMPT,
    LABEL_COMPONENT,
    LABEL_KUEUE_QUEUE,
    LABEL_MANAGED_BY,
    LABEL_RANK,
    LABEL_SESSION,
    MANAGED_BY,
)

GPU_RESOURCE = "nvidia.com/gpu"
SHM_VOLUME = "dshm"
DATASET_VOLUME = "dataset"
DEFAULT_DATASET_MOUNT = "/data"
KUEUE_POD_GROUP = "kueue.x-k8s.io/pod-group-name"
KUEUE_POD_GROUP_COUNT = "kueue.x-k8s.io/pod-group-total-count"


def replicas_of(spec: dict[str, Any]) -> int:
    return max(1, int(spec.get("replicas") or 1))


def gpus_per_pod(spec: dict[str, Any]) -> int:
    return int((spec.get("resources") or {}).get("gpu") or 0)


def trainer_pod_name(session_name: str, attempt: int = 0, rank: int = 0, replicas: int = 1) -> str:
    """Deterministic per (attempt, rank), so a re-run of the handler finds the pod instead of
    making a second one. The first attempt of a one-pod session keeps the plain name."""
    name = f"{session_name}-trainer"
    if attempt:
        name += f"-r{attempt}"
    if replicas > 1:
        name += f"-{rank}"
    return name


def service_name(session_name: str) -> str:
    """The headless Service of a multi-pod session (its pods' DNS subdomain)."""
    return f"{session_name}-workers"


def pod_hostname(rank: int) -> str:
    return f"trainer-{rank}"


def master_addr(session: dict[str, Any]) -> str:
    """Rank 0's DNS name: <hostname>.<subdomain>.<namespace>.svc.cluster.local."""
    meta = session["metadata"]
    namespace = meta.get("namespace") or "default"
    return f"{pod_hostname(0)}.{service_name(meta['name'])}.{namespace}.svc.cluster.local"


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


def build_resources(spec: dict[str, Any]) -> dict[str, Any]:
    res = spec.get("resources") or {}
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    for key in ("cpu", "memory"):
        if res.get(key) is not None:
            requests[key] = limits[key] = str(res[key])
    gpu = gpus_per_pod(spec)
    if gpu > 0:
        # Extended resources are set as limits; Kubernetes copies them into requests.
        limits[GPU_RESOURCE] = str(gpu)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def build_tolerations(spec: dict[str, Any]) -> list[dict[str, Any]]:
    tolerations = [
        {k: v for k, v in t.items() if v is not None} for t in (spec.get("tolerations") or [])
    ]
    if gpus_per_pod(spec) > 0 and not any(t.get("key") == GPU_RESOURCE for t in tolerations):
        # GPU node pools are usually tainted nvidia.com/gpu:NoSchedule.
        tolerations.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    return tolerations


def build_distributed_env(session: dict[str, Any], rank: int) -> list[dict[str, Any]]:
    """torchrun's rendezvous env for a multi-pod (or multi-GPU) session; empty for one process."""
    spec = session.get("spec") or {}
    replicas = replicas_of(spec)
    nproc = max(1, gpus_per_pod(spec))
    if replicas == 1 and nproc == 1:
        return []
    addr = master_addr(session) if replicas > 1 else "127.0.0.1"
    env = {
        tenv.MASTER_ADDR: addr,
        tenv.MASTER_PORT: str(tenv.DEFAULT_MASTER_PORT),
        tenv.WORLD_SIZE: str(replicas * nproc),
        tenv.NODE_RANK: str(rank),
        tenv.NPROC_PER_NODE: str(nproc),
    }
    if nproc == 1:
        # No torchrun to set them: one process per pod is rank NODE_RANK.
        env[tenv.RANK] = str(rank)
        env[tenv.LOCAL_RANK] = "0"
    return [{"name": k, "value": v} for k, v in env.items()]


def build_command(session: dict[str, Any], rank: int) -> list[str]:
    spec = session.get("spec") or {}
    nproc = gpus_per_pod(spec)
    if nproc <= 1:
        return list(tenv.TRAINER_COMMAND)
    replicas = replicas_of(spec)
    addr = master_addr(session) if replicas > 1 else "127.0.0.1"
    return [
        tenv.TORCHRUN,
        f"--nnodes={replicas}",
        f"--nproc-per-node={nproc}",
        f"--node-rank={rank}",
        f"--master-addr={addr}",
        f"--master-port={tenv.DEFAULT_MASTER_PORT}",
        "-m",
        tenv.TRAINER_MODULE,
    ]


def build_env(
    session: dict[str, Any], config: OperatorConfig, rank: int = 0
) -> list[dict[str, Any]]:
    name = session["metadata"]["name"]
    spec = session.get("spec") or {}
    secret = config.s3_secret_name
    ours: list[dict[str, Any]] = [
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
        *build_distributed_env(session, rank),
    ]
    # The user's env comes after ours but cannot replace what the platform relies on.
    taken = {e["name"] for e in ours}
    extra = [
        {k: v for k, v in e.items() if v is not None}
        for e in spec.get("env") or []
        if e.get("name") not in taken
    ]
    return ours + extra


def build_volumes(spec: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pod volumes, container mounts): the user's, the dataset PVC and a sized /dev/shm."""
    volumes = [dict(v) for v in spec.get("volumes") or []]
    mounts = [{k: v for k, v in m.items() if v is not None} for m in spec.get("volumeMounts") or []]
    dataset = spec.get("dataset")
    if dataset:
        read_only = dataset.get("readOnly", True) is not False
        volumes.append(
            {
                "name": DATASET_VOLUME,
                "persistentVolumeClaim": {"claimName": dataset["claimName"], "readOnly": read_only},
            }
        )
        mounts.append(
            {
                "name": DATASET_VOLUME,
                "mountPath": dataset.get("mountPath") or DEFAULT_DATASET_MOUNT,
                "readOnly": read_only,
            }
        )
    if spec.get("shmSize") is not None:
        # The container runtime's 64 MiB /dev/shm breaks DataLoader workers; a memory
        # emptyDir (counted against the pod's memory) replaces it.
        volumes.append(
            {
                "name": SHM_VOLUME,
                "emptyDir": {"medium": "Memory", "sizeLimit": str(spec["shmSize"])},
            }
        )
        mounts.append({"name": SHM_VOLUME, "mountPath": "/dev/shm"})
    return volumes, mounts


def build_trainer_pod(
    session: dict[str, Any], config: OperatorConfig, attempt: int = 0, rank: int = 0
) -> dict[str, Any]:
    """The trainer Pod of one rank of one attempt of a TrainingSession."""
    meta = session["metadata"]
    spec = session.get("spec") or {}
    name = meta["name"]
    replicas = replicas_of(spec)
    checkpoint = spec.get("checkpoint") or {}

    container: dict[str, Any] = {
        "name": "trainer",
        "image": spec.get("image") or config.trainer_image,
        "command": build_command(session, rank),
        "env": build_env(session, config, rank),
    }
    resources = build_resources(spec)
    if resources:
        container["resources"] = resources
    volumes, mounts = build_volumes(spec)
    if mounts:
        container["volumeMounts"] = mounts
    if replicas > 1:
        container["ports"] = [{"name": "rendezvous", "containerPort": tenv.DEFAULT_MASTER_PORT}]

    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # The trainer checkpoints on SIGTERM: the grace period is the time it gets to do so.
        "terminationGracePeriodSeconds": int(
            checkpoint.get("gracePeriodSeconds") or config.default_grace_period_seconds
        ),
        "containers": [container],
    }
    if volumes:
        pod_spec["volumes"] = volumes
    for key in (
        "nodeSelector",
        "affinity",
        "priorityClassName",
        "runtimeClassName",
        "serviceAccountName",
        "schedulerName",
    ):
        if spec.get(key):
            pod_spec[key] = spec[key]
    tolerations = build_tolerations(spec)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if spec.get("imagePullSecrets"):
        pod_spec["imagePullSecrets"] = [{"name": s["name"]} for s in spec["imagePullSecrets"]]
    if replicas > 1:
        pod_spec["hostname"] = pod_hostname(rank)
        pod_spec["subdomain"] = service_name(name)

    labels = {**session_labels(name), LABEL_ATTEMPT: str(attempt), LABEL_RANK: str(rank)}
    annotations: dict[str, str] = {}
    if spec.get("queueName"):
        labels[LABEL_KUEUE_QUEUE] = spec["queueName"]
        if replicas > 1:
            # Kueue admits the gang as one workload (plain-pod groups).
            labels[KUEUE_POD_GROUP] = f"{name}-r{attempt}"
            annotations[KUEUE_POD_GROUP_COUNT] = str(replicas)
    metadata: dict[str, Any] = {
        "name": trainer_pod_name(name, attempt, rank, replicas),
        "namespace": meta.get("namespace") or "default",
        "labels": labels,
        "ownerReferences": [owner_reference(session)],
    }
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


def build_gang(
    session: dict[str, Any], config: OperatorConfig, attempt: int
) -> list[dict[str, Any]]:
    """Every pod of one attempt, rank 0 first."""
    replicas = replicas_of(session.get("spec") or {})
    return [build_trainer_pod(session, config, attempt, rank) for rank in range(replicas)]


def build_headless_service(session: dict[str, Any]) -> dict[str, Any]:
    """Gives each pod of a multi-pod session a DNS name (MASTER_ADDR points at rank 0's)."""
    meta = session["metadata"]
    name = meta["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(name),
            "namespace": meta.get("namespace") or "default",
            "labels": session_labels(name),
            "ownerReferences": [owner_reference(session)],
        },
        "spec": {
            "clusterIP": "None",
            # Rendezvous happens before any pod is Ready.
            "publishNotReadyAddresses": True,
            "selector": {LABEL_SESSION: name, LABEL_COMPONENT: COMPONENT_TRAINER},
            "ports": [{"name": "rendezvous", "port": tenv.DEFAULT_MASTER_PORT, "protocol": "TCP"}],
        },
    }
