"""RecordSink against a real Redis that goes away and comes back."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import redis

from pivot_local.procs import free_port
from pivot_local.services import RedisServer
from pivot_schema import keys
from pivot_trainer.sink import RecordSink

pytestmark = pytest.mark.integration


def test_records_are_buffered_while_redis_is_down_and_sent_in_order(tmp_path: Path) -> None:
    port, sid = free_port(), f"t-{uuid.uuid4().hex[:10]}"
    url = f"redis://127.0.0.1:{port}/0"
    sink = RecordSink(url, sid, backoff_initial=0.05, spool_dir=tmp_path)
    server = RedisServer(port=port)
    try:
        sink.event(keys.EVENT_STARTED, epoch=1)
        sink.metric(1, {"train_loss": 0.5})
        assert sink.flush() is False and sink.pending == 2
        # Backing off: an immediate second try does not even touch the network.
        assert sink.flush() is False
        sink.metric(2, {"train_loss": 0.25})

        server.start()
        time.sleep(0.1)  # past the backoff
        assert sink.flush() is True and sink.pending == 0
        assert sink.last_metric_epoch() == 2
        sink.event(keys.EVENT_COMPLETED, epoch=2)
        assert sink.close(5) is True

        client = redis.Redis.from_url(url)
        got = [keys.decode_record(f) for _, f in client.xrange(keys.metrics_stream(sid))]
        assert [(r["epoch"], r["train_loss"]) for r in got] == [(1, 0.5), (2, 0.25)]
        evs = [keys.decode_record(f) for _, f in client.xrange(keys.events_stream(sid))]
        assert [e["type"] for e in evs] == ["started", "completed"]
        assert all(e["timestamp"] for e in evs)
        client.close()
    finally:
        server.stop()


def test_close_gives_up_within_its_timeout(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    sink = RecordSink(url, "t-gone", backoff_initial=0.05, spool_dir=tmp_path)
    sink.metric(1, {"train_loss": 1.0})
    started = time.monotonic()
    assert sink.close(0.5) is False
    assert time.monotonic() - started < 3


def test_close_hurries_once_asked_to(tmp_path: Path) -> None:
    # A finished run waits long for Redis, unless SIGTERM arrives meanwhile.
    url = f"redis://127.0.0.1:{free_port()}/0"
    sink = RecordSink(url, "t-gone", backoff_initial=0.05, spool_dir=tmp_path)
    sink.metric(1, {"train_loss": 1.0})
    started = time.monotonic()
    assert (
        sink.close(60, hurry=lambda: time.monotonic() - started > 0.3, hurry_timeout=0.3) is False
    )
    assert time.monotonic() - started < 3


def _stream(url: str, key: str) -> list[dict[str, object]]:
    client = redis.Redis.from_url(url)
    try:
        return [keys.decode_record(f) for _, f in client.xrange(key)]
    finally:
        client.close()


def test_resent_metric_and_step_records_are_written_once(redis_server: RedisServer) -> None:
    sid = f"t-{uuid.uuid4().hex[:10]}"
    sink = RecordSink(redis_server.url, sid)
    sink.metric(1, {"train_loss": 0.5})
    sink.step(1, 10, 10, 0.7)
    sink.step(1, 20, 20, 0.6)
    assert sink.flush() is True
    # What a retry after a lost reply, or a restarted run retraining epoch 1, sends again.
    sink.metric(1, {"train_loss": 0.5})
    sink.step(1, 20, 20, 0.6)
    sink.step(2, 10, 30, 0.4)
    sink.metric(2, {"train_loss": 0.25})
    assert sink.close(5) is True
    assert sink.duplicates == 2

    got = _stream(redis_server.url, keys.metrics_stream(sid))
    assert [(r["epoch"], r["train_loss"]) for r in got] == [(1, 0.5), (2, 0.25)]
    steps = _stream(redis_server.url, keys.steps_stream(sid))
    assert [(r["epoch"], r["step"], r["global_step"]) for r in steps] == [
        (1, 10, 10),
        (1, 20, 20),
        (2, 10, 30),
    ]
    assert steps[-1]["train_loss"] == 0.4 and all(r["timestamp"] for r in steps)


def test_background_thread_sends_without_being_asked(redis_server: RedisServer) -> None:
    sid = f"t-{uuid.uuid4().hex[:10]}"
    sink = RecordSink(redis_server.url, sid)
    sink.start(interval=0.05)
    for i in range(1, 1201):  # more than one pipelined batch
        sink.step(1, i, i, 1.0 / i)
    client = redis.Redis.from_url(redis_server.url)
    try:
        deadline = time.monotonic() + 10
        while client.xlen(keys.steps_stream(sid)) < 1200:
            assert time.monotonic() < deadline, "background sends did not arrive"
            time.sleep(0.05)
    finally:
        client.close()
    assert sink.close(5) is True and sink.sent == 1200 and sink.duplicates == 0
