"""The platform's Redis and S3 keep their data in the data dir: a server killed with SIGKILL
and started again (on the same port, as the supervisor does) has what was written before."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import time
from pathlib import Path

import boto3
import pytest
import redis
from botocore.exceptions import ClientError

from pivot_local.services import RedisServer, SeaweedS3Server

pytestmark = pytest.mark.integration


def _sigkill(proc: object) -> None:
    assert proc is not None
    os.killpg(proc.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    proc.wait()  # type: ignore[attr-defined]


def test_redis_killed_and_restarted_keeps_what_was_written_a_second_before(
    tmp_path: Path,
) -> None:
    server = RedisServer(data_dir=tmp_path / "redis").start()
    port = server.port
    try:
        client = redis.Redis.from_url(server.url)
        for epoch in range(1, 4):
            client.xadd("metrics", {"epoch": epoch})
        client.hset("alert", mapping={"id": "alert_1"})
        time.sleep(1.2)  # appendfsync everysec: older than a second is on disk
        _sigkill(server.proc)
        assert server.start() is server and server.port == port
        assert [int(f[b"epoch"]) for _, f in client.xrange("metrics")] == [1, 2, 3]
        assert client.hgetall("alert") == {b"id": b"alert_1"}
        client.xadd("metrics", {"epoch": 4})
        server.stop()  # a clean stop writes everything
        server.start()
        assert client.xlen("metrics") == 4
        client.close()
    finally:
        server.stop()


def test_seaweedfs_killed_and_restarted_keeps_checkpoints_and_checks_keys(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    server = SeaweedS3Server(data_dir=tmp_path / "s3").start()
    print(f"seaweedfs ready in {time.monotonic() - started:.2f}s")
    port = server.port
    try:
        s3 = server.client()
        small, large = os.urandom(1 << 20), os.urandom(20 << 20)
        s3.put_object(Bucket=server.bucket, Key="checkpoints/s/c1/model.pth", Body=small)
        # Over boto3's 8 MiB threshold: a multipart upload, as the trainer's large checkpoints.
        s3.upload_fileobj(io.BytesIO(large), server.bucket, "checkpoints/s/c2/model.pth")
        _sigkill(server.proc)
        assert server.start() is server and server.port == port
        for key, body in (("c1", small), ("c2", large)):
            got = s3.get_object(Bucket=server.bucket, Key=f"checkpoints/s/{key}/model.pth")
            assert hashlib.sha256(got["Body"].read()).digest() == hashlib.sha256(body).digest()
        # Unlike moto, it checks signatures: a wrong secret is refused.
        wrong = boto3.client(
            "s3",
            endpoint_url=server.endpoint,
            aws_access_key_id=server.access_key,
            aws_secret_access_key="not-the-secret",
            region_name=server.region,
        )
        with pytest.raises(ClientError) as err:
            wrong.list_objects_v2(Bucket=server.bucket)
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    finally:
        server.stop()
