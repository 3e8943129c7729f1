"""Trainer benchmarks, all in one run on loopback (own Redis, moto S3 and MLflow servers).

(a) epoch time of the trainer with every hook (step points and epoch records to Redis,
    checkpoint to S3 every epoch, GPU monitor) vs the same bare PyTorch loop;
(b) time the training loop is blocked by a checkpoint vs a synchronous torch.save + upload;
(c) checkpoint upload MB/s (CheckpointStore.save) vs raw boto3 upload_file;
(d) metric ingest points/s (RecordSink) vs MLflow log-batch into a local `mlflow server`.

    .venv/bin/python bench/bench_trainer.py [--skip-mlflow]

Prints Markdown rows for bench/README.md.
"""

from __future__ import annotations

import os

# As `python -m pivot_trainer` does before torch loads: idle OpenMP threads sleep instead of
# spinning, or they fight the sink/checkpoint threads and the local servers for the 2 cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import io
import itertools
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import torch

from pivot_local.procs import free_port
from pivot_local.services import RedisServer, S3Server
from pivot_trainer.app import StopFlag
from pivot_trainer.checkpoint import CheckpointStore, make_s3_client
from pivot_trainer.config import parse_config
from pivot_trainer.data import make_datasets
from pivot_trainer.froc import FrocCounts
from pivot_trainer.losses import build_loss
from pivot_trainer.metrics import SegCounts
from pivot_trainer.model import UNet
from pivot_trainer.runtime import Runtime
from pivot_trainer.schedule import build_optimizer, build_scheduler
from pivot_trainer.sink import RecordSink
from pivot_trainer.train import Trainer

CONFIG: dict[str, Any] = {
    "epochs": 6,
    "batch_size": 32,
    "learning_rate": 0.003,
    "seed": 1,
    "image_size": 32,
    "num_train": 512,
    "num_val": 128,
    "base_channels": 8,
    "scheduler": "cosine",
    "log_every_steps": 1,  # the worst case for telemetry: a point every step
    "checkpoint": {"metric": "val_froc", "mode": "max", "keep_last": 2},
}


def runtime(redis: RedisServer, s3: S3Server, sid: str) -> Runtime:
    return Runtime(
        session_id=sid,
        redis_url=redis.url,
        s3_endpoint=s3.endpoint,
        s3_bucket=s3.bucket,
        s3_region=s3.region,
        s3_access_key=s3.access_key,
        s3_secret_key=s3.secret_key,
        device="cpu",
    )


def intervals(marks: list[float]) -> list[float]:
    """Epoch times: gaps between consecutive end-of-epoch marks (the first epoch, with
    start-up and warm-up in it, is left out)."""
    return [b - a for a, b in itertools.pairwise(marks)]


def bare_run(cfg_raw: dict[str, Any]) -> list[float]:
    """The same work as the trainer (data, model, train steps, validation with the same
    metrics) with no Redis, no S3, no checkpoints."""
    marks: list[float] = []
    cfg = parse_config(cfg_raw)
    torch.manual_seed(cfg.seed)
    train, val = make_datasets(cfg.num_train, cfg.num_val, cfg.image_size, cfg.seed)
    model = UNet(1, cfg.base_channels)
    opt = build_optimizer(model.parameters(), cfg)
    sched = build_scheduler(opt, cfg)
    loss_fn = build_loss(cfg.loss, alpha=cfg.focal_alpha, gamma=cfg.focal_gamma)
    for epoch in range(cfg.epochs):
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch + 1)
        order = torch.randperm(len(train), generator=g).tolist()
        loader = torch.utils.data.DataLoader(train, batch_size=cfg.batch_size, sampler=order)
        model.train()
        counts = SegCounts()
        for x, y in loader:
            logits = model(x)
            loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            counts.update(logits, y, float(loss.item()))
        model.eval()
        vcounts, froc = SegCounts(), FrocCounts()
        with torch.no_grad():
            vl = torch.utils.data.DataLoader(val, batch_size=cfg.batch_size)
            for x, y in vl:
                logits = model(x)
                vcounts.update(logits, y, float(loss_fn(logits, y).item()))
                froc.update(logits, y)
        _ = (counts.loss, vcounts.dice, froc.froc)
        sched.step()
        marks.append(time.perf_counter())
    return intervals(marks)


