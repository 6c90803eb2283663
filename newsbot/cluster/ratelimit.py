"""One rate limit for every replica: Telegram's send limits, kept in Redis.

Telegram limits a bot, not a process: about 30 messages a second overall, one a second
in a chat, 20 a minute in a group. Every Bot API call goes through ``RedisRateLimiter``
(python-telegram-bot's rate-limiter seam). A send books the earliest slot that all its
buckets allow (GCRA, in one atomic script, on Redis' clock so replicas agree), sleeps
until then and goes. Booking instead of retrying means no thundering herd: a thousand
digests due at once leave at the allowed pace, in order.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Callable, Coroutine
from typing import Any

import redis.asyncio as aioredis
from telegram.error import BadRequest, NetworkError, RetryAfter
from telegram.ext import BaseRateLimiter

from newsbot import keys
from newsbot.config import Settings
from newsbot.metrics import SEND_RETRIES, TOO_MANY_REQUESTS

logger = logging.getLogger(__name__)

# Bot API methods that put a message in a chat.
SEND_METHODS = frozenset({
    "sendMessage", "sendPhoto", "sendDocument", "sendMediaGroup", "copyMessage",
    "forwardMessage", "sendAnimation", "sendVideo", "sendAudio", "sendVoice",
})
MAX_ATTEMPTS = 5
BACKOFF_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 8.0

# KEYS: one bucket each. ARGV: interval in ms for each bucket, in order.
# Books the earliest moment every bucket allows and returns how many ms to wait for it.
_BOOK = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local at = now
for i, key in ipairs(KEYS) do
    local tat = tonumber(redis.call('GET', key) or '0')
    if tat > at then at = tat end
end
for i, key in ipairs(KEYS) do
    local interval = tonumber(ARGV[i])
    redis.call('SET', key, at + interval, 'PX', at + interval - now + 1000)
end
return at - now
"""

# Push a bucket back by ARGV[1] ms after Telegram said 429.
_PENALISE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local wait_until = now + tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if wait_until > tat then
    redis.call('SET', KEYS[1], wait_until, 'PX', tonumber(ARGV[1]) + 1000)
end
return 0
"""


def buckets(chat_id: int, settings: Settings) -> list[tuple[str, int]]:
    """The buckets (key, interval in ms) a message to this chat must pass."""
    chosen = [
        (keys.RATE_GLOBAL, _interval_ms(1000, settings.send_per_second)),
        (keys.RATE_CHAT.format(chat_id=chat_id),
         _interval_ms(1000, settings.send_per_chat_second)),
    ]
    if chat_id < 0:  # groups, supergroups and channels
        chosen.append((keys.RATE_GROUP.format(chat_id=chat_id),
                       _interval_ms(60_000, settings.send_per_group_minute)))
    return chosen


def _interval_ms(window_ms: int, allowed: float) -> int:
    # Rounded up: 30 a second is one every 34 ms, not 33 (which would be 30.3 a second).
    return math.ceil(window_ms / allowed)


class RedisRateLimiter(BaseRateLimiter[None]):
    """Paces sends across replicas and retries 429s, 5xx answers and network errors."""

    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self.settings = settings
        self._book = redis.register_script(_BOOK)
        self._penalise = redis.register_script(_PENALISE)

    async def initialize(self) -> None:
        """Nothing to set up: the buckets live in Redis."""

    async def shutdown(self) -> None:
        """Nothing to tear down."""

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        """Wait for a slot, call Telegram, and retry what can safely be retried."""
        chat_id = _chat_id(data) if endpoint in SEND_METHODS else None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if chat_id is not None:
                await self.wait_for_slot(chat_id)
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as error:
                TOO_MANY_REQUESTS.inc()
                seconds = retry_after_seconds(error.retry_after)
                logger.warning("Telegram asked to wait %.1f s (%s)", seconds, endpoint)
                if chat_id is not None:
                    await self._penalise(keys=[keys.RATE_CHAT.format(chat_id=chat_id)],
                                         args=[int(seconds * 1000)])
                if attempt == MAX_ATTEMPTS:
                    raise
                await asyncio.sleep(seconds)
            except BadRequest:
                raise  # the request itself is wrong; sending it again cannot help
            except NetworkError as error:
                # 5xx answers and dropped connections: Telegram did not take the message.
                if attempt == MAX_ATTEMPTS:
                    raise
                SEND_RETRIES.inc()
                delay = min(BACKOFF_MAX_SECONDS, BACKOFF_SECONDS * 2 ** (attempt - 1))
                logger.warning("%s failed (%s); retrying in %.1f s", endpoint, error, delay)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
        raise AssertionError("unreachable")

    async def wait_for_slot(self, chat_id: int) -> None:
        """Book the next moment a message may go to this chat, and sleep until then."""
        chosen = buckets(chat_id, self.settings)
        wait_ms = await self._book(keys=[key for key, _ in chosen],
                                   args=[interval for _, interval in chosen])
        if int(wait_ms) > 0:
            await asyncio.sleep(int(wait_ms) / 1000)


def _chat_id(data: dict[str, Any]) -> int | None:
    try:
        return int(data["chat_id"])
    except (KeyError, TypeError, ValueError):
        return None  # a channel @username: only the global bucket applies


def retry_after_seconds(retry_after: Any) -> float:
    """A RetryAfter's wait in seconds, whether PTB gave an int or a timedelta."""
    total_seconds = getattr(retry_after, "total_seconds", None)
    return float(total_seconds() if total_seconds else retry_after)
