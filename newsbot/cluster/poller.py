"""The poller: the one replica holding the lease pulls updates from Telegram.

Telegram answers a second concurrent ``getUpdates`` with 409 Conflict, so one replica at
a time polls. It appends each update to the stream *before* the offset moves past it,
in one atomic script that also skips updates already appended: a poller that dies at
any point, or a deposed leader that polls once more, loses nothing and adds no
duplicate.

Updates go into the stream as Telegram sent them: ``getUpdates`` is called through
python-telegram-bot's request layer (``BaseRequest``), not ``Bot.get_updates``, which
parses the whole batch and fails it all on one update it cannot read (e.g. a shape of
another Bot API version). Only the update id and chat id are read here, defensively;
each update is parsed alone by the consumer, where one that cannot be is set aside.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from telegram import Bot, Update
from telegram.error import Conflict, InvalidToken, RetryAfter, TelegramError
from telegram.request import BaseRequest

from newsbot import keys
from newsbot.cluster.lease import Lease
from newsbot.cluster.ratelimit import retry_after_seconds
from newsbot.metrics import LEADER
from newsbot.store import AcknowledgedScript
from newsbot.transport import AiohttpRequest

logger = logging.getLogger(__name__)

# Long-poll this long. Shorter than the lease, which is renewed before every poll, so a
# leader never polls on a lease that ran out.
POLL_TIMEOUT = 2
ERROR_BACKOFF = 1.0
# Connections Telegram opens at once to push updates (setWebhook's max_connections,
# 1-100, Telegram's default 40): spread over the replicas behind the Service.
WEBHOOK_MAX_CONNECTIONS = 40

# One update into the stream. ARGV[1..3]: maxlen, the chat-last key prefix and its TTL.
# Each entry also names its chat's previous update ("after") and that update's stream
# entry ("after_entry"), so that replicas can keep a chat's updates in order. (The
# per-chat keys are built here rather than passed in KEYS: Newsbot does not run on Redis
# Cluster.) Shared by the poller's script and the webhook's.
_APPEND_ONE = """
local function append_one(update_id, chat_id, update)
    local after, after_entry, last = '', '', nil
    if chat_id ~= '0' then
        last = ARGV[2] .. chat_id
        local previous = redis.call('GET', last)
        if previous then
            local space = string.find(previous, ' ', 1, true)
            if space then
                after = string.sub(previous, 1, space - 1)
                after_entry = string.sub(previous, space + 1)
            else
                after = previous
            end
        end
    end
    local entry = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
                             'update_id', update_id, 'chat_id', chat_id, 'after', after,
                             'after_entry', after_entry, 'update', update)
    if last then
        redis.call('SET', last, update_id .. ' ' .. entry, 'EX', ARGV[3])
    end
end
"""

# KEYS: stream, offset. ARGV: maxlen, the chat-last key prefix and its TTL, then
# (update_id, chat_id, json) triples. Updates below the offset are skipped: appended
# already by a poll whose offset move another poll did not see (so a second run changes
# nothing, as AcknowledgedScript needs).
_APPEND = (
    _APPEND_ONE
    + """
local offset = tonumber(redis.call('GET', KEYS[2]) or '0')
local next_offset = offset
for i = 4, #ARGV, 3 do
    local update_id = tonumber(ARGV[i])
    if update_id >= offset then
        append_one(ARGV[i], ARGV[i + 1], ARGV[i + 2])
    end
    if update_id + 1 > next_offset then next_offset = update_id + 1 end
end
redis.call('SET', KEYS[2], next_offset)
return {next_offset, replicas_attached()}
"""
)

# KEYS: stream, the update's seen mark. ARGV: maxlen, the chat-last key prefix and its
# TTL, update_id, chat_id, json, the mark's TTL. 1 if appended, 0 if the mark was there:
# pushed updates come in any order and again on retries, so no offset can tell.
APPEND_PUSHED = (
    _APPEND_ONE
    + """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[7]) then
    return {0, replicas_attached()}
