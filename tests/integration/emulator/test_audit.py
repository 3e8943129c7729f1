"""The emulator records which client made which RBAC-relevant request (tests/e2e/test_zz_rbac.py
checks the chart's Roles against that record)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from pivot_local.kube import AuditRecord, KubeEmulator, run_emulator_in_thread
from pivot_local.kube.audit import RequestAudit, client_of, rbac_verb
from pivot_schema.crd import crd_manifest_path

TS = "/apis/pivot.dev/v1alpha1/namespaces/default/trainingsessions"


@pytest.fixture()
def emu() -> Iterator[KubeEmulator]:
    with run_emulator_in_thread(crds=[crd_manifest_path()]) as emulator:
        yield emulator


def session(name: str) -> dict[str, object]:
    return {
        "apiVersion": "pivot.dev/v1alpha1",
        "kind": "TrainingSession",
        "metadata": {"name": name},
        "spec": {"config": {"epochs": 1}},
    }


def test_each_request_is_recorded_as_client_verb_group_resource(emu: KubeEmulator) -> None:
    ua = {"User-Agent": "pivot-api/9.9 extra-token"}
    with httpx.Client(base_url=emu.url, headers=ua, timeout=10) as c:
        assert c.post(TS, json=session("a")).status_code == 201
        assert c.get(f"{TS}/a").status_code == 200
        assert c.get(TS).status_code == 200
        assert c.get(TS, params={"watch": "1", "timeoutSeconds": "1"}).status_code == 200
        merge = {"content-type": "application/merge-patch+json"}
        assert c.patch(f"{TS}/a/status", content=b'{"status": {}}', headers=merge).is_success
        assert c.get("/api/v1/pods").status_code == 200  # across namespaces: cluster scope
        assert c.delete(f"{TS}/a").status_code == 200
        assert c.get(f"{TS}/missing").status_code == 404  # asked for, so it needs the verb
        assert c.get("/apis").status_code == 200  # discovery: not a resource request
    with httpx.Client(base_url=emu.url, headers={"User-Agent": "kopf/1.38.0"}) as c:
        c.delete(f"{TS}", params={"labelSelector": "none=1"})

    def rec(
        client: str, verb: str, group: str, resource: str, sub: str = "", ns: str = "default"
    ) -> AuditRecord:
        return AuditRecord(client, verb, group, resource, sub, ns)

    assert emu.audit.records() == {
        rec("pivot-api", "create", "pivot.dev", "trainingsessions"),
        rec("pivot-api", "get", "pivot.dev", "trainingsessions"),
        rec("pivot-api", "list", "pivot.dev", "trainingsessions"),
        rec("pivot-api", "watch", "pivot.dev", "trainingsessions"),
        rec("pivot-api", "patch", "pivot.dev", "trainingsessions", "status"),
        rec("pivot-api", "list", "", "pods", ns=""),
        rec("pivot-api", "delete", "pivot.dev", "trainingsessions"),
        rec("kopf", "deletecollection", "pivot.dev", "trainingsessions"),
    }


def test_the_record_is_a_bounded_set() -> None:
    audit = RequestAudit(limit=2)
    for i in range(5):
        audit.record(AuditRecord("c", "get", "", f"r{i}", "", ""))
        audit.record(AuditRecord("c", "get", "", "r0", "", ""))  # a repeat costs nothing
    assert len(audit.records()) == 2
    assert audit.dropped == 3
    audit.clear()
    assert audit.records() == set()


@pytest.mark.parametrize(
    ("ua", "client"),
    [
        ("pivot-operator/0.1.0", "pivot-operator"),
        ("kopf/1.38.0", "kopf"),
        ("OpenAPI-Generator/33.3.0+snapshot/python", "OpenAPI-Generator"),
        ("kubectl/v1.33.0 (linux/amd64) kubernetes/abc", "kubectl"),
        (None, ""),
    ],
)
def test_clients_are_named_by_their_user_agent_product(ua: str | None, client: str) -> None:
    assert client_of(ua) == client


@pytest.mark.parametrize(
    ("method", "named", "watch", "verb"),
    [
        ("GET", True, False, "get"),
        ("GET", False, False, "list"),
        ("GET", False, True, "watch"),
        ("POST", False, False, "create"),
        ("PUT", True, False, "update"),
        ("PATCH", True, False, "patch"),
        ("DELETE", True, False, "delete"),
        ("DELETE", False, False, "deletecollection"),
    ],
)
def test_http_methods_map_to_rbac_verbs(method: str, named: bool, watch: bool, verb: str) -> None:
    assert rbac_verb(method, named, watch) == verb
