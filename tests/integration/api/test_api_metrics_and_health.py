"""Metrics and history read back what the trainer writes to Redis; health checks each part."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from pivot_schema import keys
from pivot_schema.leases import NODE_LEASE_NAMESPACE, OPERATOR_LEASE, lease_manifest
from tests.support.waiting import eventually

from .api_platform import Platform, platform_settings, serve

pytestmark = pytest.mark.integration

SESSIONS = "/api/v1/training/sessions"


async def write_epochs(platform: Platform, sid: str, records: list[dict[str, Any]]) -> None:
    """XADD epoch records exactly as the trainer does."""
    for record in records:
        await platform.redis.xadd(keys.metrics_stream(sid), keys.encode_record(record))


def ts(epoch: int) -> str:
    return f"2025-12-19T10:3{epoch}:00Z"


async def session_with_epochs(platform: Platform) -> str:
    sid = (await platform.create())["session_id"]
    await write_epochs(
        platform,
        sid,
        [
            keys.epoch_record(1, {"train_loss": 0.9, "val_loss": 0.95, "lr": 1e-3}, ts(1)),
            keys.epoch_record(2, {"train_loss": 0.7, "lr": 9e-4}, ts(2)),
            keys.epoch_record(3, {"train_loss": 0.5, "val_loss": 0.6, "lr": 8e-4}, ts(3)),
        ],
    )
    return sid


async def test_metrics_lists_every_epoch_record_oldest_first(platform: Platform) -> None:
    sid = await session_with_epochs(platform)
    body = (await platform.http.get(f"{SESSIONS}/{sid}/metrics")).json()
    assert body["session_id"] == sid
    assert body["metrics"][0] == {
        "epoch": 1,
        "timestamp": ts(1),
        "train_loss": 0.9,
        "val_loss": 0.95,
        "lr": 0.001,
    }
    assert [m["epoch"] for m in body["metrics"]] == [1, 2, 3]


async def test_metrics_filtered_by_name_skip_records_without_it(platform: Platform) -> None:
    sid = await session_with_epochs(platform)
    resp = await platform.http.get(f"{SESSIONS}/{sid}/metrics?metric_name=val_loss")
    assert resp.json()["metrics"] == [
        {"epoch": 1, "timestamp": ts(1), "val_loss": 0.95},
        {"epoch": 3, "timestamp": ts(3), "val_loss": 0.6},
    ]


async def test_metrics_limit_keeps_the_latest_records(platform: Platform) -> None:
    sid = await session_with_epochs(platform)
    resp = await platform.http.get(f"{SESSIONS}/{sid}/metrics?limit=2")
    assert [m["epoch"] for m in resp.json()["metrics"]] == [2, 3]


async def test_metrics_of_a_session_without_records_are_empty(platform: Platform) -> None:
    sid = (await platform.create())["session_id"]
    body = (await platform.http.get(f"{SESSIONS}/{sid}/metrics")).json()
    assert body == {"session_id": sid, "metrics": []}


async def test_history_gives_one_metric_as_parallel_lists(platform: Platform) -> None:
    sid = await session_with_epochs(platform)
    body = (await platform.http.get(f"/api/v1/metrics/{sid}/history")).json()
    assert body == {
        "metric_name": "val_loss",
        "values": [0.95, 0.6],
        "epochs": [1, 3],
        "timestamps": [ts(1), ts(3)],
        "total_points": 2,
        "downsampled": False,
    }


async def test_history_honours_the_epoch_range(platform: Platform) -> None:
    sid = await session_with_epochs(platform)
    resp = await platform.http.get(
        f"/api/v1/metrics/{sid}/history?metric_name=train_loss&start_epoch=2&end_epoch=3"
    )
    body = resp.json()
    assert body["epochs"] == [2, 3] and body["values"] == [0.7, 0.5]


async def test_history_keeps_the_last_report_of_a_repeated_epoch(platform: Platform) -> None:
    sid = await session_with_epochs(platform)
    # A trainer that resumed from the epoch-2 checkpoint reports epoch 3 again.
    await write_epochs(platform, sid, [keys.epoch_record(3, {"val_loss": 0.55}, ts(4))])
    body = (await platform.http.get(f"/api/v1/metrics/{sid}/history")).json()
    assert body["epochs"] == [1, 3] and body["values"] == [0.95, 0.55]


async def test_history_reads_records_written_after_an_earlier_read(platform: Platform) -> None:
    sid = await session_with_epochs(platform)
    await platform.http.get(f"/api/v1/metrics/{sid}/history")
    await write_epochs(platform, sid, [keys.epoch_record(4, {"val_loss": 0.5}, ts(4))])
    body = (await platform.http.get(f"/api/v1/metrics/{sid}/history")).json()
    assert body["epochs"] == [1, 3, 4] and body["timestamps"][-1] == ts(4)


async def test_history_with_max_points_keeps_the_shape_and_is_deterministic(
    platform: Platform,
) -> None:
    sid = (await platform.create())["session_id"]
    values = [1.0 - e / 1000 for e in range(1, 1001)]
    values[500] = 5.0  # a spike that must survive downsampling
    values[700] = -5.0
    pipe = platform.redis.pipeline()
    for epoch, value in enumerate(values, start=1):
        record = keys.epoch_record(epoch, {"val_loss": value}, "2025-12-19T10:30:00.123456Z")
        pipe.xadd(keys.metrics_stream(sid), keys.encode_record(record))
    await pipe.execute()
    url = f"/api/v1/metrics/{sid}/history?max_points=50"
    body = (await platform.http.get(url)).json()
    assert body["total_points"] == 1000 and body["downsampled"] is True
    assert 2 < len(body["epochs"]) <= 50
    assert body["epochs"] == sorted(body["epochs"])
    assert (body["epochs"][0], body["epochs"][-1]) == (1, 1000)
    assert max(body["values"]) == 5.0 and min(body["values"]) == -5.0
    assert set(body["timestamps"]) == {"2025-12-19T10:30:00.123456Z"}
    assert (await platform.http.get(url)).json() == body
    ranged = (await platform.http.get(f"{url}&start_epoch=900&end_epoch=1000")).json()
    assert ranged["total_points"] == 101 and ranged["epochs"][0] == 900


async def test_history_rejects_max_points_below_two_with_the_envelope(platform: Platform) -> None:
    sid = await session_with_epochs(platform)
    resp = await platform.http.get(f"/api/v1/metrics/{sid}/history?max_points=1")
    assert resp.status_code == 422
    assert resp.json()["error"]["details"]["field"] == "max_points"


Heartbeats = Callable[..., Awaitable[None]]


@pytest.fixture
async def heartbeats(kube: client.ApiClient, namespace: str) -> AsyncIterator[Heartbeats]:
    """Write the Leases an operator (in the test's namespace, which the API reads) and a node
    renew; `operator_age_s` makes the operator's last renewal that long ago."""
    coordination = client.CoordinationV1Api(kube)
    node = f"node-{namespace}"

    async def write(*, operator_age_s: float = 0) -> None:
        now = datetime.now(UTC)
        renewed = now - timedelta(seconds=operator_age_s)
        operator = lease_manifest(OPERATOR_LEASE, namespace, "operator-1", 15, renewed)
        await coordination.create_namespaced_lease(namespace, operator)
        node_lease = lease_manifest(node, NODE_LEASE_NAMESPACE, node, 40, now)
        await coordination.create_namespaced_lease(NODE_LEASE_NAMESPACE, node_lease)

    yield write
    with contextlib.suppress(ApiException):
        await coordination.delete_namespaced_lease(node, NODE_LEASE_NAMESPACE)


async def test_health_is_healthy_with_every_part_up(
    platform: Platform, heartbeats: Heartbeats
) -> None:
    await heartbeats()
    body = (await platform.http.get("/api/v1/health")).json()
    assert body["status"] == "healthy", body
    assert body["components"] == {
        "database": "healthy",
        "filesystem": "healthy",
        "kubernetes": "healthy",
        "operator": "healthy",
        "kubelet": "healthy",
    }
    assert body["uptime_seconds"] >= 0


async def test_health_calls_an_operator_whose_lease_ran_out_unhealthy(
    platform: Platform, heartbeats: Heartbeats
) -> None:
    await heartbeats(operator_age_s=60)  # a 15 s lease last renewed a minute ago
    body = (await platform.http.get("/api/v1/health")).json()
    assert body["status"] == "degraded"
    assert body["components"]["operator"] == "unhealthy"
    assert body["components"]["kubelet"] == "healthy"


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_health_is_degraded_when_redis_is_down(
    kubeconfig: str, namespace: str, configs_dir: Any, s3_server: Any
) -> None:
    settings = platform_settings(
        kubeconfig=kubeconfig,
        namespace=namespace,
        configs_dir=configs_dir,
        redis_url=f"redis://127.0.0.1:{dead_port()}/0",
        s3=s3_server,
    )
    async with serve(settings) as (_, http):
        body = (await http.get("/api/v1/health")).json()
    assert body["status"] == "degraded"
    assert body["components"]["database"] == "unhealthy"
    assert body["components"]["filesystem"] == "healthy"
    assert body["components"]["kubernetes"] == "healthy"


def _us(timestamp: str) -> int:
    when = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return round(when.timestamp() * 1_000_000)


async def write_steps(
    platform: Platform, sid: str, records: list[dict[str, Any]], *, columns: bool = True
) -> None:
    """XADD step records (as `keys.step_record` makes them) packed `keys.STEPS_CHUNK` an entry:
    column entries, as the trainer's sink writes them, or (`columns=False`) JSON arrays, as
    earlier trainers did. One record alone is written as a plain record, as streams from before
    packing hold them."""
    pipe = platform.redis.pipeline()
    for at in range(0, len(records), keys.STEPS_CHUNK):
        chunk = records[at : at + keys.STEPS_CHUNK]
        fields: dict[str, str | bytes]
        if len(records) == 1:
            fields = {keys.DATA_FIELD: json.dumps(chunk[0], separators=(",", ":"))}
        elif columns:
            rows = [
                (r["epoch"], r["step"], r["global_step"], r["train_loss"], _us(r["timestamp"]))
                for r in chunk
            ]
            fields = keys.encode_step_columns(list(zip(*rows, strict=True)))
        else:
            fields = {keys.DATA_FIELD: json.dumps(chunk, separators=(",", ":"))}
        pipe.xadd(keys.steps_stream(sid), fields)  # type: ignore[arg-type]
    await pipe.execute()


async def session_with_steps(
    platform: Platform, epochs: int = 3, per_epoch: int = 4, *, columns: bool = True
) -> str:
    sid = (await platform.create())["session_id"]
    records = []
    for epoch in range(1, epochs + 1):
        for step in range(1, per_epoch + 1):
            global_step = (epoch - 1) * per_epoch + step
            records.append(keys.step_record(epoch, step, global_step, 1.0 / global_step, ts(epoch)))
    await write_steps(platform, sid, records, columns=columns)
    return sid


@pytest.mark.parametrize("columns", [True, False], ids=["column-entries", "json-entries"])
async def test_steps_give_train_loss_by_global_step(platform: Platform, columns: bool) -> None:
    sid = await session_with_steps(platform, columns=columns)
    body = (await platform.http.get(f"/api/v1/metrics/{sid}/steps")).json()
    assert body["metric_name"] == "train_loss"
    assert body["steps"] == list(range(1, 13))
    assert body["epochs"] == [1] * 4 + [2] * 4 + [3] * 4
    assert body["values"] == [1.0 / s for s in range(1, 13)]
    assert body["timestamps"][0] == ts(1) and body["timestamps"][-1] == ts(3)
    assert (body["total_points"], body["downsampled"]) == (12, False)


async def test_steps_of_an_earlier_trainer_and_this_one_read_as_one_series(
    platform: Platform,
) -> None:
    """A resumed session's stream can hold JSON entries, then column entries."""
    sid = await session_with_steps(platform, epochs=1, per_epoch=3, columns=False)
    later = [keys.step_record(2, s, 3 + s, 0.5 / s, ts(2)) for s in (1, 2, 3)]
    later[1]["train_loss"] = float("inf")  # read back as null, as a NaN is
    await write_steps(platform, sid, later)
    body = (await platform.http.get(f"/api/v1/metrics/{sid}/steps")).json()
    assert body["steps"] == [1, 2, 3, 4, 5, 6] and body["epochs"] == [1, 1, 1, 2, 2, 2]
    assert body["values"] == [1.0, 0.5, 1.0 / 3, 0.5, None, 0.5 / 3]
    assert body["timestamps"] == [ts(1)] * 3 + [ts(2)] * 3


async def test_steps_honour_the_step_range_and_read_new_records(platform: Platform) -> None:
    sid = await session_with_steps(platform)
    url = f"/api/v1/metrics/{sid}/steps?start_step=5&end_step=8"
    body = (await platform.http.get(url)).json()
    assert body["steps"] == [5, 6, 7, 8] and body["epochs"] == [2, 2, 2, 2]
    await write_steps(platform, sid, [keys.step_record(4, 1, 13, 0.01, ts(4))])
    body = (await platform.http.get(f"/api/v1/metrics/{sid}/steps?start_step=12")).json()
    assert body["steps"] == [12, 13] and body["values"][-1] == 0.01


async def test_steps_with_max_points_keep_the_shape_and_are_deterministic(
    platform: Platform,
) -> None:
    sid = (await platform.create())["session_id"]
    losses = [1.0 - s / 10_000 for s in range(1, 5001)]
    losses[1234] = 9.0  # a loss spike must survive downsampling
    await write_steps(
        platform,
        sid,
        [
            keys.step_record(1 + i // 1000, 1 + i % 1000, i + 1, v, ts(1))
            for i, v in enumerate(losses)
        ],
    )
    url = f"/api/v1/metrics/{sid}/steps?max_points=100"
    body = (await platform.http.get(url)).json()
    assert body["total_points"] == 5000 and body["downsampled"] is True
    assert 2 < len(body["steps"]) <= 100 and body["steps"] == sorted(body["steps"])
    assert (body["steps"][0], body["steps"][-1]) == (1, 5000)
    assert max(body["values"]) == 9.0 and 1235 in body["steps"]
    assert body["epochs"][body["steps"].index(1235)] == 2
    assert (await platform.http.get(url)).json() == body


async def test_steps_of_a_session_without_steps_or_of_an_unknown_metric_are_empty(
    platform: Platform,
) -> None:
    sid = await session_with_steps(platform)
    body = (await platform.http.get(f"/api/v1/metrics/{sid}/steps?metric_name=val_loss")).json()
    assert (body["steps"], body["values"], body["total_points"]) == ([], [], 0)
    fresh = (await platform.create())["session_id"]
    assert (await platform.http.get(f"/api/v1/metrics/{fresh}/steps")).json()["steps"] == []


async def test_steps_errors_use_the_envelope(platform: Platform) -> None:
    sid = await session_with_steps(platform)
    missing = await platform.http.get("/api/v1/metrics/sess-nope/steps")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
    inverted = await platform.http.get(f"/api/v1/metrics/{sid}/steps?start_step=9&end_step=2")
    assert inverted.status_code == 422
    assert inverted.json()["error"]["details"]["field"] == "start_step"
    for query in ("start_step=-1", "max_points=1", "end_step=x"):
        bad = await platform.http.get(f"/api/v1/metrics/{sid}/steps?{query}")
        assert bad.status_code == 422, query
        assert bad.json()["error"]["details"]["field"] == query.split("=")[0]


def gpu(index: int, util: float | None, used: int | None = 6 << 30) -> dict[str, Any]:
    """One device as the trainer's telemetry writes it (pivot_trainer.gpu.device_record)."""
    return {
        "index": index,
        "name": "NVIDIA H100",
        "utilization_percent": util,
        "memory_used_bytes": used,
        "memory_total_bytes": 8 << 30,
        "temperature_c": 61.0,
        "power_watts": None,
    }


async def write_gpu(platform: Platform, sid: str, gpus: list[Any], stamp: str) -> None:
    record = keys.gpu_record(gpus, stamp)
    await platform.redis.xadd(keys.gpu_stream(sid), keys.encode_record(record))


async def running_session(platform: Platform, **body: Any) -> str:
    sid = str((await platform.create(**body))["session_id"])
    assert (await platform.http.post(f"{SESSIONS}/{sid}/start")).status_code == 200
    await platform.patch_status(sid, {"phase": "Running"})

    async def running() -> bool:  # the API's watch-backed cache catches up
        return bool((await platform.http.get(f"{SESSIONS}/{sid}")).json()["status"] == "running")

    await eventually(running, within=5, what=f"{sid} to read running", interval=0.01)
    return sid


async def test_resources_carry_the_latest_gpu_sample_of_each_running_session(
    platform: Platform,
) -> None:
    busy = await running_session(platform, session_name="busy")
    cpu_only = await running_session(platform)  # a CPU run writes no telemetry
    idle = (await platform.create())["session_id"]  # not running: not reported
    await write_gpu(platform, busy, [gpu(0, 10.0)], "2025-12-19T10:30:00Z")
    await write_gpu(platform, busy, [gpu(0, 93.5), gpu(1, None, used=None)], "2025-12-19T10:30:05Z")
    await write_gpu(platform, idle, [gpu(0, 50.0)], "2025-12-19T10:30:05Z")

    body = (await platform.http.get("/api/v1/monitor/resources")).json()
    assert {"timestamp", "cpu", "memory", "disk", "gpu"} <= set(body)  # the reference's shape
    by_id = {s["session_id"]: s for s in body["sessions"]}
    assert set(by_id) == {busy} and cpu_only not in by_id
    report = by_id[busy]
    assert report["session_name"] == "busy"
    assert report["timestamp"] == "2025-12-19T10:30:05Z" and report["age_seconds"] > 0
    first, second = report["gpus"]
    assert (first["index"], first["utilization_percent"], first["memory_percent"]) == (
        0,
        93.5,
        75.0,
    )
    assert first["memory_used_bytes"] == 6 << 30 and first["temperature_c"] == 61.0
    assert (second["index"], second["utilization_percent"], second["memory_percent"]) == (
        1,
        None,
        None,
    )


async def test_session_gpu_history_is_oldest_first_and_skips_malformed_devices(
    platform: Platform,
) -> None:
    sid = (await platform.create())["session_id"]
    for second in range(5):
        await write_gpu(platform, sid, [gpu(0, float(second))], f"2025-12-19T10:30:0{second}Z")
    await write_gpu(platform, sid, ["garbage", {"index": True}], "2025-12-19T10:30:09Z")
    url = f"/api/v1/monitor/sessions/{sid}/gpu"
    body = (await platform.http.get(f"{url}?limit=3")).json()
    assert body["session_id"] == sid
    assert [s["timestamp"] for s in body["samples"]] == [
        "2025-12-19T10:30:03Z",
        "2025-12-19T10:30:04Z",
        "2025-12-19T10:30:09Z",
    ]
    assert body["samples"][0]["gpus"][0]["utilization_percent"] == 3.0
    assert body["samples"][-1]["gpus"] == [
        {
            "index": 1,
            "name": "",
            "utilization_percent": None,
            "memory_used_bytes": None,
            "memory_total_bytes": None,
            "memory_percent": None,
            "temperature_c": None,
            "power_watts": None,
        }
    ]
    fresh = (await platform.create())["session_id"]
    empty = await platform.http.get(f"/api/v1/monitor/sessions/{fresh}/gpu")
    assert empty.json() == {"session_id": fresh, "samples": []}


async def test_session_gpu_errors_use_the_envelope(platform: Platform) -> None:
    missing = await platform.http.get("/api/v1/monitor/sessions/sess-nope/gpu")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
    sid = (await platform.create())["session_id"]
    for limit in ("0", "x", str(keys.GPU_MAXLEN + 1)):
        bad = await platform.http.get(f"/api/v1/monitor/sessions/{sid}/gpu?limit={limit}")
        assert bad.status_code == 422 and bad.json()["error"]["details"]["field"] == "limit"


async def test_resources_still_answer_with_redis_down(
    kubeconfig: str, kube: Any, namespace: str, configs_dir: Any, s3_server: Any
) -> None:
    settings = platform_settings(
        kubeconfig=kubeconfig,
        namespace=namespace,
        configs_dir=configs_dir,
        redis_url=f"redis://127.0.0.1:{dead_port()}/0",
        s3=s3_server,
    )
    async with serve(settings) as (app, http):
        # A running session whose telemetry cannot be read.
        down = Platform(http, app, client.CustomObjectsApi(kube), None, namespace, configs_dir)  # type: ignore[arg-type]
        await running_session(down)
        resp = await http.get("/api/v1/monitor/resources")
    assert resp.status_code == 200 and resp.json()["sessions"] == []


async def test_entries_that_are_not_records_are_skipped_not_a_500(platform: Platform) -> None:
    sid = await session_with_steps(platform, epochs=1, per_epoch=2)
    await platform.redis.xadd(keys.steps_stream(sid), {"data": "{not json"})
    truncated = keys.encode_step_columns([[1], [9], [9], [0.1], [0]])
    truncated[keys.COLUMNS_FIELD] = truncated[keys.COLUMNS_FIELD][:-3]
    await platform.redis.xadd(keys.steps_stream(sid), truncated)  # type: ignore[arg-type]
    await platform.redis.xadd(keys.gpu_stream(sid), {"data": "{not json"})
    await write_steps(platform, sid, [keys.step_record(1, 3, 3, 0.2, ts(1))])
    steps = await platform.http.get(f"/api/v1/metrics/{sid}/steps")
    assert steps.status_code == 200 and steps.json()["steps"] == [1, 2, 3]
    telemetry = await platform.http.get(f"/api/v1/monitor/sessions/{sid}/gpu")
    assert telemetry.status_code == 200
    assert telemetry.json()["samples"] == [{"timestamp": None, "gpus": []}]
