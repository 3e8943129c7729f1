"""The operator's heartbeat: a coordination.k8s.io/v1 Lease it renews while it runs.

The API's /health reads it (operator: healthy while the lease is fresh), so a crashed or hung
operator shows on /health within the lease's duration instead of never.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from pivot_operator.config import OperatorConfig
from pivot_operator.kube import checked
from pivot_schema.leases import lease_manifest, renewed

log = logging.getLogger(__name__)


def holder_identity() -> str:
    """The pod's name on a cluster (its hostname); the pid tells restarts on one host apart."""
    return f"{socket.gethostname()}-{os.getpid()}"


class Heartbeat:
    def __init__(self, api: client.ApiClient, namespace: str, name: str, duration_s: int):
        self._coordination = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.name = name
        self.duration_s = duration_s
        self.holder = holder_identity()
        self._lease: dict[str, Any] | None = None  # last written: renewals need no read

    async def renew(self) -> None:
        """One renewal: update the lease we last wrote; read or create it when we have none
        or another writer moved it on (409)."""
        now = datetime.now(UTC)
        if self._lease is None:
            try:
                self._lease = await checked(
                    self._coordination.read_namespaced_lease(
                        self.name, self.namespace, _preload_content=False
                    )
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
                body = lease_manifest(self.name, self.namespace, self.holder, self.duration_s, now)
                self._lease = await checked(
                    self._coordination.create_namespaced_lease(
                        self.namespace, body, _preload_content=False
                    )
                )
                return
        body = renewed(self._lease, self.holder, self.duration_s, now)
        try:
            self._lease = await checked(
                self._coordination.replace_namespaced_lease(
                    self.name, self.namespace, body, _preload_content=False
                )
            )
        except ApiException as exc:
            self._lease = None  # 409 (a replica renewed it) or 404 (deleted): read it again
            if exc.status not in (404, 409):
                raise

    async def run(self) -> None:
        """Renew every third of the lease's duration until cancelled; a failed renewal is
        logged and retried (the lease expiring is how a stuck operator shows)."""
        interval = self.duration_s / 3
        while True:
            try:
                await self.renew()
            except Exception as exc:  # whatever it is, the next round tries again
                log.warning("could not renew lease %s/%s: %s", self.namespace, self.name, exc)
            await asyncio.sleep(interval)


def start(api: client.ApiClient, config: OperatorConfig) -> asyncio.Task[None]:
    """The heartbeat as a task of the operator's loop (the caller keeps it, and cancels it)."""
    beat = Heartbeat(api, config.lease_namespace, config.lease_name, config.lease_seconds)
    return asyncio.create_task(beat.run(), name="pivot-heartbeat")
