"""Wiring: the one place the object graph is put together."""

from __future__ import annotations

import os
from collections.abc import Callable, Coroutine
from typing import Any

from telegram import LinkPreviewOptions, Update
from telegram.constants import ParseMode
from telegram.ext import ApplicationBuilder, BaseRateLimiter, Defaults
from telegram.request import BaseRequest

from newsbot.cluster.capacity import committing, waiting
from newsbot.cluster.ratelimit import RedisRateLimiter
from newsbot.config import Settings
from newsbot.errors import BadUpdate, Deferred, Held
from newsbot.handlers import App, Handlers
from newsbot.news import News
from newsbot.store import Store

# Opt in to python-telegram-bot's timedelta durations (RetryAfter.retry_after and
# friends), the default from v23; without it every 429 also raises a deprecation warning.
os.environ.setdefault("PTB_TIMEDELTA", "true")


def build_application(
    settings: Settings,
    store: Store,
    news: News,
    token: str,
    request: BaseRequest | None = None,
    rate_limited: bool = True,
) -> tuple[App, Handlers]:
    """Build the python-telegram-bot application with Newsbot's handlers.

    There is no Updater: updates arrive through the Redis stream (see cluster.stream),
    and ``handle_update`` feeds them in.
    """
    builder = (
        ApplicationBuilder()
        .token(token)
        .base_url(f"{settings.telegram_api_url}/bot")
        .base_file_url(f"{settings.telegram_api_url}/file/bot")
        .updater(None)
        .defaults(
            Defaults(
                parse_mode=ParseMode.HTML,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )
        )
    )
    if request is not None:
        builder = builder.request(request).get_updates_request(request)
    else:
        # Telegram takes at most ~30 messages a second from a bot, so 16 connections
        # cover even slow round trips; httpcore's pool costs CPU per request for every
        # connection it keeps, so more would only slow each send down.
        builder = builder.connection_pool_size(16).pool_timeout(10)
    if rate_limited:
        builder = builder.rate_limiter(WaitingRateLimiter(RedisRateLimiter(store.redis, settings)))
    application = builder.build()
    handlers = Handlers(settings, store, news)
    handlers.register(application)
    return application, handlers


class WaitingRateLimiter(BaseRateLimiter[Any]):
    """Runs a rate limiter's waits as waits of the update consumer (cluster.capacity).

    While a Telegram call waits for its slot or out a ``retry_after``, the handler gives
    its share of the consumer to other chats, and a stop may interrupt it (the update
    stays pending); the HTTP call itself is never cut off half-way.
    """

    def __init__(self, inner: BaseRateLimiter[Any]) -> None:
        self.inner = inner

    async def initialize(self) -> None:
        """Set the inner limiter up."""
        await self.inner.initialize()

    async def shutdown(self) -> None:
        """Tear the inner limiter down."""
        await self.inner.shutdown()

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: Any,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        """Let the inner limiter pace and retry the call; only its waits are waits."""

        async def call(*call_args: Any, **call_kwargs: Any) -> Any:
            async with committing():
                return await callback(*call_args, **call_kwargs)

        async with waiting():
            return await self.inner.process_request(
                call, args, kwargs, endpoint, data, rate_limit_args
            )


async def handle_update(application: App, handlers: Handlers, data: dict[str, Any]) -> None:
    """Handle one update given as Bot API JSON; raise Deferred to have it retried.

    Raises BadUpdate when python-telegram-bot cannot parse it (a field shape of another
    Bot API version, say): trying again could not help.
    """
    try:
        update = Update.de_json(data, application.bot)
    except Exception as error:
        # Whatever the library raises on a shape it does not know (TypeError, KeyError,
        # ValueError...): this one update is unreadable, the others are not.
        raise BadUpdate(
            f"update {data.get('update_id')} cannot be parsed: {type(error).__name__}: {error}"
        ) from error
    await application.process_update(update)
    wait = handlers.held.pop(update.update_id, None)
    if wait is not None:
        handlers.deferred.discard(update.update_id)
        raise Held(f"update {update.update_id} waits out a rate limit", wait)
    if update.update_id in handlers.deferred:
        handlers.deferred.discard(update.update_id)
        raise Deferred(f"update {update.update_id} met an outage")
