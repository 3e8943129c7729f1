"""The meaning of alert rules, without Redis or Kubernetes: conditions on values, and which
rule bodies are valid."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from pivot_api.alerts import conditions as cond
from pivot_api.alerts.schemas import AlertRuleRequest


@pytest.mark.parametrize(
    ("condition", "value", "threshold", "hit"),
    [
        ("greater_than", 94.5, 90.0, True),
        ("greater_than", 90.0, 90.0, False),
        ("less_than", 0.1, 0.5, True),
        ("less_than", 0.5, 0.5, False),
        ("equals", 0.1 + 0.2, 0.3, True),  # equal to rounding: values went through JSON
        ("equals", 1.0, 2.0, False),
        ("not_equals", 1.0, 2.0, True),
        ("not_equals", 0.1 + 0.2, 0.3, False),
    ],
)
def test_comparisons(condition: str, value: float, threshold: float, hit: bool) -> None:
    verdict = cond.check_comparison(condition, "cpu_percent", value, threshold, "system")
    assert verdict.triggered is hit
    assert verdict.value == value


def test_a_comparison_without_a_number_never_triggers() -> None:
    for value in (None, math.nan, math.inf):
        verdict = cond.check_comparison("less_than", "val_loss", value, 1.0, "sess-a")
        assert not verdict.triggered and verdict.value is None


def test_is_nan_counts_nulls_and_non_finite_values_but_not_a_missing_metric() -> None:
    assert cond.check_is_nan("val_loss", True, None, "s").triggered  # the trainer's NaN
    assert cond.check_is_nan("val_loss", True, math.nan, "s").triggered
    assert cond.check_is_nan("val_loss", True, -math.inf, "s").triggered
    assert not cond.check_is_nan("val_loss", True, 0.3, "s").triggered
    assert not cond.check_is_nan("val_loss", False, None, "s").triggered


@pytest.mark.parametrize(
    ("values", "mode", "since"),
    [
        ([], "min", None),
        ([None, None], "min", None),
        ([1.0], "min", 0),
        ([1.0, 0.9, 0.8], "min", 0),
        ([1.0, 0.9, 0.95, 0.96], "min", 2),
        ([1.0, 0.9, 0.9], "min", 1),  # equal is no improvement
        ([0.5, 0.6, 0.55], "max", 1),
        ([0.5, None, None], "max", 2),  # a NaN epoch is no improvement either
        ([None, 0.5], "max", 0),
    ],
)
def test_epochs_without_improvement(values: list[float | None], mode: str, since: int) -> None:
    assert cond.epochs_without_improvement(values, mode=mode, min_delta=0.0) == since  # type: ignore[arg-type]


def test_an_improvement_smaller_than_min_delta_does_not_count() -> None:
    assert cond.epochs_without_improvement([1.0, 0.99, 0.98], mode="min", min_delta=0.05) == 2
    assert cond.epochs_without_improvement([1.0, 0.9], mode="min", min_delta=0.05) == 0


def test_no_improvement_triggers_at_n_epochs() -> None:
    series = [1.0, 0.9, 0.95, 0.96]
    hit = cond.check_no_improvement(
        "val_loss", series, epochs=2, mode="min", min_delta=0.0, subject="s"
    )
    miss = cond.check_no_improvement(
        "val_loss", series, epochs=3, mode="min", min_delta=0.0, subject="s"
    )
    assert hit.triggered and hit.value == 2.0
    assert not miss.triggered


def test_stalled_is_idle_time_beyond_the_window() -> None:
    assert cond.check_stalled("val_loss", 31.0, 30.0, "s").triggered
    verdict = cond.check_stalled("val_loss", 12.34, 30.0, "s")
    assert not verdict.triggered and verdict.value == 12.3


def test_gpu_value_is_the_worst_device() -> None:
    gpus: list[dict[str, float | None]] = [
        {"utilization": 10.0, "memory_percent": 80.0, "temperature": None},
        {"utilization": 95.0, "memory_percent": 20.0, "temperature": 71.0},
    ]
    assert cond.gpu_value("gpu_utilization", gpus) == 95.0
    assert cond.gpu_value("gpu_memory_percent", gpus) == 80.0
    assert cond.gpu_value("gpu_temperature", gpus) == 71.0
    assert cond.gpu_value("gpu_temperature", []) is None


def _rule(**body: object) -> AlertRuleRequest:
    base: dict[str, object] = {"name": "r", "metric": "val_loss", "condition": "greater_than"}
    return AlertRuleRequest.model_validate(base | body)


def test_rule_bodies_are_checked_across_fields() -> None:
    assert _rule(threshold=1.0).severity == "medium"
    assert _rule(condition="is_nan").threshold is None
    assert _rule(condition="stalled", window_s=60).window_s == 60
    with pytest.raises(ValidationError, match="needs a threshold"):
        _rule()
    with pytest.raises(ValidationError, match="needs a training metric"):
        _rule(metric="cpu_percent", condition="no_improvement_for")
    with pytest.raises(ValidationError):
        _rule(threshold=math.nan)
    with pytest.raises(ValidationError):
        _rule(threshold=1.0, surprise=True)


def test_the_schema_states_the_cross_field_rules() -> None:
    schema = AlertRuleRequest.model_json_schema()
    assert "allOf" in schema
    # Optional fields are absent-or-valued, never documented as null.
    assert "anyOf" not in schema["properties"]["threshold"]
