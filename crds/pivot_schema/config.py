"""The training config: the one validation every door runs.

The trainer parses its config (PIVOT_CONFIG, JSON) with `parse_config` before torch is
imported and exits with EXIT_CONFIG_ERROR on a ConfigError. The API runs `check_config` on a
create before it writes the TrainingSession, the operator runs it before it creates pods, and
the CRD's openAPIV3Schema states the part a schema can (the scalar keys' types, bounds and
choices: `config_json_schema`, checked equal to the CRD by tests/unit/schema). So a config the
trainer would refuse is refused at the door, with the same message, naming the same field.

Unknown keys are tolerated (the CRD preserves them and other tools may add their own).
No torch here: every part of PIVOT imports this module.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal

# The trainer's exit code for a config (or environment) it cannot train: permanent, the
# operator does not retry it.
EXIT_CONFIG_ERROR = 2

# The largest config a session may carry, as compact JSON. It travels in the CR (etcd refuses
# objects over ~1.5 MiB) and to the trainer as one environment variable (Linux refuses a
# single one over 128 KiB at exec): 64 KiB leaves room for both.
MAX_CONFIG_BYTES = 64 * 1024
# Nesting deeper than this is no training config.
MAX_CONFIG_DEPTH = 32

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "step")
LOSSES = ("focal", "dice", "bce")
# What the trainer writes to every epoch record (and `train_loss` to the steps stream): the
# metrics a checkpoint may be ranked by and an alert rule may watch.
METRICS = (
    "train_loss",
    "val_loss",
    "train_accuracy",
    "val_accuracy",
    "val_dice",
    "val_froc",
    "learning_rate",
)
DATASET_SOURCES = ("synthetic", "s3", "path")


class ConfigError(ValueError):
    """The config cannot be trained; the message is shown to the user as is.

    `field` is the key's path inside the config (`optimizer`, `checkpoint.metric`), empty
    when the config as a whole is at fault."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class ConfigTooLargeError(ConfigError):
    """More than MAX_CONFIG_BYTES as JSON."""

    def __init__(self, size: int) -> None:
        super().__init__(
            f"the config is {size} bytes as JSON; at most {MAX_CONFIG_BYTES} are allowed"
        )
        self.size = size
        self.max_bytes = MAX_CONFIG_BYTES


@dataclass(frozen=True)
class IntRule:
    default: int | None  # None: required
    lo: int
    hi: int
    multiple_of: int = 1


@dataclass(frozen=True)
class FloatRule:
    default: float
    lo: float
    hi: float


