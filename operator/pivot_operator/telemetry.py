"""The trainer's telemetry: read from Redis, mapped onto the CR's status fields (the operator
mirrors it there), and removed with a deleted session's keys and checkpoints."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from pivot_schema import keys, storage

# Checkpoint events are rare (one per epoch or so): the newest few hold the best one.
EVENTS_SCANNED = 200


def telemetry_fields(latest: dict[str, Any], total: int) -> dict[str, Any]:
    """currentEpoch, progress, latestMetrics and displayValLoss from the trainer's newest
    epoch record."""
    epoch = int(latest.get("epoch") or 0)
    metrics = {
        k: float(v)
        for k, v in latest.items()
        if k not in ("epoch", "timestamp")
        and isinstance(v, int | float)
        and not isinstance(v, bool)
    }
    out: dict[str, Any] = {"currentEpoch": epoch, "latestMetrics": metrics}
    if "val_loss" in metrics:
        out["displayValLoss"] = display_number(metrics["val_loss"])  # the Val-Loss column
    if total > 0:
        out["progress"] = round(min(1.0, epoch / total), 4)
    return out


def display_number(value: float) -> str:
    """A metric as a printer column shows it: 4 significant digits (kubectl prints a number
    column's float with all 17)."""
    return f"{value:.4g}"


def best_checkpoint(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest `checkpoint` event marked best (or, with no metric to rank by, the newest)."""
    checkpoints = [e for e in events if e.get("type") == keys.EVENT_CHECKPOINT]
    if not checkpoints:
        return None
    best = [e for e in checkpoints if e.get("is_best")]
    e = (best or checkpoints)[-1]
    out: dict[str, Any] = {"id": e.get("checkpoint_id"), "epoch": int(e.get("epoch") or 0)}
    if e.get("metric_name") and isinstance(e.get("metric_value"), int | float):
        out["metric"] = e["metric_name"]
        out["value"] = float(e["metric_value"])
    return {k: v for k, v in out.items() if v is not None}


class Telemetry:
    def __init__(self, url: str):
        self.redis = aioredis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

    async def latest_epoch_record(self, session_id: str) -> dict[str, Any] | None:
        entries = await self.redis.xrevrange(keys.metrics_stream(session_id), count=1)
        if not entries:
            return None
        _id, fields = entries[0]
        return keys.decode_record(fields) or None

    async def recent_events(self, session_id: str) -> list[dict[str, Any]]:
        """The newest lifecycle events, oldest first."""
        entries = await self.redis.xrevrange(keys.events_stream(session_id), count=EVENTS_SCANNED)
        return [keys.decode_record(fields or {}) for _id, fields in reversed(entries or [])]

    async def delete_session(self, session_id: str) -> int:
        return int(await self.redis.delete(*keys.session_keys(session_id)))

    async def close(self) -> None:
        await self.redis.aclose()


def _delete_prefix_sync(
    endpoint: str, bucket: str, region: str, access: str, secret: str, prefix: str
) -> int:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint or None,
        region_name=region,
        aws_access_key_id=access or None,
        aws_secret_access_key=secret or None,
    )
    deleted = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        objects = [{"Key": o["Key"]} for o in page.get("Contents") or []]
        if objects:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
            deleted += len(objects)
    return deleted


async def delete_checkpoints(
    session_id: str, *, endpoint: str, bucket: str, region: str, access: str, secret: str
) -> int:
    """Remove checkpoints/<session>/ (boto3 is blocking: run it off the loop)."""
    return await asyncio.to_thread(
        _delete_prefix_sync,
        endpoint,
        bucket,
        region,
        access,
        secret,
        storage.session_prefix(session_id),
    )
