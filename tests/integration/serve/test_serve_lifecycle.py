"""The server process's life: checkpoints it must refuse (exit 3 or 4), bad settings (exit 2),
batching under concurrent clients, and SIGTERM (drain, then exit 0)."""

from __future__ import annotations

import asyncio
import hashlib
import re
import signal
import socket
import time
import uuid
from dataclasses import replace
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from pivot_local.services import S3Server
from pivot_trainer.serve.errors import EXIT_CHECKSUM, EXIT_CONFIG, EXIT_OK, EXIT_UNLOADABLE
from tests.integration.serve.serving import (
    TcpGate,
    Trained,
    json_body,
    npy_bytes,
    start_server,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def upload(s3: S3Server, data: bytes) -> str:
    key = f"serve-tests/{uuid.uuid4().hex}/model.pth"
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=data)
    return key


def test_a_checkpoint_whose_bytes_do_not_match_exits_3_naming_both_digests(
    s3_server: S3Server, trained: Trained
) -> None:
    wrong = hashlib.sha256(b"another checkpoint").hexdigest()
    manifest = trained.manifest.model_copy(update={"sha256": wrong})
    proc = start_server(s3_server, replace(trained, manifest=manifest))
    assert proc.wait_exit() == EXIT_CHECKSUM
    err = "".join(proc.stderr)
    assert "checksum mismatch" in err and trained.uri in err
    assert wrong in err and trained.manifest.sha256 in err  # expected and found


@pytest.mark.parametrize("what", ["missing", "not_a_checkpoint"])
def test_a_missing_or_unloadable_checkpoint_exits_4(
    s3_server: S3Server, trained: Trained, what: str
) -> None:
    if what == "missing":
        key, sha, needle = "serve-tests/nothing/model.pth", trained.manifest.sha256, "NoSuchKey"
    else:
        data = b"these bytes are verified but are no checkpoint"
        key, sha, needle = upload(s3_server, data), hashlib.sha256(data).hexdigest(), "not load"
    manifest = trained.manifest.model_copy(update={"object_key": key, "sha256": sha})
    proc = start_server(s3_server, replace(trained, manifest=manifest))
    assert proc.wait_exit() == EXIT_UNLOADABLE
    assert needle in "".join(proc.stderr)


def test_a_bad_setting_exits_2_with_one_line(s3_server: S3Server, trained: Trained) -> None:
    proc = start_server(s3_server, trained, max_batch_size="many")
    assert proc.wait_exit() == EXIT_CONFIG
    lines = "".join(proc.stderr).strip().splitlines()
    assert len(lines) == 1 and "PIVOT_SERVE_MAX_BATCH_SIZE must be an integer" in lines[0]


def test_sigterm_while_loading_exits_0(s3_server: S3Server, trained: Trained) -> None:
    s3 = urlsplit(s3_server.endpoint)
    assert s3.hostname is not None and s3.port is not None
    gate = TcpGate(s3.hostname, s3.port)
    proc = start_server(s3_server, trained, endpoint=gate.endpoint)
    try:
        proc.wait_listening()
        wait_for(lambda: gate.waiting >= 1, 60, "the checkpoint download at the gate")
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.wait_exit() == EXIT_OK
    finally:
        proc.stop()
        gate.close()


