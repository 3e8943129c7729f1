"""Alert rules and alerts, kept in Redis (the evaluator that raises and resolves alerts is
pivot_api.alerts.tasks).

Redis layout (built by `pivot_schema.keys.ApiKeys`):
    alert_rules       hash  rule_id -> rule JSON
    alert(<id>)       hash  one alert's fields
    alert_index       zset  alert ids by trigger time (listing)
    alerts_resolved   zset  resolved alert ids by resolve time (trimming)
    alerts_open       hash  "<rule_id>|<subject>" -> id of its open alert, or "" once
                            resolved by hand while the condition still holds

The open map is what keeps one alert per (rule, subject): an alert is raised only where the
map has no entry, and the entry is removed only when the condition clears. Every change of
an alert and the bus event announcing it are one Lua script, so an alert is triggered or
resolved, and announced, exactly once even when a request and the evaluator race.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from pydantic import ValidationError as PydanticValidationError
from redis.asyncio import Redis

from pivot_api.alerts import conditions as cond
from pivot_api.alerts.schemas import (
    AcknowledgeRequest,
    Alert,
    AlertList,
    AlertRule,
    AlertRuleList,
    AlertRuleRequest,
    AlertRuleUpdate,
    ResolveRequest,
)
from pivot_api.errors import ConflictError, NotFoundError, ValidationError
from pivot_api.events import ALERT_RESOLVED, ALERT_TRIGGERED, STREAM_MAXLEN, new_event
from pivot_api.redis_util import flat, script, text, utcnow_iso
from pivot_schema.keys import ApiKeys

log = logging.getLogger(__name__)

SYSTEM = "system"
MAX_RULES = 1000

# KEYS: open, alert, index, events. ARGV: field, alert id, score, maxlen, n, n alert
# fields (name value ...), event fields.
_TRIGGER = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return false end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local n = tonumber(ARGV[5])
local h = {}
for i = 6, 5 + n do h[#h + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(h))
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
local e = {}
for i = 6 + n, #ARGV do e[#e + 1] = ARGV[i] end
return redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', unpack(e))
"""