# The scalar keys: their types, bounds, choices and defaults, in one table that the parser,
# the JSON schema (the API's documentation) and the CRD (checked by a test) all follow.
INT_RULES: dict[str, IntRule] = {
    "epochs": IntRule(None, 1, 100_000),
    "batch_size": IntRule(32, 1, 65_536),
    "seed": IntRule(42, 0, 2**31 - 1),
    "warmup_epochs": IntRule(0, 0, 100_000),
    "lr_step_size": IntRule(2, 1, 100_000),
    # Two 2x poolings in the UNet: sizes must divide by 4 to come back to the input size.
    "image_size": IntRule(32, 8, 1024, multiple_of=4),
    "num_train": IntRule(256, 1, 10_000_000),
    "num_val": IntRule(64, 1, 10_000_000),
    "base_channels": IntRule(8, 1, 512),
    "num_workers": IntRule(0, 0, 64),
    "log_every_steps": IntRule(10, 0, 10**9),
}
FLOAT_RULES: dict[str, FloatRule] = {
    "learning_rate": FloatRule(1e-3, 1e-12, 10.0),
    "weight_decay": FloatRule(0.0, 0.0, 1.0),
    "momentum": FloatRule(0.9, 0.0, 1.0),
    "lr_gamma": FloatRule(0.5, 0.0, 1.0),
    "min_lr_ratio": FloatRule(0.0, 0.0, 1.0),
    "focal_alpha": FloatRule(0.75, 0.0, 1.0),
    "focal_gamma": FloatRule(2.0, 0.0, 10.0),
}
# Choices are matched without regard to case and stored in lower case.
CHOICE_RULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "optimizer": ("adam", OPTIMIZERS),
    "scheduler": ("none", SCHEDULERS),
    "loss": ("focal", LOSSES),
}
BOOL_RULES: dict[str, bool] = {"sync_batchnorm": True, "deterministic": False}
# Keys that are true, false, or "auto" (the trainer decides at start, and says why). The CRD
# states them as an enum of the three on a node without a type: a structural schema allows no
# `type` in an anyOf, and a CEL rule cannot reach an untyped field (the API server refuses
# x-kubernetes-validations where it has no CEL type), while an enum is enforced as is.
AUTO: Final = "auto"
Tristate = bool | Literal["auto"]
TRISTATE_RULES: dict[str, Tristate] = {"compile": False, "data_on_device": AUTO}
# What each scalar key means, in the config's JSON schema (OpenAPI, the clients' types) and the
# CRD (`kubectl explain trainingsession.spec.config`); configs/train.yaml says it at length.
DESCRIPTIONS: dict[str, str] = {
    "epochs": "Passes over the training set.",
    "batch_size": "Samples per optimizer step.",
    "seed": "Data, initial weights and shuffling all derive from it.",
    "warmup_epochs": "Linear warmup epochs before the schedule (0: none).",
    "lr_step_size": "step scheduler: epochs between learning-rate drops.",
    "image_size": "Square images, pixels; a multiple of 4.",
    "num_train": "Synthetic training images.",
    "num_val": "Synthetic validation images.",
    "base_channels": "UNet width: channels at full resolution (x2 per level down).",
    "num_workers": "DataLoader worker processes.",
    "log_every_steps": "train_loss every N optimizer steps to the steps stream (0: off).",
    "learning_rate": "Base (peak) learning rate.",
    "weight_decay": "L2 (adam, sgd) or decoupled (adamw) weight decay.",
    "momentum": "sgd only (Nesterov when > 0).",
    "lr_gamma": "step scheduler: learning-rate multiplier at each drop.",
    "min_lr_ratio": "cosine scheduler: final learning rate as a fraction of learning_rate.",
    "focal_alpha": "focal loss: weight of the lesion pixels; background gets 1 - alpha.",
    "focal_gamma": "focal loss: down-weighting of easy pixels (0: weighted BCE).",
    "optimizer": "The optimizer.",
    "scheduler": "Learning-rate schedule after warmup.",
    "loss": "The training loss.",
    "compile": "torch.compile the model: true, false, or auto (on CUDA when the run is long "
    "enough to repay compiling); eager where no compiler is found.",
    "data_on_device": "Hold the data set on the training device and take batches there: true, "
    "false (a DataLoader), or auto (on CUDA when it fits in a quarter of free GPU memory).",
    "sync_batchnorm": "In a multi-process gang, BatchNorm statistics over the global batch.",
    "deterministic": "Deterministic kernels: the same numbers run to run and on resume, "
    "at some speed.",
}


@dataclass(frozen=True)
class CheckpointConfig:
    every_epochs: int = 1
    keep_last: int | None = None  # None keeps every checkpoint
    keep_best: int = 1
    metric: str = "val_loss"
    mode: str = "min"


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
    compile: Tristate = False  # auto: on CUDA, when the run repays the compile (pivot_trainer)
    data_on_device: Tristate = AUTO  # auto: on CUDA, when the data fits (pivot_trainer.pipeline)
    sync_batchnorm: bool = True  # distributed: BatchNorm statistics over the global batch
    deterministic: bool = False  # deterministic kernels: same numbers run to run, some speed lost
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    ignored_keys: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("ignored_keys")
        return data


def _integer(value: Any, key: str) -> int:
    # bool is an int subclass; `epochs: true` is a mistake, not 1. An integral float (4.0,
    # what some JSON writers make of 4) is that integer; 2.5 is no integer, not 2.
    integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not integral:
        raise ConfigError(f"'{key}' must be an integer, got {value!r}", key)
    return int(value)


def _int(raw: dict[str, Any], key: str, rule: IntRule, path: str = "") -> int:
    where = path or key
    value = raw.get(key)
    if value is None:
        if rule.default is None:
            raise ConfigError(f"'{where}' is required", where)
        return rule.default
    number = _integer(value, where)
    if not rule.lo <= number <= rule.hi:
        raise ConfigError(f"'{where}' must be between {rule.lo} and {rule.hi}, got {value}", where)
    if number % rule.multiple_of:
        raise ConfigError(
            f"'{where}' must be a multiple of {rule.multiple_of}, got {number}", where
        )
    return number


