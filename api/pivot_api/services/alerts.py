"""Alert rules and alerts, kept in Redis, and the evaluator that raises and resolves alerts.

Redis layout (all under `ApiKeys`):
    alerts:rules             hash  rule_id -> rule JSON
    alerts:alert:<id>        hash  one alert's fields
    alerts:index             zset  alert ids by trigger time (listing)
    alerts:resolved          zset  resolved alert ids by resolve time (trimming)
    alerts:open              hash  "<rule_id>|<subject>" -> id of its open alert, or "" once
                                   resolved by hand while the condition still holds

The open map is what keeps one alert per (rule, subject): an alert is raised only where the
map has no entry, and the entry is removed only when the condition clears. Every change of
an alert and the bus event announcing it are one Lua script, so an alert is triggered or
resolved, and announced, exactly once even when a request and the evaluator race.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError as PydanticValidationError
from redis.asyncio import Redis

from pivot_api.errors import ConflictError, NotFoundError, PivotError, ValidationError
from pivot_api.kube import Obj, SessionCache
from pivot_api.models_alerts import (
    AcknowledgeRequest,
    Alert,
    AlertList,
    AlertRule,
    AlertRuleList,
    AlertRuleRequest,
    AlertRuleUpdate,
    ResolveRequest,
)
from pivot_api.services import alert_conditions as cond
from pivot_api.services.platform_events import (
    ALERT_RESOLVED,
    ALERT_TRIGGERED,
    STREAM_MAXLEN,
    ApiKeys,
    new_event,
    utcnow_iso,
)
from pivot_api.services.resources import snapshot
from pivot_api.services.sessions import SessionService, status_of
from pivot_schema import keys as schema_keys
from pivot_schema.crd import SessionStatus

log = logging.getLogger(__name__)

SYSTEM = "system"
MAX_RULES = 1000
# Newest metric records read to find a metric's latest value.
_LATEST_SCAN = 50
# Epoch records read for no_improvement_for (older ones cannot change a recent verdict much,
# and a bound keeps one evaluation round cheap).
_HISTORY_SCAN = 10_000

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


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _event_args(type_: str, data: dict[str, Any]) -> list[str]:
    flat: list[str] = []
    for k, v in new_event(type_, data).fields().items():
        flat += [k, v]
    return flat


def _num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def alert_from_hash(raw: dict[Any, Any]) -> Alert | None:
    f = {_text(k): _text(v) for k, v in raw.items()}
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
        self.rules_key = keys.key("alerts", "rules")
        self.index_key = keys.key("alerts", "index")
        self.resolved_key = keys.key("alerts", "resolved")
        self.open_key = keys.key("alerts", "open")

    def alert_key(self, alert_id: str) -> str:
        return self.keys.key("alerts", "alert", alert_id)

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
        ids = [_text(i) for i in await self.redis.zrevrange(self.index_key, 0, -1)]
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
        done = await self.redis.eval(  # type: ignore[misc]
            _ACKNOWLEDGE,
            1,
            self.alert_key(alert_id),
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
        done = await self.redis.eval(  # type: ignore[misc]
            _RESOLVE,
            4,
            self.alert_key(alert_id),
            self.open_key,
            self.resolved_key,
            self.keys.events,
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
        return {_text(k): _text(v) for k, v in raw.items()}

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
        stream_id = await self.redis.eval(  # type: ignore[misc]
            _TRIGGER,
            4,
            self.open_key,
            self.alert_key(alert.alert_id),
            self.index_key,
            self.keys.events,
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
        stream_id = await self.redis.eval(  # type: ignore[misc]
            _CLEAR,
            4,
            self.open_key,
            self.alert_key(alert_id) if alert_id else self.open_key,
            self.resolved_key,
            self.keys.events,
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
        old = [_text(i) for i in await self.redis.zrangebyscore(self.resolved_key, "-inf", cutoff)]
        extra = await self.redis.zcard(self.resolved_key) - len(old) - self.max_resolved
        if extra > 0:
            old += [
                _text(i)
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


# ---- evaluation ------------------------------------------------------------------------------


@dataclass
class _SessionData:
    """What one round read about one session, so several rules share one read."""

    records: list[tuple[float, dict[str, Any]]] | None = None  # newest first (arrival s, record)
    history: list[dict[str, Any]] | None = None  # oldest first
    steps: tuple[float, set[str]] | None = None  # newest steps entry: time, field names
    gpus: list[dict[str, float | None]] | None = None
    read: set[str] = field(default_factory=set)


def _entry_time(stream_id: Any) -> float:
    return int(_text(stream_id).split("-", 1)[0]) / 1000.0


def _metric_names(fields: Mapping[Any, Any] | None) -> set[str]:
    """The fields of a steps-stream entry's last record (none for an unreadable entry)."""
    try:
        columns = schema_keys.decode_step_columns(fields)
        if columns is not None:
            return set(columns)
        packed = schema_keys.decode_records(fields)
    except ValueError:
        return set()
    return set(packed[-1]) if packed else set()


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _compare(rule: AlertRule, value: float | None, subject: str) -> cond.Verdict:
    if rule.threshold is None:  # the request model requires one; a hand-edited rule may not
        return cond.Verdict(False, value, f"rule {rule.name} has no threshold")
    return cond.check_comparison(rule.condition, rule.metric, value, rule.threshold, subject)


