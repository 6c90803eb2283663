"""What Telegram's answers do to delivery, end to end: limits, failures, chats that are gone.

The bot runs in-process (``running_bot``) on a real redis-server and talks to the fake
Telegram over HTTP; the fake's records (``calls``, ``sent``) tell in which order things
reached Telegram and what each chat displayed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from telegram import Bot

from harness import bot_env, running_bot, wait_sent
from newsbot import keys
from newsbot.sender import remember_delivery, send_messages
from newsbot.sources.parsing import parse_source
from newsbot.store import Store, update_scope

CHAT = 4242
OTHER = 5151
GROUP = -100777000111
# Telegram's own pace, for the tests about it (bot_env relaxes it for the others).
REAL_PACE = {
    "NEWSBOT_SEND_PER_SECOND": "30",
    "NEWSBOT_SEND_PER_CHAT_SECOND": "1",
    "NEWSBOT_SEND_PER_GROUP_MINUTE": "20",
}


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    """The bot's store on the test's Redis, to set up chats and to look at their keys."""
    store = Store(aioredis.Redis.from_url(redis_url, decode_responses=True))
    yield store
    await store.close()


def send_calls(telegram) -> list[int]:
    """The chat of every sendMessage the fake received, answered or refused, in order."""
    return [
        params.get("chat_id") for method, params in list(telegram.calls) if method == "sendMessage"
    ]


async def keys_of_chat(
    redis: aioredis.Redis, chat_id: int, besides: tuple[str, ...] = ()
) -> list[str]:
    """Every key that keeps state of the chat, and the due-digest entry if it has one.

    Pacing keys of a send a moment ago expire within seconds by themselves: not state.
    """
    found = [
        key
        async for key in redis.scan_iter(match="newsbot:*")
        if str(chat_id) in key.split(":")
        and not key.startswith(besides)
        and not (key.startswith("newsbot:rate:") and await _expires_soon(redis, key))
    ]
    if await redis.zscore("newsbot:due", chat_id) is not None:
        found.append("newsbot:due[chat]")
    return found


async def _expires_soon(redis: aioredis.Redis, key: str) -> bool:
    ttl = await redis.pttl(key)
    return ttl == -2 or 0 <= ttl < 60_000  # -2: expired since the scan; -1: never


async def wait_for(condition, timeout: float = 20.0) -> None:
    """Poll an async condition until it holds."""
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.05)


async def test_a_429_delays_only_its_chat_and_its_reply_survives_a_restart(telegram, redis_url):
    # Telegram flood-waits CHAT for 12 s: longer than a reply may wait in a worker, so
    # its update is deferred (left pending), not slept on.
    telegram.flood_chat(CHAT, 12)
    env = bot_env(telegram, redis_url, **REAL_PACE)
    async with running_bot(env):
        telegram.push_message(CHAT, "/help")
        await asyncio.to_thread(telegram.wait_for_calls, "sendMessage", 1)
        telegram.push_message(OTHER, "/help")
        await wait_sent(telegram, 1, OTHER)
        assert telegram.sent(CHAT) == []  # still waiting out its limit
    # A restart in the middle: the deferred update was not acknowledged.
    async with running_bot(env):
        telegram.push_message(OTHER, "/help")
        await wait_sent(telegram, 2, OTHER)
        assert telegram.sent(CHAT) == []
        (reply,) = await wait_sent(telegram, 1, CHAT, timeout=45)
        assert "/fetch" in reply.displayed
    # Order at Telegram: the limited chat's try, the other chat's two replies, and only
    # then the limited chat's reply. One 429: the bot held the chat instead of retrying
    # into its flood wait.
    assert send_calls(telegram) == [CHAT, OTHER, OTHER, CHAT]
    assert telegram.too_many == 1
    assert len(telegram.sent(CHAT)) == 1


async def test_a_short_429_is_waited_out_in_place(telegram, redis_url):
    telegram.flood_chat(CHAT, 2)
    async with running_bot(bot_env(telegram, redis_url, **REAL_PACE)):
        telegram.push_message(CHAT, "/help")
        await asyncio.to_thread(telegram.wait_for_calls, "sendMessage", 1)
        telegram.push_message(OTHER, "/help")
        await wait_sent(telegram, 1, OTHER)
        await wait_sent(telegram, 1, CHAT)
    assert send_calls(telegram) == [CHAT, OTHER, CHAT]
    assert telegram.too_many == 1


async def test_a_two_part_reply_whose_second_part_fails_is_completed_not_repeated(
    telegram, news, redis_url
):
    titles = [f"Story {n}: " + "long words " * 20 for n in range(20)]
    news.set_route(
        "/long.xml", body=_feed(titles), headers={"Content-Type": "application/rss+xml"}
    )
    env = bot_env(telegram, redis_url, news, NEWSBOT_ITEMS_PER_SOURCE="20")
    async with running_bot(env):
        telegram.push_message(CHAT, f"/source {news.url}/long.xml")
        await wait_sent(telegram, 1, CHAT)
        # The second part meets 500s for every try of the first handling (~8 s of
        # backoff); the update is handled again later.
        telegram.fail_next("sendMessage", 500, times=5, chat_id=CHAT, after=1)
        telegram.push_message(CHAT, "/fetch")
        await wait_sent(telegram, 3, CHAT, timeout=40)
        telegram.push_message(CHAT, "/help")  # a later reply: nothing more came before it
        sent = await wait_sent(telegram, 4, CHAT)
    parts = [message.displayed for message in sent[1:3]]
    assert "Story 0:" in parts[0] and "Story 19:" in parts[1]
    assert "/fetch" in sent[3].displayed
    assert len(telegram.sent(CHAT)) == 4  # the first part once, not twice
    assert send_calls(telegram).count(CHAT) == 1 + 1 + 5 + 1 + 1


@pytest.mark.parametrize("gone", ["deleted (400 chat not found)", "blocked the bot (403)"])
async def test_a_chat_that_no_longer_exists_is_forgotten_and_not_tried_again(
    telegram, news, redis_url, store, gone
):
    await store.set_sources(CHAT, [parse_source("python")])
    await store.mark_seen(CHAT, ["old-item"])
    if gone.startswith("deleted"):
        telegram.delete_chat(CHAT)
    else:
        telegram.block_chat(CHAT)
    await store.subscribe(CHAT, 60, time.time())
    async with running_bot(bot_env(telegram, redis_url, news)):
        await asyncio.to_thread(telegram.wait_for_calls, "sendMessage", 1)
        await wait_for(lambda: _no_keys(store.redis, CHAT))
        # A later digest to another chat goes out; the deleted chat is not tried again.
        await store.set_sources(OTHER, [parse_source("python")])
        await store.subscribe(OTHER, 60, time.time())
        await wait_sent(telegram, 1, OTHER)
    assert send_calls(telegram) == [CHAT, OTHER]
    assert await keys_of_chat(store.redis, CHAT) == []


async def _no_keys(redis: aioredis.Redis, chat_id: int) -> bool:
    return not await keys_of_chat(redis, chat_id)


@pytest.mark.parametrize("chat_id, status", [(CHAT, "kicked"), (GROUP, "left"), (GROUP, "kicked")])
async def test_the_bot_blocked_or_removed_forgets_the_chat(
    telegram, news, redis_url, store, chat_id, status
):
    async with running_bot(bot_env(telegram, redis_url, news)):
        telegram.push_message(chat_id, "/source python")
        telegram.push_message(chat_id, "/subscribe")
        await wait_sent(telegram, 2, chat_id)
        assert await keys_of_chat(store.redis, chat_id)
        telegram.push_my_chat_member(chat_id, status)
        # Unblocked, or added back: the chat starts afresh. Its updates are handled in
        # order, so this listing comes after the membership change was handled.
        telegram.push_my_chat_member(chat_id, "member", old_status=status)
        telegram.push_message(chat_id, "/sources")
        # A group that adds the bot back is introduced to it first.
        (*_, listing) = await wait_sent(telegram, 3 if chat_id > 0 else 4, chat_id)
    assert listing.displayed.startswith("You have no sources")
    # (The updates after the change have their chat's order key again.)
    assert await keys_of_chat(store.redis, chat_id, besides=("newsbot:chat-last:",)) == []


def _feed(titles: list[str]) -> bytes:
    items = "".join(
        f"<item><title>{title}</title><link>https://example.org/{n}</link>"
        f"<guid>https://example.org/{n}</guid>"
        f"<pubDate>Tue, 26 Nov 2024 {23 - n % 24:02d}:00:00 +0000</pubDate></item>"
        for n, title in enumerate(titles)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>Test</title>'
        f"{items}</channel></rss>"
    ).encode()


async def test_a_reply_uses_the_settings_read_for_its_update_and_chat_only(telegram, store):
    """The gate's read of a chat's delivery settings serves the replies to that update in
    that chat; a reply to another chat, or to a later update, reads its own."""
    bot = Bot(telegram.token, base_url=f"{telegram.url}/bot")
    async with bot:
        await store.set_flag(1, keys.FIELD_SILENT, True)
        stopped, delivery = await store.chat_state(1)
        assert (stopped, delivery.silent) == (False, True)
        remember_delivery(update_scope(7), 1, delivery)
        await store.set_flag(1, keys.FIELD_SILENT, False)
        # The update's own reply: as read by its gate.
        assert await send_messages(bot, store, 1, ["first"], scope=update_scope(7))
        # Another chat (a channel the command named), and a later update: read afresh.
        assert await send_messages(bot, store, 2, ["second"], scope=update_scope(7))
        assert await send_messages(bot, store, 1, ["third"], scope=update_scope(8))
    sent = {message.text: message.silent for message in telegram.sent()}
    assert sent == {"first": True, "second": False, "third": False}
