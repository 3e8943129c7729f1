"""The served model: fetch and verify the checkpoint, rebuild the UNet, run batches.

Everything here runs on the server's one inference thread, never on the event loop.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pivot_trainer.checkpoint import make_s3_client
from pivot_trainer.froc import label_components
from pivot_trainer.model import UNet
from pivot_trainer.runtime import Runtime, cpu_budget
from pivot_trainer.serve.batcher import BatchResult, Prediction
from pivot_trainer.serve.errors import (
    EXIT_CHECKSUM,
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_UNLOADABLE,
    CheckpointError,
)
from pivot_trainer.serve.settings import ServeSettings

# S3 answers that mean the object will not be there on a retry either (exit 4, permanent);
# anything else (S3 down, 5xx after the client's retries) exits 1 and the pod is replaced.
_PERMANENT_S3 = {
    "NoSuchKey",
    "NoSuchBucket",
    "404",
    "NotFound",
    "AccessDenied",
    "403",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
}
DEFAULT_WARM_SIZE = 64  # a checkpoint without the trainer's config warms up at this size


def fetch(settings: ServeSettings) -> bytes:
    """The checkpoint's bytes, verified against the expected SHA-256."""
    from botocore.exceptions import BotoCoreError, ClientError

    rt = Runtime(
        session_id="",
        redis_url=None,
        s3_endpoint=settings.s3_endpoint,
        s3_bucket=settings.bucket,
        s3_region=settings.s3_region,
        s3_access_key=settings.s3_access_key,
        s3_secret_key=settings.s3_secret_key,
        device=settings.device,
    )
    try:
        obj = make_s3_client(rt).get_object(Bucket=settings.bucket, Key=settings.key)
        data = bytes(obj["Body"].read())
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        exit_code = EXIT_UNLOADABLE if code in _PERMANENT_S3 else EXIT_FAILED
        raise CheckpointError(f"cannot read {settings.uri}: {code or exc}", exit_code) from exc
    except BotoCoreError as exc:  # endpoint unreachable, timeouts: maybe better on a retry
        raise CheckpointError(f"cannot reach S3 for {settings.uri}: {exc}", EXIT_FAILED) from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != settings.sha256:
        raise CheckpointError(
            f"checksum mismatch for {settings.uri}: expected sha256 {settings.sha256}, "
            f"its {len(data)} bytes hash to {digest}",
            EXIT_CHECKSUM,
        )
    return data


@dataclass(frozen=True)
class Loaded:
    model: UNet
    base_channels: int
    image_size: int | None  # what the checkpoint trained on (the warm-up's size)
    epoch: int | None


def build(data: bytes) -> Loaded:
    """The UNet a checkpoint holds, built from its own config, weights loaded strictly.

    The trainer's payload is {"model": state dict, "config": TrainConfig.to_dict(), ...}; a
    bare state dict (an uploaded .pth) works too, its width read from the first layer."""
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors of many types
        raise CheckpointError(f"the checkpoint does not load: {exc}", EXIT_UNLOADABLE) from exc
    if not isinstance(payload, dict):
        raise CheckpointError("the checkpoint holds no state dict", EXIT_UNLOADABLE)
    state = payload.get("model", payload)
    raw_config = payload.get("config")
    config: dict[str, Any] = raw_config if isinstance(raw_config, dict) else {}
    first = state.get("enc1.0.weight") if isinstance(state, dict) else None
    if not isinstance(first, torch.Tensor) or first.dim() != 4:
        raise CheckpointError("the checkpoint holds no UNet weights", EXIT_UNLOADABLE)
    width = int(config.get("base_channels") or first.shape[0])
    model = UNet(int(first.shape[1]), width)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise CheckpointError(
            f"the checkpoint's weights do not fit a UNet of width {width}: {exc}",
            EXIT_UNLOADABLE,
        ) from exc
    size = config.get("image_size")
    epoch = payload.get("epoch")
    return Loaded(
        model.eval(),
        width,
        int(size) if isinstance(size, int) else None,
        int(epoch) if isinstance(epoch, int) else None,
    )