end
append_one(ARGV[4], ARGV[5], ARGV[6])
return {1, replicas_attached()}
"""
)


class Poller:
    """Polls Telegram while this replica holds the lease.

    ``request`` carries the long polls (a connection of their own by default, so sends
    never wait behind a poll); timings default to the module's and keys.py's.

    With ``webhook_url`` (and its secret) nobody polls: the replica that takes the lease
    sets the webhook, once, and then only holds the lease, so that a successor sets it
    again. Without it, the replica that takes the lease deletes any webhook first
    (Telegram answers getUpdates 409 while one is set).
    """

    def __init__(
        self,
        bot: Bot,
        redis: aioredis.Redis,
        owner: str,
        *,
        request: BaseRequest | None = None,
        poll_timeout: int = POLL_TIMEOUT,
        lease_ttl_ms: int = keys.LEADER_TTL_MS,
        error_backoff: float = ERROR_BACKOFF,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        ack_timeout_ms: int = keys.REPLICA_ACK_TIMEOUT_MS,
    ) -> None:
        if webhook_url is not None and not webhook_secret:
            raise ValueError("a webhook needs its secret")
        self.bot = bot
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.redis = redis
        self.lease = Lease(redis, keys.LEADER, owner, lease_ttl_ms)
        self.poll_timeout = poll_timeout
        self.error_backoff = error_backoff
        self.request = request or AiohttpRequest(1)
        self._append = AcknowledgedScript(redis, _APPEND, ack_timeout_ms)
        self.is_leader = False

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set, then give the lease up."""
        await self.request.initialize()
        try:
            while not stop.is_set():
                try:
                    await self.run_once()
                except (InvalidToken, asyncio.CancelledError):
                    raise
                except Exception:
                    # Redis or Telegram trouble: say so, wait, try again. The lease
                    # expires if this goes on, and another replica takes over.
                    logger.exception("polling failed")
                    self._set_leader(False)
                    await _sleep_or_stop(stop, self.error_backoff)
        finally:
            await self.step_down()
            await self.request.shutdown()

    async def run_once(self) -> int:
        """Take or renew the lease and, as leader, poll once; return updates appended."""
        if not await self.lease.hold():
            self._set_leader(False)
            await asyncio.sleep(self.lease.ttl_ms / 3000)
            return 0
        if not self.is_leader:
            await self.take_office()
        self._set_leader(True)
        if self.webhook_url is not None:
            # Telegram pushes to every replica; the leader only keeps the lease.
            await asyncio.sleep(self.lease.ttl_ms / 3000)
            return 0
        offset = await self.redis.get(keys.OFFSET)
        try:
            updates = await self.get_updates(int(offset) if offset else None)
        except Conflict:
            # Another getUpdates is live: the old leader's last poll, or another bot
            # instance outside this cluster. Back off and let the lease decide.
            logger.warning("Telegram reports a concurrent getUpdates (409); backing off")
            await asyncio.sleep(self.error_backoff)
            return 0
        except RetryAfter as error:
            # python-telegram-bot sends getUpdates past the rate limiter: wait here.
            seconds = retry_after_seconds(error.retry_after)
            logger.warning("Telegram asked to wait %.0f s before polling again", seconds)
            await asyncio.sleep(seconds)
            return 0
        except TelegramError as error:
            logger.warning("getUpdates failed: %s", error)
            await asyncio.sleep(self.error_backoff)
            return 0
        if updates:
            await self.append(updates)
        return len(updates)

    async def take_office(self) -> None:
        """On taking the lease: set the webhook, or delete any so that polling works.

        A failure raises, so that the next holder of the lease (perhaps this replica
        again) tries again before it relies on it.
        """
        if self.webhook_url is None:
            # drop_pending_updates stays false: what Telegram holds is polled next.
            await self.request.post(f"{self.bot.base_url}/deleteWebhook")
            logger.info("no webhook configured: deleted any webhook, polling")
            return
        assert self.webhook_secret is not None
        parameters = {
            "url": self.webhook_url,
            "secret_token": self.webhook_secret,
            "allowed_updates": json.dumps(Update.ALL_TYPES),
            "max_connections": str(WEBHOOK_MAX_CONNECTIONS),
        }
        # The query string, like getUpdates: the URL already holds the token and is
        # never logged.
        await self.request.post(
            f"{self.bot.base_url}/setWebhook?{urllib.parse.urlencode(parameters)}"
        )
        logger.info("webhook set; Telegram pushes updates, nobody polls")

    async def get_updates(self, offset: int | None) -> list[dict[str, Any]]:
        """Long-poll Telegram once; the updates as the Bot API sent them (JSON objects)."""
        parameters = {
            "timeout": str(self.poll_timeout),
            "allowed_updates": json.dumps(Update.ALL_TYPES),
        }
        if offset is not None:
            parameters["offset"] = str(offset)
        # BaseRequest.post is python-telegram-bot's seam below Bot: it maps error answers
        # (409, 429, 401, 5xx) to telegram.error like Bot.get_updates, but leaves the
        # result unparsed. The Bot API takes parameters in the query string too.
        result = await self.request.post(
            f"{self.bot.base_url}/getUpdates?{urllib.parse.urlencode(parameters)}",
            read_timeout=self.poll_timeout + 3,
        )
        if not isinstance(result, list):
            raise TelegramError(f"getUpdates answered {type(result).__name__}, not a list")
        # As Bot.get_updates would at DEBUG, without the URL (it holds the token).
        logger.debug("getUpdates (offset %s) gave %d updates", offset, len(result))
        return [update for update in result if isinstance(update, dict)]

    async def append(self, updates: Sequence[dict[str, Any] | Update]) -> None:
        """Append updates to the stream and move the offset past them, atomically."""
        args: list[str | int] = [keys.UPDATES_MAXLEN, keys.CHAT_LAST, keys.CHAT_LAST_SECONDS]
        for update in updates:
            raw = update.to_dict() if isinstance(update, Update) else update
            update_id = raw.get("update_id")
            if not isinstance(update_id, int) or isinstance(update_id, bool):
                # Without its id it can be neither ordered nor skipped by the offset;
                # the ids of the others move the offset past it.
                logger.error("getUpdates gave an update without an update_id; skipped")
                continue
            args += [update_id, chat_id(raw), json.dumps(raw)]
        if len(args) > 3:
            # Acknowledged by a Redis replica, if one is attached, before the next
            # getUpdates confirms these updates to Telegram, so that a failover to the
            # replica cannot lose them.
            await self._append.run([keys.UPDATES, keys.OFFSET], args)

    async def step_down(self) -> None:
        """Release the lease so another replica can poll at once."""
        self._set_leader(False)
        try:
            await self.lease.release()
        except Exception:
            # Redis is gone: the lease runs out by itself within its TTL.
            logger.warning("could not release the poller lease; it will expire")

    def _set_leader(self, leader: bool) -> None:
        if leader != self.is_leader and self.webhook_url is not None:
            logger.info(
                "this replica %s the webhook's leader", "is now" if leader else "stopped being"
            )
        elif leader != self.is_leader:
            logger.info("this replica %s polling Telegram", "is now" if leader else "stopped")
        self.is_leader = leader
        LEADER.set(1 if leader else 0)


def chat_id(update: dict[str, Any]) -> int:
    """The id of the chat an update belongs to, read defensively; 0 if none or unknown.

    Most kinds carry ``chat`` (message, edited_message, channel_post, my_chat_member,
    chat_join_request, message_reaction, ...); a callback query carries it in its
    ``message``. Inline queries, polls and the like have none.
    """
    for key, value in update.items():
        if key == "update_id" or not isinstance(value, dict):
            continue
        for holder in (value, value.get("message")):
            chat = holder.get("chat") if isinstance(holder, dict) else None
            found = chat.get("id") if isinstance(chat, dict) else None
            if isinstance(found, int) and not isinstance(found, bool):
                return found
    return 0


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass  # the usual case: slept the whole time
