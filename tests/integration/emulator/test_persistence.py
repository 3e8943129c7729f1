"""The emulator with a data dir keeps its objects across a restart, as etcd keeps a cluster's:
same uids, creation times and resourceVersions, RVs that go on from where they were, and a
watch from before the restart answered 410 Gone (the client re-lists)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from pivot_local.kube import run_emulator_in_thread
from pivot_local.kube.persist import RV_BLOCK, Journal
from pivot_local.kube.store import DeleteOptions, Store

pytestmark = pytest.mark.integration

CRD = Path(__file__).resolve().parents[3] / "crds" / "trainingsessions.pivot.dev.yaml"
NS = "/api/v1/namespaces/default"
TS = "/apis/pivot.dev/v1alpha1/namespaces/default/trainingsessions"


def _session(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "pivot.dev/v1alpha1",
        "kind": "TrainingSession",
        "metadata": {"name": name, "labels": {"team": "a"}},
        "spec": {"config": {"epochs": 3}},
    }


def _ok(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code in (200, 201), resp.text
    return dict(resp.json())


def _first_watch_line(kube: httpx.Client, path: str, rv: str) -> dict[str, Any]:
    with kube.stream(
        "GET", path, params={"watch": "1", "resourceVersion": rv, "timeoutSeconds": "5"}
    ) as resp:
        for line in resp.iter_lines():
            if line:
                return dict(json.loads(line))
    raise AssertionError("the watch ended without an event")


def test_objects_uids_and_resource_versions_survive_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "kube"
    with (
        run_emulator_in_thread(crds=[CRD], data_dir=data) as emu,
        httpx.Client(base_url=emu.url, timeout=10) as kube,
    ):
        cm = _ok(
            kube.post(f"{NS}/configmaps", json={"metadata": {"name": "cfg"}, "data": {"a": "1"}})
        )
        _ok(
            kube.post(
                f"{NS}/secrets", json={"metadata": {"name": "s3"}, "stringData": {"key": "v"}}
            )
        )
        _ok(kube.post(f"{NS}/configmaps", json={"metadata": {"name": "gone"}}))
        _ok(kube.delete(f"{NS}/configmaps/gone"))
        ts = _ok(kube.post(TS, json=_session("sess-a")))
        ts = _ok(
            kube.patch(
                f"{TS}/sess-a/status",
                json={"status": {"phase": "Completed"}},
                headers={"Content-Type": "application/merge-patch+json"},
            )
        )
        pod = _ok(
            kube.post(
                f"{NS}/pods",
                json={
                    "metadata": {
                        "name": "p",
                        "ownerReferences": [
                            {
                                "apiVersion": "pivot.dev/v1alpha1",
                                "kind": "TrainingSession",
                                "name": "sess-a",
                                "uid": ts["metadata"]["uid"],
                            }
                        ],
                    },
                    "spec": {"containers": [{"name": "c", "image": "x"}]},
                },
            )
        )
        old_list_rv = _ok(kube.get(f"{NS}/configmaps"))["metadata"]["resourceVersion"]
        last_rv = int(_ok(kube.get(f"{TS}"))["metadata"]["resourceVersion"])

    with (
        run_emulator_in_thread(crds=[CRD], data_dir=data) as emu,
        httpx.Client(base_url=emu.url, timeout=10) as kube,
    ):
        again = _ok(kube.get(f"{NS}/configmaps/cfg"))
        assert again == cm  # uid, creationTimestamp, resourceVersion, data: all as they were
        assert _ok(kube.get(f"{NS}/secrets/s3"))["data"] == {"key": "dg=="}
        assert kube.get(f"{NS}/configmaps/gone").status_code == 404
        assert _ok(kube.get(f"{TS}/sess-a")) == ts  # status kept, the CRD's type too
        assert _ok(kube.get(TS, params={"labelSelector": "team=a"}))["items"] == [ts]
        assert _ok(kube.get(f"{NS}/pods/p"))["metadata"] == pod["metadata"]
        # The built-in namespaces were loaded, not made anew.
        assert len(_ok(kube.get("/api/v1/namespaces"))["items"]) == 4

        # RVs go on past every one handed out before; none is reused.
        new = _ok(kube.post(f"{NS}/configmaps", json={"metadata": {"name": "new"}}))
        assert int(new["metadata"]["resourceVersion"]) > last_rv

        # A watch resumed from before the restart is told to re-list, as after a compaction.
        ev = _first_watch_line(kube, f"{NS}/configmaps", old_list_rv)
        assert ev["type"] == "ERROR" and ev["object"]["code"] == 410

        # A watch from a list made now works.
        rv = _ok(kube.get(f"{NS}/configmaps"))["metadata"]["resourceVersion"]
        _ok(
            kube.patch(
                f"{NS}/configmaps/cfg",
                json={"data": {"a": "2"}},
                headers={"Content-Type": "application/merge-patch+json"},
            )
        )
        ev = _first_watch_line(kube, f"{NS}/configmaps", rv)
        assert ev["type"] == "MODIFIED" and ev["object"]["data"] == {"a": "2"}

        # Owner references still collect: deleting the session takes its pod along.
        _ok(kube.delete(f"{TS}/sess-a"))
        deadline = time.monotonic() + 5
        while kube.get(f"{NS}/pods/p").status_code != 404:
            assert time.monotonic() < deadline, "the pod outlived its owner"
            time.sleep(0.05)


def _configmap(name: str, value: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "data": {"v": value}}


def test_a_crash_keeps_what_was_flushed_and_never_reuses_a_resource_version(
    tmp_path: Path,
) -> None:
    """Without a clean stop, what the last flush wrote is there, a torn last record is
    skipped, and RVs start past the durably reserved ceiling."""
    store = Store(journal=Journal(tmp_path))
    cms = store.types[("", "configmaps")]
    kept = store.create(cms, "default", _configmap("kept", "1"))
    journal = store.journal
    assert journal is not None
    batch = journal.take(store.rv, store.objects)
    assert batch is not None
    journal.write(batch)
    lost = store.create(cms, "default", _configmap("lost", "1"))  # never flushed
    with open(tmp_path / "log.0.jsonl", "ab") as fh:
        fh.write(b'{"rv": 99, "put": [["", "configm')  # the crash tore this append

    again = Store(journal=Journal(tmp_path))
    assert again.get(cms, "default", "kept") == kept
    assert ("default", "lost") not in again.objects[cms.key]
    made = again.create(cms, "default", _configmap("after", "1"))
    assert int(made["metadata"]["resourceVersion"]) > int(lost["metadata"]["resourceVersion"])
    assert int(made["metadata"]["resourceVersion"]) <= int(lost["metadata"]["resourceVersion"]) + (
        RV_BLOCK + 1
    )


def test_the_log_is_compacted_into_a_snapshot(tmp_path: Path) -> None:
    journal = Journal(tmp_path, compact_min_bytes=20_000)
    store = Store(journal=journal)
    cms = store.types[("", "configmaps")]
    for i in range(400):
        store.create(cms, "default", _configmap(f"c{i % 20}-{i}", "x" * 100))
        if i % 20 == 19:
            for j in range(i - 19, i + 1):
                store.delete(cms, "default", f"c{j % 20}-{j}", DeleteOptions())
        if i % 10 == 9:
            batch = journal.take(store.rv, store.objects)
            assert batch is not None
            journal.write(batch)
    store.create(cms, "default", _configmap("last", "y"))
    batch = journal.take(store.rv, store.objects)
    assert batch is not None
    journal.write(batch)
    snapshot = tmp_path / "snapshot.json"
    assert snapshot.exists()
    logs = list(tmp_path.glob("log.*.jsonl"))
    assert len(logs) == 1 and logs[0].stat().st_size < 20_000  # older logs are gone

    again = Store(journal=Journal(tmp_path))
    assert again.objects[cms.key] == store.objects[cms.key]
    assert again.rv >= store.rv
