"""The event hub: `publish(channel, payload)` and `subscribe(channel)`, in-process or over Redis.

Events are wake-ups, not the truth: a subscriber re-reads the row it watches, so a dropped or
coalesced event costs nothing but a later update. Two implementations, chosen by
`settings.redis_url`:

- `LocalHub` (embedded mode): asyncio queues. `publish` is thread-safe: the embedded worker
  runs on another thread's event loop, so delivery goes through `loop.call_soon_threadsafe`.
- `RedisHub` (production): Redis pub/sub. One publishing connection per event loop, and one
  listening connection per process (a pattern subscription on the hub's prefix) that fans the
  messages out to the local subscribers through a `LocalHub`.

Every process that changes jobs calls `install(settings)` once (the API's lifespan, worker
boot): it picks the hub and registers the publisher of job events (channel `job:<id>`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.settings import Settings, get_settings

log = logging.getLogger(__name__)

# A subscriber that falls this far behind loses its oldest wake-ups (it re-reads the row).
QUEUE_SIZE = 100
DEFAULT_PREFIX = "tenantry:events:"


def job_channel(job_id: int) -> str:
    return f"job:{job_id}"


class Hub(Protocol):
    async def publish(self, channel: str, payload: dict[str, Any]) -> None: ...

    def subscribe(self, channel: str) -> contextlib.AbstractAsyncContextManager[Subscription]: ...

    async def close(self) -> None: ...


@dataclass(eq=False)
class Subscription:
    """One subscriber's queue, bound to the event loop it was created on."""

    channel: str
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[dict[str, Any]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=QUEUE_SIZE)
    )

    def _put(self, payload: dict[str, Any]) -> None:
        # Runs on the subscriber's loop. Full: drop the oldest wake-up, keep the newest.
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
        self.queue.put_nowait(payload)

    def deliver(self, payload: dict[str, Any]) -> None:
        """Hand a payload over from any thread."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self._put(payload)
        elif not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                self.loop.call_soon_threadsafe(self._put, payload)

    async def next(self, within: float | None = None) -> dict[str, Any] | None:
        """The next payload, or None after `within` seconds without one."""
        if within is None:
            return await self.queue.get()
        try:
            return await asyncio.wait_for(self.queue.get(), within)
        except TimeoutError:
            return None

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            yield await self.queue.get()


class LocalHub:
    """In-process fan-out; `publish` may be called from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, set[Subscription]] = {}

    def deliver(self, channel: str, payload: dict[str, Any]) -> int:
        with self._lock:
            targets = list(self._subscribers.get(channel, ()))
        for sub in targets:
            sub.deliver(payload)
        return len(targets)

    def deliver_all(self, payload: dict[str, Any]) -> None:
        """Wake every subscriber (after a lost connection: they re-read their rows)."""
        with self._lock:
            targets = [s for subs in self._subscribers.values() for s in subs]
        for sub in targets:
            sub.deliver(payload)

    async def publish(self, channel: str, payload: dict[str, Any]) -> None:
        self.deliver(channel, payload)

    def subscriber_count(self, channel: str | None = None) -> int:
        with self._lock:
            if channel is not None:
                return len(self._subscribers.get(channel, ()))
            return sum(len(s) for s in self._subscribers.values())

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        sub = Subscription(channel, asyncio.get_running_loop())
        with self._lock:
            self._subscribers.setdefault(channel, set()).add(sub)
        try:
            yield sub
        finally:
            with self._lock:
                subs = self._subscribers.get(channel)
                if subs is not None:
                    subs.discard(sub)
                    if not subs:
                        del self._subscribers[channel]

    async def close(self) -> None:
        return None


