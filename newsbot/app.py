"""The python-telegram-bot application, and how the handling of each update went.

``build_application`` builds the application with Newsbot's handlers; ``handle_update``
feeds it one update from the stream and tells the consumer how that went:

* handled (a reply, a refusal, even the apology for a bug of ours): it returns;
* ``Held``: a send must wait out a rate limit longer than a worker may (the limiter
  raised ``SendDeferred``); the update is handled again once the wait has passed;
* ``Deferred``: Redis or Telegram was unreachable; the update is handled again later;
* ``BadUpdate``: it cannot be parsed; never retried.

The application's error handler is where a held or deferred update is told apart from
a bug. It reports to ``Outcomes`` under the update's id, and ``handle_update`` takes the
report when the application has returned: nothing else keeps track of updates.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any

from redis.exceptions import RedisError
from telegram import LinkPreviewOptions, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, NetworkError
from telegram.ext import (
    ApplicationBuilder,
    ApplicationHandlerStop,
    BaseRateLimiter,
    ContextTypes,
    Defaults,
)
from telegram.request import BaseRequest

from newsbot.cluster.capacity import committing, waiting
from newsbot.cluster.ratelimit import RedisRateLimiter, SendDeferred
from newsbot.config import Settings
from newsbot.errors import BadUpdate, Deferred, Held
from newsbot.handlers import APOLOGY, App, Handlers
from newsbot.news import News
from newsbot.sources.guard import Guard
from newsbot.store import Store
from newsbot.transport import AiohttpRequest

logger = logging.getLogger(__name__)

# Opt in to python-telegram-bot's timedelta durations (RetryAfter.retry_after and
# friends), the default from v23; without it every 429 also raises a deprecation warning.
os.environ.setdefault("PTB_TIMEDELTA", "true")

# Connections of a replica to the Bot API for its sends.
BOT_CONNECTIONS = 8


def build_application(
    settings: Settings,
    store: Store,
    news: News,
    token: str,
    request: BaseRequest | None = None,
    rate_limited: bool = True,
    outcomes: Outcomes | None = None,
    guard: Guard | None = None,
) -> App:
    """Build the python-telegram-bot application with Newsbot's handlers.

    There is no Updater: updates arrive through the Redis stream (see cluster.stream),
    and ``handle_update`` feeds them in; its error handler reports to ``outcomes``.
    ``guard`` checks the URLs users give (the news' own by default).
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
    if request is None:
        # Telegram takes at most ~30 messages a second from a bot: 8 connections carry
        # that even at 250 ms a round trip.
        request = AiohttpRequest(BOT_CONNECTIONS, pool_timeout=10)
    # getUpdates goes through the poller's own request (cluster.poller): the bot's is
    # never used, so it shares this one rather than opening a pool of its own.
    builder = builder.request(request).get_updates_request(request)
    if rate_limited:
        builder = builder.rate_limiter(WaitingRateLimiter(RedisRateLimiter(store.redis, settings)))
    application = builder.build()
    handlers = Handlers(settings, store, news, guard)
    handlers.register(application)
    reports = outcomes if outcomes is not None else Outcomes()

    async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        await report_error(reports, handlers, update, context)

    application.add_error_handler(on_error)
    return application


class Outcomes:
    """How the updates in hand went, where not simply handled: held or deferred.

    The error handler reports here, under the update's id; ``handle_update`` takes the
    report once the application has returned. An update handled without trouble leaves
    nothing behind.
    """

    def __init__(self) -> None:
        self._reports: dict[int, Deferred] = {}

    def report(self, update_id: int, problem: Deferred) -> None:
        """Note that an update must be handled again later, and why."""
        if isinstance(self._reports.get(update_id), Held) and not isinstance(problem, Held):
            return  # the hold says how long to wait; an outage beside it does not
        self._reports[update_id] = problem

    def take(self, update_id: int) -> Deferred | None:
        """The report on an update (None: it was handled), forgotten as it is read."""
        return self._reports.pop(update_id, None)

    def __len__(self) -> int:
        return len(self._reports)


def deferral(update_id: int | None, error: object) -> Deferred | None:
    """What an error means for its update: held, deferred, or None for a bug of ours."""
    if isinstance(error, SendDeferred):
        return Held(f"update {update_id} waits out a rate limit: {error}", error.wait_seconds)
    if isinstance(error, Deferred):
        return error
    if is_outage(error):
        return Deferred(f"update {update_id} met an outage: {error}")
    return None


def is_outage(error: object) -> bool:
    """Tell whether an error means "try again later" rather than "this is a bug"."""
    if isinstance(error, BadRequest):
        return False
    return isinstance(error, RedisError | OSError | NetworkError)


async def report_error(
    outcomes: Outcomes, handlers: Handlers, update: object, context: ContextTypes.DEFAULT_TYPE
) -> None:
    """The application's error handler: a held or deferred update, or a bug of ours.

    A held or deferred update goes no further (no later handler group runs without the
    gate's say): it is handled again from the start. A bug is logged, and the user is
    told it was ours.
    """
    update_id = update.update_id if isinstance(update, Update) else None
    problem = deferral(update_id, context.error)
    if problem is not None:
        # Redis or Telegram is unreachable, or the chat must wait: the update is handled
        # again later, so the user gets the real answer rather than an apology.
        logger.warning("update %s deferred: %s", update_id, context.error)
        if update_id is not None:
            outcomes.report(update_id, problem)
        raise ApplicationHandlerStop
    logger.error("handling an update failed", exc_info=context.error)
    if not isinstance(update, Update) or update.effective_chat is None:
        return
    try:
        await handlers.reply(update, context, APOLOGY)
    except SendDeferred as held:
        # Even the apology must wait: the update is handled again (and answered) later.
        outcomes.report(update.update_id, deferral(update.update_id, held) or held)
        raise ApplicationHandlerStop from None


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


async def handle_update(application: App, outcomes: Outcomes, data: dict[str, Any]) -> None:
    """Handle one update given as Bot API JSON; raise Deferred to have it retried.

    Raises Held (a Deferred) when a reply must wait out a rate limit, Deferred when the
    handling met an outage, and BadUpdate when python-telegram-bot cannot parse the
    update (a field shape of another Bot API version, say): trying again could not help.
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
    problem = outcomes.take(update.update_id)
    if problem is not None:
        raise problem
