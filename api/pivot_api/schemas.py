"""Request and response bodies every domain shares: the error envelope, plain messages, and
how names and optional fields are documented. Each domain's own are in its `schemas.py`, field
for field as the API reference gives them."""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    Field,
    GetJsonSchemaHandler,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from pivot_schema.text import name_pattern


class NamePattern:
    """Documents `check_name` in the schema: no control or format characters."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["pattern"] = name_pattern()
        return schema


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorResponse(BaseModel):
    error: ErrorBody


def absent_not_null(schema: dict[str, Any]) -> None:
    """Document optional fields as absent-or-valued, not nullable: `{"config_path": null}`
    is not a request anyone should send, and a null is what fuzzers try first."""
    for prop in schema.get("properties", {}).values():
        branches = prop.get("anyOf")
        if branches and {"type": "null"} in branches:
            rest = [b for b in branches if b != {"type": "null"}]
            del prop["anyOf"]
            if len(rest) == 1:
                prop.update(rest[0])
            else:
                prop["anyOf"] = rest
            if prop.get("default", 0) is None:
                del prop["default"]


class MessageResponse(BaseModel):
    message: str
