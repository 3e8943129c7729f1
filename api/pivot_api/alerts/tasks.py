"""The alert evaluator: every enabled rule against its subjects (running sessions, or the
host), raising and resolving alerts through the store (pivot_api.alerts.service). Runs as a
leader job, so in one worker at a time."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pivot_api.alerts import conditions as cond
from pivot_api.alerts.schemas import Alert, AlertRule
from pivot_api.alerts.service import SYSTEM, AlertStore
from pivot_api.errors import PivotError
from pivot_api.kube import Obj, SessionCache
from pivot_api.monitor.service import snapshot
from pivot_api.redis_util import reraise_cancellation, text
from pivot_api.sessions.service import SessionService, status_of
from pivot_schema import keys as schema_keys
from pivot_schema.crd import SessionStatus

log = logging.getLogger(__name__)

# Newest metric records read to find a metric's latest value.
_LATEST_SCAN = 50
# Epoch records read for no_improvement_for (older ones cannot change a recent verdict much,
# and a bound keeps one evaluation round cheap).
_HISTORY_SCAN = 10_000


@dataclass
class _SessionData:
    """What one round read about one session, so several rules share one read."""

    records: list[tuple[float, dict[str, Any]]] | None = None  # newest first (arrival s, record)
    history: list[dict[str, Any]] | None = None  # oldest first
    steps: tuple[float, set[str]] | None = None  # newest steps entry: time, field names
    gpus: list[dict[str, float | None]] | None = None
    read: set[str] = field(default_factory=set)


def _entry_time(stream_id: Any) -> float:
    return int(text(stream_id).split("-", 1)[0]) / 1000.0


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
                reraise_cancellation()
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
