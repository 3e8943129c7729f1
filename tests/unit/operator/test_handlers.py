"""Who retries a failed sync: kopf retries no event handler, so the session's daemon does
soon; a failure in the daemon is kopf's TemporaryError, after a backoff that grows."""

from __future__ import annotations

import logging
import time
from typing import Any

import kopf
import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from pivot_operator import handlers
from pivot_operator.config import OperatorConfig
from pivot_operator.scheduler import Scheduler
from tests.support.kopf_stand_ins import Stop

KEY = ("default", "s1")
LOG = logging.getLogger("test")
# kopf types the decorated handlers as its callback protocols (every kwarg it may pass); these
# calls give what the handlers read.
reconcile: Any = handlers.reconcile
supervise: Any = handlers.supervise


class UnavailableKube:
    """The API server answering 500 to everything the sync asks."""

    async def get_session(self, namespace: str, name: str) -> dict[str, Any]:
        raise ApiException(status=500, reason="unavailable")


def memo() -> kopf.Memo:
    return kopf.Memo(
        config=OperatorConfig(backoff_base_seconds=1.0, resync_seconds=30.0),
        kube=UnavailableKube(),
        locks={},
        scheduler=Scheduler(),
    )


def body(phase: str = "Pending") -> kopf.Body:
    raw: Any = {"metadata": {"name": "s1", "namespace": "default"}, "status": {"phase": phase}}
    return kopf.Body(raw)


async def test_a_failed_event_sync_is_left_to_the_daemon_after_the_base_backoff() -> None:
    m = memo()
    before = time.monotonic()
    event: Any = {"type": None, "object": {}}  # the operator's start lists every session
    await reconcile(event=event, body=body(), name="s1", namespace="default", memo=m, logger=LOG)
    due = m.scheduler.due_at(KEY)
    assert due is not None and before + 1.0 <= due <= time.monotonic() + 1.0


async def test_a_failed_daemon_sync_is_a_temporary_error_with_a_growing_delay() -> None:
    for retry, delay in ((0, 1.0), (3, 8.0), (12, handlers.DAEMON_RESTART_CAP_S)):
        m = memo()
        m.scheduler.requeue(KEY, 0.0)  # a sync is due at once
        with pytest.raises(kopf.TemporaryError) as raised:
            await supervise(
                name="s1",
                namespace="default",
                body=body(),
                stopped=Stop(),
                retry=retry,
                memo=m,
                logger=LOG,
            )
        assert raised.value.delay == delay
        # Started again, the daemon syncs at once instead of after a resync period.
        due = m.scheduler.due_at(KEY)
        assert due is not None and due <= time.monotonic()
