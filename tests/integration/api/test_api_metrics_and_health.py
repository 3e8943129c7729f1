"""Metrics and history read back what the trainer writes to Redis; health checks each part."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from pivot_schema import keys

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


async def test_health_is_healthy_with_every_part_up(platform: Platform) -> None:
    body = (await platform.http.get("/api/v1/health")).json()
    assert body["status"] == "healthy", body
    assert body["components"] == {
        "database": "healthy",
        "filesystem": "healthy",
        "kubernetes": "healthy",
    }
    assert body["uptime_seconds"] >= 0


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
    assert body["components"] == {
        "database": "unhealthy",
        "filesystem": "healthy",
        "kubernetes": "healthy",
    }
