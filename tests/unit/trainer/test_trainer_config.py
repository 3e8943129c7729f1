"""Config parsing: clear errors, defaults, tolerance of unknown keys, the demo config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pivot_trainer.config import ConfigError, parse_config
from pivot_trainer.runtime import read_env

DEMO = Path(__file__).resolve().parents[3] / "configs" / "train.yaml"


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({}, "'epochs' is required"),
        ({"epochs": None}, "'epochs' is required"),
        ({"epochs": 0}, "'epochs' must be between"),
        ({"epochs": "ten"}, "'epochs' must be an integer"),
        ({"epochs": True}, "'epochs' must be an integer"),
        ({"epochs": 2.5}, "'epochs' must be an integer"),
        ({"epochs": 2, "optimizer": "lbfgs"}, "'optimizer' must be one of adam, adamw, sgd"),
        ({"epochs": 2, "scheduler": "plateau"}, "'scheduler' must be one of"),
        ({"epochs": 2, "loss": "mse"}, "'loss' must be one of focal, dice, bce"),
        ({"epochs": 2, "learning_rate": -1}, "'learning_rate' must be between"),
        ({"epochs": 2, "image_size": 30}, "multiple of 4"),
        ({"epochs": 2, "checkpoint": {"metric": "f1"}}, "'checkpoint.metric' must be one of"),
        ({"epochs": 2, "checkpoint": {"mode": "best"}}, "'mode' must be one of min, max"),
        ({"epochs": 2, "checkpoint": 3}, "'checkpoint' must be a mapping"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_bad_configs_fail_with_one_line(raw: object, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(json.dumps(raw))
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_empty_and_invalid_json() -> None:
    for raw in (None, "", "  "):
        with pytest.raises(ConfigError, match="empty"):
            parse_config(raw)
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse_config("{epochs: 3")


def test_minimal_config_gets_defaults_and_unknown_keys_are_tolerated() -> None:
    cfg = parse_config('{"epochs": 3, "dataset": "lesions-v2", "Optimizer": "x"}')
    assert cfg.epochs == 3
    assert cfg.optimizer == "adam" and cfg.loss == "focal" and cfg.scheduler == "none"
    assert cfg.checkpoint.every_epochs == 1 and cfg.checkpoint.keep_last is None
    assert cfg.ignored_keys == ("Optimizer", "dataset")


def test_case_insensitive_choices_and_integral_floats() -> None:
    cfg = parse_config({"epochs": 4.0, "optimizer": "AdamW", "scheduler": "Cosine"})
    assert (cfg.epochs, cfg.optimizer, cfg.scheduler) == (4, "adamw", "cosine")


def test_checkpoint_section_snake_or_camel_and_default_mode() -> None:
    cfg = parse_config({"epochs": 2, "checkpoint": {"everyEpochs": 2, "keepLast": 1}})
    assert (cfg.checkpoint.every_epochs, cfg.checkpoint.keep_last) == (2, 1)
    assert (cfg.checkpoint.metric, cfg.checkpoint.mode) == ("val_loss", "min")
    dice = parse_config({"epochs": 2, "checkpoint": {"metric": "val_dice"}})
    assert dice.checkpoint.mode == "max"


def test_demo_config_is_valid_and_documents_every_key() -> None:
    text = DEMO.read_text()
    raw = yaml.safe_load(text)
    cfg = parse_config(json.dumps(raw))
    assert cfg.ignored_keys == ()
    # Every key the trainer knows is spelled out in the demo, each with a comment.
    known = set(cfg.to_dict()) - {"checkpoint"}
    assert known <= set(raw)
    assert set(cfg.to_dict()["checkpoint"]) <= set(raw["checkpoint"])
    for line in text.splitlines():
        if ":" in line and not line.lstrip().startswith("#") and not line.endswith(":"):
            assert "#" in line, f"undocumented key: {line}"


def test_env_needs_a_session_and_a_known_device() -> None:
    with pytest.raises(ConfigError, match="PIVOT_SESSION_ID"):
        read_env({})
    with pytest.raises(ConfigError, match="PIVOT_DEVICE"):
        read_env({"PIVOT_SESSION_ID": "s", "PIVOT_DEVICE": "tpu"})
    rt = read_env({"PIVOT_SESSION_ID": "s", "PIVOT_DEVICE": "cuda:1", "PIVOT_REDIS_URL": " "})
    assert (rt.session_id, rt.device, rt.redis_url) == ("s", "cuda:1", None)
