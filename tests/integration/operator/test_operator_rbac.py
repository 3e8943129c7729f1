"""Every request the operator (and kopf inside it) really makes is granted by rbac.RULES."""

from __future__ import annotations

import httpx
import pytest

from pivot_local.platform import LocalPlatform
from pivot_operator.rbac import allows
from tests.support.operator import create_session, delete_session, get_session, unique, wait_phase
from tests.support.waiting import wait_for

# Reads the emulator's request audit; on a real cluster the chart's RBAC is enforced anyway.
pytestmark = [pytest.mark.integration, pytest.mark.process_kubelet]
OPERATOR_CLIENTS = {"pivot-operator", "kopf"}


def test_operator_requests_are_all_covered_by_the_written_down_rbac(
    platform: LocalPlatform, kube: httpx.Client
) -> None:
    name = unique("rbac")
    create_session(kube, name, replicas=1)
    wait_phase(platform, kube, name, "Completed")
    delete_session(kube, name)
    wait_for(lambda: get_session(kube, name) is None, 30, "the finalizer to finish")
    made = [r for r in platform.kube.audit.records() if r.client in OPERATOR_CLIENTS]
    assert {r.resource for r in made} >= {"pods", "trainingsessions", "events"}
    missing = sorted(r for r in made if not allows(r.verb, r.group, r.resource, r.subresource))
    assert missing == []
