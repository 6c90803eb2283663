"""One rate limit for every replica: Telegram's send limits, kept in Redis.

Telegram limits a bot, not a process: about 30 messages a second overall, one a second
in a chat, 20 a minute in a group. Every Bot API call goes through ``RedisRateLimiter``
(python-telegram-bot's rate-limiter seam). A send books a slot that all its buckets
allow (GCRA, in one atomic script, on Redis' clock so replicas agree), sleeps until then
and goes. Booking instead of retrying means no thundering herd: a thousand digests due
at once leave at the allowed pace, in order. The limiter books a little below
Telegram's figures (``keys.RATE_MARGIN_*``, where the margins are worked out), so that
sends arriving late at Telegram still fit its windows.

One chat's wait never becomes everyone's:

* the global bucket is booked only once the chat's own buckets allow a send now; a chat
  whose next slot is later is told to come back then, and books nothing meanwhile
  (booking the global bucket at that later time would hold every other chat back);
* a ``429`` holds the chat it answered (``RATE_HOLD``), not the bot; only when several
  different chats are answered 429 within a short window (``FLOOD_CHATS`` in
  ``FLOOD_WINDOW_MS``) is the whole bot limited, and the global hold is set too;
* a send that would wait longer than ``RATE_MAX_WAIT_MS`` (a long retry_after, a deep
  queue) is not booked: ``SendDeferred`` is raised, and the update is left pending and
  handled again later rather than held in a worker that other chats need.

No booking outlives a configuration change: a bucket booked further ahead than the
current intervals allow (an absurd old ``NEWSBOT_SEND_PER_SECOND``) is cut back to at
most ``RATE_MAX_WAIT_MS`` plus one interval from now.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any

import redis.asyncio as aioredis
from telegram.error import BadRequest, NetworkError, RetryAfter
from telegram.ext import BaseRateLimiter

from newsbot import keys
from newsbot.config import Settings
from newsbot.errors import Deferred
from newsbot.metrics import GLOBAL_HOLDS, SEND_DEFERRED, SEND_RETRIES, TOO_MANY_REQUESTS

logger = logging.getLogger(__name__)

# Bot API methods that put a message in a chat.
SEND_METHODS = frozenset(
    {
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "sendMediaGroup",
        "copyMessage",
        "forwardMessage",
        "sendAnimation",
        "sendVideo",
        "sendAudio",
        "sendVoice",
    }
)
MAX_ATTEMPTS = 5
BACKOFF_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 8.0
# A chat whose slot is at most this far off books it now and sleeps the rest; later
# than that it comes back when its slot is near. A few ms spare a second round trip.
NEAR_MS = 10
# No interval is longer than this, whatever the configuration says (an hour a message).
MAX_INTERVAL_MS = 3_600_000
# A retry_after is believed up to this long: a chat held for years by one odd answer
# would have its updates deferred for good. After it, the next 429 says the truth.
MAX_HOLD_SECONDS = 3600.0

# KEYS: the chat's hold ('' for none), the global hold, then the buckets: global first,
# then the chat's own (chat, group). ARGV: the most a send may wait (ms), NEAR_MS, then
# each bucket's interval (ms): ARGV[i] for KEYS[i], i >= 3. Returns {booked, wait ms}:
# booked 1 means the slot is taken and the caller goes after the wait; 0 means nothing
# was booked and the caller asks again after the wait (its chat's slot is later), or
# gives up (the wait is longer than it may wait).
_BOOK = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local limit = tonumber(ARGV[1])
local ready = now
for i = 1, 2 do
    if KEYS[i] ~= '' then
        local hold = tonumber(redis.call('GET', KEYS[i]) or '0')
        if hold > ready then ready = hold end
    end
end
local tats = {}
for i = 3, #KEYS do
    local interval = tonumber(ARGV[i])
    local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
    local bound = now + limit + interval
    if tat > bound then
        -- booked under another configuration: no booking today's can be so far ahead
        tat = bound
        redis.call('SET', KEYS[i], tat, 'PX', tat - now + 1000)
    end
    tats[i] = tat
end
-- The chat's own buckets first: until they allow a send, nothing is booked.
for i = 4, #KEYS do
    if tats[i] > ready then ready = tats[i] end
end
if ready - now > tonumber(ARGV[2]) then return {0, ready - now} end
local at = ready
if tats[3] > at then at = tats[3] end
if at - now > limit then return {0, at - now} end
for i = 3, #KEYS do
    local tat = at + tonumber(ARGV[i])
    redis.call('SET', KEYS[i], tat, 'PX', tat - now + 1000)
end
return {1, at - now}
"""