def test_concurrent_requests_are_batched(s3_server: S3Server, trained: Trained) -> None:
    # A batch closes at 8 images or 1 s after its first: 8 clients at once share batches
    # unless they arrive over a second apart.
    proc = start_server(s3_server, trained, max_batch_size=8, max_delay_ms=1000)
    try:
        proc.wait_ready()
        rng = np.random.default_rng(3)
        bodies = [
            json_body([(npy_bytes(rng.standard_normal((32, 32)).astype(np.float32)), "npy")])
            for _ in range(8)
        ]

        async def send_all() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=proc.url, timeout=60) as client:
                return await asyncio.gather(*(client.post("/predict", json=b) for b in bodies))

        answers = asyncio.run(send_all())
        assert [a.status_code for a in answers] == [200] * 8
        sizes = [a.json()["timing"]["batch_size"] for a in answers]
        assert max(sizes) > 1, sizes
        # The histogram saw it too (the warm-up runs the model directly, not through it).
        sample = proc.metrics()
        batches = sample["pivot_serve_batch_size_count"]
        assert sample["pivot_serve_images_total"] == sample["pivot_serve_batch_size_sum"] == 8
        assert batches < 8  # fewer model runs than requests
        assert sample['pivot_serve_batch_size_bucket{le="1.0"}'] < batches
        assert sample['pivot_serve_requests_total{outcome="ok"}'] == 8
    finally:
        proc.stop()


def test_sigterm_keeps_answering_for_the_lame_duck_period(
    s3_server: S3Server, trained: Trained
) -> None:
    """While the pod leaves its endpoints, a request routed to it is still answered; /ready
    says draining at once, so nothing new is routed there. (What it refuses after the period,
    with a request still in progress, is the test below, with no period.)"""
    proc = start_server(s3_server, trained, lame_duck_s=4)
    try:
        proc.wait_ready()
        body = npy_bytes(np.zeros((32, 32), np.float32))
        proc.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        wait_for(
            lambda: httpx.get(f"{proc.url}/ready", timeout=5).status_code == 503,
            30,
            "/ready 503 after SIGTERM",
        )
        assert httpx.get(f"{proc.url}/ready", timeout=5).json()["status"] == "draining"
        sent = time.monotonic() - t0
        if sent < 3.5:  # a machine slow enough to be past the period skips this one check
            served = httpx.post(
                f"{proc.url}/predict",
                content=body,
                headers={"Content-Type": "application/x-npy"},
                timeout=30,
            )
            assert served.status_code == 200, served.text
        assert proc.wait_exit() == EXIT_OK
        assert time.monotonic() - t0 >= 4  # it served out its period, idle as it was
        assert "drained" in proc.log
    finally:
        proc.stop()


def test_sigterm_drains_a_request_in_flight_then_exits_0(
    s3_server: S3Server, trained: Trained
) -> None:
    proc = start_server(s3_server, trained, lame_duck_s=0)
    try:
        proc.wait_ready()
        host, port = urlsplit(proc.url).hostname, urlsplit(proc.url).port
        assert host is not None and port is not None
        body = npy_bytes(np.zeros((32, 32), np.float32))
        head = (
            f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-npy\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        with socket.create_connection((host, port), timeout=60) as sock:
            # Half a body: the request is in the handler, reading, when SIGTERM comes.
            sock.sendall(head + body[: len(body) // 2])
            wait_for(
                lambda: proc.metrics()["pivot_serve_requests_in_flight"] == 1,
                30,
                "the request in flight",
            )
            proc.proc.send_signal(signal.SIGTERM)
            wait_for(
                lambda: httpx.get(f"{proc.url}/ready", timeout=5).status_code == 503,
                30,
                "/ready 503 after SIGTERM",
            )
            ready = httpx.get(f"{proc.url}/ready", timeout=5)
            assert ready.json()["status"] == "draining" and ready.headers["Retry-After"]
            late = httpx.post(
                f"{proc.url}/predict", content=body, headers={"Content-Type": "application/x-npy"}
            )
            assert late.status_code == 503 and late.headers["Retry-After"]
            assert late.json()["error"]["details"] == {"state": "draining"}
            assert proc.proc.poll() is None  # still draining: the first request is not done
            sock.sendall(body[len(body) // 2 :])
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        status = re.match(rb"HTTP/1\.1 (\d+)", answer)
        assert status is not None and status.group(1) == b"200", answer[:300]
        assert b'"predictions"' in answer
        assert proc.wait_exit() == EXIT_OK
        assert "drained" in proc.log
    finally:
        proc.stop()
