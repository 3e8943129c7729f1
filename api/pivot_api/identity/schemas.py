"""Bodies of the identity route."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class WhoAmI(BaseModel):
    auth_enabled: bool = Field(description="Whether this API asks for keys at all.")
    name: str | None = Field(
        default=None, description="The key's name (absent when auth is off)."
    )
    scope: Literal["read", "write", "admin"] | None = Field(
        description="What the key may do: read (GET and streams), write (also create, start, "
        "stop, delete), admin (also webhooks). With auth off: admin. Null when keys are on "
        "and the request sent none (a client's way to learn it must ask for one)."
    )
