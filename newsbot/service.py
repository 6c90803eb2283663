"""`newsbot run`: one replica of the bot, with every loop it runs and a clean shutdown.

Every replica runs the same loops: the poller (only while it holds the lease), the
consumer of the update stream, the digest sender, and the health server. SIGTERM stops
intake first (the poller gives its lease up), lets the consumer finish and acknowledge
the updates in hand, and exits well inside Kubernetes' grace period.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
import uuid
from typing import Any

from redis.exceptions import RedisError
from telegram.error import InvalidToken, NetworkError

from newsbot.app import App, build_application, handle_update
from newsbot.cluster.poller import Poller
from newsbot.cluster.stream import Consumer
from newsbot.config import Settings
from newsbot.digests import Digests
from newsbot.errors import ConfigError
from newsbot.health import HealthServer
from newsbot.news import News
from newsbot.sources.guard import Guard
from newsbot.store import Store, connect

logger = logging.getLogger(__name__)

# In-flight work gets this long after SIGTERM before it is cut off; well inside the
# 10 s the compose file and the 30 s Kubernetes allow.
DRAIN_SECONDS = 7.0
STARTUP_RETRY_SECONDS = 2.0


def replica_name() -> str:
    """A name for this replica's consumer: host, pid and a random part (pids repeat)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


async def serve(settings: Settings, stop: asyncio.Event | None = None,
                guard: Guard | None = None) -> None:
    """Run one replica until SIGTERM/SIGINT (or ``stop``), then shut down cleanly.

    ``guard`` replaces the feeds' SSRF guard (and with it their resolver): tests stand
    in the DNS edge with it.
    """
    assert settings.telegram_token is not None
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    store = Store(connect(settings))
    news = News(settings, store, guard)
    application, handlers = build_application(settings, store, news, settings.telegram_token)
    name = replica_name()
    consumer = Consumer(store.redis, name, functools.partial(handle_update, application,
                                                             handlers))
    poller = Poller(application.bot, store.redis, name)
    digests = Digests(store, news, application.bot)

    async def ready() -> str | None:
        if not await store.ping():
            return "Redis does not answer"
        if not consumer.running:
            return "the update consumer is not running"
        return None

    health = HealthServer(settings.http_port, lambda: consumer.heartbeat, ready)
    if settings.http_port:
        await health.start()
    try:
        if not await _start(application, consumer, stop):
            return
        logger.info("newsbot is running as @%s (replica %s)", application.bot.username, name)
        await _run_until_stopped(stop, poller, consumer, digests)
    finally:
        await health.stop()
        await application.shutdown()  # a no-op if it never started
        news.close()
        await store.close()
        logger.info("newsbot stopped")


async def _start(application: App, consumer: Consumer, stop: asyncio.Event) -> bool:
    """Reach Telegram and Redis, retrying while they are away; False if stopped first."""
    while not stop.is_set():
        try:
            await application.initialize()
            await consumer.ensure_group()
            return True
        except InvalidToken:
            raise ConfigError("TELEGRAM_TOKEN", "TELEGRAM_TOKEN was refused by Telegram "
                              "(401 Unauthorized): check it with @BotFather") from None
        except (NetworkError, RedisError, OSError) as error:
            logger.warning("cannot start yet (%s); retrying", error)
            try:
                await asyncio.wait_for(stop.wait(), STARTUP_RETRY_SECONDS)
            except TimeoutError:
                pass  # try again
    return False


async def _run_until_stopped(stop: asyncio.Event, poller: Poller, consumer: Consumer,
                             digests: Digests) -> None:
    polling: asyncio.Task[Any] = asyncio.create_task(poller.run(stop), name="poller")
    working: list[asyncio.Task[Any]] = [
        asyncio.create_task(consumer.run(stop), name="consumer"),
        asyncio.create_task(digests.run(stop), name="digests"),
    ]
    stopping: asyncio.Task[Any] = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([polling, stopping, *working],
                                 return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    logger.info("stopping: intake first, then the work in hand")
    # Intake first: cancel the long poll in flight; the poller releases its lease.
    polling.cancel()
    await asyncio.gather(polling, return_exceptions=True)
    _, late = await asyncio.wait(working, timeout=DRAIN_SECONDS)
    for task in late:
        logger.warning("%s did not finish in time; cut off", task.get_name())
        task.cancel()
    await asyncio.gather(*working, return_exceptions=True)
    for task in done:
        error = None if task is stopping else task.exception()
        if error is not None:
            raise error
