"""One validation of the training config for every door: the trainer's parse_config, the API's
and the operator's check_config, and the CRD's schema (which states the scalar keys)."""

from __future__ import annotations

import datetime
import re
import subprocess
import sys
from typing import Any

import jsonschema
import pytest
import yaml

from pivot_schema import config as schema_config
from pivot_schema.config import (
    MAX_CONFIG_BYTES,
    ConfigError,
    ConfigTooLargeError,
    check_config,
    config_json_schema,
    parse_config,
)
from pivot_schema.crd import QUANTITY_PATTERN, crd_manifest_path
from pivot_schema.text import check_name, name_pattern, refused_chars

SPEC = yaml.safe_load(crd_manifest_path().read_text())["spec"]["versions"][0]["schema"][
    "openAPIV3Schema"
]["properties"]["spec"]
CRD_CONFIG = SPEC["properties"]["config"]


def test_the_crd_states_the_trainers_scalar_keys_exactly() -> None:
    ours = config_json_schema()
    assert CRD_CONFIG["required"] == ours["required"] == ["epochs"]
    assert CRD_CONFIG["x-kubernetes-preserve-unknown-fields"] is True
    assert CRD_CONFIG["properties"] == ours["properties"]


def test_the_trainers_config_is_this_one() -> None:
    from pivot_trainer import config as trainer_config

    assert trainer_config.parse_config is parse_config
    assert trainer_config.ConfigError is ConfigError
    assert trainer_config.TrainConfig is schema_config.TrainConfig


def test_pivot_schema_stays_free_of_torch() -> None:
    code = "import sys, pivot_schema.config, pivot_schema.crd, pivot_schema.text; "
    code += "sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"epochs": True}, "epochs"),
        ({"epochs": 2.5}, "epochs"),
        ({"epochs": 2, "batch_size": 10**13}, "batch_size"),
        ({"epochs": 2, "optimizer": "bogus"}, "optimizer"),
        ({"epochs": 2, "image_size": 47}, "image_size"),
        ({"epochs": 2, "seed": float("inf")}, "seed"),
        ({"epochs": 2, "learning_rate": float("nan")}, "learning_rate"),
        ({"epochs": 2, "checkpoint": {"keepLast": 0}}, "checkpoint.keep_last"),
        ({"epochs": 2, "dataset": {"source": "ftp"}}, "dataset.source"),
        ({"epochs": 2, "x": [{"y": float("inf")}]}, "x[0].y"),
        ({"epochs": 2, "started": datetime.date(2026, 1, 1)}, "started"),
        ({}, "epochs"),
    ],
)
def test_refusals_name_the_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_config(raw)
    assert err.value.field == field


def test_what_the_crd_can_state_it_refuses_too() -> None:
    validator = jsonschema.Draft4Validator(CRD_CONFIG)
    for raw in (
        {"epochs": True},
        {"epochs": 2, "batch_size": 10**13},
        {"epochs": 2, "optimizer": "bogus"},
        {"epochs": 2, "image_size": 47},
        {"epochs": 2, "compile": "yes"},
        {"epochs": 2, "compile": 1},
        {"epochs": 2, "data_on_device": "on"},
        {"epochs": 2, "data_on_device": [True]},
        {"epochs": 2, "learning_rate": 0},
    ):
        with pytest.raises(ConfigError):
            check_config(raw)
        assert list(validator.iter_errors(raw)), raw


def test_the_stored_form_is_canonical_and_passes_the_crd() -> None:
    raw = {"epochs": 4.0, "optimizer": "SGD", "batch_size": None, "model": {"w": 1.0}}
    stored = check_config(raw)
    assert stored == {"epochs": 4, "optimizer": "sgd", "model": {"w": 1.0}}
    assert isinstance(stored["epochs"], int)
    assert not list(jsonschema.Draft4Validator(CRD_CONFIG).iter_errors(stored))
    assert check_config(stored) == stored


@pytest.mark.parametrize("key", ["compile", "data_on_device"])
def test_tristate_keys_are_true_false_or_auto(key: str) -> None:
    validator = jsonschema.Draft4Validator(CRD_CONFIG)
    for given, parsed in ((True, True), (False, False), ("auto", "auto"), ("AUTO", "auto")):
        assert getattr(parse_config({"epochs": 1, key: given}), key) == parsed
        stored = check_config({"epochs": 1, key: given})
        assert stored == {"epochs": 1, key: parsed}  # the canonical form, which the CRD takes
        assert not list(validator.iter_errors(stored)), stored
    for bad in ("yes", "true", 1, 0, 1.0, {"auto": True}):
        with pytest.raises(ConfigError, match=f"'{key}' must be true or false, or \"auto\""):
            parse_config({"epochs": 1, key: bad})
        assert list(validator.iter_errors({"epochs": 1, key: bad})), bad
    assert parse_config({"epochs": 1}).compile is False  # compile only when asked (or auto)
    assert parse_config({"epochs": 1}).data_on_device == "auto"


def test_a_config_over_the_size_bound_is_refused() -> None:
    check_config({"epochs": 1, "blob": "x" * (MAX_CONFIG_BYTES - 100)})
    with pytest.raises(ConfigTooLargeError) as err:
        check_config({"epochs": 1, "blob": "x" * MAX_CONFIG_BYTES})
    assert err.value.max_bytes == MAX_CONFIG_BYTES and err.value.field == ""
    # Under the Linux limit of one environment string (the trainer's PIVOT_CONFIG).
    assert MAX_CONFIG_BYTES + len("PIVOT_CONFIG=") < 128 * 1024


def test_every_shipped_config_passes() -> None:
    root = crd_manifest_path().parent.parent
    for path in (root / "configs/train.yaml", root / "helm/pivot/files/configs/train.yaml"):
        check_config(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("a\x00b\x07c\nd\u202ee", ["\x00", "\x07", "\n", "\u202e"]),
        ("zero\u200bwidth", ["\u200b"]),
        ("soft\u00adhyphen", ["\u00ad"]),
        ("tag\U000e0041", ["\U000e0041"]),
        ("Lésion Ω 実験 🧪 #1", []),
    ],
)
def test_names_refuse_control_and_format_characters(name: str, bad: list[str]) -> None:
    assert refused_chars(name) == bad
    pattern = name_pattern()
    assert bool(re.search(pattern, name)) == (not bad)
    if bad:
        with pytest.raises(ValueError, match="U\\+"):
            check_name(name)
    else:
        assert check_name(name) == name


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        *[("500m", True), ("2", True), ("16Gi", True), ("1e3", True), ("0.5", True)],
        *[("lots", False), ("-1", False), ("16 Gi", False), ("", False), ("1Gb", False)],
    ],
)
def test_quantities_follow_the_crds_pattern(value: str, ok: bool) -> None:
    crd = SPEC["properties"]["resources"]["properties"]
    assert crd["cpu"]["pattern"] == crd["memory"]["pattern"] == QUANTITY_PATTERN
    assert bool(re.search(QUANTITY_PATTERN, value)) is ok
