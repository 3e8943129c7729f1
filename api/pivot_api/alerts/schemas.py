"""Bodies of the alert routes: the reference's Alert model plus what rules need beyond it
(scope, history conditions, an action)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import WithJsonSchema

from pivot_api.alerts.conditions import (
    COMPARISONS,
    HISTORY_CONDITIONS,
    KNOWN_METRICS,
    SYSTEM_METRICS,
    Mode,
    check_metric,
)
from pivot_api.schemas import NamePattern, absent_not_null
from pivot_schema.text import check_name

Severity = Literal["low", "medium", "high", "critical"]
ConditionName = Literal[
    "greater_than",
    "less_than",
    "equals",
    "not_equals",
    "is_nan",
    "no_improvement_for",
    "stalled",
]
RuleAction = Literal["stop_session"]
AlertStatus = Literal["active", "acknowledged", "resolved"]

Name = Annotated[
    str, StringConstraints(min_length=1, max_length=128), AfterValidator(check_name), NamePattern()
]
RuleTag = Annotated[
    str, StringConstraints(min_length=1, max_length=63), AfterValidator(check_name), NamePattern()
]
Person = Annotated[
    str, StringConstraints(min_length=1, max_length=256), AfterValidator(check_name), NamePattern()
]
# Only a metric something writes: a rule on another name could never fire.
MetricName = Annotated[
    str,
    AfterValidator(check_metric),
    WithJsonSchema({"type": "string", "enum": list(KNOWN_METRICS)}),
]
Threshold = Annotated[float, Field(allow_inf_nan=False)]


def _cross_field_rules(schema: dict[str, Any]) -> None:
    """Optional fields are absent-or-valued (not nullable), and the rules the validator
    enforces across fields are stated in the schema, so a client (or a fuzzer) can tell a
    valid rule from the document alone."""
    absent_not_null(schema)
    without_threshold = ["is_nan", *HISTORY_CONDITIONS]
    schema["allOf"] = [
        # A comparison needs a threshold.
        {
            "anyOf": [
                {"required": ["threshold"]},
                {"properties": {"condition": {"enum": without_threshold}}},
            ]
        },
        # A history condition needs a training metric (the host's have no epochs).
        {
            "anyOf": [
                {"properties": {"condition": {"enum": [*COMPARISONS, "is_nan"]}}},
                {"not": {"properties": {"metric": {"enum": sorted(SYSTEM_METRICS)}}}},
            ]
        },
    ]


class AlertRuleRequest(BaseModel):
    """A rule as created (POST) or replaced (PUT)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_cross_field_rules)

    name: Name
    metric: MetricName = Field(
        description="The host's cpu_percent, memory_percent, disk_percent, gpu_utilization, "
        "gpu_memory_percent, gpu_temperature, or a metric the trainer writes (train_loss, "
        "val_loss, train_accuracy, val_accuracy, val_dice, val_froc, learning_rate)."
    )
    condition: ConditionName
    threshold: Threshold | None = Field(
        default=None,
        description="Compared with the metric; for no_improvement_for, the least change "
        "that counts as an improvement (default 0).",
    )
    severity: Severity = "medium"
    enabled: bool = True
    session_id: Annotated[str, StringConstraints(min_length=1, max_length=253)] | None = Field(
        default=None, description="Only this session."
    )
    tag: RuleTag | None = Field(default=None, description="Only sessions with this tag.")
    for_epochs: int = Field(
        default=5, ge=1, le=100_000, description="no_improvement_for: epochs without one."
    )
    mode: Mode = Field(default="min", description="no_improvement_for: lower or higher is better.")
    window_s: float = Field(
        default=300.0,
        gt=0,
        le=30 * 86400,
        description="stalled: seconds without a new value while the session runs.",
    )
    action: RuleAction | None = Field(
        default=None, description="stop_session: stop the session(s) the alert is about."
    )

    @model_validator(mode="after")
    def _consistent(self) -> AlertRuleRequest:
        if self.condition in COMPARISONS and self.threshold is None:
            raise ValueError(f"condition {self.condition} needs a threshold")
        if self.condition in HISTORY_CONDITIONS and self.metric in SYSTEM_METRICS:
            raise ValueError(
                f"condition {self.condition} needs a training metric, not {self.metric}"
            )
        return self


def _no_cross_rules(schema: dict[str, Any]) -> None:
    _cross_field_rules(schema)
    # A partial update is checked against the stored rule, which the schema cannot see.
    schema.pop("allOf", None)


class AlertRuleUpdate(BaseModel):
    """Fields to change (PATCH); the rule after the change must still be valid."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_no_cross_rules)

    name: Name | None = None
    metric: MetricName | None = None
    condition: ConditionName | None = None
    threshold: Threshold | None = None
    severity: Severity | None = None
    enabled: bool | None = None
    session_id: Annotated[str, StringConstraints(min_length=1, max_length=253)] | None = None
    tag: RuleTag | None = None
    for_epochs: int | None = Field(default=None, ge=1, le=100_000)
    mode: Mode | None = None
    window_s: float | None = Field(default=None, gt=0, le=30 * 86400)
    action: RuleAction | None = None


class AlertRule(BaseModel):
    rule_id: str
    name: str
    metric: str
    condition: ConditionName
    threshold: float | None = None
    severity: Severity
    enabled: bool
    session_id: str | None = None
    tag: str | None = None
    for_epochs: int
    mode: Mode
    window_s: float
    action: RuleAction | None = None
    created_at: str
    updated_at: str


class AlertRuleList(BaseModel):
    rules: list[AlertRule]


class Alert(BaseModel):
    """The reference's Alert, and where it came from."""

    alert_id: str
    rule_name: str
    severity: Severity
    message: str
    # None where the condition has no number (a NaN metric).
    value: float | None = None
    threshold: float | None = None
    triggered_at: str
    acknowledged_at: str | None = None
    resolved_at: str | None = None
    status: AlertStatus
    rule_id: str
    metric: str
    condition: ConditionName
    # "system" or a session id.
    subject: str
    session_id: str | None = None
    acknowledged_by: str | None = None
    notes: str | None = None
    resolved_by: str | None = None


class AlertList(BaseModel):
    alerts: list[Alert]


class AcknowledgeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    acknowledged_by: Person
    notes: Annotated[str, StringConstraints(max_length=4096)] = ""


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolved_by: Person = "api"
    notes: Annotated[str, StringConstraints(max_length=4096)] = ""
