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


# A listing is for people choosing a config: a directory with more is not a configs directory.
MAX_LISTED = 500
_SUFFIXES = (".yaml", ".yml", ".json")


def list_configs(configs_dir: Path) -> list[tuple[str, dict[str, Any] | None, str | None]]:
    """Every config file in `configs_dir` (recursively, symlinks out of it skipped), as
    (config_path, the config as validated or None, why not), sorted by path. `config_path` is
    in the reference's form (`configs/train.yaml`), which `create` takes."""
    root = configs_dir.resolve()
    if not root.is_dir():
        return []
    found: list[tuple[str, dict[str, Any] | None, str | None]] = []
    for path in sorted(root.rglob("*")):
        if len(found) >= MAX_LISTED:
            break
        if path.suffix not in _SUFFIXES or not path.is_file():
            continue
        if not path.resolve().is_relative_to(root):
            continue
        shown_as = str(PurePosixPath(root.name, *path.relative_to(root).parts))
        try:
            config = validate_config(load_config_file(path, shown_as), config_path=shown_as)
        except (ValidationError, OSError) as exc:
            found.append((shown_as, None, getattr(exc, "message", None) or str(exc)))
        else:
            found.append((shown_as, config, None))
    return found
