"""Background work of the API workers: jobs every worker runs, and jobs exactly one worker
runs at a time (alert evaluation, lifecycle events, webhook scheduling), elected through a
Redis lease so that 4 uvicorn workers, or 3 replicas of them, never evaluate a rule twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import Callable, Coroutine
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from pivot_api.redis_util import reraise_cancellation, script
from pivot_schema.keys import ApiKeys

log = logging.getLogger(__name__)

Job = Callable[[], Coroutine[Any, Any, None]]

# Extend the lease only while we still hold it; release only our own.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeaderLease:
    """A lease in Redis (SET NX PX) renewed every third of its ttl. Whoever holds it runs
    the job; a holder that stops renewing (crashed, partitioned) loses it after `ttl_s`, and
    its job is cancelled if it notices first."""

    def __init__(self, redis: Redis, key: str, *, ttl_s: float = 10.0) -> None:
        self.redis = redis
        self.key = key
        self.ttl_ms = max(100, int(ttl_s * 1000))
        self.token = secrets.token_hex(12)
        self.held = False

    async def acquire(self) -> bool:
        self.held = bool(await self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms))
        return self.held

    async def renew(self) -> bool:
        renewed = await script(self.redis, _RENEW)(keys=[self.key], args=[self.token, self.ttl_ms])
        self.held = bool(renewed)
        return self.held

    async def release(self) -> None:
        if self.held:
            self.held = False
            await script(self.redis, _RELEASE)(keys=[self.key], args=[self.token])

    async def run(self, job: Job, name: str) -> None:
        """Forever: wait for the lease, run `job` while holding it."""
        period = self.ttl_ms / 3000
        while True:
            try:
                if not await self.acquire():
                    await asyncio.sleep(period * (0.5 + random.random()))
                    continue
                log.info("leading %s", name)
                task = asyncio.create_task(job(), name=f"pivot-leader-{name}")
                try:
                    while not task.done():
                        done, _ = await asyncio.wait({task}, timeout=period)
                        if not done and not await self.renew():
                            log.warning("lost the lease of %s", name)
                            break
                finally:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                    if task.done() and not task.cancelled() and task.exception() is not None:
                        log.error("job %s crashed", name, exc_info=task.exception())
                    with contextlib.suppress(RedisError, OSError):
                        await self.release()
                await asyncio.sleep(period)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                reraise_cancellation()
                self.held = False
                log.warning("leader election for %s: %s", name, exc)
                await asyncio.sleep(period)


class BackgroundJobs:
    """The worker's background tasks, started with the app and cancelled at shutdown."""

    def __init__(self, redis: Redis, keys: ApiKeys, *, lease_ttl_s: float = 10.0) -> None:
        self._redis = redis
        self._keys = keys
        self._lease_ttl_s = lease_ttl_s
        self._tasks: list[asyncio.Task[None]] = []
        self.leases: dict[str, LeaderLease] = {}

    def spawn(self, name: str, job: Job) -> None:
        """Run `job` in this worker (and in every other one)."""
        self._tasks.append(asyncio.create_task(_forever(job, name), name=f"pivot-{name}"))

    def lead(self, name: str, job: Job) -> None:
        """Run `job` in exactly one worker at a time, among all that share the Redis."""
        lease = LeaderLease(self._redis, self._keys.leader(name), ttl_s=self._lease_ttl_s)
        self.leases[name] = lease
        self._tasks.append(asyncio.create_task(lease.run(job, name), name=f"pivot-lead-{name}"))

    async def stop(self) -> None:
        # Cancel until done: redis-py (8.1) can swallow a cancellation that lands inside a
        # command (it surfaces as a ConnectionError, which the loops above retry), so one
        # cancel may leave a job running and shutdown hanging.
        while pending := [t for t in self._tasks if not t.done()]:
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=0.2)
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()


async def _forever(job: Job, name: str) -> None:
    """Restart a crashed job after a pause: background work must not die silently."""
    backoff = 0.5
    while True:
        try:
            await job()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            reraise_cancellation()
            log.exception("background job %s crashed; restarting in %.1fs", name, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
