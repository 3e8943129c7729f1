"""Webhook background work: the fan-out from the event bus (every worker) and the delivery
scheduler (one worker at a time, the leader).

- Head-of-line: the scheduler delivers an endpoint's first event until it is acknowledged
  with a 2xx or dead-lettered, and only then the next. A failure schedules the endpoint again
  after exponential backoff with full jitter. Only the leader delivers, so an endpoint is
  worked by one worker at a time: each event reaches a receiver that answers 2xx once,
  unless the leader dies between the receiver's 2xx and recording it (then it is sent again
  with the same `webhook-id`).
- 410 Gone from a receiver disables its webhook (events stay in its outbox); other 4xx/5xx,
  timeouts, refused connections and redirects (never followed) are retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from typing import Any

from pivot_api.events import EventConsumer
from pivot_api.redis_util import reraise_cancellation, text, utcnow_iso
from pivot_api.webhooks.service import ACTIVE, WebhookService

log = logging.getLogger(__name__)

GROUP = "webhooks"


def backoff_s(attempt: int, base_s: float, max_s: float) -> float:
    """Full jitter: uniform in [0, min(max, base * 2**(attempt-1))]."""
    return random.uniform(0, min(max_s, base_s * 2 ** min(attempt - 1, 60)))


def fan_out_consumer(service: WebhookService) -> EventConsumer:
    """Every worker reads the bus in one group: each event is enqueued once."""
    return EventConsumer(service.redis, service.k, GROUP, service.fan_out)


class DeliveryScheduler:
    """Starts a delivery task for every due endpoint that has none; sleeps until the next is
    due, an enqueue wakes it, or a task ends. Run as a leader job."""

    def __init__(self, service: WebhookService) -> None:
        self.service = service
        self.settings = service.settings
        self._running: dict[str, asyncio.Task[None]] = {}
        self._kick = asyncio.Event()

    async def run(self) -> None:
        waker = asyncio.create_task(self._waker())
        sem = asyncio.Semaphore(self.settings.webhook_concurrency)
        try:
            while True:
                now = time.time()
                for wid in await self.service.due(now):
                    if wid not in self._running:
                        self._running[wid] = asyncio.create_task(self._work(wid, sem))
                wait = self.settings.webhook_poll_s
                nxt = await self.service.next_due()
                if nxt is not None and nxt > now:
                    wait = min(wait, nxt - now)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), max(wait, 0.001))
                self._kick.clear()
        finally:
            waker.cancel()
            tasks = [waker, *self._running.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._running.clear()

    async def _waker(self) -> None:
        """Turn enqueues made by any worker into a local wake-up of the scheduler."""
        timeout = max(self.settings.webhook_poll_s, 0.1)
        while True:
            try:
                if await self.service.wait_wake(timeout):
                    self._kick.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: the scheduler still polls
                reraise_cancellation()
                log.debug("webhook waker: %s", exc)
                await asyncio.sleep(timeout)

    async def _work(self, wid: str, sem: asyncio.Semaphore) -> None:
        try:
            while await self._deliver_head(wid, sem):
                pass
        except asyncio.CancelledError:
            raise
        except Exception:
            reraise_cancellation()
            # The endpoint stays due: the scheduler starts it again.
            log.exception("webhook %s: delivery failed", wid)
            await asyncio.sleep(self.settings.webhook_poll_s)
        finally:
            self._running.pop(wid, None)
            self._kick.set()

    async def _deliver_head(self, wid: str, sem: asyncio.Semaphore) -> bool:
        """Try the endpoint's first event; True if the next one may go now."""
        service = self.service
        head = await service.head(wid)
        record = json.loads(head[0]) if head else None
        if record is None or record["status"] != ACTIVE:
            await service.unschedule(wid)
            return False
        if len(head) == 1:
            return not await service.unschedule_if_idle(wid)
        member, score = text(head[1]), int(float(head[2]))
        event_id = member.partition("|")[2]
        if len(head) < 5:  # nothing to send (should not happen): drop the entry
            await service.drop(wid, member)
            return True
        body, attempt = text(head[3]), int(head[4])
        async with sem:
            result = await service.sender.send(
                record["url"], record["secret"], event_id, body.encode()
            )
        try:
            type_ = str(json.loads(body).get("type", ""))
        except ValueError:
            type_ = ""
        if result.ok:
            return await service.finish(wid, member, event_id, type_, attempt, result, None)
        if result.gone:
            await service.gone(wid, event_id, type_, attempt, result)
            return False
        if attempt >= self.settings.webhook_max_attempts:
            letter: dict[str, Any] = {
                "event_id": event_id,
                "type": type_,
                "attempts": attempt,
                "last_status_code": result.status_code,
                "last_error": result.error,
                "dead_lettered_at": utcnow_iso(),
                "body": body,
                "score": score,
                "member": member,
            }
            return await service.finish(wid, member, event_id, type_, attempt, result, letter)
        delay = backoff_s(
            attempt, self.settings.webhook_retry_base_s, self.settings.webhook_retry_max_delay_s
        )
        await service.retry_at(wid, event_id, type_, attempt, result, time.time() + delay)
        return False
