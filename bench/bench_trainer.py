"""Trainer benchmarks, all in one run on loopback (own Redis, moto S3 and MLflow servers).

(a) epoch time of the trainer with every hook (step points and epoch records to Redis,
    checkpoint to S3 every epoch, GPU monitor) vs the same bare PyTorch loop, as interleaved
    pairs (bare/hooked, hooked/bare, ...) on a shared machine: the median of the per-pair
    ratios, in wall time and in this process's CPU time; plus where the hooks' time goes
    (training thread, checkpoint thread, sink thread), which load on the machine barely moves;
(b) time the training loop is blocked by a checkpoint vs a synchronous torch.save + upload;
(c) checkpoint upload MB/s (CheckpointStore.save) vs raw boto3 upload_file;
(d) metric ingest points/s (RecordSink) vs MLflow log-batch into a local `mlflow server`.

    .venv/bin/python bench/bench_trainer.py [--only a,b,c,d] [--pairs 8] [--pairs-d 3]

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
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import torch
import yaml
from _mlflow import MlflowServer, mlflow_server  # bench/ is the script's directory

from pivot_local.procs import free_port, port_open, terminate
from pivot_local.services import DEFAULT_BUCKET, RedisServer
from pivot_trainer.checkpoint import CheckpointStore, make_s3_client
from pivot_trainer.config import parse_config
from pivot_trainer.data import make_datasets
from pivot_trainer.froc import FrocCounts
from pivot_trainer.losses import build_loss
from pivot_trainer.metrics import SegCounts
from pivot_trainer.model import UNet
from pivot_trainer.outcome import Ending
from pivot_trainer.process import StopFlag
from pivot_trainer.runtime import Runtime
from pivot_trainer.schedule import build_optimizer, build_scheduler
from pivot_trainer.sink import RecordSink
from pivot_trainer.train import Trainer

ROOT = Path(__file__).resolve().parent.parent

# The worst case: 0.65 s epochs, a step point every step and a checkpoint every epoch.
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


class S3Process:
    """moto's S3 server in a process of its own, as a remote S3 would be: its request handling
    is not this process's CPU and does not hold this process's GIL (it still shares the 2
    cores)."""

    def __init__(self) -> None:
        self.port = free_port("127.0.0.1")
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.bucket, self.region = DEFAULT_BUCKET, "us-east-1"
        self.access_key, self.secret_key = "bench", "bench-secret"
        moto = Path(sys.executable).parent / "moto_server"
        cmd = [str(moto), "-H", "127.0.0.1", "-p", str(self.port)]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )  # its own group: terminate() signals the group
        deadline = time.monotonic() + 60
        while not port_open("127.0.0.1", self.port):
            assert self.proc.poll() is None and time.monotonic() < deadline, "moto did not start"
            time.sleep(0.1)
        self.client().create_bucket(Bucket=self.bucket)

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )

    def stop(self) -> None:
        terminate(self.proc)  # type: ignore[arg-type]


def runtime(redis: RedisServer, s3: S3Process, sid: str) -> Runtime:
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


Marks = list[tuple[float, float]]  # (wall, process CPU) at the end of each epoch


def mark() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def per_epoch(marks: Marks) -> tuple[float, float]:
    """Median wall and CPU seconds per epoch from end-of-epoch marks (the first epoch, with
    start-up and warm-up in it, is left out)."""
    wall = [b[0] - a[0] for a, b in itertools.pairwise(marks)]
    cpu = [b[1] - a[1] for a, b in itertools.pairwise(marks)]
    return statistics.median(wall), statistics.median(cpu)


def bare_run(cfg_raw: dict[str, Any]) -> Marks:
    """The same work as the trainer (data, model, train steps, validation with the same
    metrics) with no Redis, no S3, no checkpoints."""
    marks: Marks = []
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
        marks.append(mark())
    return marks


class Clock:
    """Time spent per hook: wall ns on the calling thread, or CPU ns of a background thread."""

    def __init__(self) -> None:
        self.ns: dict[str, int] = defaultdict(int)

    def wrap(self, name: str, fn: Callable[..., Any], cpu: bool = False) -> Callable[..., Any]:
        now = time.thread_time_ns if cpu else time.perf_counter_ns

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = now()
            try:
                return fn(*args, **kwargs)
            finally:
                self.ns[name] += now() - t0

        return timed


class MarkingSink(RecordSink):
    """The real sink; notes when each epoch's record is logged (the loop's end-of-epoch)."""

    def __init__(self, *args: Any, clock: Clock, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.marks: Marks = []
        for name in ("step", "event", "wake"):
            setattr(self, name, clock.wrap(f"sink.{name}", getattr(self, name)))
        self._record_metric = clock.wrap("sink.metric", super().metric)
        # The sending thread's CPU (flush also runs from close, after the timed epochs).
        self.flush = clock.wrap("sink thread (CPU)", self.flush, cpu=True)  # type: ignore[method-assign,has-type]

    def metric(self, epoch: int, metrics: dict[str, float]) -> None:
        self.marks.append(mark())
        self._record_metric(epoch, metrics)


def full_run(
    cfg_raw: dict[str, Any], redis: RedisServer, s3: S3Process, clock: Clock
) -> tuple[Marks, int]:
    rt = runtime(redis, s3, f"bench-{uuid.uuid4().hex[:8]}")
    cfg = parse_config(cfg_raw)
    spool = tempfile.mkdtemp(prefix="pivot-bench-spool-")
    sink = MarkingSink(rt.redis_url, rt.session_id, clock=clock, spool_dir=spool)
    store = CheckpointStore(make_s3_client(rt), s3.bucket, rt.session_id)
    trainer = Trainer(cfg, rt, sink, StopFlag(), store, iter(()))
    # Training-thread time in the hooks, and the checkpoint thread's CPU.
    trainer._checkpoint = clock.wrap("checkpoint snapshot + hand-off", trainer._checkpoint)  # type: ignore[method-assign]
    trainer._agree = clock.wrap("stop check", trainer._agree)  # type: ignore[method-assign]
    trainer._commit = clock.wrap("checkpoint thread (CPU)", trainer._commit, cpu=True)  # type: ignore[method-assign]
    outcome = trainer.run()
    assert outcome.ending is Ending.COMPLETED, outcome
    return sink.marks, cfg.epochs


def demo_config(epochs: int) -> dict[str, Any]:
    """configs/train.yaml as shipped (what `pivot up --demo` trains), fewer epochs."""
    raw = yaml.safe_load((ROOT / "configs" / "train.yaml").read_text())
    return {**raw, "epochs": epochs}


def bench_overhead(
    redis: RedisServer, s3: S3Process, pairs: int, cfg: dict[str, Any], label: str
) -> list[str]:
    wall_ratio, cpu_ratio = [], []
    bare_wall, full_wall = [], []
    clock = Clock()
    epochs = 0
    for i in range(pairs):
        # Alternate which goes first, so drift in the machine's load hits both alike.
        for which in ("bare", "full") if i % 2 == 0 else ("full", "bare"):
            if which == "bare":
                bw, bc = per_epoch(bare_run(cfg))
            else:
                marks, n = full_run(cfg, redis, s3, clock)
                fw, fc = per_epoch(marks)
                epochs += n
        wall_ratio.append(fw / bw)
        cpu_ratio.append(fc / bc)
        bare_wall.append(bw)
        full_wall.append(fw)
        print(f"pair {i + 1}: bare {bw:.3f} s, hooked {fw:.3f} s, {fw / bw - 1:+.2%}", flush=True)
    w, c = statistics.median(wall_ratio) - 1, statistics.median(cpu_ratio) - 1
    b = statistics.median(bare_wall)
    rows = [
        f"| (a) {label}: epoch time, hooked vs bare loop (median of {pairs} interleaved pair "
        f"ratios) | "
        f"{statistics.median(full_wall):.3f} s | {b:.3f} s | {w:+.2%} wall, {c:+.2%} CPU "
        f"(pair ratios {min(wall_ratio) - 1:+.1%} .. {max(wall_ratio) - 1:+.1%}) | < 1% |"
    ]
    # The pair ratios swing several % either way on a shared machine; the hooks' own time,
    # summed (training-thread wall in the hooks plus the background threads' CPU), does not.
    hooks_ms = sum(clock.ns.values()) / epochs / 1e6
    rows.append(
        f"| (a) {label}: the hooks' own time (sum of the rows below) | {hooks_ms:.2f} ms/epoch "
        f"| {b * 1000:.0f} ms/epoch | {hooks_ms / 1000 / b:.2%} | < 1% |"
    )
    for name, ns in sorted(clock.ns.items(), key=lambda kv: -kv[1]):
        ms = ns / epochs / 1e6
        rows.append(f"| (a) {label}, where: {name} | {ms:.2f} ms/epoch | | {ms / 1000 / b:.3%} | |")
    return rows


def bench_blocking(redis: RedisServer, s3: S3Process, reps: int) -> list[str]:
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
        f"| (b) loop blocked by a checkpoint ({size / 1e6:.0f} MB) vs synchronous torch.save "
        f"+ upload | {b * 1000:.0f} ms | {s * 1000:.0f} ms | {b / s * 100:.1f}% | < 10% |"
    ]


def bench_upload(s3: S3Process, reps: int, mb: int = 128) -> list[str]:
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
        f"| (c) checkpoint upload, {mb} MB (object + sha256 + manifest + latest) vs boto3 "
        f"upload_file | {o:.0f} MB/s | {r:.0f} MB/s | {o / r * 100:.0f}% | >= 90% |"
    ]


def bench_ingest(redis: RedisServer, points: int) -> tuple[float, float]:
    """Points/s from the first log call to the last point stored (idempotent appends in
    pipelined batches), and the microseconds a log call costs."""
    spool = tempfile.mkdtemp(prefix="pivot-bench-spool-")
    sink = RecordSink(redis.url, f"bench-{uuid.uuid4().hex[:8]}", spool_dir=spool)
    sink.start()
    t0 = time.perf_counter()
    for i in range(points):
        sink.step(1 + i // 1000, 1 + i % 1000, i + 1, 1.0 / (i + 1))
    logged = time.perf_counter() - t0
    assert sink.close(120)
    total = time.perf_counter() - t0
    assert sink.sent == points
    return points / total, logged / points * 1e6


def bench_mlflow(server: MlflowServer, points: int) -> float:
    """MLflow's batched API as a client uses it: log-batch, 1000 metrics a call (its limit)."""
    with server.client() as http:
        run = server.new_run(http, f"bench-{uuid.uuid4().hex[:8]}")
        t0 = time.perf_counter()
        for start in range(0, points, 1000):
            batch = [
                {"key": "train_loss", "value": 1.0 / (i + 1), "timestamp": i, "step": i + 1}
                for i in range(start, min(points, start + 1000))
            ]
            http.post(
                "/api/2.0/mlflow/runs/log-batch", json={"run_id": run, "metrics": batch}
            ).raise_for_status()
        return points / (time.perf_counter() - t0)


