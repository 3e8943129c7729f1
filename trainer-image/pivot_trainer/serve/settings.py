"""The server's environment, read once at start (no torch here: a bad setting exits 2 at once).

The names are the contract the operator's pod builder writes (pivot_schema.modelserver); the S3
endpoint and credentials are the trainer's own names (pivot_schema.env).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from pivot_schema import env as env_names
from pivot_schema import modelserver as ms
from pivot_schema.config import ConfigError

HOST = ms.SERVE_HOST
PORT = ms.SERVE_PORT
MODEL = ms.SERVE_MODEL
CHECKPOINT_URI = ms.SERVE_CHECKPOINT_URI
SHA256 = ms.SERVE_SHA256
CHECKPOINT_ID = ms.SERVE_CHECKPOINT_ID
MAX_BATCH_SIZE = ms.SERVE_MAX_BATCH_SIZE
MAX_DELAY_MS = ms.SERVE_MAX_DELAY_MS
THRESHOLD = ms.SERVE_THRESHOLD
COMPILE = ms.SERVE_COMPILE
MAX_BYTES = "PIVOT_SERVE_MAX_BYTES"
# Not in the operator's contract (its default is what a pod gets): the largest image, in
# pixels. A PNG compresses a huge blank image into a few KiB, so the body limit alone does not
# bound what decoding and the model would allocate.
MAX_PIXELS = "PIVOT_SERVE_MAX_PIXELS"
# After SIGTERM a server says not ready at once but keeps serving this long, while Kubernetes
# takes the pod out of its Service's endpoints (kube-proxy and the API learn of it a moment
# later): a request routed to it meanwhile is answered, not refused. Then it drains.
LAME_DUCK_S = "PIVOT_SERVE_LAME_DUCK_S"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_MAX_BATCH_SIZE = 16
DEFAULT_MAX_DELAY_MS = 5.0
DEFAULT_THRESHOLD = 0.5
DEFAULT_MAX_BYTES = 16 * 2**20
DEFAULT_MAX_PIXELS = 4096 * 4096
DEFAULT_LAME_DUCK_S = 3.0

_S3_URI = re.compile(r"^s3://(?P<bucket>[^/]+)/(?P<key>.+)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


@dataclass(frozen=True)
class ServeSettings:
    bucket: str
    key: str
    sha256: str
    model: str = "model"
    checkpoint_id: str = ""
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_delay_ms: float = DEFAULT_MAX_DELAY_MS
    threshold: float = DEFAULT_THRESHOLD
    compile: bool = False
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    lame_duck_s: float = DEFAULT_LAME_DUCK_S
    device: str | None = None  # None: cuda when available
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def read_settings(environ: Mapping[str, str] | None = None) -> ServeSettings:
    """The settings from `environ` (os.environ by default); ConfigError names the bad one."""
    e = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        value = e.get(name, "").strip()
        return value or None

    def number(name: str, default: float, lo: float, hi: float, integer: bool) -> float:
        raw = get(name)
        if raw is None:
            return default
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            kind = "an integer" if integer else "a number"
            raise ConfigError(f"{name} must be {kind}, got {raw!r}") from None
        if not lo <= value <= hi:  # also refuses nan
            raise ConfigError(f"{name} must be between {lo:g} and {hi:g}, got {raw!r}")
        return value

    uri = get(CHECKPOINT_URI)
    if uri is None:
        raise ConfigError(f"{CHECKPOINT_URI} is not set")
    match = _S3_URI.match(uri)
    if match is None:
        raise ConfigError(f"{CHECKPOINT_URI} must be s3://bucket/key, got {uri!r}")
    sha256 = (get(SHA256) or "").lower()
    if not _SHA256.match(sha256):
        raise ConfigError(f"{SHA256} must be 64 hex digits, got {get(SHA256)!r}")
    compile_raw = (get(COMPILE) or "false").lower()
    if compile_raw not in _TRUE | _FALSE:
        raise ConfigError(f"{COMPILE} must be true or false, got {get(COMPILE)!r}")
    device = get(env_names.DEVICE)
    if device is not None and device.split(":")[0] not in {"cpu", "cuda"}:
        raise ConfigError(f"{env_names.DEVICE} must be cpu or cuda, got {device!r}")
    return ServeSettings(
        bucket=match.group("bucket"),
        key=match.group("key"),
        sha256=sha256,
        model=get(MODEL) or "model",
        checkpoint_id=get(CHECKPOINT_ID) or "",
        host=get(HOST) or DEFAULT_HOST,
        port=int(number(PORT, DEFAULT_PORT, 0, 65535, True)),
        max_batch_size=int(number(MAX_BATCH_SIZE, DEFAULT_MAX_BATCH_SIZE, 1, 1024, True)),
        max_delay_ms=number(MAX_DELAY_MS, DEFAULT_MAX_DELAY_MS, 0, 1000, False),
        threshold=number(THRESHOLD, DEFAULT_THRESHOLD, 0, 1, False),
        compile=compile_raw in _TRUE,
        max_bytes=int(number(MAX_BYTES, DEFAULT_MAX_BYTES, 1, 2**31, True)),
        max_pixels=int(number(MAX_PIXELS, DEFAULT_MAX_PIXELS, 16, 2**31, True)),
        # The pod's 30 s grace holds this and the drain (app.DRAIN_TIMEOUT_S).
        lame_duck_s=number(LAME_DUCK_S, DEFAULT_LAME_DUCK_S, 0, 4, False),
        device=device,
        s3_endpoint=get(env_names.S3_ENDPOINT),
        s3_region=get(env_names.S3_REGION),
        s3_access_key=get(env_names.S3_ACCESS_KEY),
        s3_secret_key=get(env_names.S3_SECRET_KEY),
    )
