from __future__ import annotations

import json
from typing import Any

from pivot_operator.builders import build_trainer_pod, trainer_pod_name
from pivot_operator.config import OperatorConfig
from pivot_schema import env as tenv
from pivot_schema.crd import API_VERSION, KIND, LABEL_SESSION

CONFIG = OperatorConfig(
    redis_url="redis://r:6379/0", s3_endpoint="http://s3:9000", s3_bucket="b", s3_secret_name="s3"
)


def session(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "sess-abc", "namespace": "team-a", "uid": "uid-1"},
        "spec": {"config": {"epochs": 3, "lr_extra": 1}, **spec},
    }


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
