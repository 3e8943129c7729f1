"""Pure builders: a TrainingSession (parsed once into pivot_schema's models) in, plain
manifests out. No cluster, no I/O."""

from __future__ import annotations

import json
from typing import Any, Protocol

from pydantic import BaseModel

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
    Resources,
    StoredTrainingSession,
    StoredTrainingSessionSpec,
    Toleration,
)

GPU_RESOURCE = "nvidia.com/gpu"
SHM_VOLUME = "dshm"
DATASET_VOLUME = "dataset"
DEFAULT_DATASET_MOUNT = "/data"
KUEUE_POD_GROUP = "kueue.x-k8s.io/pod-group-name"
KUEUE_POD_GROUP_COUNT = "kueue.x-k8s.io/pod-group-total-count"


def replicas_of(spec: StoredTrainingSessionSpec) -> int:
    return max(1, spec.replicas or 1)


class Placement(Protocol):
    """What a pod's resources and tolerations are built from: a TrainingSession's spec or a
    ModelServer's."""

    @property
    def resources(self) -> Resources | None: ...

    @property
    def tolerations(self) -> list[Toleration] | None: ...


def gpus_per_pod(spec: Placement) -> int:
    return (spec.resources.gpu if spec.resources else None) or 0


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


def master_addr(session: StoredTrainingSession) -> str:
    """Rank 0's DNS name: <hostname>.<subdomain>.<namespace>.svc.cluster.local."""
    meta = session.metadata
    return f"{pod_hostname(0)}.{service_name(meta.name)}.{meta.namespace}.svc.cluster.local"


def _wire(model: BaseModel) -> dict[str, Any]:
    """A spec item as the Pod API spells it (camelCase, unset fields left out)."""
    return model.model_dump(by_alias=True, exclude_none=True)


def session_labels(session_name: str) -> dict[str, str]:
    return {
        LABEL_SESSION: session_name,
        LABEL_COMPONENT: COMPONENT_TRAINER,
        LABEL_MANAGED_BY: MANAGED_BY,
    }


def owner_reference(session: StoredTrainingSession) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": session.metadata.name,
        "uid": session.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def build_resources(spec: Placement) -> dict[str, Any]:
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if spec.resources:
        for key, value in (("cpu", spec.resources.cpu), ("memory", spec.resources.memory)):
            if value is not None:
                requests[key] = limits[key] = str(value)
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


def build_tolerations(spec: Placement) -> list[dict[str, Any]]:
    tolerations = [_wire(t) for t in spec.tolerations or []]
    if gpus_per_pod(spec) > 0 and not any(t.get("key") == GPU_RESOURCE for t in tolerations):
        # GPU node pools are usually tainted nvidia.com/gpu:NoSchedule.
        tolerations.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    return tolerations


def build_distributed_env(session: StoredTrainingSession, rank: int) -> list[dict[str, Any]]:
    """torchrun's rendezvous env for a multi-pod (or multi-GPU) session; empty for one process."""
    spec = session.spec
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


def build_command(session: StoredTrainingSession, rank: int) -> list[str]:
    spec = session.spec
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
    session: StoredTrainingSession, config: OperatorConfig, rank: int = 0
) -> list[dict[str, Any]]:
    name = session.metadata.name
    spec = session.spec
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
        {"name": tenv.CONFIG_JSON, "value": json.dumps(spec.config or {}, sort_keys=True)},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        *build_distributed_env(session, rank),
    ]
    # The user's env comes after ours but cannot replace what the platform relies on.
    taken = {e["name"] for e in ours}
    extra = [_wire(e) for e in spec.env or [] if e.name not in taken]
    return ours + extra


def build_volumes(
    spec: StoredTrainingSessionSpec,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pod volumes, container mounts): the user's, the dataset PVC and a sized /dev/shm."""
    volumes = [dict(v) for v in spec.volumes or []]
    mounts = [_wire(m) for m in spec.volume_mounts or []]
    if dataset := spec.dataset:
        read_only = dataset.read_only is not False
        volumes.append(
            {
                "name": DATASET_VOLUME,
                "persistentVolumeClaim": {"claimName": dataset.claim_name, "readOnly": read_only},
            }
        )
        mounts.append(
            {
                "name": DATASET_VOLUME,
                "mountPath": dataset.mount_path or DEFAULT_DATASET_MOUNT,
                "readOnly": read_only,
            }
        )
    if spec.shm_size is not None:
        # The container runtime's 64 MiB /dev/shm breaks DataLoader workers; a memory
        # emptyDir (counted against the pod's memory) replaces it.
        volumes.append(
            {
                "name": SHM_VOLUME,
                "emptyDir": {"medium": "Memory", "sizeLimit": str(spec.shm_size)},
            }
        )
        mounts.append({"name": SHM_VOLUME, "mountPath": "/dev/shm"})
    return volumes, mounts


def build_trainer_pod(
    session: StoredTrainingSession, config: OperatorConfig, attempt: int = 0, rank: int = 0
) -> dict[str, Any]:
    """The trainer Pod of one rank of one attempt of a TrainingSession."""
    spec = session.spec
    name = session.metadata.name
    replicas = replicas_of(spec)
    grace = spec.checkpoint.grace_period_seconds if spec.checkpoint else None

    container: dict[str, Any] = {
        "name": "trainer",
        "image": spec.image or config.trainer_image,
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
        "terminationGracePeriodSeconds": grace or config.default_grace_period_seconds,
        "containers": [container],
    }
    if volumes:
        pod_spec["volumes"] = volumes
    scheduling = {
        "nodeSelector": spec.node_selector,
        "affinity": spec.affinity,
        "priorityClassName": spec.priority_class_name,
        "runtimeClassName": spec.runtime_class_name,
        "serviceAccountName": spec.service_account_name,
        "schedulerName": spec.scheduler_name,
    }
    pod_spec.update({key: value for key, value in scheduling.items() if value})
    tolerations = build_tolerations(spec)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if spec.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s.name} for s in spec.image_pull_secrets]
    if replicas > 1:
        pod_spec["hostname"] = pod_hostname(rank)
        pod_spec["subdomain"] = service_name(name)

    labels = {**session_labels(name), LABEL_ATTEMPT: str(attempt), LABEL_RANK: str(rank)}
    annotations: dict[str, str] = {}
    if spec.queue_name:
        labels[LABEL_KUEUE_QUEUE] = spec.queue_name
        if replicas > 1:
            # Kueue admits the gang as one workload (plain-pod groups).
            labels[KUEUE_POD_GROUP] = f"{name}-r{attempt}"
            annotations[KUEUE_POD_GROUP_COUNT] = str(replicas)
    metadata: dict[str, Any] = {
        "name": trainer_pod_name(name, attempt, rank, replicas),
        "namespace": session.metadata.namespace,
        "labels": labels,
        "ownerReferences": [owner_reference(session)],
    }
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


def build_headless_service(session: StoredTrainingSession) -> dict[str, Any]:
    """Gives each pod of a multi-pod session a DNS name (MASTER_ADDR points at rank 0's)."""
    name = session.metadata.name
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(name),
            "namespace": session.metadata.namespace,
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
