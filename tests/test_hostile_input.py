"""Hostile and careless input to the chat commands: the bot answers in bounded ways.

End to end: the real bot in-process, a real Redis, the fake Telegram. Each test proves
an absence ("no reply", "no lookup") with a later event the bot did answer.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import string
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from harness import bot_env, running_bot
from newsbot import keys
from newsbot.models import Source
from newsbot.store import Store
from test_bot import CHAT, GROUP, say

BOT = "newsbot_test_bot"
T = 1_800_000_000.0
PYTHON = Source("reddit", "r/python", "python")
GOLANG = Source("reddit", "r/golang", "golang")
RUST = Source("reddit", "r/rust", "rust")
FEED = Source("feed", "https://example.org/feed.xml", "https://example.org/feed.xml")


# --- a flood of bad words: one message, one line per distinct word ------------------------


async def test_two_thousand_bad_words_get_one_short_reply(telegram, redis_url):
    async with running_bot(bot_env(telegram, redis_url)):
        # 2,000 words (the most that fit below the length gate), all the same bad one.
        (reply,) = await say(telegram, "/source " + "x " * 1995 + "x")
        # 1,296 distinct bad words: the first few are named, the rest counted.
        words = [
            "".join(pair)
            for pair in itertools.product(string.ascii_lowercase + string.digits, repeat=2)
        ]
        (flood,) = await say(telegram, "/source " + " ".join(words))
        (added,) = await say(telegram, "/add python " + ",".join(words))
        (removed,) = await say(telegram, "/remove " + " ".join(words))
        (helped,) = await say(telegram, "/help")  # the later event: nothing else came
    assert [m.displayed for m in telegram.sent(CHAT)] == [reply, flood, added, removed, helped]
    assert reply.count("⚠️ x: not a subreddit name") == 1
    assert flood.startswith("Your sources are unchanged.\n\nNot added:\n⚠️ aa: ")
    for word in words[:10]:
        assert f"⚠️ {word}: " in flood
    assert f"⚠️ {words[10]}: " not in flood
    assert flood.endswith(f"…and {len(words) - 10} more")
    assert added.startswith("Your sources:\n• python\n\nNot added:\n⚠️ aa: ")
    assert added.endswith(f"…and {len(words) - 10} more")
    assert removed.endswith(f"…and {len(words) - 10} more")
    assert max(len(text) for text in (reply, flood, added, removed)) < 1500


# --- the source limit comes before any DNS lookup -----------------------------------------


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Record every name resolved; names under .invalid (RFC 6761) never resolve.

    This stands in for a DNS server that never answers: the resolver is the network
    edge, and a real one would only make the test slow.
    """
    resolved: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        resolved.append(name)
        if name.endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield resolved


async def test_too_many_sources_are_refused_before_any_lookup(telegram, redis_url, lookups):
    dead = [f"http://dead{n}.example.invalid/feed.xml" for n in range(60)]
    env = bot_env(telegram, redis_url, NEWSBOT_ALLOW_PRIVATE_URLS="false")
    async with running_bot(env):
        (refused,) = await say(telegram, "/source " + " ".join(dead))
        await say(telegram, "/source python golang")
        (added,) = await say(telegram, "/add " + " ".join(dead[:19]))
        assert not [name for name in lookups if name.endswith(".invalid")]
        # Within the limit, each feed is looked up (and this one does not resolve).
        (one,) = await say(telegram, f"/add {dead[0]}")
    assert refused == "Your sources are unchanged.\n\n⚠️ At most 20 sources, you gave 60"
    assert added.endswith("⚠️ At most 20 sources; you have 2")
    assert f"⚠️ {dead[0]}: the host name does not resolve" in one
    assert [name for name in lookups if name.endswith(".invalid")] == ["dead0.example.invalid"]


# --- the length gate only for what is meant for this bot -----------------------------------


