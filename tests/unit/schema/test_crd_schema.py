"""The CRD file is canonical; pivot_schema's models must mirror it field for field."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from pivot_schema.crd import (
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAME,
    VERSION,
    Phase,
    TrainingSessionSpec,
    TrainingSessionStatus,
    crd_manifest_path,
)

CRD = yaml.safe_load(crd_manifest_path().read_text())
VERSION_DEF = CRD["spec"]["versions"][0]
ROOT = VERSION_DEF["schema"]["openAPIV3Schema"]

_JSON_TYPES = {"integer", "number", "string", "boolean", "array", "object"}


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return defs[schema["$ref"].split("/")[-1]]
    return schema


def _types(schema: dict[str, Any], defs: dict[str, Any]) -> set[str]:
    """The JSON types a pydantic property admits (null left out: every field is optional)."""
    schema = _resolve(schema, defs)
    if "anyOf" in schema:
        return set().union(*(_types(s, defs) for s in schema["anyOf"])) - {"null"}
    if "properties" in schema or "additionalProperties" in schema:
        return {"object"}
    if "enum" in schema:
        return _enum_types(schema["enum"])
    t = schema.get("type")
    return {t} if t in _JSON_TYPES else set()


def _enum_types(values: list[Any]) -> set[str]:
    return {"boolean" if isinstance(v, bool) else "string" for v in values}


def _crd_types(schema: dict[str, Any]) -> set[str]:
    if schema.get("x-kubernetes-int-or-string"):
        return {"integer", "string"}
    if "type" not in schema:
        # An untyped node (true, false or "auto"): structural only with preserve-unknown-fields,
        # and then its enum is what it admits.
        assert schema.get("x-kubernetes-preserve-unknown-fields") and "enum" in schema, schema
        return _enum_types(schema["enum"])
    return {schema["type"]}


def _compare(path: str, crd: dict[str, Any], model: dict[str, Any], defs: dict[str, Any]) -> None:
    model = _resolve(model, defs)
    crd_props = crd.get("properties", {})
    model_props = model.get("properties", {})
    extra_ok = crd.get("x-kubernetes-preserve-unknown-fields", False)
    assert set(crd_props) == set(model_props) or (
        extra_ok and set(crd_props) <= set(model_props) | set(crd_props)
    ), f"{path}: CRD {sorted(crd_props)} != model {sorted(model_props)}"
    assert set(crd_props) == set(model_props), f"{path}: fields differ"
    for name, sub in crd_props.items():
        msub = _resolve(model_props[name], defs)
        if "anyOf" in msub:
            non_null = [s for s in msub["anyOf"] if s.get("type") != "null"]
            msub = _resolve(non_null[0], defs) if len(non_null) == 1 else msub
        assert _crd_types(sub) == _types(msub, defs), f"{path}.{name}: types differ"
        if sub.get("type") == "object" and "properties" in sub:
            _compare(f"{path}.{name}", sub, msub, defs)
        if sub.get("type") == "array" and "properties" in sub.get("items", {}):
            _compare(f"{path}.{name}[]", sub["items"], msub["items"], defs)
        if "enum" in sub:
            assert set(sub["enum"]) == set(msub.get("enum", [])), f"{path}.{name}: enum differs"


@pytest.mark.parametrize(
    ("part", "model"), [("spec", TrainingSessionSpec), ("status", TrainingSessionStatus)]
)
def test_models_mirror_the_crd(part: str, model: type[BaseModel]) -> None:
    schema = model.model_json_schema(by_alias=True)
    _compare(part, ROOT["properties"][part], schema, schema.get("$defs", {}))


def test_names_match_the_crd() -> None:
    names = CRD["spec"]["names"]
    assert CRD["spec"]["group"] == GROUP
    assert VERSION_DEF["name"] == VERSION
    assert names["kind"] == KIND
    assert names["plural"] == PLURAL
    assert SHORT_NAME in names["shortNames"]
    assert "pivot" in names["categories"]
    assert "status" in VERSION_DEF["subresources"]


def test_phase_enum_matches() -> None:
    crd_phases = ROOT["properties"]["status"]["properties"]["phase"]["enum"]
    assert crd_phases == [p.value for p in Phase]


def test_config_keeps_unknown_keys() -> None:
    spec = TrainingSessionSpec.model_validate({"config": {"epochs": 3, "image_size": 32}})
    dumped = spec.model_dump(by_alias=True, exclude_none=True)
    assert dumped["config"] == {"epochs": 3, "image_size": 32}
    assert ROOT["properties"]["spec"]["properties"]["config"][
        "x-kubernetes-preserve-unknown-fields"
    ]


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"epochs": 0},
        {"epochs": "ten"},
        {"epochs": 2, "learning_rate": 0},
        {"epochs": 2, "batch_size": 0},
    ],
)
def test_models_and_crd_refuse_the_same_configs(config: dict[str, Any]) -> None:
    import jsonschema

    with pytest.raises(ValidationError):
        TrainingSessionSpec.model_validate({"config": config})
    validator = jsonschema.Draft4Validator(ROOT["properties"]["spec"])
    assert list(validator.iter_errors({"config": config})), config


def test_printer_columns_point_at_status_fields() -> None:
    status_props = ROOT["properties"]["status"]["properties"]
    for column in VERSION_DEF["additionalPrinterColumns"]:
        path = column["jsonPath"].lstrip(".").split(".")
        if path[0] == "status":
            assert path[1] in status_props, column
