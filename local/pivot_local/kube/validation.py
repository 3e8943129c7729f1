"""CRD openAPIV3Schema: pruning and validation with the API server's error wording."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema

_K8S_ONLY = (
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
    "nullable",
    "example",
    "externalDocs",
)


def to_json_schema(schema: Any) -> Any:
    """Turn an OpenAPI v3.0 structural schema into a draft-4 JSON schema."""
    if isinstance(schema, list):
        return [to_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _K8S_ONLY:
            continue
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {k: to_json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            out[key] = to_json_schema(value)
        else:
            out[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        # The anyOf in such a schema is documentation; the type check is int-or-string.
        out.pop("anyOf", None)
        out["type"] = ["integer", "string"]
    if schema.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def prune(value: Any, schema: dict[str, Any] | None, root: bool = False) -> Any:
    """Drop fields the schema does not know, as a real server does on decode."""
    if schema is None:
        return value
    if isinstance(value, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
            return value
        props: dict[str, Any] = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        out: dict[str, Any] = {}
        for k, v in value.items():
            sub = props.get(k) if k in props else addl if isinstance(addl, dict) else None
            if v is None and sub is not None and not sub.get("nullable"):
                continue  # nulls of non-nullable fields are dropped, not rejected
            if root and k in ("apiVersion", "kind", "metadata"):
                out[k] = v
            elif k in props:
                out[k] = prune(v, props[k])
            elif isinstance(addl, dict):
                out[k] = prune(v, addl)
            elif addl is True or schema.get("x-kubernetes-preserve-unknown-fields"):
                out[k] = v
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(v, schema["items"]) for v in value]
    return value


def apply_defaults(value: Any, schema: dict[str, Any] | None) -> Any:
    """Fill in `default`s of absent properties under present objects, as the server does."""
    if schema is None:
        return value
    if isinstance(value, dict):
        out = dict(value)
        props: dict[str, Any] = schema.get("properties") or {}
        for k, sub in props.items():
            if k not in out and "default" in sub:
                out[k] = json.loads(json.dumps(sub["default"]))
            if k in out:
                out[k] = apply_defaults(out[k], sub)
        addl = schema.get("additionalProperties")
        if isinstance(addl, dict):
            for k in out:
                if k not in props:
                    out[k] = apply_defaults(out[k], addl)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(v, schema["items"]) for v in value]
    return value


def unknown_fields(value: Any, schema: dict[str, Any] | None, path: str = "",
                   root: bool = False) -> list[str]:
    """Paths of the fields pruning would drop, for fieldValidation Strict/Warn."""
    if schema is None:
        return []
    out: list[str] = []
    if isinstance(value, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
            return []
        props: dict[str, Any] = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        for k, v in value.items():
            sub = f"{path}.{k}" if path else k
            if root and k in ("apiVersion", "kind", "metadata"):
                continue
            if k in props:
                out.extend(unknown_fields(v, props[k], sub))
            elif isinstance(addl, dict):
                out.extend(unknown_fields(v, addl, sub))
            elif not (addl is True or schema.get("x-kubernetes-preserve-unknown-fields")):
                out.append(sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            out.extend(unknown_fields(v, schema["items"], f"{path}[{i}]"))
    return out


def _path(err: jsonschema.ValidationError) -> str:
    out = ""
    for p in err.absolute_path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (dict, list)):
        return '"' + json.dumps(value, separators=(",", ":")).replace('"', '\\"') + '"'
    return json.dumps(value)


def _cause(err: jsonschema.ValidationError) -> dict[str, str]:
    field = _path(err)
    v, inst = err.validator, err.instance
    if v == "required":
        missing = err.message.split("'")[1] if "'" in err.message else ""
        field = f"{field}.{missing}" if field else missing
        return {"reason": "FieldValueRequired", "message": "Required value", "field": field}
    if v == "enum":
        # The server lists every allowed value quoted, non-strings as their JSON.
        allowed = ", ".join(
            json.dumps(x if isinstance(x, str) else json.dumps(x)) for x in err.validator_value
        )
        return {
            "reason": "FieldValueNotSupported",
            "message": f"Unsupported value: {_fmt(inst)}: supported values: {allowed}",
            "field": field,
        }
    if v == "type":
        want = err.validator_value
        want_s = " or ".join(want) if isinstance(want, list) else want
        return {
            "reason": "FieldValueTypeInvalid",
            # The real server quotes the offending type, not the value, for type errors.
            "message": f"Invalid value: {_fmt(_json_type(inst))}: {field} in body must be of "
            f"type {want_s}: "
            f"{_fmt(_json_type(inst))}",
            "field": field,
        }
    if v == "format":
        return {
            "reason": "FieldValueInvalid",
            "message": f"Invalid value: {_fmt(inst)}: {field} in body must be of type "
            f"{err.validator_value}: {_fmt(inst)}",
            "field": field,
        }
    detail = {
        "minimum": lambda: (
            f"should be greater than {err.schema.get('minimum')}"
            if err.schema.get("exclusiveMinimum") is True
            else f"should be greater than or equal to {err.validator_value}"
        ),
        "maximum": lambda: (
            f"should be less than {err.schema.get('maximum')}"
            if err.schema.get("exclusiveMaximum") is True
            else f"should be less than or equal to {err.validator_value}"
        ),
        "maxLength": lambda: f"should be at most {err.validator_value} chars long",
        "minLength": lambda: f"should be at least {err.validator_value} chars long",
        "maxItems": lambda: f"should have at most {err.validator_value} items",
        "minItems": lambda: f"should have at least {err.validator_value} items",
        "pattern": lambda: f"should match '{err.validator_value}'",
        "multipleOf": lambda: f"should be a multiple of {err.validator_value}",
    }.get(str(v))
    text = detail() if detail else err.message
    reason = "FieldValueTooLong" if v in ("maxLength", "maxItems") else "FieldValueInvalid"
    return {
        "reason": reason,
        "message": f"Invalid value: {_fmt(inst)}: {field} in body {text}",
        "field": field,
    }


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:?\d{2})?$")
# Only the formats the server enforces and that our CRDs use; others pass, as they do there.
_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("date-time")
def _is_date_time(value: object) -> bool:
    return not isinstance(value, str) or bool(_DATE_TIME.match(value))


class SchemaValidator:
    """Validates objects of one CRD version."""

    def __init__(self, openapi_schema: dict[str, Any]) -> None:
        self.openapi = openapi_schema
        self._validator = jsonschema.Draft4Validator(to_json_schema(openapi_schema),
                                                     format_checker=_FORMATS)

    def prune(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Prune unknown fields, then default absent ones (the server's order)."""
        pruned: dict[str, Any] = prune(obj, self.openapi, root=True)
        meta = pruned.get("metadata")
        defaulted: dict[str, Any] = apply_defaults(pruned, self.openapi)
        if meta is not None:
            defaulted["metadata"] = meta  # metadata is the server's, never defaulted
        return defaulted

    def unknown(self, obj: dict[str, Any]) -> list[str]:
        return unknown_fields(obj, self.openapi, root=True)

    def causes(self, obj: dict[str, Any]) -> list[dict[str, str]]:
        body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
        errors = sorted(self._validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        return [_cause(e) for e in _leaf_errors(errors)]


def _leaf_errors(errors: list[jsonschema.ValidationError]) -> list[jsonschema.ValidationError]:
    # anyOf failures carry their branch errors in .context; report the most specific ones.
    out: list[jsonschema.ValidationError] = []
    for e in errors:
        if e.validator in ("anyOf", "oneOf") and e.context:
            out.extend(_leaf_errors(list(e.context))[:1])
        else:
            out.append(e)
    return out


# -- the CRD's own schema: what the server refuses to establish ------------------------------

_JUNCTORS = ("allOf", "anyOf", "oneOf")
_INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]
# Keys a schema inside allOf/anyOf/oneOf/not must leave to the node that holds it.
_NOT_IN_JUNCTORS = {
    "type": "must be empty to be structural",
    "description": "must be empty to be structural",
    "default": "must be undefined to be structural",
    "nullable": "must be false to be structural",
    "additionalProperties": "must be undefined to be structural",
    "x-kubernetes-preserve-unknown-fields": "must be false to be structural",
    "x-kubernetes-int-or-string": "must be false to be structural",
    "x-kubernetes-embedded-resource": "must be false to be structural",
    "x-kubernetes-validations": "must be empty to be structural",
}
_EMPTY_TYPE = {
    "root": "must not be empty at the root",
    "field": "must not be empty for specified object fields",
    "item": "must not be empty for specified array items",
}


