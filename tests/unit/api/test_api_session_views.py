"""How a TrainingSession CR reads as the API's session shapes, and how the cache orders writes."""

from __future__ import annotations

from typing import Any

from pivot_api.kube import SessionCache
from pivot_api.sessions.service import new_session_id, to_detail, to_summary


def _cr(name: str = "sess-abc", rv: str = "5", **status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "resourceVersion": rv,
            "creationTimestamp": "2025-12-19T10:30:00Z",
        },
        "spec": {"suspend": True, "sessionName": "exp", "tags": ["a"], "config": {"epochs": 4}},
        "status": status,
    }


def test_session_ids_are_dns_names_with_the_sess_prefix() -> None:
    ids = {new_session_id() for _ in range(100)}
    assert len(ids) == 100
    for sid in ids:
        assert sid.startswith("sess-") and len(sid) == 15 and sid == sid.lower()


def test_an_unreconciled_suspended_cr_reads_as_created_with_defaults() -> None:
    detail = to_detail(_cr())
    assert detail.status == "created"
    assert (detail.current_epoch, detail.total_epochs, detail.progress) == (0, 4, 0.0)
    assert detail.created_at == "2025-12-19T10:30:00Z"
    assert detail.latest_metrics == {} and detail.tags == ["a"]


def test_status_fields_come_from_the_cr_status() -> None:
    cr = _cr(phase="Running", currentEpoch=1, latestMetrics={"val_loss": 0.5})
    cr["spec"]["suspend"] = False
    detail = to_detail(cr)
    assert detail.status == "running"
    assert detail.progress == 0.25
    assert detail.latest_metrics == {"val_loss": 0.5}
    summary = to_summary(cr)
    assert (summary.current_epoch, summary.total_epochs) == (1, 4)


def test_the_cache_keeps_the_newest_resource_version() -> None:
    cache = SessionCache(api=None, namespace="default")  # type: ignore[arg-type]
    cache.upsert(_cr(rv="7", phase="Running"))
    cache.upsert(_cr(rv="6", phase="Created"))  # a late watch event for an older version
    assert cache.get("sess-abc")["status"]["phase"] == "Running"  # type: ignore[index]
    cache.remove(_cr(rv="6"))
    assert cache.get("sess-abc") is not None
    cache.remove(_cr(rv="8"))
    assert cache.get("sess-abc") is None


def test_a_relist_keeps_objects_written_through_after_it() -> None:
    cache = SessionCache(api=None, namespace="default")  # type: ignore[arg-type]
    cache.upsert(_cr("sess-new", rv="12"))
    cache.upsert(_cr("sess-gone", rv="3"))
    cache._replace([_cr("sess-old", rv="9")], list_rv=10)
    assert {o["metadata"]["name"] for o in cache.all()} == {"sess-new", "sess-old"}
