"""RecordSink against a real Redis that goes away and comes back."""

from __future__ import annotations

import json
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
        return [r for _, f in client.xrange(key) for r in keys.decode_records(f)]
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
    deadline = time.monotonic() + 10
    while len(_stream(redis_server.url, keys.steps_stream(sid))) < 1200:
        assert time.monotonic() < deadline, "background sends did not arrive"
        time.sleep(0.05)
    assert sink.close(5) is True and sink.sent == 1200 and sink.duplicates == 0
    # Packed: at most keys.STEPS_CHUNK points a stream entry, in order.
    client = redis.Redis.from_url(redis_server.url)
    try:
        entries = client.xrange(keys.steps_stream(sid))
    finally:
        client.close()
    sizes = [len(keys.decode_records(f)) for _, f in entries]
    assert sum(sizes) == 1200 and max(sizes) <= keys.STEPS_CHUNK and len(sizes) < 1200
    steps = [r["step"] for r in _stream(redis_server.url, keys.steps_stream(sid))]
    assert steps == list(range(1, 1201))


def test_a_packed_entry_that_straddles_the_stream_end_appends_only_its_newer_points(
    redis_server: RedisServer,
) -> None:
    sid = f"t-{uuid.uuid4().hex[:10]}"
    first = RecordSink(redis_server.url, sid)
    for i in range(1, 11):
        first.step(1, i, i, 1.0 / i)
    assert first.close(5) is True and first.sent == 10
    # A restarted run retrains from step 5: steps 6..10 again (one packed entry with 11..15).
    again = RecordSink(redis_server.url, sid)
    for i in range(6, 16):
        again.step(1, i, i, 1.0 / i)
    assert again.close(5) is True
    assert (again.sent, again.duplicates) == (5, 5)
    got = _stream(redis_server.url, keys.steps_stream(sid))
    assert [r["step"] for r in got] == list(range(1, 16))
    assert all(r["train_loss"] == 1.0 / r["step"] for r in got)
    # The script cut the column entry: its head names the rows it kept.
    client = redis.Redis.from_url(redis_server.url)
    try:
        (_, fields), *_ = client.xrevrange(keys.steps_stream(sid), count=1)
    finally:
        client.close()
    head = json.loads(fields[keys.DATA_FIELD.encode()])
    assert head["n"] == 5 and head["first"] == {"epoch": 1, "step": 11}
    assert head["last"] == {"epoch": 1, "step": 15}
    columns = keys.decode_step_columns(fields)
    assert columns is not None and list(columns["global_step"]) == list(range(11, 16))


def test_column_appends_follow_a_stream_of_json_packed_entries(redis_server: RedisServer) -> None:
    """A stream an earlier trainer wrote ends in a JSON array of records: still the order to
    beat, and a column entry straddling it keeps its newer rows only."""
    sid = f"t-{uuid.uuid4().hex[:10]}"
    packed = [keys.step_record(2, s, 10 + s, 0.5, "2026-01-01T00:00:00Z") for s in (1, 2, 3)]
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.xadd(keys.steps_stream(sid), {keys.DATA_FIELD: json.dumps(packed)})
    finally:
        client.close()
    sink = RecordSink(redis_server.url, sid)
    for step in range(1, 7):
        sink.step(2, step, 10 + step, 0.1 * step)
    assert sink.close(5) is True and (sink.sent, sink.duplicates) == (3, 3)
    got = _stream(redis_server.url, keys.steps_stream(sid))
    assert [(r["step"], r["global_step"]) for r in got] == [(s, 10 + s) for s in range(1, 7)]
    assert [r["train_loss"] for r in got[3:]] == [0.1 * s for s in (4, 5, 6)]


def test_packed_appends_follow_a_stream_of_one_record_entries(redis_server: RedisServer) -> None:
    """Streams written before packing hold one record per entry: still the order to beat."""
    sid = f"t-{uuid.uuid4().hex[:10]}"
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.xadd(keys.steps_stream(sid), keys.encode_record(keys.step_record(2, 3, 7, 0.5)))
    finally:
        client.close()
    sink = RecordSink(redis_server.url, sid)
    for step in range(1, 6):
        sink.step(2, step, 4 + step, 0.1 * step)
    sink.step(3, 1, 10, float("nan"))
    assert sink.close(5) is True and (sink.sent, sink.duplicates) == (3, 3)
    got = _stream(redis_server.url, keys.steps_stream(sid))
    assert [(r["epoch"], r["step"]) for r in got] == [(2, 3), (2, 4), (2, 5), (3, 1)]
    assert got[-1]["train_loss"] is None  # NaN is not JSON: null


def test_a_step_beyond_64_bit_integers_is_dropped_and_counted_not_the_chunk(
    redis_server: RedisServer,
) -> None:
    sid = f"t-{uuid.uuid4().hex[:10]}"
    sink = RecordSink(redis_server.url, sid)
    sink.step(1, 1, 1, 0.5)
    sink.step(1, 2**64, 2, 0.4)  # no reader could order it: column entries hold int64
    sink.step(1, 3, 3, 0.3)
    with pytest.raises(ValueError):
        sink.step(1, "four", 4, 0.2)  # type: ignore[arg-type]  # refused in the caller
    assert sink.close(5) is True
    assert (sink.sent, sink.dropped, sink.pending) == (2, 1, 0)
    got = _stream(redis_server.url, keys.steps_stream(sid))
    assert [(r["step"], r["train_loss"]) for r in got] == [(1, 0.5), (3, 0.3)]