def find_candidates(probs: torch.Tensor, threshold: float) -> list[list[dict[str, Any]]]:
    """Lesion candidates of each (H, W) map of an (N, H, W) batch, as the trainer's val_froc
    finds them (froc.detections): 8-connected components of probability >= threshold, scored by
    their maximum probability. Centre = centroid in pixel coordinates (x = column, y = row,
    the top-left pixel's centre at 0, 0); area = pixel count. Highest probability first."""
    n, h, w = probs.shape
    labels = label_components(probs >= threshold).flatten()
    fg = labels > 0
    pixels = torch.nonzero(fg).squeeze(1)
    found: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    if pixels.numel() == 0:
        return found
    ids, inverse, area = torch.unique(labels[pixels], return_inverse=True, return_counts=True)
    k = ids.numel()
    flat = probs.reshape(-1)
    score = torch.zeros(k, dtype=probs.dtype, device=probs.device)
    score.scatter_reduce_(0, inverse, flat[pixels], reduce="amax", include_self=False)
    within = pixels % (h * w)
    sums = torch.zeros(k, 2, dtype=torch.float64, device=probs.device)
    sums.index_add_(0, inverse, torch.stack([within % w, within // w], dim=1).double())
    centre = sums / area[:, None].double()
    # A label is a pixel's flat index + 1 (label_components), so it names its image.
    image = (ids - 1) // (h * w)
    rows = zip(image.tolist(), centre.tolist(), score.tolist(), area.tolist(), strict=True)
    for i, (x, y), p, a in rows:
        found[i].append({"x": x, "y": y, "probability": p, "area": a})
    for cands in found:
        cands.sort(key=lambda c: -c["probability"])
    return found


class Predictor:
    """The model on its device: eval mode, bf16 autocast and channels_last on CUDA, optionally
    compiled. On CUDA and when compiled, batches are padded to a power of two (at most
    max_batch_size) so that few shapes exist: each new one costs cuDNN autotuning or a graph
    compile, and the warm-up pays for them at the checkpoint's own image size."""

    def __init__(
        self,
        loaded: Loaded,
        *,
        device: str | None,
        threshold: float,
        max_batch_size: int,
        compile: bool,
    ) -> None:
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise CheckpointError("PIVOT_DEVICE asks for cuda but none is available", EXIT_CONFIG)
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.threshold = threshold
        self.max_batch_size = max_batch_size
        self.loaded = loaded
        model: torch.nn.Module = loaded.model.to(self.device)
        if self.cuda:
            torch.backends.cudnn.benchmark = True  # shapes are few (padded batches)
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.compiled = False
        if compile:
            from pivot_trainer.train import missing_compiler

            lacking = missing_compiler(self.cuda)
            if lacking:
                print(f"pivot-serve: compile: true, but {lacking}: serving eagerly", flush=True)
            else:
                import torch._dynamo as dynamo

                dynamo.config.suppress_errors = True  # an optimisation, never a failure
                model = torch.compile(model)  # type: ignore[assignment]
                self.compiled = True
        self.model = model
        self.bucketed = self.cuda or self.compiled
        bf16 = self.cuda and torch.cuda.is_bf16_supported()
        self.autocast_dtype = torch.bfloat16 if bf16 else torch.float16

    def buckets(self) -> list[int]:
        top = self.max_batch_size
        return [*(1 << i for i in range(top.bit_length()) if 1 << i < top), top]

    def padded(self, n: int) -> int:
        if not self.bucketed:
            return n
        return next(b for b in self.buckets() if b >= n)

    def warm_up(self) -> float:
        """Runs every batch shape the server will use at the checkpoint's image size (eager
        CPU: batch 1 and the largest); the seconds it took."""
        t0 = time.perf_counter()
        size = self.loaded.image_size or DEFAULT_WARM_SIZE
        size += -size % 4
        g = torch.Generator().manual_seed(0)
        sizes = self.buckets() if self.bucketed else sorted({1, self.max_batch_size})
        for n in sizes:
            images = torch.randn(n, size, size, generator=g).numpy()
            self.run(list(images), want_mask=True)
        return time.perf_counter() - t0

    @torch.inference_mode()
    def run(self, images: list[np.ndarray], want_mask: bool) -> BatchResult:
        """One forward pass over same-shape (H, W) float32 images, and their candidates."""
        t0 = time.perf_counter()
        n = len(images)
        h, w = images[0].shape
        batch = np.stack(images)
        if (pad := self.padded(n) - n) > 0:
            batch = np.concatenate([batch, np.zeros((pad, h, w), np.float32)])
        x = torch.from_numpy(batch).unsqueeze(1).to(self.device, non_blocking=True)
        if self.cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, self.autocast_dtype, enabled=self.cuda):
            logits = self.model(x)
        # Probabilities in float32, as the trainer's FROC takes them (sigmoid of float logits).
        probs = torch.sigmoid(logits[:n, 0].float())
        found = find_candidates(probs, self.threshold)
        masks: list[np.ndarray | None] = [None] * n
        if want_mask:
            u8 = (probs * 255).round_().to(torch.uint8).cpu().numpy()
            masks = list(u8)
        out = [Prediction((h, w), cands, mask) for cands, mask in zip(found, masks, strict=True)]
        return BatchResult(out, time.perf_counter() - t0, n)


def load(settings: ServeSettings) -> Predictor:
    """Fetch, verify, build, warm up: what has to happen before /ready answers 200."""
    t0 = time.perf_counter()
    # One intra-op thread per usable core, as the trainer; an explicit OMP_NUM_THREADS wins.
    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(cpu_budget())
    data = fetch(settings)
    loaded = build(data)
    predictor = Predictor(
        loaded,
        device=settings.device,
        threshold=settings.threshold,
        max_batch_size=settings.max_batch_size,
        compile=settings.compile,
    )
    warm = predictor.warm_up()
    print(
        f"pivot-serve: {settings.uri} verified (sha256 {settings.sha256[:12]}..., "
        f"{len(data)} bytes), UNet width {loaded.base_channels} on {predictor.device}"
        f"{' compiled' if predictor.compiled else ''}; warm-up {warm:.2f}s, "
        f"ready after {time.perf_counter() - t0:.2f}s",
        file=sys.stdout,
        flush=True,
    )
    return predictor
