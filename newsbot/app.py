"""Wiring: the one place the object graph is put together."""

from __future__ import annotations

import os
from typing import Any

from telegram import LinkPreviewOptions, Update
from telegram.constants import ParseMode
from telegram.ext import Application, ApplicationBuilder, Defaults
from telegram.request import BaseRequest

from newsbot.cluster.ratelimit import RedisRateLimiter
from newsbot.config import Settings
from newsbot.errors import Deferred
from newsbot.handlers import Handlers
from newsbot.news import News
from newsbot.store import Store

# Opt in to python-telegram-bot's timedelta durations (RetryAfter.retry_after and
# friends), the default from v23; without it every 429 also raises a deprecation warning.
os.environ.setdefault("PTB_TIMEDELTA", "true")

App = Application


def build_application(settings: Settings, store: Store, news: News, token: str,
                      request: BaseRequest | None = None,
                      rate_limited: bool = True) -> tuple[App, Handlers]:
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
        .defaults(Defaults(parse_mode=ParseMode.HTML,
                           link_preview_options=LinkPreviewOptions(is_disabled=True)))
    )
    if request is not None:
        builder = builder.request(request).get_updates_request(request)
    else:
        # Telegram takes at most ~30 messages a second from a bot, so 16 connections
        # cover even slow round trips; httpcore's pool costs CPU per request for every
        # connection it keeps, so more would only slow each send down.
        builder = builder.connection_pool_size(16).pool_timeout(10)
    if rate_limited:
        builder = builder.rate_limiter(RedisRateLimiter(store.redis, settings))
    application = builder.build()
    handlers = Handlers(settings, store, news)
    handlers.register(application)
    return application, handlers


async def handle_update(application: App, handlers: Handlers, data: dict[str, Any]) -> None:
    """Handle one update given as Bot API JSON; raise Deferred to have it retried."""
    update = Update.de_json(data, application.bot)
    await application.process_update(update)
    if update.update_id in handlers.deferred:
        handlers.deferred.discard(update.update_id)
        raise Deferred(f"update {update.update_id} met an outage")
