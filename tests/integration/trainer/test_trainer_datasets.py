"""Training from npz shards in the real S3 endpoint, or in a mounted directory."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import numpy as np
import pytest

from pivot_local.services import RedisServer, S3Server
from pivot_trainer.data import TRAIN, VAL, make_split
from tests.integration.trainer.test_trainer_run import (
    TINY,
    metrics,
    new_session,
    ok,
    run,
    trainer_env,
)

pytestmark = pytest.mark.integration


def shards(split: int, n: int, per_shard: int) -> list[bytes]:
    # (n, H, W) arrays, as a numpy-only data pipeline would write them.
    x, y = make_split(n, 16, 7, split)
    out = []
    for i in range(0, n, per_shard):
        buf = io.BytesIO()
        np.savez(buf, images=x[i : i + per_shard, 0].numpy(), masks=y[i : i + per_shard, 0].numpy())
        out.append(buf.getvalue())
    return out


def test_trains_from_npz_shards_under_an_s3_prefix(
    redis_server: RedisServer, s3_server: S3Server
) -> None:
    prefix = f"datasets/{uuid.uuid4().hex[:8]}"
    client = s3_server.client()
    for split, name, n in ((TRAIN, "train", 96), (VAL, "val", 32)):
        for i, blob in enumerate(shards(split, n, 40)):
            client.put_object(
                Bucket=s3_server.bucket, Key=f"{prefix}/{name}/{i:03d}.npz", Body=blob
            )
    sid, url = new_session(), redis_server.url
    cfg = {**TINY, "dataset": {"source": "s3", "prefix": prefix}}
    ok(run(trainer_env(url, s3_server, sid, cfg)))
    records = metrics(url, sid)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[-1]["train_loss"] < records[0]["train_loss"]

    # A prefix without shards is a config error (exit 2), not an empty run.
    missing = {**TINY, "dataset": {"source": "s3", "prefix": f"{prefix}-nothing"}}
    proc = run(trainer_env(url, s3_server, new_session(), missing))
    assert proc.returncode == 2 and "no .npz shards found" in proc.stderr


def test_trains_from_npz_shards_in_a_directory_like_from_s3(
    redis_server: RedisServer, s3_server: S3Server, tmp_path: Path
) -> None:
    for split, name, n in ((TRAIN, "train", 96), (VAL, "val", 32)):
        (tmp_path / name).mkdir()
        for i, blob in enumerate(shards(split, n, 50)):
            (tmp_path / name / f"{i:03d}.npz").write_bytes(blob)
    sid, url = new_session(), redis_server.url
    cfg = {**TINY, "dataset": {"source": "path", "path": str(tmp_path)}}
    ok(run(trainer_env(url, s3_server, sid, cfg)))
    assert [r["epoch"] for r in metrics(url, sid)] == [1, 2, 3]