def _matches(rule: AlertRule, obj: Obj) -> bool:
    if rule.session_id is not None and obj["metadata"]["name"] != rule.session_id:
        return False
    return rule.tag is None or rule.tag in ((obj.get("spec") or {}).get("tags") or [])


class AlertEvaluator:
    """Evaluates every enabled rule against its subjects every `interval_s`; runs as a
    leader job, so in one worker at a time."""

    def __init__(
        self,
        store: AlertStore,
        *,
        cache: SessionCache | None,
        sessions: SessionService | None,
        disk_path: Path,
        interval_s: float = 10.0,
    ) -> None:
        self.store = store
        self._cache = cache
        self._sessions = sessions
        self._disk_path = disk_path
        self._interval_s = interval_s
        # When this leader first saw each session running: the start of a `stalled` wait
        # for a session that never wrote a metric.
        self._running_since: dict[str, float] = {}

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.evaluate()
            except asyncio.CancelledError:
                raise
            except Exception:
                # One bad round (Redis blip) must not end evaluation; nothing was resolved
                # on its account, since resolving happens only after a complete round.
                log.exception("alert evaluation round failed")
            await asyncio.sleep(max(0.0, self._interval_s - (time.monotonic() - started)))

    def _running(self) -> list[Obj]:
        if self._cache is None or not self._cache.synced:
            return []
        running = [o for o in self._cache.all() if status_of(o) == SessionStatus.RUNNING]
        now = time.time()
        names = {o["metadata"]["name"] for o in running}
        for name in names:
            self._running_since.setdefault(name, now)
        for name in list(self._running_since):
            if name not in names:
                del self._running_since[name]
        return running

    async def evaluate(self) -> tuple[int, int]:
        """One round. Returns (alerts triggered, alerts resolved)."""
        rules = [r for r in await self.store.rules() if r.enabled]
        opened = await self.store.open_alerts()
        if self._cache is not None and not self._cache.synced and opened:
            # Without the session list, session alerts would all look cleared.
            return 0, 0
        running = self._running()
        host: dict[str, float | None] | None = None
        data: dict[str, _SessionData] = {}
        holding: set[str] = set()
        values: dict[str, float | None] = {}
        triggered = 0
        for rule in rules:
            scoped = [o for o in running if _matches(rule, o)]
            scope_given = rule.session_id is not None or rule.tag is not None
            if rule.metric in cond.HOST_METRICS or (
                rule.metric in cond.GPU_METRICS and not scope_given
            ):
                if scope_given and not scoped:
                    continue  # a scoped host rule applies while its sessions run
                if host is None:
                    host = await self._host()
                subjects: list[tuple[str, Obj | None]] = [(SYSTEM, None)]
            else:
                subjects = [(o["metadata"]["name"], o) for o in scoped]
            for subject, obj in subjects:
                if obj is None:
                    verdict = self._judge_host(rule, host or {})
                else:
                    sd = data.setdefault(subject, _SessionData())
                    verdict = await self._judge_session(rule, subject, obj, sd)
                open_field = f"{rule.rule_id}|{subject}"
                values[open_field] = verdict.value
                if not verdict.triggered:
                    continue
                holding.add(open_field)
                if open_field in opened:
                    continue
                alert = await self.store.trigger(rule, subject, verdict)
                if alert is not None:
                    triggered += 1
                    log.info("alert %s: %s", alert.alert_id, alert.message)
                    if rule.action == "stop_session":
                        names = [o["metadata"]["name"] for o in scoped]
                        targets = [subject] if obj is not None else names
                        await self._stop(targets, alert)
        resolved = 0
        for open_field, alert_id in opened.items():
            if open_field not in holding and await self.store.clear(
                open_field, alert_id, values.get(open_field)
            ):
                resolved += 1
        await self.store.trim()
        return triggered, resolved

    async def _host(self) -> dict[str, float | None]:
        # The host alone (not the per-session telemetry /monitor/resources adds).
        report = await asyncio.to_thread(snapshot, self._disk_path)
        gpus = [g.model_dump() for g in report.gpu]
        return {
            "cpu_percent": report.cpu.percent,
            "memory_percent": report.memory.percent,
            "disk_percent": report.disk.percent,
            **{m: cond.gpu_value(m, gpus) for m in cond.GPU_METRICS},
        }

    def _judge_host(self, rule: AlertRule, host: dict[str, float | None]) -> cond.Verdict:
        value = host.get(rule.metric)
        if rule.condition == "is_nan":
            # None here is a host without GPUs (or a device that reports no value), not NaN.
            return cond.check_is_nan(rule.metric, value is not None, value, SYSTEM)
        return _compare(rule, value, SYSTEM)

    async def _judge_session(
        self, rule: AlertRule, session_id: str, obj: Obj, sd: _SessionData
    ) -> cond.Verdict:
        metric = rule.metric
        if rule.condition == "no_improvement_for":
            history = await self._history(session_id, sd)
            series = [_float(r.get(metric)) for r in history if metric in r]
            return cond.check_no_improvement(
                metric,
                series,
                epochs=rule.for_epochs,
                mode=rule.mode,
                min_delta=rule.threshold or 0.0,
                subject=session_id,
            )
        if rule.condition == "stalled":
            last = await self._last_seen(session_id, metric, sd)
            since = last or self._running_since.get(session_id, time.time())
            return cond.check_stalled(metric, time.time() - since, rule.window_s, session_id)
        if metric in cond.GPU_METRICS:
            present, value = True, cond.gpu_value(metric, await self._gpus(session_id, sd))
        else:
            present, value = await self._latest(session_id, metric, obj, sd)
        if rule.condition == "is_nan":
            return cond.check_is_nan(metric, present, value, session_id)
        return _compare(rule, value, session_id)

    async def _records(self, session_id: str, sd: _SessionData) -> list[tuple[float, Any]]:
        if sd.records is None:
            entries = (
                await self.store.redis.xrevrange(
                    schema_keys.metrics_stream(session_id), count=_LATEST_SCAN
                )
                or []
            )
            sd.records = [(_entry_time(i), schema_keys.decode_record(f or {})) for i, f in entries]
        return sd.records

    async def _latest(
        self, session_id: str, metric: str, obj: Obj, sd: _SessionData
    ) -> tuple[bool, float | None]:
        """(present, value) of the newest record carrying the metric; the CR's latest
        metrics when the stream has none (a trimmed or foreign session)."""
        for _, record in await self._records(session_id, sd):
            if metric in record:
                return True, _float(record[metric])
        latest = (obj.get("status") or {}).get("latestMetrics") or {}
        if metric in latest:
            return True, _float(latest[metric])
        return False, None

    async def _history(self, session_id: str, sd: _SessionData) -> list[dict[str, Any]]:
        if sd.history is None:
            entries = (
                await self.store.redis.xrevrange(
                    schema_keys.metrics_stream(session_id), count=_HISTORY_SCAN
                )
                or []
            )
            records = [schema_keys.decode_record(f or {}) for _, f in reversed(entries)]
            sd.history = [r for r in records if isinstance(r.get("epoch"), int)]
        return sd.history

    async def _last_seen(self, session_id: str, metric: str, sd: _SessionData) -> float | None:
        """Arrival time of the newest record carrying the metric, epoch or step records."""
        times = [t for t, r in await self._records(session_id, sd) if metric in r][:1]
        if sd.steps is None:
            entries = await self.store.redis.xrevrange(
                schema_keys.steps_stream(session_id), count=1
            )
            sd.steps = (
                (_entry_time(entries[0][0]), _metric_names(entries[0][1]))
                if entries
                else (0.0, set())
            )
        if metric in sd.steps[1]:
            times.append(sd.steps[0])
        return max(times) if times else None

    async def _gpus(self, session_id: str, sd: _SessionData) -> list[dict[str, float | None]]:
        if sd.gpus is None:
            entries = await self.store.redis.xrevrange(schema_keys.gpu_stream(session_id), count=1)
            sample = schema_keys.decode_record(entries[0][1]) if entries else {}
            sd.gpus = []
            for g in sample.get("gpus") or []:
                used, total = (
                    _float(g.get("memory_used_bytes")),
                    _float(g.get("memory_total_bytes")),
                )
                sd.gpus.append(
                    {
                        "utilization": _float(g.get("utilization_percent")),
                        "memory_percent": 100.0 * used / total
                        if used is not None and total
                        else None,
                        "temperature": _float(g.get("temperature_c")),
                    }
                )
        return sd.gpus

    async def _stop(self, session_ids: list[str], alert: Alert) -> None:
        if self._sessions is None:
            log.warning("alert %s: cannot stop sessions, Kubernetes is unavailable", alert.alert_id)
            return
        for session_id in session_ids:
            try:
                await self._sessions.stop(session_id)
                log.info("alert %s stopped session %s", alert.alert_id, session_id)
            except PivotError as exc:  # already stopped, gone, API server down
                log.warning(
                    "alert %s: stopping %s failed: %s", alert.alert_id, session_id, exc.message
                )
