"""Wiring: the one place the object graph is put together, and taken apart.

``open_core(settings)`` builds, in this order, the store (its Redis pool sized for one
replica's work), ONE SSRF guard (its resolver shared by the news' fetches and the
checks of what users type), the fetcher of each kind of source, the news, the source
checker and, given a token, the python-telegram-bot application with its handlers and
the outcome registry its error handler reports to. On exit it closes them the other way
round: the application (its HTTP pool and the rate limiter, which still use Redis), the
news (its fetch pool), the fetchers (their download threads), the guard (its resolver
threads), and last the store.

Every command uses it: `newsbot run` (service) and `newsbot console` with the
application, `newsbot fetch` without; `newsbot check` needs only the store
(``open_store``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from telegram.request import BaseRequest

from newsbot.alerts import ALERT_SLOTS
from newsbot.app import Outcomes, build_application, handle_update
from newsbot.cluster.stream import MAX_IN_FLIGHT
from newsbot.config import Settings
from newsbot.digests import DIGEST_SLOTS, PREFETCH_SLOTS
from newsbot.handlers import App
from newsbot.news import News
from newsbot.sources.checking import SourceChecker
from newsbot.sources.download import FETCH_THREADS
from newsbot.sources.guard import Guard
from newsbot.sources.kinds import default_fetchers
from newsbot.store import Store, connect, pool_size

# Downloads one replica runs at once (the download pool of newsbot.sources.download):
# each one that finishes stores its result in Redis, so the Redis pool has a connection
# for each.
DOWNLOADS_IN_FLIGHT = FETCH_THREADS
# Connections one replica's Redis pool holds: each update in hand, digest, prefetch,
# alert check and finishing download at once, and the loops beside them.
REPLICA_CONNECTIONS = pool_size(
    MAX_IN_FLIGHT, DIGEST_SLOTS + PREFETCH_SLOTS + ALERT_SLOTS, DOWNLOADS_IN_FLIGHT
)


@dataclass
class Core:
    """What every command works with; ``application`` is None without a token."""

    settings: Settings
    store: Store
    guard: Guard
    news: News
    checker: SourceChecker
    outcomes: Outcomes
    application: App | None

    @property
    def bot_application(self) -> App:
        """The application, for the commands that opened the core with a token."""
        if self.application is None:
            raise RuntimeError("the core was opened without a token: no application")
        return self.application

    async def handle(self, data: dict[str, Any]) -> None:
        """Handle one update (Bot API JSON); raise Deferred to have it retried later."""
        await handle_update(self.bot_application, self.outcomes, data)


@contextlib.asynccontextmanager
async def open_store(
    settings: Settings, connections: int = REPLICA_CONNECTIONS
) -> AsyncIterator[Store]:
    """The store on REDIS_URL (or the embedded one), closed on exit."""
    store = Store(connect(settings, connections), settings.items_per_source)
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def open_core(
    settings: Settings,
    token: str | None = None,
    *,
    guard: Guard | None = None,
    request: BaseRequest | None = None,
    rate_limited: bool = True,
    connections: int = REPLICA_CONNECTIONS,
) -> AsyncIterator[Core]:
    """Build the object graph; close it in one place, the last built first.

    ``token`` adds the application (``request`` replaces its HTTP client, as the
    console's does; ``rate_limited`` paces its sends by the shared limiter). ``guard``
    replaces the SSRF guard (and with it the resolver): tests stand in the DNS edge with
    it, and close it themselves.
    """
    async with contextlib.AsyncExitStack() as stack:
        # Each part's closing is pushed as it is built: the exit runs them last first.
        store = await stack.enter_async_context(open_store(settings, connections))
        if guard is None:
            guard = Guard(settings.allow_private_urls)
            stack.callback(guard.close)
        fetchers = default_fetchers(settings, guard)
        for fetcher in fetchers.values():
            stack.callback(fetcher.close)
        news = News(settings, store, guard, fetchers=fetchers)
        stack.callback(news.close)
        outcomes = Outcomes()
        application = None
        if token is not None:
            application = build_application(
                settings,
                store,
                news,
                token,
                request=request,
                rate_limited=rate_limited,
                outcomes=outcomes,
                guard=guard,
            )
            # The application's shutdown is a no-op unless it started; a start that
            # failed (a refused token) has opened its HTTP session all the same. The bot
            # sends and polls through one request (app.build_application).
            stack.push_async_callback(application.bot.request.shutdown)
            stack.push_async_callback(application.shutdown)
        checker = SourceChecker(guard, news.fetch_seconds)
        yield Core(settings, store, guard, news, checker, outcomes, application)