def _junctor_causes(schema: Any, path: str, skip_any_of: bool) -> list[dict[str, str]]:
    """What a value validation nested in a junctor may not say (`type` in anyOf is allowed
    only as x-kubernetes-int-or-string's two branches)."""
    out: list[dict[str, str]] = []
    if not isinstance(schema, dict):
        return out
    for name in _JUNCTORS:
        if name == "anyOf" and skip_any_of:
            continue
        for i, sub in enumerate(schema.get(name) or []):
            out += _nested_causes(sub, f"{path}.{name}[{i}]")
    if isinstance(schema.get("not"), dict):
        out += _nested_causes(schema["not"], f"{path}.not")
    return out


def _nested_causes(schema: Any, path: str) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    if not isinstance(schema, dict):
        return out
    for key, why in _NOT_IN_JUNCTORS.items():
        if key in schema and schema[key] not in (False, None):
            out.append(
                {"reason": "FieldValueForbidden", "field": f"{path}.{key}",
                 "message": f"Forbidden: {why}"}
            )
    for key, sub in (schema.get("properties") or {}).items():
        out += _nested_causes(sub, f"{path}.properties[{key}]")
    if isinstance(schema.get("items"), dict):
        out += _nested_causes(schema["items"], f"{path}.items")
    return out + _junctor_causes(schema, path, False)


