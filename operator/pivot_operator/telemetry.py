"""Reads the trainer's telemetry from Redis (the operator mirrors it into CR status) and removes
a deleted session's keys and checkpoints."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from pivot_schema import keys, storage

# Checkpoint events are rare (one per epoch or so): the newest few hold the best one.
EVENTS_SCANNED = 200


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
