from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pivot_operator.builders import (
    build_headless_service,
    build_trainer_pod,
    replicas_of,
    service_name,
    trainer_pod_name,
)
from pivot_operator.config import OperatorConfig
from pivot_operator.reconcile import decide
from pivot_schema import env as tenv
from pivot_schema.crd import API_VERSION, KIND, LABEL_SESSION, StoredTrainingSession

CONFIG = OperatorConfig(
    redis_url="redis://r:6379/0", s3_endpoint="http://s3:9000", s3_bucket="b", s3_secret_name="s3"
)


def session(**spec: Any) -> StoredTrainingSession:
    return StoredTrainingSession.model_validate(
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": "sess-abc", "namespace": "team-a", "uid": "uid-1"},
            "spec": {"config": {"epochs": 3, "lr_extra": 1}, **spec},
        }
    )


def env_of(pod: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}


def test_pod_is_owned_labelled_and_named_deterministically() -> None:
    pod = build_trainer_pod(session(), CONFIG)
    assert pod["metadata"]["name"] == trainer_pod_name("sess-abc") == "sess-abc-trainer"
    assert pod["metadata"]["namespace"] == "team-a"
    assert pod["metadata"]["labels"][LABEL_SESSION] == "sess-abc"
    (owner,) = pod["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": "sess-abc",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert pod["spec"]["restartPolicy"] == "Never"
    assert build_trainer_pod(session(), CONFIG) == pod


def test_trainer_env_carries_session_stores_and_config() -> None:
    pod = build_trainer_pod(session(), CONFIG)
    env = env_of(pod)
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "pivot_trainer"]
    assert env[tenv.SESSION_ID]["value"] == "sess-abc"
    assert env[tenv.REDIS_URL]["value"] == "redis://r:6379/0"
    assert env[tenv.S3_ENDPOINT]["value"] == "http://s3:9000"
    assert env[tenv.S3_BUCKET]["value"] == "b"
    assert json.loads(env[tenv.CONFIG_JSON]["value"]) == {"epochs": 3, "lr_extra": 1}
    ref = env[tenv.S3_SECRET_KEY]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "s3", "key": tenv.SECRET_SECRET_KEY_FIELD}
    assert "value" not in env[tenv.S3_ACCESS_KEY]  # credentials never inline


