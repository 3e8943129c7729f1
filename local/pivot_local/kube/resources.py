"""The resource types the emulator serves: built-ins plus those of registered CRDs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .validation import SchemaValidator

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass
class ResourceType:
    group: str  # "" for the core group
    versions: list[str]
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    has_status: bool = False
    # Objects return themselves from DELETE (ReturnDeletedObject in the real registry).
    returns_deleted: bool = False
    extra_subresources: dict[str, list[str]] = field(default_factory=dict)  # name -> verbs
    printer_columns: list[dict[str, Any]] = field(default_factory=list)
    validators: dict[str, SchemaValidator] = field(default_factory=dict)  # version -> validator
    crd_name: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def is_custom(self) -> bool:
        return self.crd_name is not None

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    @property
    def qualified(self) -> str:
        # How the server names the resource in messages: "pods", "trainingsessions.pivot.dev".
        return f"{self.plural}.{self.group}" if self.group else self.plural


def builtin_types() -> list[ResourceType]:
    core = [
        ResourceType("", ["v1"], "namespaces", "Namespace", False, "namespace", ["ns"],
                     has_status=True, returns_deleted=True),
        ResourceType("", ["v1"], "pods", "Pod", True, "pod", ["po"], ["all"], has_status=True,
                     returns_deleted=True,
                     extra_subresources={"binding": ["create"], "log": ["get"]}),
        ResourceType("", ["v1"], "services", "Service", True, "service", ["svc"], ["all"],
                     has_status=True, returns_deleted=True),
        ResourceType("", ["v1"], "secrets", "Secret", True, "secret"),
        ResourceType("", ["v1"], "configmaps", "ConfigMap", True, "configmap", ["cm"]),
        ResourceType("", ["v1"], "serviceaccounts", "ServiceAccount", True, "serviceaccount",
                     ["sa"]),
        ResourceType("", ["v1"], "events", "Event", True, "event", ["ev"]),
        ResourceType("", ["v1"], "nodes", "Node", False, "node", ["no"], has_status=True,
                     returns_deleted=True),
        ResourceType("coordination.k8s.io", ["v1"], "leases", "Lease", True, "lease"),
        ResourceType("discovery.k8s.io", ["v1"], "endpointslices", "EndpointSlice", True,
                     "endpointslice"),
        ResourceType("events.k8s.io", ["v1"], "events", "Event", True, "event", ["ev"]),
        ResourceType("apiextensions.k8s.io", ["v1"], "customresourcedefinitions",
                     "CustomResourceDefinition", False, "customresourcedefinition",
                     ["crd", "crds"], ["api-extensions"], has_status=True, returns_deleted=True),
    ]
    return core


def types_from_crd(crd: dict[str, Any]) -> ResourceType:
    """The served resource type of a CRD (all served versions share one store)."""
    spec = crd["spec"]
    names = spec["names"]
    served = [v for v in spec.get("versions", []) if v.get("served", True)]
    storage = next((v for v in served if v.get("storage")), served[0] if served else {})
    rt = ResourceType(
        group=spec["group"],
        versions=[v["name"] for v in served],
        plural=names["plural"],
        kind=names["kind"],
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        singular=names.get("singular", names["kind"].lower()),
        short_names=list(names.get("shortNames", [])),
        categories=list(names.get("categories", [])),
        has_status="status" in (storage.get("subresources") or {}),
        returns_deleted=True,
        printer_columns=list(storage.get("additionalPrinterColumns", [])),
        crd_name=crd["metadata"]["name"],
    )
    for v in served:
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        if schema:
            rt.validators[v["name"]] = SchemaValidator(schema)
    return rt