async def test_long_messages_for_others_in_a_group_get_no_answer(telegram, redis_url):
    long_words = " ".join(["word"] * 1100)  # 5,499 characters
    async with running_bot(bot_env(telegram, redis_url)):
        for text in (
            long_words,  # talk among the members
            f"/source@other_bot {long_words}",  # a command for another bot
            f"/frobnicate {long_words}",
        ):  # not a command of ours
            telegram.push_message(GROUP, text)
        (mine,) = await say(telegram, f"/source@{BOT} {long_words}", chat_id=GROUP)
        (plain,) = await say(telegram, f"/source {long_words}", chat_id=GROUP)
        (helped,) = await say(telegram, f"/help@{BOT}", chat_id=GROUP)
        (private,) = await say(telegram, long_words)  # in private, all is for this bot
    assert [m.displayed for m in telegram.sent(GROUP)] == [mine, plain, helped]
    assert "too long" in mine and "too long" in plain and "/source" in helped
    assert "too long" in private


# --- group migration, announced by Telegram's service messages -----------------------------


async def test_a_group_upgrade_moves_its_settings_to_the_supergroup(telegram, news, redis_url):
    old, new = -4101, -1004101
    async with running_bot(bot_env(telegram, redis_url, news)):
        await say(telegram, "/source python golang", chat_id=old)
        await say(telegram, "/subscribe 6h", chat_id=old)
        telegram.migrate_chat(old, new)
        (listing,) = await say(telegram, "/sources", chat_id=new)
        (digest,) = await say(telegram, "/unsubscribe", chat_id=new)
    assert listing == "Your sources:\n• python\n• golang"
    assert digest == "Digest stopped."
    assert telegram.count("sendMessage") == 4  # nothing was sent to the old id


async def test_an_upgrade_merges_into_a_supergroup_with_settings_of_its_own(
    telegram, news, redis_url
):
    old, new = -4102, -1004102
    env = bot_env(telegram, redis_url, news, NEWSBOT_MAX_SOURCES="4")
    async with running_bot(env):
        await say(telegram, "/source python rust golang_ish feeds_a", chat_id=old)
        await say(telegram, "/subscribe 6h", chat_id=old)
        # The supergroup was used before the migration was noticed.
        await say(telegram, "/source golang python", chat_id=new)
        telegram.migrate_chat(old, new)
        (listing,) = await say(telegram, "/sources", chat_id=new)
        (digest,) = await say(telegram, "/unsubscribe", chat_id=new)
    # Its own first, then the group's that were new to it, up to the limit of 4.
    assert listing == "Your sources:\n• golang\n• python\n• rust\n• golang_ish"
    assert digest == "Digest stopped."  # the group's digest came along


def service_message(chat_id: int, chat_type: str, **field: int) -> dict[str, Any]:
    """One of the two service messages of an upgrade, as Telegram sends it."""
    chat = {"id": chat_id, "type": chat_type, "title": "Test group"}
    user = {"id": 100200300, "is_bot": False, "first_name": "Alice", "username": "alice"}
    return {
        "message": {"message_id": 999, "from": user, "date": 1_764_000_000, "chat": chat, **field}
    }


async def chat_record_moved(redis_url: str, old: int, new: int) -> None:
    """Wait until the bot has moved a chat's record from ``old`` to ``new``."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        for _ in range(200):
            if not await client.exists(keys.CHAT.format(chat_id=old)):
                assert await client.exists(keys.CHAT.format(chat_id=new))
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"the record of chat {old} was never moved")
    finally:
        await client.aclose()


@pytest.mark.parametrize("delivered", ["both", "old group's", "new supergroup's"])
async def test_an_upgrade_of_a_stopped_group_keeps_it_stopped(telegram, redis_url, delivered):
    old, new = -4103, -1004103
    async with running_bot(bot_env(telegram, redis_url)):
        await say(telegram, "/source python", chat_id=old)
        await say(telegram, "/stop", chat_id=old)
        # Each of the two service messages is enough on its own to move the settings.
        telegram.migrate_chat(old, new, notify=delivered == "both")
        if delivered == "old group's":
            telegram.push_update(service_message(old, "group", migrate_to_chat_id=new))
            # Another chat's update: nothing orders the supergroup's next one after it.
            await chat_record_moved(redis_url, old, new)
        elif delivered == "new supergroup's":
            telegram.push_update(service_message(new, "supergroup", migrate_from_chat_id=old))
        telegram.push_message(new, "/help")
        (started,) = await say(telegram, "/start", chat_id=new)
        (listing,) = await say(telegram, "/sources", chat_id=new)
    assert [m.displayed for m in telegram.sent(new)] == [started, listing]
    assert listing == "Your sources:\n• python"


# --- Store.migrate_chat on a real Redis ------------------------------------------------------


@pytest.fixture
async def stores(redis_url: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one database, as two replicas have."""
    pair = (
        Store(aioredis.Redis.from_url(redis_url, decode_responses=True)),
        Store(aioredis.Redis.from_url(redis_url, decode_responses=True)),
    )
    yield pair
    for store in pair:
        await store.close()


