"""Helpers more than one benchmark uses (bench/ is a folder of scripts: each imports this
from its own directory)."""

from __future__ import annotations

from pathlib import Path

import yaml
from redis import Redis

from pivot_local.services import RedisServer

ROOT = Path(__file__).resolve().parent.parent


def redis_durability(redis: RedisServer) -> str:
    """The running Redis's persistence, asserted equal to what the Helm chart deploys (AOF,
    fsync as `redis.bundled.appendfsync`), so the ingest row pays for the same durability."""
    chart = yaml.safe_load((ROOT / "helm" / "pivot" / "values.yaml").read_text())
    want = chart["redis"]["bundled"]["appendfsync"]
    r = Redis.from_url(redis.url)
    got = {k: r.config_get(k)[k] for k in ("appendonly", "appendfsync")}
    r.close()
    assert got == {"appendonly": "yes", "appendfsync": want}, (got, want)
    return f"appendonly yes, appendfsync {want} (as helm/pivot/values.yaml)"