def structural_causes(schema: Any, path: str, level: str = "root") -> list[dict[str, str]]:
    """Why the API server would refuse `schema` as a CRD version's openAPIV3Schema, for the
    rules a structural schema must follow and CEL's need of a type (apiextensions-apiserver's
    ValidateStructural and the x-kubernetes-validations type check)."""
    out: list[dict[str, str]] = []
    if not isinstance(schema, dict):
        return out
    int_or_string = bool(schema.get("x-kubernetes-int-or-string"))
    untyped = not schema.get("type") and not int_or_string
    if untyped and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out.append(
            {"reason": "FieldValueRequired", "field": f"{path}.type",
             "message": f"Required value: {_EMPTY_TYPE[level]}"}
        )
    if untyped and schema.get("x-kubernetes-validations"):
        # CEL has no type for an untyped node (not even for preserve-unknown-fields), so the
        # server cannot compile its rules and refuses the CRD.
        out.append(
            {"reason": "InternalError", "field": f"{path}.x-kubernetes-validations",
             "message": "Internal error: internal error: failed to construct type information "
             "for x-kubernetes-validations rules: unable to convert structural schema to CEL "
             "declarations"}
        )
    for key, sub in (schema.get("properties") or {}).items():
        out += structural_causes(sub, f"{path}.properties[{key}]", "field")
    if isinstance(schema.get("items"), dict):
        out += structural_causes(schema["items"], f"{path}.items", "item")
    if isinstance(schema.get("additionalProperties"), dict):
        out += structural_causes(schema["additionalProperties"], f"{path}.additionalProperties",
                                 "field")
    skip = schema.get("anyOf") == _INT_OR_STRING_ANY_OF
    return out + _junctor_causes(schema, path, skip)


def crd_schema_causes(crd: dict[str, Any]) -> list[dict[str, str]]:
    """structural_causes for every version of a CRD, at the paths the server names."""
    out: list[dict[str, str]] = []
    for i, version in enumerate((crd.get("spec") or {}).get("versions") or []):
        schema = ((version or {}).get("schema") or {}).get("openAPIV3Schema")
        if schema is not None:
            out += structural_causes(schema, f"spec.versions[{i}].schema.openAPIV3Schema")
    return out
