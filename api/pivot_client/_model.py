"""The base of every model the API returns, and the behaviours some generated models get
through the generator's `--base-class-map` (see pivot_client._codegen): written here once,
so regenerating the models from the OpenAPI document keeps them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, get_origin

from pydantic import BaseModel, ConfigDict

FINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "stopped"})


class PIVOTModel(BaseModel):
    """Reads like the JSON it came from (`session["session_id"]`, `"val_loss" in record`), so
    code written against plain dicts, like the reference's examples, runs unchanged. Unknown
    fields are kept, not dropped, so a newer server never breaks an older client."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def __getitem__(self, key: str) -> Any:
        if key in type(self).model_fields:
            return getattr(self, key)
        extra = self.model_extra or {}
        if key in extra:
            return extra[key]
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (
            key in type(self).model_fields or key in (self.model_extra or {})
        )

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def keys(self) -> list[str]:
        return [*type(self).model_fields, *(self.model_extra or {})]

    def to_dict(self) -> dict[str, Any]:
        """The JSON the server sent (plus defaults), for printing or `json.dumps`."""
        return self.model_dump(mode="json", by_alias=True)


class ItemsModel(PIVOTModel):
    """A list answer (`{"alerts": [...]}`) that iterates over its items."""

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        return iter(getattr(self, _items_field(type(self))))


class SizedItemsModel(ItemsModel):
    """A list answer that also has a length (`len(client.get_metrics(id))`)."""

    def __len__(self) -> int:
        return len(getattr(self, _items_field(type(self))))


def _items_field(model: type[BaseModel]) -> str:
    # The first list field: `webhook_id` or `pending` may come before it.
    return next(n for n, f in model.model_fields.items() if get_origin(f.annotation) is list)


class RecordModel(PIVOTModel):
    """One epoch: `epoch`, `timestamp` and the metric values as extra keys."""

    @property
    def values(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SessionModel(PIVOTModel):
    @property
    def finished(self) -> bool:
        return self.get("status") in FINAL_STATUSES


class WebhookModel(PIVOTModel):
    @property
    def secret(self) -> str | None:
        """The signing secret: only in the create answer (WebhookCreated), so None here."""
        return self.get("secret")
