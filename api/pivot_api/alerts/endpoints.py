from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from pivot_api.alerts.schemas import (
    AcknowledgeRequest,
    Alert,
    AlertList,
    AlertRule,
    AlertRuleList,
    AlertRuleRequest,
    AlertRuleUpdate,
    AlertStatus,
    ResolveRequest,
    Severity,
)
from pivot_api.deps import Alerts
from pivot_api.schemas import ErrorResponse, MessageResponse

router = APIRouter(
    prefix="/alerts",
    tags=["alerts"],
    responses={422: {"model": ErrorResponse, "description": "Validation error"}},
)

Responses = dict[int | str, dict[str, Any]]
_NO_RULE: Responses = {404: {"model": ErrorResponse, "description": "No such alert rule"}}
_NO_ALERT: Responses = {404: {"model": ErrorResponse, "description": "No such alert"}}
_RESOLVED: Responses = {409: {"model": ErrorResponse, "description": "The alert is resolved"}}
_TOO_MANY: Responses = {409: {"model": ErrorResponse, "description": "Too many rules"}}


# Rules first: /alerts/rules must not be read as the alert id "rules".
@router.post(
    "/rules", status_code=status.HTTP_201_CREATED, response_model=AlertRule, responses=_TOO_MANY
)
async def create_rule(body: AlertRuleRequest, alerts: Alerts) -> AlertRule:
    """A rule evaluated every few seconds against the host (system metrics) or every running
    session in its scope (training metrics)."""
    return await alerts.create_rule(body)


@router.get("/rules", response_model=AlertRuleList)
async def list_rules(alerts: Alerts) -> AlertRuleList:
    return await alerts.list_rules()


@router.get("/rules/{rule_id}", response_model=AlertRule, responses=_NO_RULE)
async def get_rule(rule_id: str, alerts: Alerts) -> AlertRule:
    return await alerts.get_rule(rule_id)


@router.patch("/rules/{rule_id}", response_model=AlertRule, responses=_NO_RULE)
async def update_rule(rule_id: str, body: AlertRuleUpdate, alerts: Alerts) -> AlertRule:
    """Change some fields (enable or disable, threshold...); the result must be valid."""
    return await alerts.update_rule(rule_id, body)


@router.put("/rules/{rule_id}", response_model=AlertRule, responses=_NO_RULE)
async def replace_rule(rule_id: str, body: AlertRuleRequest, alerts: Alerts) -> AlertRule:
    return await alerts.replace_rule(rule_id, body)


@router.delete("/rules/{rule_id}", response_model=MessageResponse, responses=_NO_RULE)
async def delete_rule(rule_id: str, alerts: Alerts) -> MessageResponse:
    """Delete a rule; its open alerts resolve at the next evaluation."""
    await alerts.delete_rule(rule_id)
    return MessageResponse(message=f"alert rule {rule_id} deleted")


@router.get("", response_model=AlertList)
async def list_alerts(
    alerts: Alerts,
    status: AlertStatus | SkipJsonSchema[None] = None,
    severity: Severity | SkipJsonSchema[None] = None,
    session_id: Annotated[
        Annotated[str, Field(min_length=1)] | SkipJsonSchema[None], Query()
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> AlertList:
    """Alerts, newest first."""
    return await alerts.list(status=status, severity=severity, session_id=session_id, limit=limit)


@router.get("/{alert_id}", response_model=Alert, responses=_NO_ALERT)
async def get_alert(alert_id: str, alerts: Alerts) -> Alert:
    return await alerts.get(alert_id)


@router.post("/{alert_id}/acknowledge", response_model=Alert, responses={**_NO_ALERT, **_RESOLVED})
async def acknowledge_alert(alert_id: str, body: AcknowledgeRequest, alerts: Alerts) -> Alert:
    """Someone is on it. The alert still resolves by itself when its condition clears."""
    return await alerts.acknowledge(alert_id, body)


@router.post("/{alert_id}/resolve", response_model=Alert, responses={**_NO_ALERT, **_RESOLVED})
async def resolve_alert(
    alert_id: str, alerts: Alerts, body: ResolveRequest | SkipJsonSchema[None] = None
) -> Alert:
    """Resolve by hand. While the condition still holds no new alert is raised for it; one
    is raised once it has cleared and holds again."""
    return await alerts.resolve(alert_id, body or ResolveRequest())