# After a 429. KEYS: the chat's hold ('' when the chat is unknown), the set of recently
# flooded chats, the global hold. ARGV: retry_after (ms), chat id, window (ms), how many
# chats make the whole bot limited. Holds the chat; holds the bot too when enough
# different chats were answered 429 within the window (or the chat is unknown).
# Returns 1 when the bot was held.
_HOLD = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local wait = tonumber(ARGV[1])
local untl = now + wait
local function hold(key)
    local held = tonumber(redis.call('GET', key) or '0')
    if untl > held then redis.call('SET', key, untl, 'PX', wait + 1000) end
end
if KEYS[1] == '' then
    hold(KEYS[3])
    return 1
end
hold(KEYS[1])
local window = tonumber(ARGV[3])
redis.call('ZADD', KEYS[2], now, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
redis.call('PEXPIRE', KEYS[2], window)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then
    hold(KEYS[3])
    return 1
end
return 0
"""


class SendDeferred(Deferred):
    """A send would wait longer than ``RATE_MAX_WAIT_MS``: try the update again later."""

    def __init__(self, chat_id: int | None, wait_seconds: float) -> None:
        super().__init__(f"a send to chat {chat_id} would wait {wait_seconds:.1f} s")
        self.chat_id = chat_id
        self.wait_seconds = wait_seconds


def buckets(chat_id: int, settings: Settings) -> list[tuple[str, int]]:
    """The buckets (key, interval in ms) a message to this chat must pass, global first."""
    chosen = [
        (keys.RATE_GLOBAL, interval_ms(1000, settings.send_per_second * keys.RATE_MARGIN_GLOBAL)),
        (
            keys.RATE_CHAT.format(chat_id=chat_id),
            interval_ms(1000, settings.send_per_chat_second * keys.RATE_MARGIN_CHAT),
        ),
    ]
    if chat_id < 0:  # groups, supergroups and channels
        chosen.append(
            (
                keys.RATE_GROUP.format(chat_id=chat_id),
                interval_ms(60_000, settings.send_per_group_minute * keys.RATE_MARGIN_GROUP),
            )
        )
    return chosen


def interval_ms(window_ms: int, allowed: float) -> int:
    """Milliseconds between two sends when ``allowed`` may go per window."""
    if not allowed > 0 or not math.isfinite(allowed):
        return MAX_INTERVAL_MS if not allowed > 0 else 1
    # Rounded up: 30 a second is one every 34 ms, not 33 (which would be 30.3 a second).
    return max(1, min(MAX_INTERVAL_MS, math.ceil(window_ms / allowed)))


class RedisRateLimiter(BaseRateLimiter[None]):
    """Paces sends across replicas and retries 429s, 5xx answers and network errors."""

    def __init__(
        self, redis: aioredis.Redis, settings: Settings, max_wait_ms: int = keys.RATE_MAX_WAIT_MS
    ) -> None:
        self.settings = settings
        self.max_wait_ms = max_wait_ms
        self._book = redis.register_script(_BOOK)
        self._hold = redis.register_script(_HOLD)

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
        sending = endpoint in SEND_METHODS
        chat_id = _chat_id(data) if sending else None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if sending:
                await self.wait_for_slot(chat_id)
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as error:
                TOO_MANY_REQUESTS.inc()
                seconds = retry_after_seconds(error.retry_after)
                logger.warning(
                    "Telegram asked to wait %.1f s (%s to chat %s)", seconds, endpoint, chat_id
                )
                if sending:
                    await self.hold(chat_id, seconds)
                if attempt == MAX_ATTEMPTS:
                    if sending:
                        # Not a failure of the message: the chat must wait. Try later.
                        SEND_DEFERRED.inc()
                        raise SendDeferred(chat_id, seconds) from error
                    raise
                if not sending:
                    if seconds * 1000 > self.max_wait_ms:
                        raise
                    await asyncio.sleep(seconds)
                # A send waits out the hold in wait_for_slot, or is deferred there.
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

    async def wait_for_slot(self, chat_id: int | None) -> float:
        """Book the next moment a message may go to this chat, and sleep until then.

        Return how long the booked slot was ahead (seconds). Raise SendDeferred,
        booking nothing, if that moment is further off than the limiter's longest wait.
        """
        chosen = (
            buckets(chat_id, self.settings)
            if chat_id is not None
            else [
                (
                    keys.RATE_GLOBAL,
                    interval_ms(1000, self.settings.send_per_second * keys.RATE_MARGIN_GLOBAL),
                )
            ]
        )
        hold = keys.RATE_HOLD.format(chat_id=chat_id) if chat_id is not None else ""
        bucket_keys = [hold, keys.RATE_HOLD_GLOBAL, *(key for key, _ in chosen)]
        deadline = time.monotonic() + self.max_wait_ms / 1000
        while True:
            left_ms = int((deadline - time.monotonic()) * 1000)
            booked, wait_ms = await self._book(
                keys=bucket_keys,
                args=[max(0, left_ms), NEAR_MS, *(interval for _, interval in chosen)],
            )
            if int(booked):
                if int(wait_ms) > 0:
                    await asyncio.sleep(int(wait_ms) / 1000)
                return int(wait_ms) / 1000
            if int(wait_ms) > left_ms:
                SEND_DEFERRED.inc()
                raise SendDeferred(chat_id, int(wait_ms) / 1000)
            # The chat's own slot is later: come back then (nothing is booked meanwhile).
            await asyncio.sleep(max(int(wait_ms) - NEAR_MS // 2, 1) / 1000)

    async def hold(self, chat_id: int | None, seconds: float) -> bool:
        """Hold a chat after a 429 (and the bot, if many chats were); True if the bot."""
        held_bot = await self._hold(
            keys=[
                keys.RATE_HOLD.format(chat_id=chat_id) if chat_id is not None else "",
                keys.RATE_FLOODED,
                keys.RATE_HOLD_GLOBAL,
            ],
            args=[
                max(1, int(seconds * 1000)),
                chat_id if chat_id is not None else "",
                keys.FLOOD_WINDOW_MS,
                keys.FLOOD_CHATS,
            ],
        )
        if int(held_bot):
            GLOBAL_HOLDS.inc()
            logger.warning("Telegram limits the whole bot: every chat waits %.1f s", seconds)
        return bool(int(held_bot))


def _chat_id(data: dict[str, Any]) -> int | None:
    try:
        return int(data["chat_id"])
    except (KeyError, TypeError, ValueError):
        return None  # a channel @username: only the global bucket applies


def retry_after_seconds(retry_after: Any) -> float:
    """A RetryAfter's wait in seconds, whether PTB gave an int or a timedelta.

    Clamped to [1 s, MAX_HOLD_SECONDS]; anything that is not a number counts as 1 s.
    """
    total_seconds = getattr(retry_after, "total_seconds", None)
    try:
        seconds = float(total_seconds() if total_seconds else retry_after)
    except (TypeError, ValueError, OverflowError):
        return 1.0
    if not math.isfinite(seconds):
        return MAX_HOLD_SECONDS if seconds > 0 else 1.0
    return min(MAX_HOLD_SECONDS, max(1.0, seconds))
