"""A session's trainer log and Kubernetes Events through the API, on the whole local platform:
pods/log and events read from the Kubernetes API, as on a real cluster."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from pivot_local.platform import LocalPlatform
from tests.support.platform import TINY_CONFIG, trainer_pods, wait_for_status

pytestmark = pytest.mark.integration


def test_followed_log_streams_while_training_and_ends_with_the_session(
    api: httpx.Client, kube: httpx.Client, platform: LocalPlatform
) -> None:
    config = {**TINY_CONFIG, "epochs": 6}
    sid = api.post("/training/sessions", json={"config": config}).json()["session_id"]
    # Followed from before the pod exists: the stream waits for it.
    lines: list[tuple[float, str]] = []
    ended = threading.Event()

    def follow() -> None:
        path = f"/training/sessions/{sid}/logs"
        with (
            httpx.Client(base_url=api.base_url, headers=api.headers, timeout=120) as http,
            http.stream("GET", path, params={"follow": "true"}) as resp,
        ):
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/plain")
            for line in resp.iter_lines():
                lines.append((time.monotonic(), line))
        ended.set()

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    assert api.post(f"/training/sessions/{sid}/start").status_code == 200
    done = wait_for_status(api, platform, sid, "completed", 180)
    finished_at = time.monotonic()
    assert ended.wait(30), "a followed log ends once the session has ended"
    text = [line for _, line in lines]
    assert text, "the trainer's lines came through"
    # Lines arrived while it trained, not all at the end.
    assert lines[0][0] < finished_at - 0.5, (lines[0][0], finished_at)

    # The whole log now, and its tail, as the pod has it.
    whole = api.get(f"/training/sessions/{sid}/logs")
    assert whole.status_code == 200
    assert whole.text.splitlines() == text
    tail = api.get(f"/training/sessions/{sid}/logs", params={"tail": 2})
    assert tail.text.splitlines() == text[-2:]
    every = api.get(f"/training/sessions/{sid}/logs", params={"rank": "all", "tail": 2})
    assert every.text.splitlines() == [f"[rank 0] {line}" for line in text[-2:]]
    assert done["status"] == "completed"

    # Its Events: what the operator reported, oldest first.
    events = api.get(f"/training/sessions/{sid}/events")
    assert events.status_code == 200
    body = events.json()
    assert body["session_id"] == sid
    assert body["events"], "the operator posts Events on the session"
    kinds = {e["object"]["kind"] for e in body["events"]}
    assert "TrainingSession" in kinds
    stamps = [e["last_timestamp"] for e in body["events"]]
    assert stamps == sorted(stamps)
    pods = trainer_pods(kube, sid)
    names = {sid, *(p["metadata"]["name"] for p in pods)}
    assert all(e["object"]["name"] in names for e in body["events"])


def test_logs_and_events_of_a_session_before_it_runs_and_of_none(api: httpx.Client) -> None:
    sid = api.post("/training/sessions", json={"config": TINY_CONFIG}).json()["session_id"]
    assert api.get(f"/training/sessions/{sid}/logs").text == ""  # no pod yet
    assert api.get(f"/training/sessions/{sid}/events").json()["session_id"] == sid
    for path in ("logs", "events"):
        missing = api.get(f"/training/sessions/sess-doesnotexist/{path}")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "NOT_FOUND"
    for params in ({"rank": "two"}, {"tail": -1}, {"follow": "maybe"}):
        bad = api.get(f"/training/sessions/{sid}/logs", params=params)
        assert bad.status_code == 422, params
        assert bad.json()["error"]["code"] == "VALIDATION_ERROR"
