"""The chart's RBAC covers exactly what the API and the operator do.

Runs last in tests/e2e (after the other modules drove sessions through the same platform):
drives a lifecycle of its own — a health check; create, start, complete; start and stop; a
finished session deleted by its TTL; a session deleted by a user — then compares every request
the Kubernetes API emulator served to the operator (`pivot-operator/…`, and kopf's own `kopf/…`)
and to the API (`pivot-api/…`) with the grants of the chart's Roles, as rendered for this
platform's namespace.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import httpx
import pytest

from pivot_local.kube import AuditRecord
from pivot_local.platform import LocalPlatform
from pivot_schema.crd import GROUP, PLURAL, VERSION
from tests.support.chart import Grant, grants_of, render
from tests.support.platform import TINY_CONFIG, logs_of, session_status
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

# User-Agent product -> the chart's component (its ServiceAccount is pivot-<component>).
COMPONENTS = {"pivot-operator": "operator", "kopf": "operator", "pivot-api": "api"}
# Clients of the emulator that are not PIVOT deployments: the local process kubelet
# (kubernetes_asyncio's default User-Agent), and these tests.
NOT_DEPLOYED = {"OpenAPI-Generator", "python-httpx", "kubectl", ""}

# Grants the lifecycle here does not exercise, each for a code path that needs it.
ALLOWANCE: dict[str, dict[tuple[str, str, str], str]] = {
    "operator": {
        ("", "pods", "get"): "Kube.get_pod: the pod of a create that answered 409",
        ("", "services", "create"): "multi-node sessions: the headless rendezvous Service",
        # Used when tests/e2e/test_serving.py ran on this platform before (it deploys models);
        # this lifecycle alone deploys none: a ModelServer's sync.
        ("pivot.dev", "modelservers", "get"): "serving: a ModelServer's sync reads it",
        ("pivot.dev", "modelservers/status", "patch"): "serving: its status",
        ("kopf.dev", "kopfpeerings", "get"): "kopf peering (the local platform runs standalone)",
        ("kopf.dev", "kopfpeerings", "list"): "kopf peering",
        ("kopf.dev", "kopfpeerings", "watch"): "kopf peering",
        ("kopf.dev", "kopfpeerings", "patch"): "kopf peering",
    },
    "api": {
        # Likewise: the API's model routes.
        ("pivot.dev", "modelservers", "get"): "GET /models/{name}, predict",
        ("pivot.dev", "modelservers", "list"): "GET /models",
        ("pivot.dev", "modelservers", "create"): "POST /models",
        ("pivot.dev", "modelservers", "patch"): "PATCH /models/{name}",
        ("pivot.dev", "modelservers", "delete"): "DELETE /models/{name}",
        ("discovery.k8s.io", "endpointslices", "list"): "predict: the Ready pods",
    },
}

TS_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/{PLURAL}"


def needed(rec: AuditRecord) -> tuple[str, str, str, str]:
    resource = f"{rec.resource}/{rec.subresource}" if rec.subresource else rec.resource
    return (rec.namespace, rec.group, resource, rec.verb)


def allowed(grants: set[Grant], need: tuple[str, str, str, str]) -> bool:
    ns, group, resource, verb = need
    # A ClusterRole (namespace "") covers every namespace; a Role only its own.
    return (ns, group, resource, verb) in grants or ("", group, resource, verb) in grants


def create(api: httpx.Client, **body: Any) -> str:
    resp = api.post("/training/sessions", json=body)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["session_id"])


def wait_status(api: httpx.Client, platform: LocalPlatform, sid: str, wanted: set[str]) -> None:
    try:
        wait_for(lambda: session_status(api, sid)["status"] in wanted, 120, f"{sid} in {wanted}")
    except AssertionError:
        print(logs_of(platform))
        raise


def run_lifecycle(api: httpx.Client, kube: httpx.Client, platform: LocalPlatform) -> None:
    ts = TS_PATH.format(ns=platform.namespace)
    # /health reads the operator's and the nodes' heartbeat Leases.
    assert api.get("/health").json()["status"] == "healthy"
    done = create(api, config=TINY_CONFIG, session_name="rbac-complete")
    assert api.post(f"/training/sessions/{done}/start").status_code == 200
    stopped = create(api, config={**TINY_CONFIG, "epochs": 10_000}, session_name="rbac-stop")
    assert api.post(f"/training/sessions/{stopped}/start").status_code == 200
    wait_status(api, platform, stopped, {"running"})
    # The dashboard's reads of a running session: its trainer's log and its Events.
    assert api.get(f"/training/sessions/{stopped}/logs", params={"tail": 5}).status_code == 200
    assert api.get(f"/training/sessions/{stopped}/events").status_code == 200
    assert api.post(f"/training/sessions/{stopped}/stop").status_code == 200
    wait_status(api, platform, done, {"completed"})
    wait_status(api, platform, stopped, {"stopped"})

    # A finished session with ttlSecondsAfterFinished: 0 is deleted by the operator.
    ttl = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingSession",
        "metadata": {"name": "rbac-ttl"},
        "spec": {"config": TINY_CONFIG, "ttlSecondsAfterFinished": 0, "resources": {"gpu": 0}},
    }
    assert kube.post(ts, json=ttl).status_code == 201, "applied like kubectl apply"
    # A user deletes a session: the operator's finalizer cleans up and lets it go.
    assert kube.delete(f"{ts}/{stopped}").status_code == 200
    for name in ("rbac-ttl", stopped):
        try:
            wait_for(partial(gone, kube, f"{ts}/{name}"), 120, f"{name} to be deleted")
        except AssertionError:
            print(logs_of(platform))
            raise


def gone(kube: httpx.Client, path: str) -> bool:
    return kube.get(path).status_code == 404


def test_chart_roles_grant_exactly_what_the_operator_and_api_request(
    api: httpx.Client, kube: httpx.Client, platform: LocalPlatform
) -> None:
    run_lifecycle(api, kube, platform)
    records = platform.kube.audit.records()
    assert platform.kube.audit.dropped == 0

    strangers = {r.client for r in records} - COMPONENTS.keys() - NOT_DEPLOYED
    assert not strangers, f"requests from unknown clients {strangers}: which component is it?"

    docs = render({"sessionNamespace": platform.namespace}, namespace=platform.namespace)
    for component in ("operator", "api"):
        mine = {needed(r) for r in records if COMPONENTS.get(r.client) == component}
        grants = grants_of(docs, f"pivot-{component}")

        missing = sorted(n for n in mine if not allowed(grants, n))
        assert not missing, (
            f"the {component} made requests the chart's Roles do not allow "
            f"(namespace, group, resource, verb): {missing}"
        )

        used = {(g, r, v) for _, g, r, v in mine}
        unused = {(g, r, v) for _, g, r, v in grants} - used
        beyond = sorted(unused - ALLOWANCE[component].keys())
        assert not beyond, f"the chart grants the {component} more than it uses: {beyond}"

    # The check saw both components (the user agents are set), through their own calls.
    operator = {(r.client, r.verb, r.resource) for r in records}
    assert ("pivot-operator", "create", "pods") in operator
    assert ("kopf", "watch", PLURAL) in operator
    assert ("pivot-api", "create", PLURAL) in operator
