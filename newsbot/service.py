"""`newsbot run`: one replica of the bot, with every loop it runs and a clean shutdown.

Every replica runs the same loops: the poller (only while it holds the lease), the
consumer of the update stream, the digest sender, the alert watcher and the health
server. SIGTERM stops intake first (the poller gives its lease up), lets the consumer
finish and acknowledge the updates in hand, and exits well inside Kubernetes' grace period.

In webhook mode (NEWSBOT_WEBHOOK_URL) the health server also takes Telegram's pushes
(newsbot.webhook), on every replica; the poller then only holds the lease and sets the
webhook when it takes it.

Readiness is Redis taking writes and the consumer running. Redis out of memory
(``maxmemory``) is its own reason, logged once when it starts and once when it ends,
not once per update: the updates and digests wait in Redis and go on afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import uuid
from typing import Any

from redis.exceptions import RedisError
from telegram.error import InvalidToken, NetworkError, TelegramError

from newsbot.alerts import Alerts
from newsbot.cluster.poller import Poller
from newsbot.cluster.stream import Consumer
from newsbot.config import Settings
from newsbot.core import Core, open_core
from newsbot.digests import Digests
from newsbot.errors import ConfigError
from newsbot.handlers import App
from newsbot.health import HealthServer
from newsbot.menu import register_commands
from newsbot.source_notices import SourceNotices
from newsbot.sources.guard import Guard
from newsbot.store import Store
from newsbot.webhook import Webhook

logger = logging.getLogger(__name__)

# In-flight work gets this long after SIGTERM before it is cut off; well inside the
# 10 s the compose file and the 30 s Kubernetes allow.
DRAIN_SECONDS = 7.0
STARTUP_RETRY_SECONDS = 2.0
# How often Redis' state is looked at between probes, so its change is logged promptly.
REDIS_WATCH_SECONDS = 2.0


class Readiness:
    """The answer of /readyz, and one log line each time Redis' state changes."""

    def __init__(self, store: Store, consumer: Consumer) -> None:
        self.store = store
        self.consumer = consumer
        self.redis_problem: str | None = None

    async def __call__(self) -> str | None:
        """None when this replica can do its work, else the reason."""
        problem = await self.check_redis()
        if problem is not None:
            return problem
        if not self.consumer.running:
            return "the update consumer is not running"
        return None

    async def check_redis(self) -> str | None:
        """Why Redis cannot take writes now (None when it can); log when that changes."""
        problem = await self.store.write_problem()
        if problem != self.redis_problem:
            if problem is not None:
                logger.error(
                    "%s: updates and digests wait until Redis takes writes again", problem
                )
            else:
                logger.info("Redis takes writes again (it was: %s)", self.redis_problem)
            self.redis_problem = problem
        return problem

    async def watch(self, stop: asyncio.Event) -> None:
        """Check Redis every few seconds until ``stop``, so no change goes unlogged."""
        while not stop.is_set():
            try:
                await self.check_redis()
            except Exception:
                # The watch only logs; it must outlive whatever went wrong.
                logger.exception("checking Redis failed")
            try:
                await asyncio.wait_for(stop.wait(), REDIS_WATCH_SECONDS)
            except TimeoutError:
                pass  # time for the next look


def replica_name() -> str:
    """A name for this replica's consumer: host, pid and a random part (pids repeat)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


async def serve(
    settings: Settings, stop: asyncio.Event | None = None, guard: Guard | None = None
) -> None:
    """Run one replica until SIGTERM/SIGINT (or ``stop``), then shut down cleanly.

    ``guard`` replaces the SSRF guard (and with it the resolver) that both the feeds'
    fetches and the checks of users' URLs go through: tests stand in the DNS edge with
    it, and close it themselves.
    """
    assert settings.telegram_token is not None
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    async with open_core(settings, settings.telegram_token, guard=guard) as core:
        await _serve(core, stop)


async def _serve(core: Core, stop: asyncio.Event) -> None:
    """Run the loops of one replica on the core until ``stop``."""
    settings, store, application = core.settings, core.store, core.bot_application
    name = replica_name()
    consumer = Consumer(store.redis, name, core.handle)
    poller = Poller(
        application.bot,
        store.redis,
        name,
        webhook_url=settings.webhook_url,
        webhook_secret=settings.webhook_secret,
    )
    digests = Digests(store, core.news, application.bot)
    watcher = Alerts(store, core.news, application.bot)
    notices = SourceNotices(store, application.bot)
    webhook = None
    if settings.webhook_url is not None and settings.webhook_secret is not None:
        webhook = Webhook(store.redis, settings.webhook_url, settings.webhook_secret)

    ready = Readiness(store, consumer)
    health = HealthServer(settings.http_port, lambda: consumer.heartbeat, ready, webhook=webhook)
    if settings.http_port:
        await health.start()
    try:
        if not await _start(application, consumer, stop):
            return
        try:
            await register_commands(application.bot, store)
        except (TelegramError, RedisError) as error:
            # Only the menu is missing: commands work without it. Retried at next start.
            logger.warning("registering the command menu failed: %s", error)
        logger.info("newsbot is running as @%s (replica %s)", application.bot.username, name)
        await _run_until_stopped(stop, poller, consumer, digests, ready, watcher, notices)
    finally:
        await health.stop()
        # The core closes the rest (the application, the news, the store) right after.
        logger.info("newsbot stopped")


async def _start(application: App, consumer: Consumer, stop: asyncio.Event) -> bool:
    """Reach Telegram and Redis, retrying while they are away; False if stopped first."""
    while not stop.is_set():
        try:
            await application.initialize()
            await consumer.ensure_group()
            return True
        except InvalidToken:
            raise ConfigError(
                "TELEGRAM_TOKEN",
                "TELEGRAM_TOKEN was refused by Telegram "
                "(401 Unauthorized): check it with @BotFather",
            ) from None
        except (NetworkError, RedisError, OSError) as error:
            logger.warning("cannot start yet (%s); retrying", error)
            try:
                await asyncio.wait_for(stop.wait(), STARTUP_RETRY_SECONDS)
            except TimeoutError:
                pass  # try again
    return False


async def _run_until_stopped(
    stop: asyncio.Event,
    poller: Poller,
    consumer: Consumer,
    digests: Digests,
    ready: Readiness,
    watcher: Alerts | None = None,
    notices: SourceNotices | None = None,
) -> None:
    polling: asyncio.Task[Any] = asyncio.create_task(poller.run(stop), name="poller")
    working: list[asyncio.Task[Any]] = [
        asyncio.create_task(consumer.run(stop), name="consumer"),
        asyncio.create_task(digests.run(stop), name="digests"),
        asyncio.create_task(ready.watch(stop), name="redis watch"),
    ]
    if watcher is not None:
        working.append(asyncio.create_task(watcher.run(stop), name="alerts"))
    if notices is not None:
        working.append(asyncio.create_task(notices.run(stop), name="source notices"))
    stopping: asyncio.Task[Any] = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait(
        [polling, stopping, *working], return_when=asyncio.FIRST_COMPLETED
    )
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