# The condition cleared. KEYS: open, alert, resolved, events. ARGV: field, alert id,
# resolved_at, score, maxlen, event fields.
_CLEAR = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
if ARGV[2] == '' then return false end
local st = redis.call('HGET', KEYS[2], 'status')
if (not st) or st == 'resolved' then return false end
redis.call('HSET', KEYS[2], 'status', 'resolved', 'resolved_at', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
local e = {}
for i = 6, #ARGV do e[#e + 1] = ARGV[i] end
return redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', unpack(e))
"""

# Resolved by hand. The open entry stays (emptied), so a condition that still holds does not
# raise a new alert at once; it raises one after it clears and comes back.
# KEYS: alert, open, resolved, events. ARGV: resolved_at, score, by, notes, maxlen, event.
_RESOLVE = """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 0 end
if st == 'resolved' then return -1 end
redis.call('HSET', KEYS[1], 'status', 'resolved', 'resolved_at', ARGV[1], 'resolved_by', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'notes', ARGV[4]) end
local id = redis.call('HGET', KEYS[1], 'alert_id')
local f = redis.call('HGET', KEYS[1], 'open_field')
if f and redis.call('HGET', KEYS[2], f) == id then redis.call('HSET', KEYS[2], f, '') end
redis.call('ZADD', KEYS[3], ARGV[2], id)
local e = {}
for i = 6, #ARGV do e[#e + 1] = ARGV[i] end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', unpack(e))
return 1
"""

# KEYS: alert. ARGV: acknowledged_at, by, notes.
_ACKNOWLEDGE = """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 0 end
if st == 'resolved' then return -1 end
redis.call('HSET', KEYS[1], 'status', 'acknowledged', 'acknowledged_at', ARGV[1],
  'acknowledged_by', ARGV[2], 'notes', ARGV[3])
return 1
"""

_ALERT_FIELDS = frozenset(Alert.model_fields)


def _event_args(type_: str, data: dict[str, Any]) -> list[str]:
    return flat(new_event(type_, data).fields())


def _num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def alert_from_hash(raw: dict[Any, Any]) -> Alert | None:
    f = {text(k): text(v) for k, v in raw.items()}
    if "alert_id" not in f:
        return None
    body: dict[str, Any] = {k: v for k, v in f.items() if k in _ALERT_FIELDS and v != ""}
    for k in ("value", "threshold"):
        body[k] = float(f[k]) if f.get(k) else None
    return Alert.model_validate(body)


def _validation_error(exc: PydanticValidationError) -> ValidationError:
    errors = [
        {
            "field": ".".join(str(p) for p in e.get("loc", ())),
            "location": "body",
            "message": e.get("msg", ""),
        }
        for e in exc.errors()
    ]
    first = errors[0] if errors else {"field": "", "message": "invalid rule"}
    message = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
    return ValidationError(
        str(message), {"field": first["field"], "location": "body", "errors": errors}
    )


class AlertStore:
    """Rules and alerts in Redis; what the routes and the evaluator share."""

    def __init__(
        self,
        redis: Redis,
        keys: ApiKeys,
        *,
        resolved_retention_s: float = 7 * 86400,
        max_resolved: int = 10_000,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.resolved_retention_s = resolved_retention_s
        self.max_resolved = max_resolved
        self.rules_key = keys.alert_rules
        self.index_key = keys.alert_index
        self.resolved_key = keys.alerts_resolved
        self.open_key = keys.alerts_open
        self.alert_key = keys.alert

    async def _run(self, source: str, keys: list[str], *args: Any) -> Any:
        return await script(self.redis, source)(keys=keys, args=args)

    # ---- rules -----------------------------------------------------------------------------

    async def rules(self) -> list[AlertRule]:
        raw = await self.redis.hgetall(self.rules_key)  # type: ignore[misc]
        rules = []
        for value in raw.values():
            try:
                rules.append(AlertRule.model_validate_json(value))
            except PydanticValidationError:
                log.warning("skipping an unreadable alert rule: %r", value[:200])
        rules.sort(key=lambda r: (r.created_at, r.rule_id))
        return rules

    async def list_rules(self) -> AlertRuleList:
        return AlertRuleList(rules=await self.rules())

    async def get_rule(self, rule_id: str) -> AlertRule:
        raw = await self.redis.hget(self.rules_key, rule_id)  # type: ignore[misc]
        if raw is None:
            raise NotFoundError(f"alert rule not found: {rule_id}", {"rule_id": rule_id})
        return AlertRule.model_validate_json(raw)

    async def create_rule(self, body: AlertRuleRequest) -> AlertRule:
        if await self.redis.hlen(self.rules_key) >= MAX_RULES:  # type: ignore[misc]
            raise ConflictError(f"there are already {MAX_RULES} alert rules; delete some first")
        now = utcnow_iso()
        rule = AlertRule(
            rule_id=f"rule_{secrets.token_hex(8)}",
            created_at=now,
            updated_at=now,
            **body.model_dump(),
        )
        await self.redis.hset(self.rules_key, rule.rule_id, rule.model_dump_json())  # type: ignore[misc]
        return rule

    async def replace_rule(self, rule_id: str, body: AlertRuleRequest) -> AlertRule:
        current = await self.get_rule(rule_id)
        return await self._save(current, body)

    async def update_rule(self, rule_id: str, change: AlertRuleUpdate) -> AlertRule:
        current = await self.get_rule(rule_id)
        merged = {
            k: v for k, v in current.model_dump().items() if k in AlertRuleRequest.model_fields
        }
        merged.update(change.model_dump(exclude_unset=True))
        try:
            body = AlertRuleRequest.model_validate(merged)
        except PydanticValidationError as exc:
            raise _validation_error(exc) from exc
        return await self._save(current, body)

    async def _save(self, current: AlertRule, body: AlertRuleRequest) -> AlertRule:
        rule = AlertRule(
            rule_id=current.rule_id,
            created_at=current.created_at,
            updated_at=utcnow_iso(),
            **body.model_dump(),
        )
        await self.redis.hset(self.rules_key, rule.rule_id, rule.model_dump_json())  # type: ignore[misc]
        return rule

    async def delete_rule(self, rule_id: str) -> None:
        # Its open alerts resolve at the next evaluation (their rule no longer holds).
        if not await self.redis.hdel(self.rules_key, rule_id):  # type: ignore[misc]
            raise NotFoundError(f"alert rule not found: {rule_id}", {"rule_id": rule_id})

    # ---- alerts ----------------------------------------------------------------------------

    async def get(self, alert_id: str) -> Alert:
        alert = None
        if alert_id.startswith("alert_"):
            alert = alert_from_hash(await self.redis.hgetall(self.alert_key(alert_id)))  # type: ignore[misc]
        if alert is None:
            raise NotFoundError(f"alert not found: {alert_id}", {"alert_id": alert_id})
        return alert

    async def list(
        self, *, status: str | None, severity: str | None, session_id: str | None, limit: int
    ) -> AlertList:
        ids = [text(i) for i in await self.redis.zrevrange(self.index_key, 0, -1)]
        found: list[Alert] = []
        for start in range(0, len(ids), 500):
            pipe = self.redis.pipeline(transaction=False)
            for alert_id in ids[start : start + 500]:
                pipe.hgetall(self.alert_key(alert_id))
            for raw in await pipe.execute():
                alert = alert_from_hash(raw)
                if alert is None:
                    continue
                if status is not None and alert.status != status:
                    continue
                if severity is not None and alert.severity != severity:
                    continue
                if session_id is not None and alert.session_id != session_id:
                    continue
                found.append(alert)
                if len(found) >= limit:
                    return AlertList(alerts=found)
        return AlertList(alerts=found)

    async def acknowledge(self, alert_id: str, body: AcknowledgeRequest) -> Alert:
        await self.get(alert_id)
        done = await self._run(
            _ACKNOWLEDGE,
            [self.alert_key(alert_id)],
            utcnow_iso(),
            body.acknowledged_by,
            body.notes,
        )
        self._check_outcome(int(done), alert_id, "acknowledged")
        return await self.get(alert_id)

    async def resolve(self, alert_id: str, body: ResolveRequest) -> Alert:
        alert = await self.get(alert_id)
        now = utcnow_iso()
        announced = alert.model_copy(
            update={"status": "resolved", "resolved_at": now, "resolved_by": body.resolved_by}
        )
        done = await self._run(
            _RESOLVE,
            [self.alert_key(alert_id), self.open_key, self.resolved_key, self.keys.events],
            now,
            str(time.time()),
            body.resolved_by,
            body.notes,
            str(STREAM_MAXLEN),
            *_event_args(ALERT_RESOLVED, announced.model_dump(mode="json")),
        )
        self._check_outcome(int(done), alert_id, "resolved")
        return await self.get(alert_id)

    @staticmethod
    def _check_outcome(done: int, alert_id: str, verb: str) -> None:
        if done == 0:
            raise NotFoundError(f"alert not found: {alert_id}", {"alert_id": alert_id})
        if done < 0:
            raise ConflictError(
                f"alert {alert_id} is already resolved; it cannot be {verb}",
                {"alert_id": alert_id, "status": "resolved"},
            )

    # ---- what the evaluator writes ----------------------------------------------------------

    async def open_alerts(self) -> dict[str, str]:
        raw = await self.redis.hgetall(self.open_key)  # type: ignore[misc]
        return {text(k): text(v) for k, v in raw.items()}

    async def trigger(self, rule: AlertRule, subject: str, verdict: cond.Verdict) -> Alert | None:
        """Raise the alert of (rule, subject) unless one is open. Returns the new alert."""
        now = utcnow_iso()
        open_field = f"{rule.rule_id}|{subject}"
        alert = Alert(
            alert_id=f"alert_{secrets.token_hex(8)}",
            rule_name=rule.name,
            severity=rule.severity,
            message=verdict.message,
            value=verdict.value,
            threshold=_threshold(rule),
            triggered_at=now,
            status="active",
            rule_id=rule.rule_id,
            metric=rule.metric,
            condition=rule.condition,
            subject=subject,
            session_id=None if subject == SYSTEM else subject,
        )
        fields: list[str] = []
        for k, v in alert.model_dump().items():
            if k in ("value", "threshold"):
                fields += [k, _num(v)]
            elif v is not None:
                fields += [k, str(v)]
        fields += ["open_field", open_field]
        stream_id = await self._run(
            _TRIGGER,
            [self.open_key, self.alert_key(alert.alert_id), self.index_key, self.keys.events],
            open_field,
            alert.alert_id,
            str(time.time()),
            str(STREAM_MAXLEN),
            str(len(fields)),
            *fields,
            *_event_args(ALERT_TRIGGERED, _announce(alert, rule)),
        )
        return alert if stream_id else None

    async def clear(self, open_field: str, alert_id: str, value: float | None) -> bool:
        """The condition of `open_field` no longer holds: resolve its alert, forget it."""
        alert = None
        if alert_id:
            alert = alert_from_hash(await self.redis.hgetall(self.alert_key(alert_id)))  # type: ignore[misc]
        now = utcnow_iso()
        data: dict[str, Any] = {}
        if alert is not None:
            data = alert.model_copy(update={"status": "resolved", "resolved_at": now}).model_dump(
                mode="json"
            )
            data["resolved_value"] = value
        stream_id = await self._run(
            _CLEAR,
            [
                self.open_key,
                self.alert_key(alert_id) if alert_id else self.open_key,
                self.resolved_key,
                self.keys.events,
            ],
            open_field,
            alert_id,
            now,
            str(time.time()),
            str(STREAM_MAXLEN),
            *_event_args(ALERT_RESOLVED, data),
        )
        return bool(stream_id)

    async def trim(self) -> int:
        """Forget resolved alerts past the retention, and the oldest beyond the cap."""
        cutoff = time.time() - self.resolved_retention_s
        old = [text(i) for i in await self.redis.zrangebyscore(self.resolved_key, "-inf", cutoff)]
        extra = await self.redis.zcard(self.resolved_key) - len(old) - self.max_resolved
        if extra > 0:
            old += [
                text(i)
                for i in await self.redis.zrange(self.resolved_key, len(old), len(old) + extra - 1)
            ]
        for start in range(0, len(old), 500):
            chunk = old[start : start + 500]
            pipe = self.redis.pipeline(transaction=False)
            pipe.delete(*(self.alert_key(i) for i in chunk))
            pipe.zrem(self.index_key, *chunk)
            pipe.zrem(self.resolved_key, *chunk)
            await pipe.execute()
        return len(old)


def _threshold(rule: AlertRule) -> float | None:
    if rule.condition == "stalled":
        return rule.window_s
    if rule.condition == "no_improvement_for":
        return float(rule.for_epochs)
    return rule.threshold


def _announce(alert: Alert, rule: AlertRule) -> dict[str, Any]:
    data = alert.model_dump(mode="json")
    data["action"] = rule.action
    return data
