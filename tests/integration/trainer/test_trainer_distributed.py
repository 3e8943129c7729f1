"""Two `python -m pivot_trainer` processes form a gloo gang, as two pods of a session would."""

from __future__ import annotations

import copy
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

from pivot_local.procs import free_port
from pivot_local.services import RedisServer, S3Server
from pivot_schema import storage
from pivot_trainer.model import CpuSyncBatchNorm, convert_sync_batchnorm
from tests.integration.trainer.test_trainer_run import (
    TINY,
    assert_verifies,
    events,
    latest,
    manifests,
    metrics,
    new_session,
    start,
    steps,
    trainer_env,
    wait_for,
)

pytestmark = pytest.mark.integration


def gang_env(base: dict[str, str], port: int, node_rank: int) -> dict[str, str]:
    # The operator's contract: one process per pod, rank = NODE_RANK * NPROC_PER_NODE. On CPU
    # (gloo) whatever PIVOT_TEST_DEVICE says: both ranks would take GPU 0 (local rank 0 in
    # their pods), and NCCL refuses two ranks on one GPU.
    return {
        **base,
        "PIVOT_DEVICE": "cpu",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "WORLD_SIZE": "2",
        "NODE_RANK": str(node_rank),
        "NPROC_PER_NODE": "1",
    }


def start_gang(base: dict[str, str]) -> list[subprocess.Popen[str]]:
    port = free_port()
    return [start(gang_env(base, port, rank)) for rank in (0, 1)]


def finish(procs: list[subprocess.Popen[str]], timeout: float = 120) -> list[tuple[int, str]]:
    out = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=timeout)
            out.append((proc.returncode, stdout + stderr))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return out


def test_two_process_gloo_gang_trains_and_only_rank_0_writes(
    redis_server: RedisServer, s3_server: S3Server
) -> None:
    sid, url = new_session(), redis_server.url
    base = trainer_env(url, s3_server, sid, {**TINY, "log_every_steps": 1})
    results = finish(start_gang(base))
    for code, output in results:
        assert code == 0, output
    assert "rank 0/2" in results[0][1] and "rank 1/2" in results[1][1]
    assert "10 BatchNorm layers synchronised across ranks" in results[0][1]

    # Each epoch, step point, event and checkpoint exactly once: rank 1 wrote nothing.
    records = metrics(url, sid)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    # 96 images over 2 ranks in batches of 16: 3 steps an epoch per rank.
    assert [(p["epoch"], p["step"]) for p in steps(url, sid)] == [
        (e, s) for e in (1, 2, 3) for s in (1, 2, 3)
    ]
    types = [e["type"] for e in events(url, sid)]
    assert types == ["started", "checkpoint", "checkpoint", "checkpoint", "completed"]
    assert events(url, sid)[0]["world_size"] == 2
    found = manifests(s3_server, sid)
    assert set(found) == {storage.checkpoint_id(sid, e) for e in (1, 2, 3)}
    for m in found.values():
        assert_verifies(s3_server, sid, m)


def test_sigterm_on_one_rank_stops_the_gang_and_both_resume_from_rank_0s_checkpoint(
    redis_server: RedisServer, s3_server: S3Server
) -> None:
    cfg = {**TINY, "batch_size": 8, "num_train": 1024}  # 64 steps an epoch per rank
    sid, url = new_session(), redis_server.url
    base = trainer_env(url, s3_server, sid, cfg)
    procs = start_gang(base)
    try:
        wait_for(lambda: len(metrics(url, sid)) >= 1, 90, "the first epoch")
        procs[1].send_signal(signal.SIGTERM)  # only the second pod is told to stop
        results = finish(procs, timeout=60)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert [code for code, _ in results] == [143, 143], results
    stopped = events(url, sid)[-1]
    assert stopped["type"] == "stopped"
    assert stopped["checkpoint_id"] == latest(s3_server, sid)

    for code, output in finish(start_gang(base)):
        assert code == 0, output
    assert [r["epoch"] for r in metrics(url, sid)] == [1, 2, 3]
    started = [e for e in events(url, sid) if e["type"] == "started"]
    assert len(started) == 2 and started[-1]["resumed_from"] == stopped["checkpoint_id"]
    assert [e["type"] for e in events(url, sid)][-1] == "completed"


def _batch_and_bn() -> tuple[torch.Tensor, torch.Tensor, nn.BatchNorm2d]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 5, 5, generator=g) * 2 + 1
    weights = torch.randn(8, 3, 5, 5, generator=g)  # a loss that tells samples apart
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5, generator=g)
        bn.bias.uniform_(-0.5, 0.5, generator=g)
    return x, weights, bn


def _sync_bn_rank(rank: int, out: str) -> None:
    # A file rendezvous: a free_port() can be taken by another test run before rank 0 binds.
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=2
    )
    try:
        x, weights, bn = _batch_and_bn()
        sync, converted = convert_sync_batchnorm(bn, cuda=False)
        assert converted == 1 and isinstance(sync, CpuSyncBatchNorm)
        part = x[rank * 4 : (rank + 1) * 4].clone().requires_grad_()
        y = sync(part)
        (y * weights[rank * 4 : (rank + 1) * 4]).sum().backward()
        assert part.grad is not None and sync.weight.grad is not None
        result = {"y": y.detach(), "dx": part.grad, "dw": sync.weight.grad}
        result |= {"mean": sync.running_mean, "var": sync.running_var}
        torch.save(result, f"{out}/{rank}.pt")
        # Both ranks past their last collective before either tears gloo down: a rank that
        # leaves early can abort its peer's pending work ("terminate called…", SIGABRT).
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


def test_sync_batchnorm_on_gloo_equals_batchnorm_over_the_global_batch(tmp_path: Path) -> None:
    torch.multiprocessing.spawn(_sync_bn_rank, args=(str(tmp_path),), nprocs=2)
    ranks = [torch.load(tmp_path / f"{r}.pt") for r in (0, 1)]
    x, weights, bn = _batch_and_bn()
    x.requires_grad_()
    ref = copy.deepcopy(bn)
    y = ref(x)
    (y * weights).sum().backward()
    assert x.grad is not None and ref.weight.grad is not None
    torch.testing.assert_close(torch.cat([r["y"] for r in ranks]), y.detach())
    torch.testing.assert_close(torch.cat([r["dx"] for r in ranks]), x.grad)
    # Each rank holds its share of the weight gradient; DDP adds them up.
    torch.testing.assert_close(ranks[0]["dw"] + ranks[1]["dw"], ref.weight.grad)
    for r in ranks:
        torch.testing.assert_close(r["mean"], ref.running_mean)
        torch.testing.assert_close(r["var"], ref.running_var)


def test_sync_batchnorm_can_be_turned_off(redis_server: RedisServer, s3_server: S3Server) -> None:
    sid = new_session()
    config = {**TINY, "epochs": 1, "sync_batchnorm": False}
    results = finish(start_gang(trainer_env(redis_server.url, s3_server, sid, config)))
    for code, output in results:
        assert code == 0, output
    assert "synchronised" not in results[0][1]