def bench_ingest_vs_mlflow(
    redis: RedisServer, points: int, mlflow_points: int, pairs: int
) -> list[str]:
    """Interleaved after a warm-up: PIVOT, MLflow, PIVOT, ... (one MLflow server throughout,
    a new run each time); the ratio is the median of the per-pair ratios."""
    ours, theirs, logs = [], [], []
    with mlflow_server() as server:
        # Untimed warm-up of both: MLflow's first log-batch calls run several times slower
        # than later ones (lazy imports, SQLite caches), which would flatter the ratio.
        # Two full-size rounds: after one of 5,000 points MLflow still ran 2-5x slower in
        # the first timed pairs than in the later ones.
        for _ in range(2):
            bench_mlflow(server, mlflow_points)
        bench_ingest(redis, 20_000)
        for i in range(pairs):
            rate, log_us = bench_ingest(redis, points)
            peer = bench_mlflow(server, mlflow_points)
            ours.append(rate)
            theirs.append(peer)
            logs.append(log_us)
            print(f"pair {i + 1}: {rate:,.0f} vs {peer:,.0f} points/s", flush=True)
    ratio = statistics.median(o / t for o, t in zip(ours, theirs, strict=True))
    return [
        f"| (d) metric ingest, logged to stored, vs MLflow log-batch (1000 per call, SQLite); "
        f"PIVOT {points} step points, MLflow {mlflow_points}, median of {pairs} interleaved "
        f"pairs | {statistics.median(ours):,.0f} points/s (a log call "
        f"{statistics.median(logs):.1f} us) | {statistics.median(theirs):,.0f} points/s | "
        f"{ratio:.0f}x | >= 50x |"
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="a,b,c,d")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--mlflow-points", type=int, default=10_000)
    parser.add_argument("--pairs-d", type=int, default=3)
    args = parser.parse_args()
    only = set(args.only.split(","))
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    redis, s3 = RedisServer().start(), S3Process()
    try:
        rows = ["| measure | PIVOT | baseline | ratio | target |", "|---|---|---|---|---|"]
        if "a" in only:
            rows += bench_overhead(redis, s3, args.pairs, demo_config(5), "demo config")
        if "a" in only or "a-stress" in only:
            rows += bench_overhead(redis, s3, args.pairs, CONFIG, "stress config")
        if "b" in only:
            rows += bench_blocking(redis, s3, args.reps)
        if "c" in only:
            rows += bench_upload(s3, args.reps)
        if "d" in only:
            rows += bench_ingest_vs_mlflow(redis, args.points, args.mlflow_points, args.pairs_d)
        print("\n".join(rows))
    finally:
        redis.stop()
        s3.stop()


if __name__ == "__main__":
    main()
