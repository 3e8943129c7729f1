"""The training config (PIVOT_CONFIG, JSON) as a validated, typed object.

Parsed before torch is imported so that a bad config fails fast with one clear line.
Unknown keys are tolerated (the CRD preserves them and other tools may add their own).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "step")
LOSSES = ("focal", "dice", "bce")
METRICS = (
    "train_loss",
    "val_loss",
    "train_accuracy",
    "val_accuracy",
    "val_dice",
    "val_froc",
    "learning_rate",
)


class ConfigError(ValueError):
    """The config cannot be trained; the message is shown to the user as is."""


@dataclass(frozen=True)
class CheckpointConfig:
    every_epochs: int = 1
    keep_last: int | None = None  # None keeps every checkpoint
    keep_best: int = 1
    metric: str = "val_loss"
    mode: str = "min"


DATASET_SOURCES = ("synthetic", "s3", "path")


@dataclass(frozen=True)
class DatasetConfig:
    """Where the images come from: generated (default), npz shards under an S3 prefix, or
    npz shards in a mounted directory; shards live in `train/` and `val/` below it."""

    source: str = "synthetic"
    prefix: str = ""  # s3: key prefix in `bucket`
    bucket: str | None = None  # s3: defaults to the session's bucket (PIVOT_S3_BUCKET)
    path: str = ""  # path: a directory


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 42
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: str = "none"
    warmup_epochs: int = 0
    lr_step_size: int = 2
    lr_gamma: float = 0.5
    min_lr_ratio: float = 0.0
    loss: str = "focal"
    focal_alpha: float = 0.75
    focal_gamma: float = 2.0
    image_size: int = 32
    num_train: int = 256
    num_val: int = 64
    base_channels: int = 8
    num_workers: int = 0
    log_every_steps: int = 10
    compile: bool = False
    sync_batchnorm: bool = True  # distributed: BatchNorm statistics over the global batch
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    ignored_keys: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("ignored_keys")
        return data


def _int(raw: dict[str, Any], key: str, default: int | None, lo: int, hi: int = 10**9) -> int:
    value = raw.get(key, default)
    if value is None:
        raise ConfigError(f"'{key}' is required")
    # bool is an int subclass; `epochs: true` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ConfigError(f"'{key}' must be an integer, got {value!r}")
    if not lo <= int(value) <= hi:
        raise ConfigError(f"'{key}' must be between {lo} and {hi}, got {value}")
    return int(value)


def _float(raw: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"'{key}' must be a number, got {value!r}")
    if not lo <= float(value) <= hi:
        raise ConfigError(f"'{key}' must be between {lo} and {hi}, got {value}")
    return float(value)


def _bool(raw: dict[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"'{key}' must be true or false, got {value!r}")
    return value


def _choice(raw: dict[str, Any], key: str, default: str, choices: tuple[str, ...]) -> str:
    value = raw.get(key, default)
    if value is None:
        value = default
    if not isinstance(value, str) or value.lower() not in choices:
        raise ConfigError(f"'{key}' must be one of {', '.join(choices)}, got {value!r}")
    return value.lower()


def _checkpoint(raw: Any) -> CheckpointConfig:
    if raw is None:
        return CheckpointConfig()
    if not isinstance(raw, dict):
        raise ConfigError("'checkpoint' must be a mapping")
    # Accept the CR's camelCase spelling too (spec.checkpoint), so the operator can pass it as is.
    aliases = {"everyEpochs": "every_epochs", "keepLast": "keep_last", "keepBest": "keep_best"}
    ck: dict[str, Any] = {aliases.get(str(k), str(k)): v for k, v in raw.items()}
    metric = ck.get("metric") or "val_loss"
    if metric not in METRICS:
        choices = ", ".join(METRICS)
        raise ConfigError(f"'checkpoint.metric' must be one of {choices}, got {metric!r}")
    default_mode = "min" if metric.endswith("loss") else "max"
    keep_last = ck.get("keep_last")
    return CheckpointConfig(
        every_epochs=_int(ck, "every_epochs", 1, 1) if ck.get("every_epochs") is not None else 1,
        keep_last=None if keep_last is None else _int(ck, "keep_last", None, 1),
        keep_best=_int(ck, "keep_best", 1, 0) if ck.get("keep_best") is not None else 1,
        metric=metric,
        mode=_choice(ck, "mode", default_mode, ("min", "max")),
    )


def _dataset(raw: Any) -> DatasetConfig:
    # A bare name (the reference API's `"dataset": "lesions-v2"`) is a label, not a source.
    if raw is None or isinstance(raw, str):
        return DatasetConfig()
    if not isinstance(raw, dict):
        raise ConfigError("'dataset' must be a mapping")
    source = _choice(raw, "source", "synthetic", DATASET_SOURCES)
    prefix, path, bucket = raw.get("prefix", ""), raw.get("path", ""), raw.get("bucket")
    if source == "s3" and not (isinstance(prefix, str) and prefix.strip("/")):
        raise ConfigError("'dataset.prefix' is required for source s3")
    if source == "path" and not (isinstance(path, str) and path):
        raise ConfigError("'dataset.path' is required for source path")
    if bucket is not None and not isinstance(bucket, str):
        raise ConfigError("'dataset.bucket' must be a string")
    return DatasetConfig(
        source=source, prefix=str(prefix).strip("/"), bucket=bucket or None, path=str(path)
    )


def parse_config(raw: str | dict[str, Any] | None) -> TrainConfig:
    """Validate a config (JSON text or a mapping); raises ConfigError with a one-line message."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise ConfigError("PIVOT_CONFIG is empty: a config with at least 'epochs' is required")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"PIVOT_CONFIG is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError("the training config must be a JSON object")
    if "epochs" not in raw:
        raise ConfigError("'epochs' is required")
    image_size = _int(raw, "image_size", 32, 8, 1024)
    if image_size % 4:
        # Two 2x poolings in the UNet: sizes must divide by 4 to come back to the input size.
        raise ConfigError(f"'image_size' must be a multiple of 4, got {image_size}")
    cfg = TrainConfig(
        epochs=_int(raw, "epochs", None, 1, 100_000),
        batch_size=_int(raw, "batch_size", 32, 1, 65_536),
        learning_rate=_float(raw, "learning_rate", 1e-3, 1e-12, 10.0),
        seed=_int(raw, "seed", 42, 0, 2**31 - 1),
        optimizer=_choice(raw, "optimizer", "adam", OPTIMIZERS),
        weight_decay=_float(raw, "weight_decay", 0.0, 0.0, 1.0),
        momentum=_float(raw, "momentum", 0.9, 0.0, 1.0),
        scheduler=_choice(raw, "scheduler", "none", SCHEDULERS),
        warmup_epochs=_int(raw, "warmup_epochs", 0, 0),
        lr_step_size=_int(raw, "lr_step_size", 2, 1),
        lr_gamma=_float(raw, "lr_gamma", 0.5, 0.0, 1.0),
        min_lr_ratio=_float(raw, "min_lr_ratio", 0.0, 0.0, 1.0),
        loss=_choice(raw, "loss", "focal", LOSSES),
        focal_alpha=_float(raw, "focal_alpha", 0.75, 0.0, 1.0),
        focal_gamma=_float(raw, "focal_gamma", 2.0, 0.0, 10.0),
        image_size=image_size,
        num_train=_int(raw, "num_train", 256, 1, 10_000_000),
        num_val=_int(raw, "num_val", 64, 1, 10_000_000),
        base_channels=_int(raw, "base_channels", 8, 1, 512),
        num_workers=_int(raw, "num_workers", 0, 0, 64),
        log_every_steps=_int(raw, "log_every_steps", 10, 0, 10**9),
        compile=_bool(raw, "compile", False),
        sync_batchnorm=_bool(raw, "sync_batchnorm", True),
        dataset=_dataset(raw.get("dataset")),
        checkpoint=_checkpoint(raw.get("checkpoint")),
        ignored_keys=tuple(
            sorted(
                set(raw) - _KNOWN | ({"dataset"} if isinstance(raw.get("dataset"), str) else set())
            )
        ),
    )
    return cfg


_KNOWN = {f for f in TrainConfig.__dataclass_fields__ if f != "ignored_keys"}
