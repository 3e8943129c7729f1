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
        (
            {"epochs": 2, "checkpoint": {"mode": "best"}},
            "'checkpoint.mode' must be one of min, max",
        ),
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


def test_step_logging_compile_and_val_froc_checkpoint_metric() -> None:
    cfg = parse_config({"epochs": 1})
    assert cfg.log_every_steps == 10 and cfg.compile is False
    cfg = parse_config(
        {"epochs": 1, "log_every_steps": 0, "compile": True, "checkpoint": {"metric": "val_froc"}}
    )
    assert cfg.log_every_steps == 0 and cfg.compile is True
    assert cfg.checkpoint.metric == "val_froc" and cfg.checkpoint.mode == "max"
    with pytest.raises(ConfigError, match="'compile' must be true or false"):
        parse_config({"epochs": 1, "compile": "yes"})


def test_sync_batchnorm_is_on_unless_turned_off() -> None:
    assert parse_config({"epochs": 1}).sync_batchnorm is True
    assert parse_config({"epochs": 1, "sync_batchnorm": False}).sync_batchnorm is False
    with pytest.raises(ConfigError, match="'sync_batchnorm' must be true or false"):
        parse_config({"epochs": 1, "sync_batchnorm": 1})


BASE_ENV = {"PIVOT_SESSION_ID": "s-1"}


def test_single_process_by_default() -> None:
    rt = read_env(BASE_ENV)
    assert (rt.world_size, rt.rank, rt.local_rank, rt.distributed, rt.is_main) == (
        1,
        0,
        0,
        False,
        True,
    )


def test_one_process_per_pod_takes_its_rank_from_the_node_rank() -> None:
    gang = {**BASE_ENV, "MASTER_ADDR": "sess-0.svc", "MASTER_PORT": "29400", "WORLD_SIZE": "4"}
    rt = read_env({**gang, "NODE_RANK": "3", "NPROC_PER_NODE": "1"})
    assert (rt.rank, rt.local_rank, rt.world_size, rt.is_main) == (3, 0, 4, False)
    assert (rt.master_addr, rt.master_port) == ("sess-0.svc", 29400)
    # Under torchrun, RANK and LOCAL_RANK are the process's own.
    rt = read_env({**gang, "NODE_RANK": "1", "NPROC_PER_NODE": "2", "RANK": "2", "LOCAL_RANK": "0"})
    assert (rt.rank, rt.local_rank) == (2, 0)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"WORLD_SIZE": "2", "NODE_RANK": "0"}, "needs MASTER_ADDR"),
        ({"WORLD_SIZE": "2", "NODE_RANK": "2", "MASTER_ADDR": "h"}, "outside WORLD_SIZE=2"),
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE must be an integer"),
    ],
)
def test_bad_distributed_env_is_a_config_error(extra: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        read_env({**BASE_ENV, **extra})


def test_telemetry_buffer_settings_come_from_env() -> None:
    rt = read_env(BASE_ENV)
    assert (rt.spool_dir, rt.spool_max_bytes, rt.sink_memory_records) == (None, None, None)
    rt = read_env(
        {
            **BASE_ENV,
            "PIVOT_SPOOL_DIR": "/spool",
            "PIVOT_SPOOL_MAX_BYTES": "1048576",
            "PIVOT_SINK_MEMORY_RECORDS": "500",
        }
    )
    assert (rt.spool_dir, rt.spool_max_bytes, rt.sink_memory_records) == ("/spool", 2**20, 500)
    with pytest.raises(ConfigError, match="PIVOT_SINK_MEMORY_RECORDS must be at least 1"):
        read_env({**BASE_ENV, "PIVOT_SINK_MEMORY_RECORDS": "0"})
