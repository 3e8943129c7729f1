"""One checkpoint trained by the real trainer and one server of it, for the whole session."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
import torch

from pivot_local.services import S3Server
from pivot_trainer.data import VAL, make_split
from pivot_trainer.serve.model import Loaded, build
from tests.integration.serve.serving import (
    ServerProcess,
    TcpGate,
    Trained,
    json_body,
    npy_bytes,
    start_server,
    train,
)
from tests.support.waiting import wait_for

# Fresh images from the trainer's own generator, with a seed its training (seed 5) never used.
PROBE_SEED = 2024
PROBE_SIZE = 32
# The shared server's body limit: small, so that the 413 tests send little.
MAX_BYTES = 256 * 1024


@pytest.fixture(scope="session")
def trained(s3_server: S3Server) -> Trained:
    return train(s3_server)


@pytest.fixture(scope="session")
def local_model(s3_server: S3Server, trained: Trained) -> Loaded:
    """The same checkpoint built in this process, to compare the server's answers with."""
    obj = s3_server.client().get_object(Bucket=trained.bucket, Key=trained.manifest.object_key)
    return build(obj["Body"].read())


@pytest.fixture(scope="session")
def probe() -> tuple[np.ndarray, np.ndarray]:
    """(images, masks), (n, H, W) float32."""
    images, masks = make_split(8, PROBE_SIZE, PROBE_SEED, VAL)
    return images[:, 0].numpy(), masks[:, 0].numpy()


def local_probs(loaded: Loaded, images: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return torch.sigmoid(loaded.model(torch.from_numpy(images)[:, None]))[:, 0]


def safe_threshold(probs: torch.Tensor) -> float:
    """The threshold near 0.5 farthest from every pixel's probability: float differences
    between the server's batches and ours (~1e-7) cannot move a pixel across it."""
    p = probs.flatten().double()
    options = torch.linspace(0.45, 0.55, 201, dtype=torch.float64)
    margins = (p[None, :] - options[:, None]).abs().min(dim=1).values
    best = int(margins.argmax())
    assert margins[best] > 1e-4, "no threshold near 0.5 keeps a margin from the probe's pixels"
    return float(options[best])


@dataclass
class Served:
    """The shared server, with the answers it gave while its checkpoint download was held."""

    proc: ServerProcess
    threshold: float
    before_ready: dict[str, httpx.Response]

    @property
    def url(self) -> str:
        return self.proc.url

    def predict(self, **kwargs: Any) -> httpx.Response:
        return httpx.post(f"{self.url}/predict", timeout=60, **kwargs)


@pytest.fixture(scope="session")
def served(
    s3_server: S3Server,
    trained: Trained,
    local_model: Loaded,
    probe: tuple[np.ndarray, np.ndarray],
) -> Iterator[Served]:
    threshold = safe_threshold(local_probs(local_model, probe[0]))
    s3 = urlsplit(s3_server.endpoint)
    assert s3.hostname is not None and s3.port is not None
    gate = TcpGate(s3.hostname, s3.port)
    proc = start_server(
        s3_server, trained, endpoint=gate.endpoint, threshold=threshold, max_bytes=MAX_BYTES
    )
    try:
        url = proc.wait_listening()
        wait_for(lambda: gate.waiting >= 1, 60, "the checkpoint download at the gate")
        image = npy_bytes(probe[0][0])
        before = {
            "ready": httpx.get(f"{url}/ready", timeout=5),
            "healthz": httpx.get(f"{url}/healthz", timeout=5),
            "predict": httpx.post(f"{url}/predict", json=json_body([(image, "npy")]), timeout=5),
        }
        gate.open()
        proc.wait_ready()
        yield Served(proc, threshold, before)
    finally:
        proc.stop()
        gate.close()
