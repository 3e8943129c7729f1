"""The training config (PIVOT_CONFIG, JSON) as a validated, typed object.

Parsed before torch is imported so that a bad config fails fast with one clear line. The
validation itself is pivot_schema.config: the API and the operator run the same function, so
what the trainer would refuse is refused before a pod is ever made.
"""

from __future__ import annotations

from pivot_schema.config import (
    AUTO,
    DATASET_SOURCES,
    EXIT_CONFIG_ERROR,
    LOSSES,
    METRICS,
    OPTIMIZERS,
    SCHEDULERS,
    CheckpointConfig,
    ConfigError,
    DatasetConfig,
    TrainConfig,
    parse_config,
)

__all__ = [
    "AUTO",
    "DATASET_SOURCES",
    "EXIT_CONFIG_ERROR",
    "LOSSES",
    "METRICS",
    "OPTIMIZERS",
    "SCHEDULERS",
    "CheckpointConfig",
    "ConfigError",
    "DatasetConfig",
    "TrainConfig",
    "parse_config",
]
