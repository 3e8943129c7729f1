"""The ModelServer CRD file is canonical; pivot_schema.modelserver mirrors it field for field,
and refuses the sources its CEL rules refuse."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from pivot_local.kube.validation import apply_defaults
from pivot_schema.crd import GROUP, VERSION
from pivot_schema.modelserver import (
    MS_KIND,
    MS_PLURAL,
    MS_SHORT_NAME,
    ModelServerSpec,
    ModelServerStatus,
    ModelSource,
    ServerPhase,
    StoredModelServer,
    modelserver_crd_path,
    new_model_server,
)
from tests.unit.schema.test_crd_schema import _compare

CRD = yaml.safe_load(modelserver_crd_path().read_text())
VERSION_DEF = CRD["spec"]["versions"][0]
ROOT = VERSION_DEF["schema"]["openAPIV3Schema"]
SHA = "a" * 64


@pytest.mark.parametrize(
    ("part", "model"), [("spec", ModelServerSpec), ("status", ModelServerStatus)]
)
def test_models_mirror_the_crd(part: str, model: type[BaseModel]) -> None:
    schema = model.model_json_schema(by_alias=True)
    _compare(part, ROOT["properties"][part], schema, schema.get("$defs", {}))


def test_names_phases_and_columns_match_the_crd() -> None:
    names = CRD["spec"]["names"]
    assert (CRD["spec"]["group"], VERSION_DEF["name"]) == (GROUP, VERSION)
    assert (names["kind"], names["plural"]) == (MS_KIND, MS_PLURAL)
    assert MS_SHORT_NAME in names["shortNames"] and "pivot" in names["categories"]
    assert ROOT["properties"]["status"]["properties"]["phase"]["enum"] == [
        p.value for p in ServerPhase
    ]
    status = ROOT["properties"]["status"]["properties"]
    spec = ROOT["properties"]["spec"]["properties"]
    for column in VERSION_DEF["additionalPrinterColumns"]:
        part, _, field = column["jsonPath"].removeprefix(".").partition(".")
        if part in ("status", "spec"):
            assert field in (status if part == "status" else spec), column
    scale = VERSION_DEF["subresources"]["scale"]
    assert scale["specReplicasPath"] == ".spec.replicas"


@pytest.mark.parametrize(
    ("source", "ok"),
    [
        ({"session": "sess-1"}, True),
        ({"session": "sess-1", "checkpoint": "latest"}, True),
        ({"uri": "s3://bucket/models/m.pth", "sha256": SHA}, True),
        ({}, False),
        ({"session": "sess-1", "uri": "s3://b/k", "sha256": SHA}, False),
        ({"uri": "s3://bucket/m.pth"}, False),
        ({"uri": "http://bucket/m.pth", "sha256": SHA}, False),
        ({"uri": "s3://bucket/m.pth", "sha256": "A" * 64}, False),
    ],
)
def test_source_rules_are_the_crds(source: dict[str, Any], ok: bool) -> None:
    if ok:
        ModelSource.model_validate(source)
    else:
        with pytest.raises(ValidationError):
            ModelSource.model_validate(source)
    # The CRD states the same rules (its CEL); the model is what the API and the operator run.
    rules = ROOT["properties"]["spec"]["properties"]["source"]["x-kubernetes-validations"]
    assert [r["rule"] for r in rules] == [
        "has(self.session) != has(self.uri)",
        "!has(self.uri) || has(self.sha256)",
    ]


def test_a_manifest_defaulted_by_the_crd_reads_back() -> None:
    spec = ModelServerSpec.model_validate({"source": {"session": "sess-1"}})
    manifest = new_model_server("lesions", spec)
    manifest["spec"] = apply_defaults(manifest["spec"], ROOT["properties"]["spec"])
    manifest["metadata"].update(namespace="default", uid="u-1")
    stored = StoredModelServer.model_validate(manifest)
    assert stored.replicas == 1
    assert stored.spec.source.checkpoint == "best"
    assert stored.spec.batching is None  # defaults only fill present objects
    assert stored.spec.threshold == 0.5
