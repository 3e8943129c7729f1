"""The operator's knobs come from the env names Helm and `pivot up` set, with the defaults the
chart documents."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pivot_operator import config
from pivot_operator.config import OperatorConfig


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("PIVOT_") or name == "KUBECONFIG":
            monkeypatch.delenv(name)
    monkeypatch.setattr(config, "SA_NAMESPACE_FILE", tmp_path / "no-serviceaccount")


def test_defaults() -> None:
    c = OperatorConfig()
    assert c.namespaces == []
    assert c.redis_url == "redis://127.0.0.1:6379/0"
    assert (c.s3_bucket, c.s3_region, c.s3_secret_name) == ("pivot", "us-east-1", "pivot-s3")
    assert c.default_grace_period_seconds == 60
    assert (c.progress_interval_seconds, c.backoff_base_seconds) == (2.0, 2.0)
    assert (c.schedule_timeout_seconds, c.resync_seconds) == (10.0, 30.0)
    assert (c.metrics_port, c.liveness_endpoint, c.kubeconfig) == (0, None, None)
    assert (c.peering_name, c.peering_lifetime) == ("", 30)
    assert 1 <= c.peering_priority <= 1_000_000
    assert c.lease_namespace == "default"


def test_every_knob_is_read_from_its_env_name(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "PIVOT_NAMESPACES": "team-a, team-b,",
        "PIVOT_TRAINER_IMAGE": "reg/trainer:2",
        "PIVOT_REDIS_URL": "redis://r:6379/1",
        "PIVOT_S3_ENDPOINT": "http://s3:9000",
        "PIVOT_S3_BUCKET": "b",
        "PIVOT_S3_REGION": "eu-west-1",
        "PIVOT_S3_SECRET": "creds",
        "PIVOT_S3_ACCESS_KEY": "ak",
        "PIVOT_S3_SECRET_KEY": "sk",
        "PIVOT_GRACE_PERIOD_SECONDS": "20",
        "PIVOT_PROGRESS_INTERVAL": "1",
        "PIVOT_BACKOFF_BASE_SECONDS": "0.5",
        "PIVOT_SCHEDULE_TIMEOUT_SECONDS": "3",
        "PIVOT_RESYNC_SECONDS": "5",
        "PIVOT_METRICS_PORT": "9090",
        "PIVOT_LIVENESS_ENDPOINT": "http://0.0.0.0:8080/healthz",
        "PIVOT_PEERING_NAME": "pivot",
        "PIVOT_PEERING_PRIORITY": "7",
        "PIVOT_PEERING_LIFETIME": "12",
        "KUBECONFIG": "/tmp/kubeconfig",
        "PIVOT_OPERATOR_NAMESPACE": "ops",
        "PIVOT_OPERATOR_LEASE": "lease",
        "PIVOT_OPERATOR_LEASE_SECONDS": "9",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    c = OperatorConfig()
    assert c.namespaces == ["team-a", "team-b"]
    assert c.trainer_image == "reg/trainer:2" and c.redis_url == "redis://r:6379/1"
    assert (c.s3_endpoint, c.s3_bucket, c.s3_region) == ("http://s3:9000", "b", "eu-west-1")
    assert (c.s3_secret_name, c.s3_access_key, c.s3_secret_key) == ("creds", "ak", "sk")
    assert c.default_grace_period_seconds == 20
    assert (c.progress_interval_seconds, c.backoff_base_seconds) == (1.0, 0.5)
    assert (c.schedule_timeout_seconds, c.resync_seconds) == (3.0, 5.0)
    assert (c.metrics_port, c.liveness_endpoint) == (9090, "http://0.0.0.0:8080/healthz")
    assert (c.peering_name, c.peering_priority, c.peering_lifetime) == ("pivot", 7, 12)
    assert c.kubeconfig == "/tmp/kubeconfig"
    assert (c.lease_namespace, c.lease_name, c.lease_seconds) == ("ops", "lease", 9)


def test_names_are_exact_and_empty_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("pivot_redis_url", "redis://lower:1/0")  # not the variable's name
    monkeypatch.setenv("PIVOT_KUBECONFIG", "/the/api/reads/this")  # the operator reads KUBECONFIG
    monkeypatch.setenv("PIVOT_LIVENESS_ENDPOINT", "")
    monkeypatch.setenv("PIVOT_PEERING_PRIORITY", "")
    c = OperatorConfig()
    assert c.redis_url == "redis://127.0.0.1:6379/0"
    assert c.kubeconfig is None and c.liveness_endpoint is None
    assert 1 <= c.peering_priority <= 1_000_000


def test_the_lease_lives_in_the_operators_own_namespace(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PIVOT_NAMESPACES", "team-a,team-b")
    assert OperatorConfig().lease_namespace == "team-a"  # outside a cluster: the first watched
    sa = tmp_path / "namespace"
    sa.write_text("pivot-system\n")
    monkeypatch.setattr(config, "SA_NAMESPACE_FILE", sa)
    assert OperatorConfig().lease_namespace == "pivot-system"  # in a pod: its ServiceAccount's


def test_settings_are_frozen() -> None:
    c = OperatorConfig(redis_url="redis://x:1/0")
    assert c.redis_url == "redis://x:1/0"  # set by name, as tests and tools do
    with pytest.raises(ValueError):
        c.redis_url = "redis://y:1/0"  # type: ignore[misc]
