"""Which client asked for what: the RBAC view of the requests the emulator served.

Each resource request is reduced to the tuple an RBAC rule matches — (client, verb, apiGroup,
resource, subresource, namespace) — with the client named by its User-Agent's product token
(`pivot-operator/0.1.0` -> `pivot-operator`, `kopf/1.38` -> `kopf`). The set of distinct tuples
is small and bounded (`limit`), so recording stays on for the emulator's whole life.
"""

from __future__ import annotations

import threading
from typing import NamedTuple


class AuditRecord(NamedTuple):
    client: str
    verb: str  # an RBAC verb: get list watch create update patch delete deletecollection
    group: str  # "" for the core group
    resource: str
    subresource: str  # "" when none
    namespace: str  # "" for cluster-scoped requests (and lists across all namespaces)


def client_of(user_agent: str | None) -> str:
    """The product name a User-Agent starts with ("" when there is none)."""
    if not user_agent:
        return ""
    return user_agent.split()[0].split("/")[0][:64]


def rbac_verb(method: str, named: bool, watch: bool) -> str:
    """The verb RBAC checks for an HTTP method on a resource path."""
    if method == "GET":
        if named:
            return "get"
        return "watch" if watch else "list"
    if method == "DELETE":
        return "delete" if named else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


class RequestAudit:
    """A bounded, thread-safe set of AuditRecords (the emulator runs on its own thread)."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._records: set[AuditRecord] = set()
        self._lock = threading.Lock()
        self.dropped = 0  # distinct records not kept because the set was full

    def record(self, rec: AuditRecord) -> None:
        with self._lock:
            if rec in self._records:
                return
            if len(self._records) >= self.limit:
                self.dropped += 1
                return
            self._records.add(rec)

    def records(self) -> set[AuditRecord]:
        with self._lock:
            return set(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            self.dropped = 0