class MarkingSink(RecordSink):
    """The real sink; notes when each epoch's record is logged (the loop's end-of-epoch)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.marks: list[float] = []

    def metric(self, epoch: int, metrics: dict[str, float]) -> None:
        self.marks.append(time.perf_counter())
        super().metric(epoch, metrics)


def full_run(cfg_raw: dict[str, Any], redis: RedisServer, s3: S3Server) -> list[float]:
    rt = runtime(redis, s3, f"bench-{uuid.uuid4().hex[:8]}")
    cfg = parse_config(cfg_raw)
    sink = MarkingSink(rt.redis_url, rt.session_id)
    store = CheckpointStore(make_s3_client(rt), s3.bucket, rt.session_id)
    code = Trainer(cfg, rt, sink, StopFlag(), store, iter(())).run()
    assert code == 0
    return intervals(sink.marks)


def bench_overhead(redis: RedisServer, s3: S3Server, reps: int) -> list[str]:
    bare: list[float] = []
    full: list[float] = []
    for _ in range(reps):  # interleaved, so drift in machine load hits both alike
        bare += bare_run(CONFIG)
        full += full_run(CONFIG, redis, s3)
    b, f = statistics.median(bare), statistics.median(full)
    return [
        f"| (a) epoch time, bare PyTorch loop | {b:.3f} s | median of {len(bare)} epochs |",
        f"| (a) epoch time with all hooks (step point every step, epoch record, checkpoint "
        f"every epoch, GPU monitor) | {f:.3f} s | overhead {(f - b) / b * 100:+.1f}% "
        f"(target < 1%) |",
    ]


def bench_blocking(redis: RedisServer, s3: S3Server, reps: int) -> list[str]:
    cfg = parse_config({**CONFIG, "base_channels": 48})  # ~1.1M params, Adam state: ~13 MB
    rt = runtime(redis, s3, f"bench-{uuid.uuid4().hex[:8]}")
    store = CheckpointStore(make_s3_client(rt), s3.bucket, rt.session_id)
    trainer = Trainer(cfg, rt, RecordSink(None, rt.session_id), StopFlag(), store, iter(()))
    trainer._build()
    # Adam state exists only after a step.
    x = torch.randn(2, 1, 32, 32)
    trainer.loss_fn(trainer.model(x), (x > 1).float()).backward()
    trainer.optimizer.step()
    blocked, sync = [], []
    size = 0
    for i in range(reps):
        trainer.epoch, trainer.step = i + 1, 0
        trainer.last_metrics = {"val_froc": 0.5}
        t0 = time.perf_counter()
        trainer._checkpoint()
        blocked.append(time.perf_counter() - t0)
        trainer.wait_checkpoint()
        # The synchronous peer: the same state saved and uploaded on the training thread.
        t0 = time.perf_counter()
        buf = io.BytesIO()
        torch.save(trainer._snapshot(), buf)
        data = buf.getvalue()
        size = len(data)
        store.client.upload_fileobj(io.BytesIO(data), s3.bucket, f"bench/sync-{i}.pth")
        sync.append(time.perf_counter() - t0)
    b, s = statistics.median(blocked), statistics.median(sync)
    return [
        f"| (b) loop blocked by a checkpoint ({size / 1e6:.0f} MB) | {b * 1000:.0f} ms | "
        f"{b / s * 100:.1f}% of synchronous torch.save + upload ({s * 1000:.0f} ms); "
        f"target < 10% |"
    ]


def bench_upload(s3: S3Server, reps: int, mb: int = 128) -> list[str]:
    data = os.urandom(mb * 2**20)
    client = s3.client()
    store = CheckpointStore(client, s3.bucket, f"bench-{uuid.uuid4().hex[:8]}")
    path = Path(tempfile.mkdtemp(prefix="pivot-bench-")) / "model.pth"
    path.write_bytes(data)
    ours, raw = [], []
    for i in range(reps):
        t0 = time.perf_counter()
        store.save(
            f"ckpt_{store.session_id}_e{i + 1:05d}",
            data,
            epoch=i + 1,
            metrics={},
            metric_name=None,
            metric_value=None,
            is_best=False,
        )
        ours.append(mb / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        client.upload_file(str(path), s3.bucket, f"bench/raw-{i}.pth")
        raw.append(mb / (time.perf_counter() - t0))
    path.unlink()
    o, r = statistics.median(ours), statistics.median(raw)
    return [
        f"| (c) checkpoint upload, {mb} MB (object + sha256 + manifest + latest) | "
        f"{o:.0f} MB/s | {o / r * 100:.0f}% of boto3 upload_file ({r:.0f} MB/s); "
        f"target >= 90% |"
    ]


def bench_ingest(redis: RedisServer, points: int) -> tuple[float, str]:
    sink = RecordSink(redis.url, f"bench-{uuid.uuid4().hex[:8]}")
    sink.start()
    t0 = time.perf_counter()
    for i in range(points):
        sink.step(1 + i // 1000, 1 + i % 1000, i + 1, 1.0 / (i + 1))
    logged = time.perf_counter() - t0
    assert sink.close(120)
    total = time.perf_counter() - t0
    assert sink.sent == points
    rate = points / total
    return rate, (
        f"| (d) PIVOT RecordSink, {points} step points (idempotent append) | "
        f"{rate:,.0f} points/s | a log call costs {logged / points * 1e6:.1f} us |"
    )


def bench_mlflow(points: int) -> float:
    port = free_port("127.0.0.1")
    store = Path(tempfile.mkdtemp(prefix="pivot-bench-mlflow-"))
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    cmd = [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--backend-store-uri", f"sqlite:///{store}/mlflow.db", "--workers", "1"]
    cmd += ["--default-artifact-root", str(store / "artifacts")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "mlflow did not start"
            time.sleep(0.5)
        http = httpx.Client(base_url=base, timeout=600)
        exp = http.post("/api/2.0/mlflow/experiments/create", json={"name": "bench"}).json()
        run = http.post(
            "/api/2.0/mlflow/runs/create",
            json={"experiment_id": exp["experiment_id"], "start_time": 0},
        ).json()["run"]["info"]["run_id"]
        t0 = time.perf_counter()
        for start in range(0, points, 1000):  # log-batch's limit is 1000 metrics a call
            batch = [
                {"key": "train_loss", "value": 1.0 / (i + 1), "timestamp": i, "step": i + 1}
                for i in range(start, min(points, start + 1000))
            ]
            http.post(
                "/api/2.0/mlflow/runs/log-batch", json={"run_id": run, "metrics": batch}
            ).raise_for_status()
        return points / (time.perf_counter() - t0)
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--mlflow-points", type=int, default=10_000)
    parser.add_argument("--skip-mlflow", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    redis, s3 = RedisServer().start(), S3Server().start()
    try:
        rows = ["| measure | result | vs peer |", "|---|---|---|"]
        rows += bench_overhead(redis, s3, args.reps)
        rows += bench_blocking(redis, s3, args.reps)
        rows += bench_upload(s3, args.reps)
        rate, row = bench_ingest(redis, args.points)
        rows.append(row)
        if not args.skip_mlflow:
            peer = bench_mlflow(args.mlflow_points)
            rows.append(
                f"| (d) MLflow log-batch (1000 per call, SQLite), {args.mlflow_points} points | "
                f"{peer:,.0f} points/s | PIVOT is {rate / peer:.0f}x; target >= 50x |"
            )
        print("\n".join(rows))
    finally:
        redis.stop()
        s3.stop()


if __name__ == "__main__":
    main()
