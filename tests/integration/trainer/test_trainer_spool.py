"""The sink's disk spool against a real Redis: outages longer than the memory bound, a trainer
killed while it replays its spool, and the bound on disk."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from pivot_local.procs import free_port
from pivot_local.services import RedisServer
from pivot_schema import keys
from pivot_trainer.sink import RecordSink

pytestmark = pytest.mark.integration


def _stream(url: str, key: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(url)
    try:
        return [r for _, f in client.xrange(key) for r in keys.decode_records(f)]
    finally:
        client.close()


def _wait(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _log_epochs(sink: RecordSink, epochs: range, steps: int) -> None:
    """What a run logs: a step point per step, an event every 100 steps, an epoch record."""
    for epoch in epochs:
        for step in range(1, steps + 1):
            sink.step(epoch, step, (epoch - 1) * steps + step, 1.0 / step)
            if step % 100 == 0:
                sink.event(keys.EVENT_CHECKPOINT, epoch=epoch, step=step)
        sink.metric(epoch, {"train_loss": 1.0 / epoch})


def _assert_exactly_once(url: str, sid: str, epochs: range, steps: int) -> None:
    got = _stream(url, keys.metrics_stream(sid))
    assert [(r["epoch"], r["train_loss"]) for r in got] == [(e, 1.0 / e) for e in epochs]
    points = [(r["epoch"], r["step"]) for r in _stream(url, keys.steps_stream(sid))]
    assert points == [(e, s) for e in epochs for s in range(1, steps + 1)]
    evs = [(r["epoch"], r["step"]) for r in _stream(url, keys.events_stream(sid))]
    assert evs == [(e, s) for e in epochs for s in range(100, steps + 1, 100)]


def test_an_outage_longer_than_the_memory_bound_spills_to_disk_and_loses_nothing(
    tmp_path: Path,
) -> None:
    port, sid = free_port(), f"t-{uuid.uuid4().hex[:10]}"
    server = RedisServer(port=port, data_dir=tmp_path / "redis").start()
    spool_dir = tmp_path / "spool"
    sink = RecordSink(
        server.url,
        sid,
        backoff_initial=0.05,
        backoff_max=0.2,
        spool_dir=spool_dir,
        memory_records=300,
    )
    try:
        sink.start(interval=0.02)
        _log_epochs(sink, range(1, 2), 500)
        _wait(lambda: sink.pending == 0, "the first epoch to be sent")
        # Redis goes away (keeping its data on disk) while far more than 300 records queue.
        client = redis.Redis.from_url(server.url)
        client.save()
        client.close()
        server.stop()
        _log_epochs(sink, range(2, 7), 1000)
        _wait(
            lambda: sink.in_memory <= 300 and sink.spool is not None and sink.spool.records > 0,
            "the excess to move to disk",
        )
        # Every record is somewhere (read between the sender's moves, not during one).
        _wait(lambda: sink.pending == 5 * (1000 + 10 + 1), "the count to settle", 5)
        assert list((spool_dir / sid).glob("seg-*.jsonl"))
        server.start()
        assert sink.close(30) is True
        got = _stream(server.url, keys.steps_stream(sid))
        assert [(r["epoch"], r["step"]) for r in got] == [(1, s) for s in range(1, 501)] + [
            (e, s) for e in range(2, 7) for s in range(1, 1001)
        ]
        assert [r["epoch"] for r in _stream(server.url, keys.metrics_stream(sid))] == [
            1,
            2,
            3,
            4,
            5,
            6,
        ]
        evs = [(r["epoch"], r["step"]) for r in _stream(server.url, keys.events_stream(sid))]
        assert evs == [(1, s) for s in range(100, 501, 100)] + [
            (e, s) for e in range(2, 7) for s in range(100, 1001, 100)
        ]
        assert sink.dropped == 0 and sink.spool_dropped == 0
        assert not (spool_dir / sid).exists()  # all sent: nothing left behind
    finally:
        server.stop()


def _killed(script: str, url: str, sid: str, spool: Path) -> subprocess.CompletedProcess[str]:
    """Run a sink script in a process of its own that ends by SIGKILL, as a trainer can."""
    child = subprocess.run(
        [sys.executable, "-c", script, url, sid, str(spool)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == -9, child.stderr
    return child


_DIE_MID_REPLAY = """
import os, signal, sys
from pivot_trainer import sink as sink_module
from pivot_trainer.sink import RecordSink

class Killed(RecordSink):
    batches = 0

    def _send(self, batch):
        super()._send(batch)
        self.batches += 1
        if self.batches == 2:  # Redis has this batch; the spool does not know yet
            os.kill(os.getpid(), signal.SIGKILL)

