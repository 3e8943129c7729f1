"""Reads the trainer's telemetry from Redis (the operator mirrors it into CR status)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from pivot_schema import keys


class Telemetry:
    def __init__(self, url: str):
        self.redis = aioredis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

    async def latest_epoch_record(self, session_id: str) -> dict[str, Any] | None:
        entries = await self.redis.xrevrange(keys.metrics_stream(session_id), count=1)
        if not entries:
            return None
        _id, fields = entries[0]
        return keys.decode_record(fields) or None

    async def close(self) -> None:
        await self.redis.aclose()
