"""The exact RBAC the operator needs, as data (the Helm chart renders its ClusterRole from
this list; tests/integration/operator checks every request the operator and kopf really make
against it, through the emulator's audit).

Why each rule:
- trainingsessions: kopf watches them and patches finalizers/annotations; the TTL deletes them.
- trainingsessions/status: all status is written through the status subresource.
- modelservers, modelservers/status: kopf watches them; a sync reads one and patches status.
- pods: the trainer gang (watch for phase/eviction, create per attempt, delete stale attempts).
- services: the headless Service of multi-pod sessions, and each ModelServer's Service.
- events: kopf posts the Events `kubectl describe ts` shows.
- customresourcedefinitions, namespaces: kopf's resource and namespace discovery.
- kopfpeerings/clusterkopfpeerings: leader election between replicas (kopf peering).
- leases: the heartbeat Lease in the operator's namespace that /health reads
  (pivot_operator.heartbeat): read once, created if missing, then updated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

READ = ("get", "list", "watch")


@dataclass(frozen=True)
class Rule:
    api_groups: tuple[str, ...]
    resources: tuple[str, ...]  # "pods" or "trainingsessions/status"
    verbs: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "apiGroups": list(self.api_groups),
            "resources": list(self.resources),
            "verbs": list(self.verbs),
        }


RULES: tuple[Rule, ...] = (
    Rule(("pivot.dev",), ("trainingsessions",), (*READ, "patch", "update", "delete")),
    Rule(("pivot.dev",), ("trainingsessions/status",), ("get", "patch", "update")),
    Rule(("pivot.dev",), ("modelservers",), READ),
    Rule(("pivot.dev",), ("modelservers/status",), ("patch",)),
    Rule(("",), ("pods",), (*READ, "create", "delete", "patch")),
    Rule(("",), ("services",), ("get", "create", "delete")),
    Rule(("", "events.k8s.io"), ("events",), ("create", "patch", "update")),
    Rule(("apiextensions.k8s.io",), ("customresourcedefinitions",), READ),
    Rule(("",), ("namespaces",), ("list", "watch")),
    Rule(("kopf.dev",), ("kopfpeerings", "clusterkopfpeerings"), (*READ, "patch", "update")),
    Rule(("coordination.k8s.io",), ("leases",), ("get", "create", "update")),
)


def allows(verb: str, group: str, resource: str, subresource: str = "") -> bool:
    """Whether RULES grant `verb` on group/resource[/subresource]."""
    full = f"{resource}/{subresource}" if subresource else resource
    return any(group in r.api_groups and full in r.resources and verb in r.verbs for r in RULES)


def cluster_role(name: str = "pivot-operator") -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": [r.as_dict() for r in RULES],
    }
