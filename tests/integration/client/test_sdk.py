"""The Python SDK against the running local platform: the reference's example as written,
live streams that survive dropped connections, errors mapped to classes, checkpoints."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pivot_client import (
    AsyncPIVOTClient,
    ConflictError,
    NotFoundError,
    PIVOTClient,
    TrainingStoppedError,
    ValidationError,
)
from pivot_local.platform import LocalPlatform
from pivot_schema.crd import GROUP, PLURAL, VERSION
from pivot_schema.modelserver import MS_PLURAL
from tests.support.platform import TINY_CONFIG, logs_of

from .servers import CuttingProxy

pytestmark = pytest.mark.integration

# The reference's "Python Client" example (spec/pivot-api-reference.md, SDKs), verbatim but
# for the import path and the base URL, which the test fills in.
REFERENCE_EXAMPLE = """\
from src.api.client import PIVOTClient

# Initialize client
client = PIVOTClient(base_url='http://localhost:8000')

# Create session
session = client.create_session(
    config_path='configs/train.yaml',
    session_name='my_experiment'
)

# Start training
client.start_training(session['session_id'])

# Monitor progress
for metrics in client.stream_metrics(session['session_id']):
    print(f"Epoch {metrics['epoch']}: Loss {metrics['val_loss']:.3f}")

# Wait for completion
final_metrics = client.wait_for_completion(session['session_id'])
"""


@pytest.fixture()
def client(platform: LocalPlatform) -> Iterator[PIVOTClient]:
    with PIVOTClient(platform.api_url) as c:
        yield c


def test_reference_python_example_runs_as_written(platform: LocalPlatform, tmp_path: Path) -> None:
    script = REFERENCE_EXAMPLE.replace(
        "from src.api.client import PIVOTClient", "from pivot_client import PIVOTClient"
    ).replace("http://localhost:8000", platform.api_url)
    script += "print('final', final_metrics['epoch'], final_metrics['val_loss'])\n"
    (tmp_path / "example.py").write_text(script)
    run = subprocess.run(
        [sys.executable, "example.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert run.returncode == 0, run.stderr + logs_of(platform)
    lines = run.stdout.splitlines()
    epochs = [line for line in lines if line.startswith("Epoch ")]
    # This platform's configs/train.yaml trains 3 epochs; each is printed once, in order.
    assert [line.split(":")[0] for line in epochs] == ["Epoch 1", "Epoch 2", "Epoch 3"]
    assert lines[-1].startswith("final 3 ")


def test_stream_cut_mid_event_resumes_without_loss_or_duplicates(
    client: PIVOTClient, platform: LocalPlatform
) -> None:
    # log_every_steps=2: the step series has points (4 optimizer steps an epoch here).
    config = {**TINY_CONFIG, "epochs": 4, "log_every_steps": 2}
    session = client.create_session(config=config, session_name="cut")
    client.start_training(session.session_id)
    # Each connection carries ~1-2 events before the proxy cuts it, usually mid-frame.
    with (
        CuttingProxy(platform.api_port, cut_after=1400) as proxy,
        PIVOTClient(proxy.url, max_retries=0) as flaky,
        flaky.stream_metrics(session.session_id, max_reconnects=20) as stream,
    ):
        seen = [record.to_dict() for record in stream]
    assert proxy.cuts >= 2, "the proxy never cut the stream: the test proves nothing"
    resumed = [r for r in proxy.requests[1:] if b"last-event-id:" in r.lower()]
    assert len(resumed) == len(proxy.requests) - 1
    stored = [r.to_dict() for r in client.get_metrics(session.session_id).metrics]
    assert [r["epoch"] for r in seen] == [1, 2, 3, 4]
    # The live records are the stored ones plus the reference's `loss` (here val_loss).
    assert [r.pop("loss") for r in seen] == [r["val_loss"] for r in stored]
    assert seen == stored
    history = client.metric_history(session.session_id, metric_name="train_loss")
    assert history.epochs == [1, 2, 3, 4]
    assert history.values == [r["train_loss"] for r in stored]
    picked = client.metric_history(
        session.session_id, metric_name="train_loss", start_epoch=2, max_points=2
    )
    assert len(picked.epochs) == 2 and set(picked.epochs) <= {2, 3, 4}
    assert picked.values == [history.values[e - 1] for e in picked.epochs]
    steps = client.step_history(session.session_id)
    assert steps.steps == [2, 4, 6, 8, 10, 12, 14, 16]
    assert steps.epochs == [1, 1, 2, 2, 3, 3, 4, 4] and len(steps.values) == 8
    assert client.step_history(session.session_id, start_step=9, max_points=2).steps == [10, 16]
    assert client.session_gpu(session.session_id).samples == []  # a CPU run
    assert isinstance(client.resources().sessions, list)


async def test_async_client_streams_and_waits(platform: LocalPlatform) -> None:
    async with AsyncPIVOTClient(platform.api_url) as client:
        session = await client.create_session(config=TINY_CONFIG, tags=["async"])
        await client.start_training(session.session_id)
        async with client.stream_metrics(session.session_id) as stream:
            epochs = [record.epoch async for record in stream]
        final = await client.wait_for_completion(session.session_id)
        assert epochs == [1, 2, 3]
        assert final.epoch == 3 and "val_loss" in final
        # TINY_CONFIG logs no step points (4 steps an epoch, every 10th logged); a CPU run
        # has no GPU telemetry.
        assert (await client.step_history(session.session_id)).steps == []
        assert (await client.session_gpu(session.session_id, limit=5)).samples == []
        found = [s.session_id async for s in client.list_sessions(page_size=1)]
        assert session.session_id in found
        assert len(found) == len(set(found))
        # The trainer's log: followed (it ends with the session) and read whole agree.
        followed = [line async for line in client.follow_logs(session.session_id)]
        assert followed
        assert (await client.logs(session.session_id)).splitlines() == followed
        assert (await client.session_events(session.session_id)).events
        assert (await client.whoami()).scope == "admin"
        assert [c.config_path for c in (await client.configs()).configs] == [
            "configs/train.yaml"
        ]


def test_list_sessions_walks_every_page(client: PIVOTClient) -> None:
    created = {client.create_session(config=TINY_CONFIG).session_id for _ in range(3)}
    total = client.list_sessions_page(limit=1).total
    listed = [s.session_id for s in client.list_sessions(page_size=2)]
    assert created <= set(listed)
    assert len(listed) == len(set(listed)) >= total


def test_missing_session_raises_not_found(client: PIVOTClient) -> None:
    with pytest.raises(NotFoundError) as caught:
        client.get_session("sess-doesnotexist")
    assert caught.value.status_code == 404
    assert caught.value.code == "NOT_FOUND"


def test_stream_of_a_missing_session_raises_not_found(client: PIVOTClient) -> None:
    with pytest.raises(NotFoundError), client.stream_metrics("sess-doesnotexist") as stream:
        next(stream)


def test_invalid_config_raises_validation_error_with_details(client: PIVOTClient) -> None:
    with pytest.raises(ValidationError) as caught:
        client.create_session(config={**TINY_CONFIG, "epochs": 0})
    assert caught.value.code == "VALIDATION_ERROR"
    assert caught.value.details["field"] == "config.epochs"


def cr_spec(platform: LocalPlatform, session_id: str) -> dict[str, Any]:
    """The TrainingSession's spec as Kubernetes holds it."""
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{platform.namespace}/{PLURAL}/{session_id}"
    with platform.http() as kube:
        resp = kube.get(path)
    resp.raise_for_status()
    return dict(resp.json()["spec"])