class RedisHub:
    """Redis pub/sub. Channels are prefixed, so test runs and deployments sharing one Redis
    do not hear each other (pub/sub ignores the database number)."""

    RECONNECT_DELAY = 0.5

    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX) -> None:
        self.url = url
        self.prefix = prefix
        self.local = LocalHub()
        self._publishers: dict[asyncio.AbstractEventLoop, Any] = {}
        self._publishers_lock = threading.Lock()
        self._listener: asyncio.Task[None] | None = None
        self._listener_loop: asyncio.AbstractEventLoop | None = None
        self._listening = asyncio.Event()

    def _client(self) -> Any:
        # A redis.asyncio client belongs to the loop it first ran on: one per loop.
        import redis.asyncio as aioredis

        loop = asyncio.get_running_loop()
        with self._publishers_lock:
            client = self._publishers.get(loop)
            if client is None:
                for old in [lp for lp in self._publishers if lp.is_closed()]:
                    del self._publishers[old]
                client = aioredis.Redis.from_url(self.url)
                self._publishers[loop] = client
            return client

    async def publish(self, channel: str, payload: dict[str, Any]) -> None:
        await self._client().publish(self.prefix + channel, json.dumps(payload))

    async def _listen(self) -> None:
        import redis.asyncio as aioredis

        pattern = self.prefix + "*"
        first = True
        while True:
            client = aioredis.Redis.from_url(self.url)
            pubsub = client.pubsub()
            try:
                await pubsub.psubscribe(pattern)
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is None:
                        continue
                    kind = message.get("type")
                    if kind == "psubscribe":
                        self._listening.set()
                        if not first:
                            # Events may have been lost while reconnecting: wake everybody.
                            self.local.deliver_all({"resync": True})
                        first = False
                    elif kind == "pmessage":
                        channel = message["channel"].decode()[len(self.prefix) :]
                        try:
                            payload = json.loads(message["data"])
                        except (ValueError, TypeError):
                            continue
                        self.local.deliver(channel, payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._listening.clear()
                log.warning("event listener lost Redis (%s); reconnecting", exc)
                await asyncio.sleep(self.RECONNECT_DELAY)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def _ensure_listener(self) -> None:
        loop = asyncio.get_running_loop()
        stale = self._listener_loop is not None and self._listener_loop.is_closed()
        if self._listener is None or self._listener.done() or stale:
            self._listening = asyncio.Event()
            self._listener_loop = loop
            self._listener = loop.create_task(self._listen(), name="tenantry-event-listener")
        if self._listener_loop is loop:
            # Subscribed on the server before the caller reads its row: no event falls between.
            await asyncio.wait_for(self._listening.wait(), timeout=10)

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        await self._ensure_listener()
        async with self.local.subscribe(channel) as sub:
            yield sub

    async def close(self) -> None:
        if self._listener is not None:
            task, self._listener = self._listener, None
            if self._listener_loop is asyncio.get_running_loop():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            elif self._listener_loop is not None and not self._listener_loop.is_closed():
                self._listener_loop.call_soon_threadsafe(task.cancel)
        loop = asyncio.get_running_loop()
        with self._publishers_lock:
            client = self._publishers.pop(loop, None)
            self._publishers.clear()
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()


# --- the process's hub -----------------------------------------------------------------------

_hub: Hub | None = None
_install_lock = threading.Lock()
_publisher_registered = False


def build_hub(settings: Settings, prefix: str = DEFAULT_PREFIX) -> Hub:
    if settings.redis_url:
        return RedisHub(settings.redis_url, prefix)
    return LocalHub()


def install(settings: Settings | None = None, *, hub: Hub | None = None) -> Hub:
    """Pick this process's hub (once; later calls return it) and publish job events on it.
    Call it at boot in every process that changes jobs: the API and each worker process."""
    global _hub, _publisher_registered
    with _install_lock:
        if hub is not None:
            _hub = hub
        elif _hub is None:
            _hub = build_hub(settings or get_settings())
        if not _publisher_registered:
            from app.services import jobs

            jobs.on_event(publish_job_event)
            _publisher_registered = True
        return _hub


def current() -> Hub | None:
    return _hub


def get_hub() -> Hub:
    return _hub if _hub is not None else install()


async def shutdown() -> None:
    """Close the hub's connections and forget it (the next `install` builds a new one)."""
    global _hub
    with _install_lock:
        hub, _hub = _hub, None
    if hub is not None:
        await hub.close()


async def publish(channel: str, payload: dict[str, Any]) -> None:
    hub = _hub
    if hub is not None:
        await hub.publish(channel, payload)


@contextlib.asynccontextmanager
async def subscribe(channel: str) -> AsyncIterator[Subscription]:
    async with get_hub().subscribe(channel) as sub:
        yield sub


async def publish_job_event(event: Any) -> None:
    """The jobs service's publisher (`jobs.on_event`): never lets a hub failure break a
    state change, which is already committed."""
    try:
        await publish(job_channel(event.id), dataclasses.asdict(event))
    except Exception as exc:
        log.warning("could not publish the event of job %s: %s", event.id, exc)