sink_module.BATCH = 16  # entries per round trip: several batches however points are packed
Killed(sys.argv[1], sys.argv[2], spool_dir=sys.argv[3]).flush(force=True)
"""


def test_a_trainer_killed_while_replaying_its_spool_resends_without_duplicates(
    tmp_path: Path,
) -> None:
    port, sid = free_port(), f"t-{uuid.uuid4().hex[:10]}"
    url = f"redis://127.0.0.1:{port}/0"
    epochs, steps = range(1, 4), 2000
    # A run that never reached Redis: close() keeps everything on disk for the next start.
    first = RecordSink(url, sid, backoff_initial=0.05, spool_dir=tmp_path, memory_records=100)
    _log_epochs(first, epochs, steps)
    assert first.close(0.3) is False
    total = 3 * (steps + steps // 100 + 1)
    server = RedisServer(port=port).start()
    try:
        child = _killed(_DIE_MID_REPLAY, url, sid, tmp_path)
        assert f"{total} record(s) left" in child.stderr
        written = sum(len(_stream(url, k)) for k in keys.session_keys(sid))
        assert 0 < written < total  # killed mid-replay, after its second batch

        # The restarted trainer resends from the last acknowledged batch: the second one again
        # (discarded), then the rest.
        again = RecordSink(url, sid, spool_dir=tmp_path)
        unacked = again.pending
        assert 0 < total - unacked < written  # the first batch acknowledged, not the second
        assert again.close(10) is True
        assert again.sent == total - written
        assert again.duplicates == unacked - again.sent > 0
        _assert_exactly_once(url, sid, epochs, steps)
    finally:
        server.stop()


_PERSIST_THEN_DIE = """
import os, signal, sys
from pivot_schema import keys
from pivot_trainer.sink import RecordSink

sink = RecordSink(sys.argv[1], sys.argv[2], spool_dir=sys.argv[3], backoff_initial=30)
sink.start(interval=30)  # the background thread would not send before the kill
for epoch in (1, 2):
    for step in range(1, 1001):
        sink.step(epoch, step, (epoch - 1) * 1000 + step, 1.0 / step)
        if step % 100 == 0:
            sink.event(keys.EVENT_CHECKPOINT, epoch=epoch, step=step)
    sink.metric(epoch, {"train_loss": 1.0 / epoch})
    sink.persist()  # what the checkpoint thread does before it commits epoch `epoch`
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("redis_up", [True, False], ids=["redis-up", "redis-down"])
def test_what_persist_saw_outlives_a_sigkill(tmp_path: Path, redis_up: bool) -> None:
    """A checkpoint commits after `persist`: the records of the epochs it covers are in
    Redis or on disk, never only in the memory of a process that can be killed."""
    port, sid = free_port(), f"t-{uuid.uuid4().hex[:10]}"
    url = f"redis://127.0.0.1:{port}/0"
    server = RedisServer(port=port)
    try:
        if redis_up:
            server.start()
        _killed(_PERSIST_THEN_DIE, url, sid, tmp_path)
        if not redis_up:
            server.start()
        again = RecordSink(url, sid, spool_dir=tmp_path)
        assert again.pending == (0 if redis_up else 2 * (1000 + 10 + 1))
        assert again.close(10) is True
        _assert_exactly_once(url, sid, range(1, 3), 1000)
    finally:
        server.stop()


def test_the_disk_bound_drops_oldest_step_points_but_never_epochs_or_events(
    tmp_path: Path,
) -> None:
    port, sid = free_port(), f"t-{uuid.uuid4().hex[:10]}"
    url = f"redis://127.0.0.1:{port}/0"
    epochs, steps = range(1, 5), 1000
    sink = RecordSink(
        url,
        sid,
        backoff_initial=0.05,
        spool_dir=tmp_path,
        memory_records=100,
        spool_max_bytes=200_000,
    )
    _log_epochs(sink, epochs, steps)
    assert sink.close(0.3) is False
    dropped = sink.spool_dropped
    assert dropped > 0
    server = RedisServer(port=port).start()
    try:
        again = RecordSink(url, sid, spool_dir=tmp_path)
        assert again.close(10) is True
        assert [r["epoch"] for r in _stream(url, keys.metrics_stream(sid))] == list(epochs)
        evs = [(r["epoch"], r["step"]) for r in _stream(url, keys.events_stream(sid))]
        assert evs == [(e, s) for e in epochs for s in range(100, steps + 1, 100)]
        points = [(r["epoch"], r["step"]) for r in _stream(url, keys.steps_stream(sid))]
        everything = [(e, s) for e in epochs for s in range(1, steps + 1)]
        # The oldest points went; the newest are all there, in order.
        assert len(points) == len(everything) - dropped
        assert points == everything[dropped:]
    finally:
        server.stop()