PLACEMENT: dict[str, Any] = {
    "resources": {"gpu": 2, "cpu": "8", "memory": "32Gi"},
    "node_selector": {"nvidia.com/gpu.product": "NVIDIA-H200"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "replicas": 2,
}
PLACED_SPEC: dict[str, Any] = {
    "resources": {"gpu": 2, "cpu": "8", "memory": "32Gi"},
    "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H200"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "replicas": 2,
}


def test_create_with_gpus_and_placement(client: PIVOTClient, platform: LocalPlatform) -> None:
    session = client.create_session(config=TINY_CONFIG, session_name="gpu", **PLACEMENT)
    assert session.status == "created"
    spec = cr_spec(platform, session.session_id)
    assert {k: spec[k] for k in PLACED_SPEC} == PLACED_SPEC


async def test_async_create_with_gpus_and_placement(platform: LocalPlatform) -> None:
    async with AsyncPIVOTClient(platform.api_url) as client:
        session = await client.create_session(config_path="configs/train.yaml", **PLACEMENT)
    spec = cr_spec(platform, session.session_id)
    assert {k: spec[k] for k in PLACED_SPEC} == PLACED_SPEC


def test_placement_the_crd_would_refuse_raises_validation_error(client: PIVOTClient) -> None:
    with pytest.raises(ValidationError) as caught:
        client.create_session(config=TINY_CONFIG, resources={"memory": "32 gigabytes"})
    assert caught.value.details["field"] == "resources.memory"


def test_models_deploy_update_and_delete_through_the_sdk(
    client: PIVOTClient, platform: LocalPlatform
) -> None:
    """What `deploy` sends is what the server holds (batching flattened back in its answer); a
    misspelt argument fails before any request; errors map to their classes. No replicas: no
    pod starts for the file, which does not exist."""
    source: dict[str, Any] = {"uri": "s3://pivot-sdk/model.pth", "sha256": "ab" * 32}
    with pytest.raises(TypeError, match=r"\breplica\b"):
        client.models.deploy("sdk-model", replica=2, **source)  # type: ignore[call-arg]
    with pytest.raises(NotFoundError):
        client.models.get("sdk-model")

    made = client.deploy_model(
        "sdk-model",
        replicas=0,
        max_batch_size=8,
        max_delay_ms=2.5,
        threshold=0.6,
        node_selector={"pool": "serving"},
        **source,
    )
    assert (made.replicas, made.max_batch_size, made.max_delay_ms, made.threshold) == (
        0, 8, 2.5, 0.6
    )  # fmt: skip
    assert made.uri == source["uri"]  # its sha256 is what Ready pods serve: none yet
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{platform.namespace}/{MS_PLURAL}/sdk-model"
    with platform.http() as kube:
        spec = kube.get(path).raise_for_status().json()["spec"]
    assert spec["nodeSelector"] == {"pool": "serving"}
    assert spec["source"]["sha256"] == source["sha256"]
    assert "sdk-model" in [m.name for m in client.models.list().models]
    with pytest.raises(ConflictError):
        client.models.deploy("sdk-model", **source)
    with pytest.raises(ValidationError) as refused:
        client.models.update("sdk-model", checkpoint="another")  # a uri's model: deploy again
    assert "uri" in str(refused.value)
    assert client.models.update("sdk-model", replicas=0).replicas == 0

    client.models.delete("sdk-model")
    with pytest.raises(NotFoundError):
        client.models.get("sdk-model")


def test_start_twice_raises_conflict_and_stop_ends_wait(client: PIVOTClient) -> None:
    session = client.create_session(config={**TINY_CONFIG, "epochs": 500})
    client.start_training(session.session_id)
    with pytest.raises(ConflictError) as caught:
        client.start_training(session.session_id)
    assert caught.value.status_code == 409
    with client.stream_metrics(session.session_id) as stream:
        next(stream)  # training for real before it is stopped
    client.stop_training(session.session_id)
    with pytest.raises(TrainingStoppedError) as stopped:
        client.wait_for_completion(session.session_id, timeout=120, poll_interval=0.5)
    assert stopped.value.status == "stopped"


def test_checkpoint_upload_download_delete(
    client: PIVOTClient, platform: LocalPlatform, tmp_path: Path
) -> None:
    session = client.create_session(config=TINY_CONFIG)
    source = tmp_path / "model.pth"
    source.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    progress: list[tuple[int, int]] = []
    uploaded = client.checkpoints.upload(
        source,
        session_id=session.session_id,
        epoch=2,
        metrics={"val_loss": 0.25},
        on_progress=lambda done, total: progress.append((done, total)),
    )
    assert progress[-1] == (source.stat().st_size, source.stat().st_size)
    listed = client.checkpoints.list(session_id=session.session_id)
    assert [c.checkpoint_id for c in listed] == [uploaded.checkpoint_id]

    target = client.checkpoints.download(uploaded.checkpoint_id, tmp_path / "copy.pth")
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    assert digest == hashlib.sha256(source.read_bytes()).hexdigest()

    client.checkpoints.delete(uploaded.checkpoint_id)
    with pytest.raises(NotFoundError):
        client.checkpoints.download(uploaded.checkpoint_id, tmp_path / "gone.pth")
    assert not (tmp_path / "gone.pth").exists()


READS: dict[str, Callable[[PIVOTClient], object]] = {
    "/api/v1/monitor/resources": lambda c: c.resources().cpu,
    "/api/v1/alerts": lambda c: c.alerts.list().alerts is not None,
    "/api/v1/notifications": lambda c: c.notifications.list().notifications is not None,
}


@pytest.mark.parametrize("path", sorted(READS))
def test_the_sdk_reads_resources_alerts_and_notifications(path: str, client: PIVOTClient) -> None:
    assert READS[path](client)


def test_a_wrong_or_missing_key_is_an_authentication_error(platform: LocalPlatform) -> None:
    """The platform runs with keys on (as deployed): the SDK maps its 401 to a class."""
    from pivot_client import AuthenticationError

    for key in ("pvt_not-the-key-of-this-platform", ""):
        with PIVOTClient(base_url=platform.api_url, api_key=key) as client:
            with pytest.raises(AuthenticationError) as caught:
                list(client.list_sessions())  # pages are fetched as it iterates
            assert caught.value.status_code == 401
            assert caught.value.code == "UNAUTHORIZED"
            assert client.health().status in ("healthy", "degraded")  # public, no key needed
