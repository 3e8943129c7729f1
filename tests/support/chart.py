"""Render the real chart offline (helm-python-sdk: Helm's own Go engine, no cluster) and read
what it grants, for the deploy tests and the RBAC check in tests/e2e/test_zz_rbac.py."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "helm" / "pivot"
RELEASE = "pivot"
NAMESPACE = "pivot"

Manifest = dict[str, Any]


@cache
def load_chart() -> helm.Chart:
    return helm.Chart.load(str(CHART_DIR))


def render(values: dict[str, Any] | None = None, *, namespace: str = NAMESPACE) -> list[Manifest]:
    """Every object the chart would install (templates, not the crds/ folder), in order."""
    out = load_chart().render(values or {}, name=RELEASE, namespace=namespace, is_install=True)
    docs: list[Manifest] = []
    for path in sorted(out):
        if not path.endswith((".yaml", ".yml")):
            continue  # NOTES.txt
        docs.extend(d for d in yaml.safe_load_all(out[path]) if d)
    return docs


def notes(values: dict[str, Any] | None = None) -> str:
    out = load_chart().render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return next(v for k, v in out.items() if k.endswith("NOTES.txt"))


def of_kind(docs: Iterable[Manifest], kind: str) -> list[Manifest]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: Iterable[Manifest], kind: str, name: str) -> Manifest:
    found = [d for d in docs if d.get("kind") == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_specs(docs: Iterable[Manifest]) -> list[tuple[str, Manifest]]:
    return [
        (f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"])
        for d in docs
        if d.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job")
    ]


def container_env(deployment: Manifest, container: str) -> dict[str, Any]:
    """name -> value (a string) or valueFrom (a dict) of one container's env."""
    spec = deployment["spec"]["template"]["spec"]
    c = next(c for c in spec["containers"] if c["name"] == container)
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


# A grant: (namespace or "" for cluster-wide, apiGroup, resource[/subresource], verb).
Grant = tuple[str, str, str, str]


def grants_of(docs: list[Manifest], service_account: str) -> set[Grant]:
    """What the chart's (Cluster)Role(Binding)s let one ServiceAccount do, rule by rule."""
    roles = {
        (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d
        for d in docs
        if d.get("kind") in ("Role", "ClusterRole")
    }
    out: set[Grant] = set()
    for binding in docs:
        if binding.get("kind") not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(
            s.get("kind") == "ServiceAccount" and s.get("name") == service_account
            for s in binding.get("subjects", [])
        ):
            continue
        ref = binding["roleRef"]
        bound_ns = binding["metadata"].get("namespace", "")
        role_ns = bound_ns if ref["kind"] == "Role" else ""
        role = roles[(ref["kind"], role_ns, ref["name"])]
        for rule in role.get("rules", []):
            for group in rule.get("apiGroups", []):
                for resource in rule.get("resources", []):
                    for verb in rule.get("verbs", []):
                        out.add((bound_ns, group, resource, verb))
    return out
