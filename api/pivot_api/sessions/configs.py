"""Training configs: where a `config_path` may point, and how a config is validated."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from pivot_api.errors import NotFoundError, ValidationError
from pivot_schema.config import ConfigError, ConfigTooLargeError, check_config


def resolve_config_path(configs_dir: Path, config_path: str) -> Path:
    """The file `config_path` names inside `configs_dir`.

    Accepts a path relative to the configs dir (`train.yaml`) and the reference's form that
    names the dir itself (`configs/train.yaml`). Anything that would leave the configs dir
    (absolute paths, `..`, symlinks pointing out) is refused.
    """
    root = configs_dir.resolve()
    relative = PurePosixPath(config_path.replace("\\", "/"))
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise ValidationError(
            "config_path must be a relative path inside the configs directory",
            {"field": "config_path", "value": config_path},
        )
    candidates = [relative]
    # The reference's `configs/train.yaml`: relative to the configs dir's parent.
    if len(relative.parts) > 1 and relative.parts[0] == root.name:
        candidates.append(PurePosixPath(*relative.parts[1:]))
    for rel in candidates:
        candidate = (root / rel).resolve()
        if not candidate.is_relative_to(root):
            raise ValidationError(
                "config_path must be a relative path inside the configs directory",
                {"field": "config_path", "value": config_path},
            )
        if candidate.is_file():
            return candidate
    raise NotFoundError(
        f"config file not found: {config_path}", {"field": "config_path", "value": config_path}
    )


def load_config_file(path: Path, shown_as: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValidationError(
            f"config file is not valid YAML: {shown_as}",
            {"field": "config_path", "value": shown_as, "reason": str(exc)},
        ) from exc
    if not isinstance(data, dict):
        raise ValidationError(
            f"config file must hold a mapping: {shown_as}",
            {"field": "config_path", "value": shown_as},
        )
    return data


def validate_config(raw: Any, *, config_path: str | None = None) -> dict[str, Any]:
    """The config as it is to be stored, checked by the trainer's own validation
    (pivot_schema.config): what the trainer would refuse is a 422 naming the field."""
    try:
        return check_config(raw)
    except ConfigError as exc:
        field = ".".join(p for p in ("config", exc.field) if p)
        details: dict[str, Any] = {"field": field, "reason": str(exc)}
        if config_path is not None:
            details["config_path"] = config_path
        if isinstance(exc, ConfigTooLargeError):
            details.update(size_bytes=exc.size, max_bytes=exc.max_bytes)
        raise ValidationError(f"invalid training config: {exc}", details) from None
