"""Helpers for the model server's tests: a checkpoint trained by the real trainer, the server
as a subprocess, a TCP gate in front of S3, image encoders."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from PIL import Image

from pivot_local.services import S3Server
from pivot_schema import storage
from tests.support.waiting import wait_for

# Trains in ~20 s on 2 shared CPU cores (8 epochs of 768 32x32 images, UNet width 8); its
# best checkpoint (val_froc 0.95) finds 95-97% of the lesions at 1 false positive per image on
# 256 fresh images (three seeds measured). 384 images and 6 epochs gave 0.85-0.97 by seed.
TRAIN_CONFIG: dict[str, Any] = {
    "epochs": 8,
    "batch_size": 32,
    "learning_rate": 0.01,
    "seed": 5,
    "image_size": 32,
    "num_train": 768,
    "num_val": 96,
    "base_channels": 8,
    "checkpoint": {"metric": "val_froc", "mode": "max"},
}
_LISTENING = re.compile(r"listening on (?P<host>[\d.]+):(?P<port>\d+)")


@dataclass(frozen=True)
class Trained:
    """A checkpoint the trainer wrote (its own save path) and the manifest that commits it."""

    session_id: str
    manifest: storage.CheckpointManifest
    bucket: str
    config: dict[str, Any]

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.manifest.object_key}"


def s3_env(s3: S3Server, endpoint: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIVOT_", "AWS_"))}
    env.update(
        PIVOT_S3_ENDPOINT=endpoint or s3.endpoint,
        PIVOT_S3_BUCKET=s3.bucket,
        AWS_ACCESS_KEY_ID=s3.access_key,
        AWS_SECRET_ACCESS_KEY=s3.secret_key,
        AWS_DEFAULT_REGION=s3.region,
        PIVOT_DEVICE="cpu",
        # Tiny models gain nothing from a second thread, and a spinning OpenMP team crawls
        # when the other core is busy (the test process, other tests).
        OMP_NUM_THREADS="1",
    )
    return env


def train(s3: S3Server, config: dict[str, Any] = TRAIN_CONFIG) -> Trained:
    """Run `python -m pivot_trainer` to the end; the best checkpoint it committed."""
    sid = f"serve-{uuid.uuid4().hex[:8]}"
    env = s3_env(s3)
    env.update(PIVOT_SESSION_ID=sid, PIVOT_CONFIG=json.dumps(config))
    proc = subprocess.run(
        [sys.executable, "-m", "pivot_trainer"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    client = s3.client()
    found = []
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=s3.bucket, Prefix=storage.session_prefix(sid)
    )
    for page in pages:
        for obj in page.get("Contents", []):
            if obj["Key"].endswith("/" + storage.MANIFEST_FILE):
                raw = client.get_object(Bucket=s3.bucket, Key=obj["Key"])["Body"].read()
                found.append(storage.CheckpointManifest.model_validate_json(raw))
    best = max((m for m in found if m.is_best), key=lambda m: m.epoch)
    return Trained(sid, best, s3.bucket, config)


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    readers: list[threading.Thread] = field(default_factory=list)
    url: str = ""

    def wait_listening(self, timeout: float = 60) -> str:
        def bound() -> str | None:
            for line in list(self.stdout):
                if match := _LISTENING.search(line):
                    return f"http://{match.group('host')}:{match.group('port')}"
            assert self.proc.poll() is None, f"server exited {self.proc.returncode}: {self.log}"
            return None

        self.url = wait_for(bound, timeout, "the server to listen", interval=0.05)
        return self.url

    def wait_ready(self, timeout: float = 120) -> None:
        self.wait_listening()

        def ready() -> bool:
            assert self.proc.poll() is None, f"server exited {self.proc.returncode}: {self.log}"
            return httpx.get(f"{self.url}/ready", timeout=5).status_code == 200

        wait_for(ready, timeout, "/ready 200", interval=0.1)

    def wait_exit(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout=timeout)
        for reader in self.readers:  # everything it wrote is in stdout/stderr
            reader.join(timeout=10)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def log(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)

    def metrics(self) -> dict[str, float]:
        """The server's Prometheus samples, `name{labels}` -> value."""
        out: dict[str, float] = {}
        for line in httpx.get(f"{self.url}/metrics", timeout=5).text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out


def start_server(
    s3: S3Server, trained: Trained, *, endpoint: str | None = None, **settings: Any
) -> ServerProcess:
    """`python -m pivot_trainer.serve` on a free port (PIVOT_SERVE_PORT=0) of 127.0.0.1;
    `settings` are PIVOT_SERVE_* values by lower-case suffix (threshold=0.5)."""
    env = s3_env(s3, endpoint)
    env.update(
        PIVOT_SERVE_HOST="127.0.0.1",
        PIVOT_SERVE_PORT="0",
        PIVOT_SERVE_MODEL="lesions",
        PIVOT_SERVE_CHECKPOINT_URI=trained.uri,
        PIVOT_SERVE_SHA256=trained.manifest.sha256,
        PIVOT_SERVE_CHECKPOINT_ID=trained.manifest.checkpoint_id,
    )
    env.update({f"PIVOT_SERVE_{k.upper()}": str(v) for k, v in settings.items()})
    proc = subprocess.Popen(
        [sys.executable, "-m", "pivot_trainer.serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    server = ServerProcess(proc)
    for stream, sink in ((proc.stdout, server.stdout), (proc.stderr, server.stderr)):
        assert stream is not None
        reader = threading.Thread(target=sink.extend, args=(stream,), daemon=True)
        reader.start()
        server.readers.append(reader)
    return server


class TcpGate:
    """A TCP proxy to `target` that holds every connection until `open()`: the server's
    checkpoint download waits there, so a test sees the server before it is ready."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._loop = asyncio.new_event_loop()
        self._opened = asyncio.Event()
        self.waiting = 0  # connections held at the gate
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self._thread.start()
        started.wait(10)
        self.endpoint = f"http://127.0.0.1:{self._port}"

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self._port = self._server.sockets[0].getsockname()[1]
            started.set()
            async with self._server:
                await self._server.serve_forever()

        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(main())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.waiting += 1
        await self._opened.wait()
        self.waiting -= 1
        up_reader, up_writer = await asyncio.open_connection(*self._target)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(1 << 16):
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def open(self) -> None:
        self._loop.call_soon_threadsafe(self._opened.set)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._thread.join(timeout=10)


# -- images -------------------------------------------------------------------------------


def png_bytes(array: np.ndarray) -> bytes:
    """A grayscale PNG: 8-bit for uint8, 16-bit for uint16."""
    assert array.dtype in (np.uint8, np.uint16)
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def json_body(blobs: list[tuple[bytes, str]], return_mask: bool = False) -> dict[str, Any]:
    return {
        "images": [{"data": base64.b64encode(b).decode(), "format": f} for b, f in blobs],
        "return_mask": return_mask,
    }
