"""What a cluster's probes and Prometheus see of the operator."""

from __future__ import annotations

import httpx
import pytest

from pivot_local.platform import LocalPlatform
from tests.support.operator import LIVENESS_PORT, METRICS_PORT, create_session, unique, wait_phase
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.process_kubelet]


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None


def test_liveness_probe_answers_and_metrics_count_reconciles(
    platform: LocalPlatform, kube: httpx.Client
) -> None:
    name = unique("metrics")
    create_session(kube, name)
    wait_phase(platform, kube, name, "Completed")
    probe = wait_for(
        lambda: _get(f"http://127.0.0.1:{LIVENESS_PORT}/healthz"), 30, "the liveness probe"
    )
    assert probe.status_code == 200
    text = wait_for(
        lambda: (r := _get(f"http://127.0.0.1:{METRICS_PORT}/metrics")) and r.text, 30, "metrics"
    )
    assert 'pivot_operator_reconciles_total{trigger="pod"}' in text
    assert "pivot_operator_reconcile_seconds_bucket" in text
    assert "pivot_operator_reconcile_errors_total" in text
    assert "pivot_operator_pods_created_total" in text
