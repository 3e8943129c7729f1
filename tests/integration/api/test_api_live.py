"""Live streams over a real HTTP server: SSE and WebSocket fed by the trainer's Redis streams,
resumable exactly once with Last-Event-ID / since."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import websockets

from pivot_api.live.schemas import LiveMetricsEvent, LiveMetricsMessage
from pivot_schema import keys
from tests.support.waiting import eventually

from .api_platform import Platform, serve_http

pytestmark = pytest.mark.integration


@dataclass
class Live:
    platform: Platform
    base: str
    app: Any

    async def session(self) -> str:
        """A started session whose trainer runs: the CR as the operator would leave it."""
        sid = str((await self.platform.create())["session_id"])
        resp = await self.platform.http.post(f"/api/v1/training/sessions/{sid}/start")
        assert resp.status_code == 200, resp.text
        await self.platform.patch_status(sid, {"phase": "Running"})
        await self.event(sid, keys.EVENT_STARTED)
        return sid

    async def finish(self, sid: str, kind: str, **fields: Any) -> None:
        """The trainer's last event, then the operator's terminal phase a moment later (a
        trainer stops because the user stopped its session)."""
        if kind == keys.EVENT_STOPPED:
            resp = await self.platform.http.post(f"/api/v1/training/sessions/{sid}/stop")
            assert resp.status_code == 200, resp.text
        await self.event(sid, kind, **fields)
        phase = {
            keys.EVENT_COMPLETED: "Completed",
            keys.EVENT_FAILED: "Failed",
            keys.EVENT_STOPPED: "Stopped",
        }[kind]
        await self.platform.patch_status(sid, {"phase": phase})

    async def epoch(self, sid: str, epoch: int, **metrics: float) -> None:
        record = keys.epoch_record(epoch, metrics or {"train_loss": 1.0 / epoch})
        await self.platform.redis.xadd(keys.metrics_stream(sid), keys.encode_record(record))

    async def event(self, sid: str, kind: str, **fields: Any) -> None:
        await self.platform.redis.xadd(
            keys.events_stream(sid), keys.encode_record(keys.event_record(kind, **fields))
        )


@pytest.fixture
async def live(platform: Platform) -> AsyncIterator[Live]:
    settings = platform.app.state.settings.model_copy(update={"stream_heartbeat_s": 0.2})
    async with serve_http(settings) as (app, base):
        yield Live(platform, base, app)


@dataclass
class SseEvent:
    event: str | None
    id: str | None
    data: dict[str, Any] | None
    comment: str | None = None


async def sse_events(resp: httpx.Response) -> AsyncIterator[SseEvent]:
    """Parse an SSE body as an EventSource would (comments surfaced for heartbeats)."""
    fields: dict[str, str] = {}
    async for line in resp.aiter_lines():
        if line.startswith(":"):
            yield SseEvent(None, None, None, comment=line[1:].strip())
        elif line == "":
            if "data" in fields:
                yield SseEvent(fields.get("event"), fields.get("id"), json.loads(fields["data"]))
            fields = {}
        else:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


async def read_sse(
    live: Live, sid: str, *, count: int | None = None, headers: dict[str, str] | None = None
) -> list[SseEvent]:
    """Events (not comments) until `count` of them, or until the server ends the stream."""
    got: list[SseEvent] = []
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream("GET", f"{live.base}/api/v1/sse/training/{sid}", headers=headers) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        async for ev in sse_events(resp):
            if ev.comment is None:
                got.append(ev)
                if count is not None and len(got) == count:
                    break
    return got


async def test_sse_reconnect_with_last_event_id_gets_every_event_exactly_once(
    live: Live,
) -> None:
    sid = await live.session()
    for epoch in (1, 2, 3):
        await live.epoch(sid, epoch, train_loss=1.0 / epoch, val_loss=2.0 / epoch)
    first = await read_sse(live, sid, count=4)  # started + three epochs
    # The two streams interleave by time; within one millisecond their order is unknowable,
    # so each stream's own order is what is asserted.
    statuses = [e.data or {} for e in first if e.event == "status"]
    assert [(d["event"], d["status"], d["session_id"]) for d in statuses] == [
        ("started", "running", sid)
    ]
    epochs = [e.data for e in first if e.event == "metrics"]
    assert [d["epoch"] for d in epochs] == [1, 2, 3]  # type: ignore[index]
    assert epochs[0] == {**epochs[0], "train_loss": 1.0, "val_loss": 2.0}  # type: ignore[dict-item]
    assert all(e.id for e in first)

    await live.epoch(sid, 4)
    await live.event(sid, keys.EVENT_CHECKPOINT, checkpoint_id=f"ckpt_{sid}_e00004", epoch=4)
    await live.epoch(sid, 5)
    await live.finish(sid, keys.EVENT_COMPLETED)
    rest = await read_sse(live, sid, headers={"Last-Event-ID": first[-1].id or ""})
    assert [d["epoch"] for e in rest if e.event == "metrics" and (d := e.data)] == [4, 5]
    assert [e.event for e in rest if e.event != "metrics"] == ["checkpoint", "status"]
    assert rest[-1].data == {**rest[-1].data, "status": "completed"}  # type: ignore[dict-item]
    ids = [e.id for e in first + rest]
    assert len(set(ids)) == len(ids)

    # Resuming from the middle replays exactly what followed it.
    again = await read_sse(live, sid, headers={"Last-Event-ID": rest[0].id or ""})
    assert [e.id for e in again] == [e.id for e in rest[1:]]


async def test_sse_from_the_start_replays_the_session_and_closes_when_it_ends(
    live: Live,
) -> None:
    sid = await live.session()
    await live.epoch(sid, 1)
    await live.finish(sid, keys.EVENT_FAILED, error="CUDA out of memory")
    events = await read_sse(live, sid)
    assert sorted(str(e.event) for e in events) == ["metrics", "status", "status"]
    assert events[-1].data == {**events[-1].data, "status": "failed", "error": "CUDA out of memory"}


async def test_sse_sends_heartbeats_while_nothing_happens(live: Live) -> None:
    sid = await live.session()
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream("GET", f"{live.base}/api/v1/sse/training/{sid}") as resp,
    ):
        seen: list[SseEvent] = []
        async for ev in sse_events(resp):
            seen.append(ev)
            if ev.comment == "heartbeat" or len(seen) == 5:
                break
    # A quiet session's stream stays open and says so with heartbeat comments (it used to
    # pass even when the stream ended without one).
    assert seen and seen[-1].comment == "heartbeat", seen


async def test_sse_ends_with_a_status_event_when_the_session_ends_without_a_trainer_event(
    live: Live,
) -> None:
    sid = await live.session()
    await live.platform.patch_status(sid, {"phase": "Failed", "message": "pod evicted"})
    events = await read_sse(live, sid)
    assert [e.event for e in events] == ["status", "status"]
    assert events[-1].data == {"session_id": sid, "status": "failed"}
    assert events[-1].id is None  # not a stream entry: a resume point stays as it was


async def test_sse_errors_use_the_envelope(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.base) as http:
        missing = await http.get("/api/v1/sse/training/sess-nope")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "NOT_FOUND"
        sid = await live.session()
        bad = await http.get(f"/api/v1/sse/training/{sid}", headers={"Last-Event-ID": "yes"})
        assert bad.status_code == 422
        assert bad.json()["error"]["details"]["field"] == "last-event-id"


def ws_url(live: Live, sid: str, since: str | None = None) -> str:
    url = live.base.replace("http://", "ws://") + f"/api/v1/ws/training/{sid}"
    return url + (f"?since={since}" if since else "")


async def read_ws(live: Live, sid: str, *, count: int | None = None, since: str | None = None):  # type: ignore[no-untyped-def]
    got: list[dict[str, Any]] = []
    async with websockets.connect(ws_url(live, sid, since)) as ws:
        try:
            async for raw in ws:
                message = json.loads(raw)
                if message["type"] == "heartbeat":
                    continue
                got.append(message)
                if count is not None and len(got) == count:
                    break
        except websockets.ConnectionClosedOK:
            pass
    return got


async def test_ws_messages_carry_epoch_loss_and_the_full_metrics(live: Live) -> None:
    sid = await live.session()
    await live.epoch(sid, 1, train_loss=0.9, val_loss=0.95, learning_rate=0.001)
    await live.epoch(sid, 2, train_loss=0.7)
    messages = await read_ws(live, sid, count=3)
    assert [m["status"] for m in messages if m["type"] == "status"] == ["running"], messages
    first, second = [m for m in messages if m["type"] == "metrics"]
    assert (first["type"], first["epoch"], first["loss"]) == ("metrics", 1, 0.95)
    assert first["metrics"] == {"train_loss": 0.9, "val_loss": 0.95, "learning_rate": 0.001}
    assert (second["epoch"], second["loss"]) == (2, 0.7)  # no val_loss: train_loss


async def test_ws_reconnect_with_since_gets_every_event_exactly_once(live: Live) -> None:
    sid = await live.session()
    await live.epoch(sid, 1)
    await live.epoch(sid, 2)
    first = await read_ws(live, sid, count=3)
    await live.epoch(sid, 3)
    await live.finish(sid, keys.EVENT_STOPPED, epoch=3)
    rest = await read_ws(live, sid, since=first[-1]["id"])
    assert sorted((m["type"], m.get("epoch"), m.get("status") or "") for m in rest) == [
        ("metrics", 3, ""),
        ("status", 3, "stopped"),
    ]
    assert rest[-1]["type"] == "status"  # the final status event comes last
    ids = [m["id"] for m in first + rest]
    assert len(set(ids)) == len(ids)


async def test_ws_errors_close_with_the_envelope(live: Live) -> None:
    async with websockets.connect(ws_url(live, "sess-nope")) as ws:
        message = json.loads(await ws.recv())
        assert message["error"]["code"] == "NOT_FOUND"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404
    sid = await live.session()
    async with websockets.connect(ws_url(live, sid, "not-an-id")) as ws:
        assert json.loads(await ws.recv())["error"]["code"] == "BAD_REQUEST"


async def test_clients_that_disconnect_are_cleaned_up(live: Live) -> None:
    sid = await live.session()
    for _ in range(3):
        await read_sse(live, sid, count=1)  # leaves while the server waits on Redis
        await read_ws(live, sid, count=1)

    async def all_gone() -> bool:  # the server notices each disconnect on its own
        return not live.app.state.live.clients

    await eventually(all_gone, within=10, what="every client to be let go", interval=0.01)


async def test_the_stream_clients_gauge_follows_connected_clients(live: Live) -> None:
    sid = await live.session()

    async def gauge() -> float:
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{live.base}/metrics")).text
        for line in text.splitlines():
            if line.startswith('pivot_api_stream_clients{kind="sse"}'):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    idle = await gauge()
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream("GET", f"{live.base}/api/v1/sse/training/{sid}") as resp,
    ):
        # Hold the parser: an abandoned async generator is finalized at once, and closing
        # it closes the connection under the assertion.
        events = sse_events(resp)
        async for ev in events:
            if ev.event == "status":
                break
        assert await gauge() == idle + 1
    while await gauge() != idle:
        await asyncio.sleep(0.01)


async def test_a_client_beyond_the_limit_is_refused_with_503(platform: Platform) -> None:
    settings = platform.app.state.settings.model_copy(
        update={"stream_heartbeat_s": 0.2, "stream_max_clients": 1}
    )
    async with serve_http(settings) as (app, base):
        live = Live(platform, base, app)
        sid = await live.session()
        async with (
            httpx.AsyncClient(timeout=30) as http,
            http.stream("GET", f"{base}/api/v1/sse/training/{sid}") as first,
        ):
            events = sse_events(first)  # held, so the first connection stays open
            async for ev in events:
                if ev.event == "status":
                    break
            # A bounded wait: were the first client gone, this stream would never end.
            async with asyncio.timeout(15):
                second = await http.get(f"{base}/api/v1/sse/training/{sid}")
            assert second.status_code == 503
            assert second.json()["error"]["code"] == "SERVICE_UNAVAILABLE"


def frames(events: list[SseEvent]) -> list[tuple[str | None, str | None, Any]]:
    return [(e.id, e.event, e.data) for e in events]


async def test_many_clients_of_one_session_share_one_read_and_get_identical_streams(
    live: Live,
) -> None:
    sid = await live.session()
    await live.epoch(sid, 1)
    early = [asyncio.create_task(read_sse(live, sid)) for _ in range(12)]
    early_ws = [asyncio.create_task(read_ws(live, sid)) for _ in range(4)]
    while live.app.state.live.clients < 16:
        await asyncio.sleep(0.01)
    assert live.app.state.live.tails == 1  # one blocking read for all of them
    for epoch in range(2, 21):
        await live.epoch(sid, epoch)
        if epoch == 10:
            await live.event(sid, keys.EVENT_CHECKPOINT, checkpoint_id="ckpt_x", epoch=10)
        await asyncio.sleep(0.005)
    # Clients joining mid-stream from the start catch up with their own reads, then join.
    late = [asyncio.create_task(read_sse(live, sid)) for _ in range(4)]
    for epoch in range(21, 31):
        await live.epoch(sid, epoch)
    await live.finish(sid, keys.EVENT_COMPLETED)

    streams = [frames(s) for s in await asyncio.gather(*early, *late)]
    assert all(s == streams[0] for s in streams)
    events = streams[0]
    assert [d["epoch"] for _, kind, d in events if kind == "metrics"] == list(range(1, 31))
    assert [kind for _, kind, _ in events if kind != "metrics"] == [
        "status",
        "checkpoint",
        "status",
    ]
    assert len({i for i, _, _ in events}) == len(events)
    ws_streams = [[(m["id"], m["type"]) for m in s] for s in await asyncio.gather(*early_ws)]
    assert all(s == [(i, kind) for i, kind, _ in events] for s in ws_streams)
    while live.app.state.live.clients or live.app.state.live.tails:  # all gone, read stopped
        await asyncio.sleep(0.01)


async def test_a_client_resuming_mid_stream_joins_the_shared_read_exactly_once(
    live: Live,
) -> None:
    sid = await live.session()
    for epoch in range(1, 6):
        await live.epoch(sid, epoch)
    first = await read_sse(live, sid, count=4)  # started + epochs 1..3 (in some order)
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream("GET", f"{live.base}/api/v1/sse/training/{sid}") as resp,
    ):
        # Another client keeps the session's shared read alive meanwhile.
        events = sse_events(resp)
        async for ev in events:
            if ev.event == "metrics" and ev.data and ev.data["epoch"] == 5:
                break
        assert live.app.state.live.tails == 1
        resumed = asyncio.create_task(
            read_sse(live, sid, headers={"Last-Event-ID": first[-1].id or ""})
        )
        for epoch in range(6, 9):
            await live.epoch(sid, epoch)
        await live.finish(sid, keys.EVENT_COMPLETED)
        rest = await resumed
    seen = [d["epoch"] for e in first + rest if e.event == "metrics" and (d := e.data)]
    assert seen == list(range(1, 9))
    assert rest[-1].event == "status" and rest[-1].data == {
        **(rest[-1].data or {}),
        "status": "completed",
    }
    ids = [e.id for e in first + rest]
    assert len(set(ids)) == len(ids)


async def test_a_client_that_falls_behind_catches_up_from_redis_exactly_once(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pivot_api.live import service as live_module

    monkeypatch.setattr(live_module, "MAX_QUEUED", 3)
    service = live.app.state.live
    sid = await live.session()
    stream = service.events(sid, live_module.Cursor())
    try:
        assert (await anext(stream)).kind == "status"  # started; now it follows the tail
        for epoch in range(1, 11):  # more than it may queue while it is not reading
            await live.epoch(sid, epoch)
        await asyncio.sleep(0.3)  # the shared read hands them over (and drops this client)
        assert not service._tails[sid].subscribers  # overflowed: unsubscribed
        await live.finish(sid, keys.EVENT_COMPLETED)
        got = [event async for event in stream if event.kind != "heartbeat"]
    finally:
        await stream.aclose()
    assert [e.data["epoch"] for e in got if e.kind == "metrics"] == list(range(1, 11))
    assert got[-1].kind == "status" and got[-1].final
    assert len({e.id for e in got}) == len(got)


async def test_an_entry_that_is_not_a_record_is_skipped_by_followers_and_catch_up(
    live: Live,
) -> None:
    sid = await live.session()
    follower = asyncio.create_task(read_sse(live, sid))  # joins the shared read first
    while not live.app.state.live.clients:
        await asyncio.sleep(0.01)
    await live.platform.redis.xadd(keys.metrics_stream(sid), {"data": "{not json"})
    await live.epoch(sid, 1)
    await live.finish(sid, keys.EVENT_COMPLETED)
    followed = await follower
    replayed = await read_sse(live, sid)  # from the start: its own catch-up reads
    for events in (followed, replayed):
        assert [(e.event, (e.data or {}).get("epoch")) for e in events if e.event == "metrics"] == [
            ("metrics", 1)
        ]
        assert events[-1].data == {**(events[-1].data or {}), "status": "completed"}
    assert frames(followed) == frames(replayed)


async def test_the_stream_ends_only_once_the_session_the_api_serves_has_finished(
    live: Live,
) -> None:
    sid = await live.session()
    for epoch in (1, 2, 3):
        await live.epoch(sid, epoch, val_loss=1.0 / epoch)
    # The trainer's last word is in Redis; the operator has not written the CR yet.
    await live.event(sid, keys.EVENT_COMPLETED)
    got: list[SseEvent] = []
    reader = asyncio.create_task(_collect(live, sid, got))
    await asyncio.sleep(1.0)  # five heartbeats: time enough to (wrongly) end the stream
    assert not reader.done(), [(e.event, e.data) for e in got]
    assert sorted(str(e.event) for e in got) == ["metrics", "metrics", "metrics", "status"], got
    await live.platform.patch_status(
        sid, {"phase": "Completed", "currentEpoch": 3, "latestMetrics": {"val_loss": 1 / 3}}
    )
    await asyncio.wait_for(reader, 10)
    assert got[-1].event == "status" and got[-1].data == {
        **(got[-1].data or {}),
        "status": "completed",
    }
    # What the stream ended on is what a read says now, with the last epoch's metrics.
    body = (await live.platform.http.get(f"/api/v1/training/sessions/{sid}")).json()
    assert (body["status"], body["current_epoch"]) == ("completed", 3)


async def test_a_failed_attempt_that_is_retried_does_not_end_the_stream(live: Live) -> None:
    sid = await live.session()
    await live.epoch(sid, 1)
    await live.event(sid, keys.EVENT_FAILED, error="node lost")
    await live.platform.patch_status(sid, {"phase": "Pending", "restarts": 1})  # retrying
    got: list[SseEvent] = []
    reader = asyncio.create_task(_collect(live, sid, got))
    await asyncio.sleep(0.6)
    assert not reader.done()
    # The retry starts and trains on; only then is the failure known to be an attempt's.
    await live.platform.patch_status(sid, {"phase": "Running"})
    await live.event(sid, keys.EVENT_STARTED)
    await live.epoch(sid, 2)
    await live.finish(sid, keys.EVENT_COMPLETED)
    await asyncio.wait_for(reader, 10)
    statuses = statuses_of(got)
    assert statuses == [
        ("started", "running"),
        ("failed", "pending"),
        ("started", "running"),
        ("completed", "completed"),
    ]
    # Replayed later from the start, the history reads the same.
    assert statuses_of(await read_sse(live, sid)) == statuses


def statuses_of(events: list[SseEvent]) -> list[tuple[Any, Any]]:
    return [(d.get("event"), d["status"]) for e in events if e.event == "status" and (d := e.data)]


async def _collect(live: Live, sid: str, into: list[SseEvent]) -> None:
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream("GET", f"{live.base}/api/v1/sse/training/{sid}") as resp,
    ):
        async for ev in sse_events(resp):
            if ev.comment is None:
                into.append(ev)


async def test_the_references_snippets_print_real_epoch_and_loss_on_both_streams(
    live: Live,
) -> None:
    """`console.log('Epoch:', data.epoch); console.log('Loss:', data.loss)` on a WebSocket
    message, and the same fields of an SSE `metrics` event: numbers, one loss on both."""
    sid = await live.session()
    await live.epoch(sid, 1, train_loss=0.9, val_loss=0.95, learning_rate=0.001)
    await live.epoch(sid, 2, train_loss=0.7)  # no validation this epoch
    await live.epoch(sid, 3, train_loss=0.6, val_loss=math.nan)  # a diverged validation
    ws = [m for m in await read_ws(live, sid, count=4) if m["type"] == "metrics"]
    sse = [e.data or {} for e in await read_sse(live, sid, count=4) if e.event == "metrics"]
    for message in (*ws, *sse):
        assert isinstance(message["epoch"], int)
    assert [(m["epoch"], m["loss"]) for m in ws] == [(1, 0.95), (2, 0.7), (3, None)]
    assert [(d["epoch"], d["loss"]) for d in sse] == [(1, 0.95), (2, 0.7), (3, None)]
    assert isinstance(ws[0]["loss"], float) and isinstance(sse[0]["loss"], float)
    # As documented in the OpenAPI document (LiveMetricsMessage, LiveMetricsEvent).
    for message in ws:
        LiveMetricsMessage.model_validate(message)
        assert "loss" not in message["metrics"]
    for data in sse:
        LiveMetricsEvent.model_validate(data)
    assert sse[0] == {
        "epoch": 1,
        "timestamp": sse[0]["timestamp"],
        "train_loss": 0.9,
        "val_loss": 0.95,
        "learning_rate": 0.001,
        "loss": 0.95,
    }