async def test_migration_merges_sources_digest_and_seen_items(stores) -> None:
    store, other = stores
    old, new = -11, -1000011
    await store.set_sources(old, [PYTHON, RUST, FEED])
    await store.subscribe(old, 3600, T + 3600)
    await store.mark_seen(old, ["a", "b"])
    await store.set_sources(new, [GOLANG, PYTHON])
    await store.mark_seen(new, ["c"])

    # Both service messages, handled by two replicas at once.
    await asyncio.gather(store.migrate_chat(old, new, 4), other.migrate_chat(old, new, 4))
    await store.migrate_chat(old, new, 4)  # and once more, late: nothing left to move

    assert await store.get_sources(new) == [GOLANG, PYTHON, RUST, FEED]
    assert await store.get_interval(new) == 3600 and await store.next_due(new) == T + 3600
    assert await store.unseen(new, ["a", "b", "c", "d"]) == {"d"}
    assert await store.get_sources(old) == [] and await store.next_due(old) is None
    assert not await store.redis.exists(
        keys.CHAT.format(chat_id=old), keys.SEEN.format(chat_id=old)
    )


@pytest.mark.parametrize(
    "new_state, interval, due",
    [
        ("subscribed", 900, T + 900),  # its own digest is kept, not the group's
        ("stopped", None, None),  # a supergroup that said /stop gets no digest
        ("plain", 3600, T + 3600),  # the group's digest comes along
    ],
)
async def test_migration_keeps_the_supergroups_own_digest_settings(
    stores, new_state: str, interval: int | None, due: float | None
) -> None:
    store, _ = stores
    old, new = -12, -1000012
    await store.set_sources(old, [PYTHON])
    await store.subscribe(old, 3600, T + 3600)
    await store.set_sources(new, [GOLANG])
    if new_state == "subscribed":
        await store.subscribe(new, 900, T + 900)
    elif new_state == "stopped":
        await store.set_stopped(new, True)
    await store.migrate_chat(old, new, 20)
    assert await store.get_sources(new) == [GOLANG, PYTHON]
    assert await store.get_interval(new) == interval
    assert await store.next_due(new) == due
    assert await store.is_stopped(new) == (new_state == "stopped")
    assert await store.claim_due(T + 7200, 10) == ([new] if due else [])


def test_the_fake_announces_an_upgrade_as_telegram_does(telegram):
    import requests
    from telegram import Update
    from telegram.ext import filters

    telegram.migrate_chat(-7, -1000000000007)
    answer = requests.get(f"{telegram.url}/bot{telegram.token}/getUpdates", timeout=5).json()
    first, second = (update["message"] for update in answer["result"])
    assert (first["chat"]["id"], first["chat"]["type"]) == (-7, "group")
    assert first["migrate_to_chat_id"] == -1000000000007 and "text" not in first
    assert (second["chat"]["id"], second["chat"]["type"]) == (-1000000000007, "supergroup")
    assert second["migrate_from_chat_id"] == -7
    assert first["from"] == second["from"] and not first["from"]["is_bot"]
    for update in answer["result"]:
        assert filters.StatusUpdate.MIGRATE.check_update(Update.de_json(update, None))
    # And the old id is gone for sending, as after a real upgrade.
    sent = requests.post(
        f"{telegram.url}/bot{telegram.token}/sendMessage",
        json={"chat_id": -7, "text": "hi"},
        timeout=5,
    ).json()
    assert sent["parameters"] == {"migrate_to_chat_id": -1000000000007}
