"""The emulator's memory stays bounded: a fixed ring of watch events per resource type."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import aiohttp
import pytest

from pivot_local.kube import KubeEmulator

pytestmark = pytest.mark.integration

UPDATES = 20_000


async def test_history_stays_at_cap_and_old_resumes_expire(emulator: KubeEmulator) -> None:
    name = f"mem-{uuid.uuid4().hex[:8]}"
    base = f"{emulator.url}/api/v1/namespaces/default/configmaps"
    cap = emulator.store.history_limit
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as http:
        async with http.post(base, json={"metadata": {"name": name}}) as r:
            assert r.status == 201
            first_rv = (await r.json())["metadata"]["resourceVersion"]
        headers = {"Content-Type": "application/merge-patch+json"}
        queue = iter(range(UPDATES))

        async def worker() -> None:
            for i in queue:
                async with http.patch(
                    f"{base}/{name}", data=json.dumps({"data": {"i": str(i)}}), headers=headers
                ) as r:
                    assert r.status == 200

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(16)))
        elapsed = time.monotonic() - started
        assert emulator.store.history_len("", "configmaps") == cap
        assert len(emulator.store.objects[("", "configmaps")]) < 1000

        # A resume from before the ring is answered like a compacted etcd: ERROR 410 Expired.
        async with http.get(
            base, params={"watch": "1", "resourceVersion": first_rv, "timeoutSeconds": "1"}
        ) as r:
            line = json.loads(await r.content.readline())
        assert line["type"] == "ERROR" and line["object"]["code"] == 410
        assert line["object"]["reason"] == "Expired"
        async with http.delete(f"{base}/{name}") as r:
            assert r.status == 200
    print(f"{UPDATES} updates in {elapsed:.1f}s ({UPDATES / elapsed:.0f}/s)")


async def test_indexes_shrink_back_when_objects_go(emulator: KubeEmulator) -> None:
    """Every object indexed by its own label value and owner: deleting the owner (garbage
    collection) and the rest leaves the indexes as they were."""
    run = uuid.uuid4().hex[:8]
    base = f"{emulator.url}/api/v1/namespaces/default/configmaps"
    before = emulator.store.index_entries()
    async with aiohttp.ClientSession() as http:
        async with http.post(base, json={"metadata": {"name": f"owner-{run}"}}) as r:
            owner = (await r.json())["metadata"]
        ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": owner["name"], "uid": owner["uid"]}
        for i in range(50):
            meta = {"name": f"dep-{run}-{i}", "labels": {"i": f"{run}-{i}"}}
            async with http.post(base, json={"metadata": {**meta, "ownerReferences": [ref]}}) as r:
                assert r.status == 201
        assert emulator.store.index_entries() > before + 100
        async with http.delete(f"{base}/owner-{run}") as r:
            assert r.status == 200
        async with http.get(base, params={"labelSelector": f"i={run}-7"}) as r:
            assert (await r.json())["items"] == []
    assert emulator.store.index_entries() == before