def test_resources_gpu_and_scheduling() -> None:
    pod = build_trainer_pod(
        session(
            resources={"gpu": 2, "cpu": 4, "memory": "16Gi"},
            nodeSelector={"pool": "a100"},
            tolerations=[{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
            checkpoint={"gracePeriodSeconds": 90},
            image="registry/trainer:1",
        ),
        CONFIG,
    )
    container = pod["spec"]["containers"][0]
    assert container["image"] == "registry/trainer:1"
    assert container["resources"] == {
        "requests": {"cpu": "4", "memory": "16Gi"},
        "limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "2"},
    }
    assert pod["spec"]["nodeSelector"] == {"pool": "a100"}
    keys = [t["key"] for t in pod["spec"]["tolerations"]]
    assert keys == ["spot", "nvidia.com/gpu"]
    assert pod["spec"]["terminationGracePeriodSeconds"] == 90


def test_cpu_only_pod_has_no_gpu_toleration_and_default_image() -> None:
    pod = build_trainer_pod(session(), CONFIG)
    assert "tolerations" not in pod["spec"]
    assert "resources" not in pod["spec"]["containers"][0]
    assert pod["spec"]["containers"][0]["image"] == CONFIG.trainer_image


def test_scheduling_fields_are_copied_into_the_pod() -> None:
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}
    pod = build_trainer_pod(
        session(
            affinity=affinity,
            priorityClassName="training-high",
            runtimeClassName="nvidia",
            serviceAccountName="trainer-sa",
            imagePullSecrets=[{"name": "regcred"}],
            schedulerName="volcano",
        ),
        CONFIG,
    )
    spec = pod["spec"]
    assert spec["affinity"] == affinity
    assert spec["priorityClassName"] == "training-high"
    assert spec["runtimeClassName"] == "nvidia"
    assert spec["serviceAccountName"] == "trainer-sa"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["schedulerName"] == "volcano"


def test_unset_scheduling_fields_are_left_out() -> None:
    spec = build_trainer_pod(session(), CONFIG)["spec"]
    for key in ("affinity", "priorityClassName", "runtimeClassName", "schedulerName", "volumes"):
        assert key not in spec
    assert "volumeMounts" not in spec["containers"][0]


def test_kueue_queue_becomes_a_label() -> None:
    pod = build_trainer_pod(session(queueName="team-a-queue"), CONFIG)
    assert pod["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a-queue"
    assert "kueue.x-k8s.io/pod-group-name" not in pod["metadata"]["labels"]


def test_kueue_gang_gets_pod_group_labels_per_attempt() -> None:
    pod = build_trainer_pod(session(queueName="q", replicas=3), CONFIG, attempt=2, rank=1)
    assert pod["metadata"]["labels"]["kueue.x-k8s.io/pod-group-name"] == "sess-abc-r2"
    assert pod["metadata"]["annotations"]["kueue.x-k8s.io/pod-group-total-count"] == "3"


def test_extra_env_is_appended_but_cannot_override_platform_env() -> None:
    pod = build_trainer_pod(
        session(
            env=[
                {"name": "HF_HOME", "value": "/cache"},
                {"name": tenv.SESSION_ID, "value": "hijack"},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "t", "key": "k"}}},
            ]
        ),
        CONFIG,
    )
    env = env_of(pod)
    assert env["HF_HOME"]["value"] == "/cache"
    assert env[tenv.SESSION_ID]["value"] == "sess-abc"
    assert env["TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "t", "key": "k"}


def test_dataset_pvc_extra_volumes_and_shm() -> None:
    pod = build_trainer_pod(
        session(
            dataset={"claimName": "imagenet"},
            volumes=[{"name": "cache", "emptyDir": {}}],
            volumeMounts=[{"name": "cache", "mountPath": "/cache"}],
            shmSize="2Gi",
        ),
        CONFIG,
    )
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["cache"] == {"name": "cache", "emptyDir": {}}
    assert volumes["dataset"]["persistentVolumeClaim"] == {
        "claimName": "imagenet",
        "readOnly": True,
    }
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}
    mounts = {m["mountPath"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["/data"] == {"name": "dataset", "mountPath": "/data", "readOnly": True}
    assert mounts["/dev/shm"]["name"] == "dshm"
    assert mounts["/cache"]["name"] == "cache"


def test_grace_period_defaults_to_the_operator_knob() -> None:
    assert (
        build_trainer_pod(session(), CONFIG)["spec"]["terminationGracePeriodSeconds"]
        == CONFIG.default_grace_period_seconds
    )


def test_each_attempt_and_rank_has_its_own_stable_name() -> None:
    assert trainer_pod_name("s", 0, 0, 1) == "s-trainer"
    assert trainer_pod_name("s", 2, 0, 1) == "s-trainer-r2"
    assert trainer_pod_name("s", 0, 1, 2) == "s-trainer-1"
    assert trainer_pod_name("s", 3, 1, 2) == "s-trainer-r3-1"
    pod = build_trainer_pod(session(), CONFIG, attempt=2)
    assert pod["metadata"]["name"] == "sess-abc-trainer-r2"
    assert pod["metadata"]["labels"]["pivot.dev/attempt"] == "2"
    assert pod["metadata"]["labels"]["pivot.dev/rank"] == "0"


def test_single_process_session_has_no_distributed_env() -> None:
    env = env_of(build_trainer_pod(session(), CONFIG))
    assert tenv.WORLD_SIZE not in env and tenv.MASTER_ADDR not in env


def test_multi_node_gang_gets_indexed_pods_dns_and_torch_env() -> None:
    gang_session = session(replicas=2)
    # As a sync makes them: the ranks the plan for a new attempt creates, rank 0 first.
    plan = decide(
        gang_session.spec,
        {"attempt": 1},
        [],
        datetime.now(UTC),
        replicas=replicas_of(gang_session.spec),
    )
    gang = [build_trainer_pod(gang_session, CONFIG, attempt=1, rank=r) for r in plan.create]
    assert [p["metadata"]["name"] for p in gang] == [
        "sess-abc-trainer-r1-0",
        "sess-abc-trainer-r1-1",
    ]
    for rank, pod in enumerate(gang):
        env = {k: v["value"] for k, v in env_of(pod).items() if "value" in v}
        assert env[tenv.MASTER_ADDR] == "trainer-0.sess-abc-workers.team-a.svc.cluster.local"
        assert env[tenv.MASTER_PORT] == "29500"
        assert env[tenv.WORLD_SIZE] == "2"
        assert env[tenv.NODE_RANK] == str(rank)
        assert env[tenv.RANK] == str(rank)
        assert env[tenv.NPROC_PER_NODE] == "1"
        assert pod["spec"]["hostname"] == f"trainer-{rank}"
        assert pod["spec"]["subdomain"] == service_name("sess-abc")
        assert pod["spec"]["containers"][0]["command"] == ["python", "-m", "pivot_trainer"]


def test_multi_gpu_pods_run_torchrun_with_one_process_per_gpu() -> None:
    pod = build_trainer_pod(session(replicas=2, resources={"gpu": 4}), CONFIG, rank=1)
    command = pod["spec"]["containers"][0]["command"]
    assert command[0] == "torchrun"
    assert "--nnodes=2" in command and "--nproc-per-node=4" in command
    assert "--node-rank=1" in command
    assert command[-2:] == ["-m", "pivot_trainer"]
    env = {k: v["value"] for k, v in env_of(pod).items() if "value" in v}
    assert env[tenv.WORLD_SIZE] == "8"
    assert tenv.RANK not in env  # torchrun sets RANK/LOCAL_RANK per process


def test_headless_service_selects_the_session_pods() -> None:
    svc = build_headless_service(session(replicas=2))
    assert svc["metadata"]["name"] == "sess-abc-workers"
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["selector"][LABEL_SESSION] == "sess-abc"
    assert svc["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