def _float(raw: dict[str, Any], key: str, rule: FloatRule) -> float:
    value = raw.get(key)
    if value is None:
        return rule.default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"'{key}' must be a number, got {value!r}", key)
    if not rule.lo <= float(value) <= rule.hi:  # NaN is never in range
        raise ConfigError(f"'{key}' must be between {rule.lo} and {rule.hi}, got {value}", key)
    return float(value)


def _bool(raw: dict[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(f"'{key}' must be true or false, got {value!r}", key)
    return value


def _tristate(raw: dict[str, Any], key: str, default: Tristate) -> Tristate:
    value = raw.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() == AUTO:
        return AUTO
    raise ConfigError(
        f"'{key}' must be true or false, or \"auto\" to decide at start; got {value!r}", key
    )


def _choice(
    raw: dict[str, Any], key: str, default: str, choices: tuple[str, ...], path: str = ""
) -> str:
    where = path or key
    value = raw.get(key)
    if value is None:
        return default
    if not isinstance(value, str) or value.lower() not in choices:
        raise ConfigError(f"'{where}' must be one of {', '.join(choices)}, got {value!r}", where)
    return value.lower()


# The CR's camelCase spelling of the checkpoint section is accepted too (spec.checkpoint).
_CHECKPOINT_ALIASES = {
    "everyEpochs": "every_epochs",
    "keepLast": "keep_last",
    "keepBest": "keep_best",
}
_CHECKPOINT_INTS = {
    "every_epochs": IntRule(1, 1, 10**9),
    "keep_last": IntRule(None, 1, 10**9),
    "keep_best": IntRule(1, 0, 10**9),
}


def _checkpoint(raw: Any) -> CheckpointConfig:
    if raw is None:
        return CheckpointConfig()
    if not isinstance(raw, dict):
        raise ConfigError("'checkpoint' must be a mapping", "checkpoint")
    ck: dict[str, Any] = {_CHECKPOINT_ALIASES.get(str(k), str(k)): v for k, v in raw.items()}
    metric = ck.get("metric") or "val_loss"
    if metric not in METRICS:
        choices = ", ".join(METRICS)
        raise ConfigError(
            f"'checkpoint.metric' must be one of {choices}, got {metric!r}", "checkpoint.metric"
        )
    default_mode = "min" if metric.endswith("loss") else "max"
    keep_last = ck.get("keep_last")
    return CheckpointConfig(
        every_epochs=_int(
            ck, "every_epochs", _CHECKPOINT_INTS["every_epochs"], "checkpoint.every_epochs"
        ),
        keep_last=None
        if keep_last is None
        else _int(ck, "keep_last", _CHECKPOINT_INTS["keep_last"], "checkpoint.keep_last"),
        keep_best=_int(ck, "keep_best", _CHECKPOINT_INTS["keep_best"], "checkpoint.keep_best"),
        metric=metric,
        mode=_choice(ck, "mode", default_mode, ("min", "max"), "checkpoint.mode"),
    )


def _dataset(raw: Any) -> DatasetConfig:
    # A bare name (the reference API's `"dataset": "lesions-v2"`) is a label, not a source.
    if raw is None or isinstance(raw, str):
        return DatasetConfig()
    if not isinstance(raw, dict):
        raise ConfigError("'dataset' must be a mapping", "dataset")
    source = _choice(raw, "source", "synthetic", DATASET_SOURCES, "dataset.source")
    prefix, path, bucket = raw.get("prefix", ""), raw.get("path", ""), raw.get("bucket")
    if source == "s3" and not (isinstance(prefix, str) and prefix.strip("/")):
        raise ConfigError("'dataset.prefix' is required for source s3", "dataset.prefix")
    if source == "path" and not (isinstance(path, str) and path):
        raise ConfigError("'dataset.path' is required for source path", "dataset.path")
    if bucket is not None and not isinstance(bucket, str):
        raise ConfigError("'dataset.bucket' must be a string", "dataset.bucket")
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
    if raw.get("epochs") is None:
        raise ConfigError("'epochs' is required", "epochs")
    # The table's keys in its order: the first bad one is the one reported.
    scalars: dict[str, Any] = {key: _int(raw, key, rule) for key, rule in INT_RULES.items()}
    scalars.update({key: _float(raw, key, rule) for key, rule in FLOAT_RULES.items()})
    scalars.update({key: _choice(raw, key, *rule) for key, rule in CHOICE_RULES.items()})
    scalars.update({key: _bool(raw, key, default) for key, default in BOOL_RULES.items()})
    scalars.update({k: _tristate(raw, k, default) for k, default in TRISTATE_RULES.items()})
    dataset = raw.get("dataset")
    return TrainConfig(
        **scalars,
        dataset=_dataset(dataset),
        checkpoint=_checkpoint(raw.get("checkpoint")),
        ignored_keys=tuple(
            sorted(set(raw) - _KNOWN | ({"dataset"} if isinstance(dataset, str) else set()))
        ),
    )


_KNOWN = {f for f in TrainConfig.__dataclass_fields__ if f != "ignored_keys"}


def _plain_json(value: Any, path: str, depth: int = 0) -> None:
    """JSON a CR can hold: finite numbers, string keys, bounded nesting."""
    if depth > MAX_CONFIG_DEPTH:
        raise ConfigError(f"the config nests deeper than {MAX_CONFIG_DEPTH} levels", path)
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"'{path}' must be a finite number, got {value}", path)
    if not isinstance(value, str | int | float | list | dict) and value is not None:
        # e.g. a date a YAML file spelled without quotes: JSON has no such thing.
        kind = type(value).__name__
        raise ConfigError(f"'{path}' must be a JSON value, got a {kind}: {value!r}", path)
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"config keys must be strings, got {k!r}", path)
            _plain_json(v, f"{path}.{k}" if path else k, depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _plain_json(v, f"{path}[{i}]", depth + 1)


def config_bytes(raw: dict[str, Any]) -> int:
    """The config's size as the compact JSON that is stored and sent to the trainer."""
    return len(json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode())


def check_config(raw: Any) -> dict[str, Any]:
    """The config as it is to be stored, or ConfigError: what the trainer would refuse, plus
    what no CR can hold (non-finite numbers, more than MAX_CONFIG_BYTES).

    The trainer's known keys are stored in their canonical form (choices in lower case,
    integral floats as integers, nulls dropped: their defaults apply), so the stored config
    also passes the CRD's schema; unknown keys are kept as given."""
    if not isinstance(raw, dict):
        raise ConfigError("the training config must be a JSON object")
    _plain_json(raw, "")
    size = config_bytes(raw)
    if size > MAX_CONFIG_BYTES:
        raise ConfigTooLargeError(size)
    cfg = parse_config(raw)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None and key in _KNOWN:
            continue
        if key in INT_RULES or key in CHOICE_RULES or key in TRISTATE_RULES:
            value = getattr(cfg, key)
        out[key] = value
    return out


def config_json_schema() -> dict[str, Any]:
    """The config's JSON schema (OpenAPI 3.0): the scalar keys as the CRD states them. The
    `dataset` and `checkpoint` sections are checked by `parse_config` alone."""
    props: dict[str, Any] = {}
    for key, rule in INT_RULES.items():
        prop: dict[str, Any] = {"type": "integer", "minimum": rule.lo, "maximum": rule.hi}
        if rule.multiple_of > 1:
            prop["multipleOf"] = rule.multiple_of
        props[key] = prop
    for key, frule in FLOAT_RULES.items():
        props[key] = {"type": "number", "minimum": frule.lo, "maximum": frule.hi}
    for key, (_default, choices) in CHOICE_RULES.items():
        props[key] = {"type": "string", "enum": list(choices)}
    for key in BOOL_RULES:
        props[key] = {"type": "boolean"}
    for key in TRISTATE_RULES:
        props[key] = {"x-kubernetes-preserve-unknown-fields": True, "enum": [True, False, AUTO]}
    for key, prop in props.items():
        prop["description"] = DESCRIPTIONS[key]
    return {
        "type": "object",
        "description": "A training config (configs/train.yaml documents every key). Unknown "
        "keys are kept; `dataset` and `checkpoint` sections are checked as the trainer checks "
        f"them; at most {MAX_CONFIG_BYTES} bytes as JSON.",
        "required": ["epochs"],
        "properties": props,
        "additionalProperties": True,
    }
