"""Tests of newsbot.store against a real redis-server (and once against the embedded store)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import fakeredis
import pytest
import redis.asyncio as aioredis

from newsbot import keys
from newsbot.config import Settings
from newsbot.models import Item, Source
from newsbot.store import CachedNews, Store, connect

T = 1_800_000_000.0  # a fixed "now" for the digest schedule
PYTHON = Source("reddit", "r/python", "python")
GOLANG = Source("reddit", "r/golang", "r/golang")
FEED = Source("feed", "https://example.org/feed.xml", "https://Example.org/feed.xml")


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    """A store on an empty real Redis database."""
    opened = Store(aioredis.Redis.from_url(redis_url, decode_responses=True))
    yield opened
    await opened.close()


@pytest.fixture
async def other_store(redis_url: str) -> AsyncIterator[Store]:
    """A second store on the same database, as another replica would have."""
    opened = Store(aioredis.Redis.from_url(redis_url, decode_responses=True))
    yield opened
    await opened.close()


# --- chats -----------------------------------------------------------------------------


async def test_sources_round_trip_in_order(store: Store) -> None:
    assert await store.get_sources(1) == []
    await store.set_sources(1, [FEED, PYTHON, GOLANG])
    await store.set_sources(2, [GOLANG])
    assert await store.get_sources(1) == [FEED, PYTHON, GOLANG]
    assert await store.get_sources(2) == [GOLANG]
    await store.set_sources(1, [PYTHON])
    assert await store.get_sources(1) == [PYTHON]
    await store.set_sources(1, [])
    assert await store.get_sources(1) == []


async def test_sources_are_shared_by_replicas(store: Store, other_store: Store) -> None:
    await store.set_sources(-1001, [PYTHON, FEED])
    assert await other_store.get_sources(-1001) == [PYTHON, FEED]


async def test_stop_silences_the_chat_and_removes_its_subscription(store: Store) -> None:
    await store.set_sources(1, [PYTHON])
    await store.subscribe(1, 3600, T + 3600)
    assert not await store.is_stopped(1)

    await store.set_stopped(1, True)
    assert await store.is_stopped(1)
    assert await store.get_interval(1) is None
    assert await store.next_due(1) is None
    assert await store.claim_due(T + 10 * 86_400, 100) == []

    await store.set_stopped(1, False)  # /start again
    assert not await store.is_stopped(1)
    assert await store.get_interval(1) is None  # the digest does not come back by itself
    assert await store.get_sources(1) == [PYTHON]


# --- subscriptions ---------------------------------------------------------------------


async def test_subscribe_and_claim_when_due(store: Store) -> None:
    await store.subscribe(1, 3600, T + 3600)
    assert await store.get_interval(1) == 3600
    assert await store.next_due(1) == T + 3600
    assert await store.claim_due(T + 3599, 10) == []
    assert await store.claim_due(T + 3600, 10) == [1]
    assert await store.claim_due(T + 3601, 10) == []  # held by the claim


async def test_a_claimed_chat_comes_back_if_not_rescheduled(store: Store) -> None:
    await store.subscribe(7, 900, T)
    assert await store.claim_due(T, 10) == [7]
    assert await store.claim_due(T + keys.DIGEST_CLAIM_SECONDS - 1, 10) == []
    assert await store.claim_due(T + keys.DIGEST_CLAIM_SECONDS, 10) == [7]


async def test_a_rescheduled_chat_waits_for_its_next_interval(store: Store) -> None:
    await store.subscribe(7, 900, T)
    assert await store.claim_due(T, 10) == [7]
    await store.reschedule(7, T + 900)
    assert await store.next_due(7) == T + 900
    assert await store.claim_due(T + keys.DIGEST_CLAIM_SECONDS, 10) == []
    assert await store.claim_due(T + 900, 10) == [7]


async def test_claim_due_honours_the_limit_and_due_order(store: Store) -> None:
    for chat in range(1, 6):
        await store.subscribe(chat, 900, T - chat)
    assert await store.claim_due(T, 2) == [5, 4]
    assert sorted(await store.claim_due(T, 10)) == [1, 2, 3]


async def test_two_replicas_never_claim_the_same_chat(store: Store, other_store: Store) -> None:
    chats = list(range(1, 201))
    for chat in chats:
        await store.subscribe(chat, 900, T - chat)

    async def drain(replica: Store) -> list[int]:
        claimed: list[int] = []
        while batch := await replica.claim_due(T, 7):
            claimed += batch
            await asyncio.sleep(0)
        return claimed

    first, second = await asyncio.gather(drain(store), drain(other_store))
    assert not set(first) & set(second)
    assert sorted(first + second) == chats
    assert first and second  # both really took part


async def test_reschedule_does_not_resurrect_an_unsubscribed_chat(store: Store) -> None:
    await store.subscribe(3, 900, T)
    assert await store.claim_due(T, 10) == [3]
    assert await store.unsubscribe(3) is True  # while its digest is being sent
    await store.reschedule(3, T + 900)
    assert await store.next_due(3) is None
    assert await store.get_interval(3) is None
    assert await store.claim_due(T + 86_400, 10) == []


async def test_unsubscribe_tells_whether_there_was_a_digest(store: Store) -> None:
    assert await store.unsubscribe(4) is False
    await store.subscribe(4, 900, T)
    assert await store.unsubscribe(4) is True
    assert await store.unsubscribe(4) is False


async def test_forget_chat_stops_its_digest(store: Store) -> None:
    await store.subscribe(5, 900, T)
    await store.forget_chat(5)
    assert await store.claim_due(T + 86_400, 10) == []


# --- seen items ------------------------------------------------------------------------


async def test_unseen_and_mark_seen(store: Store) -> None:
    assert await store.unseen(1, []) == set()
    assert await store.unseen(1, ["a", "b", "c"]) == {"a", "b", "c"}
    await store.mark_seen(1, ["a", "c"])
    await store.mark_seen(1, [])
    assert await store.unseen(1, ["a", "b", "c"]) == {"b"}
    assert await store.unseen(2, ["a"]) == {"a"}  # per chat


async def test_seen_items_are_bounded_keeping_the_newest(store: Store) -> None:
    # A chat without sources keeps the floor of keys.SEEN_MIN.
    old = [f"old{n:05d}" for n in range(keys.SEEN_MIN)]
    await store.mark_seen(1, old)
    assert await store.unseen(1, old) == set()
    await store.mark_seen(1, [old[0]])  # sent again: now among the newest
    new = [f"new{n}" for n in range(10)]
    await store.mark_seen(1, new)
    assert await store.unseen(1, new + [old[0]]) == set()
    forgotten = await store.unseen(1, old)
    assert len(forgotten) == len(new) and old[0] not in forgotten
    assert await store.redis.zcard(keys.SEEN.format(chat_id=1)) == keys.SEEN_MIN


def feeds(count: int) -> list[Source]:
    return [Source("feed", f"https://example.org/{n}.xml", f"feed {n}") for n in range(count)]


def round_of(sources: int, number: int, items: int = 5) -> list[str]:
    """The ids one /fetch shows: ``items`` a source, new ones each round (long URLs)."""
    return [
        f"https://example.org/{source}/articles/{number:04d}-{item}-a-long-slug-for-"
        f"an-article-about-something-that-happened-today"
        for source in range(sources)
        for item in range(items)
    ]


async def test_seen_history_holds_a_few_rounds_of_what_the_chat_can_be_shown(store: Store) -> None:
    await store.set_sources(1, feeds(3))  # 3 sources × 5 items: 15 a round
    rounds = [round_of(3, number) for number in range(10)]
    for shown in rounds:
        await store.mark_seen(1, shown)
    kept = max(keys.SEEN_MIN, 15 * keys.SEEN_ROUNDS)
    assert await store.redis.zcard(keys.SEEN.format(chat_id=1)) == kept
    # The last SEEN_ROUNDS rounds are remembered, the earlier ones forgotten.
    for shown in rounds[-keys.SEEN_ROUNDS :]:
        assert await store.unseen(1, shown) == set()
    assert await store.unseen(1, rounds[0]) == set(rounds[0])


async def test_seen_history_of_a_chat_at_the_source_limit_stays_compact(store: Store) -> None:
    key = keys.SEEN.format(chat_id=2)
    await store.set_sources(2, feeds(20))  # the default limit: 100 items a round
    for number in range(30):
        await store.mark_seen(2, round_of(20, number))
        assert await store.redis.object("encoding", key) == "listpack"
    assert await store.redis.zcard(key) == keys.SEEN_COMPACT
    assert await store.unseen(2, round_of(20, 29)) == set()  # the last round, whole
    size = await store.redis.memory_usage(key)
    assert size is not None and size < 8 * 1024, size


async def test_seen_history_expires_unless_used(store: Store) -> None:
    key = keys.SEEN.format(chat_id=3)
    await store.mark_seen(3, ["a"])
    assert 0 < await store.redis.ttl(key) <= keys.SEEN_TTL_SECONDS
    assert keys.SEEN_TTL_SECONDS > 30 * 86_400  # outlives the longest digest interval
    await store.redis.expire(key, 60)  # as if it had not been used for a long time
    assert await store.unseen(3, ["a", "b"]) == {"b"}  # a digest looked: in use again
    assert await store.redis.ttl(key) > 60


async def test_a_history_written_before_ids_were_hashed_still_counts(store: Store) -> None:
    key = keys.SEEN.format(chat_id=4)
    old_ids = [f"https://example.org/old/{n}" for n in range(500)]
    await store.redis.zadd(key, {item_id: n for n, item_id in enumerate(old_ids)})
    assert await store.redis.object("encoding", key) == "skiplist"
    assert await store.unseen(4, [old_ids[-1], "new"]) == {"new"}
    await store.mark_seen(4, ["new"])
    # Trimmed to the bound and written anew in the compact encoding.
    assert await store.redis.zcard(key) == keys.SEEN_MIN
    assert await store.redis.object("encoding", key) == "listpack"
    assert await store.unseen(4, [old_ids[-1], "new"]) == set()


async def test_forget_chat_deletes_every_key_of_the_chat(store: Store) -> None:
    from newsbot.cluster.ratelimit import RedisRateLimiter
    from newsbot.store import digest_scope

    limiter = RedisRateLimiter(store.redis, Settings())
    for chat in (-1005, -1006):
        await store.set_sources(chat, [PYTHON, FEED])
        await store.subscribe(chat, 900, T)
        await store.set_stopped(chat, False)
        await store.mark_seen(chat, ["a", "b"])
        await limiter.wait_for_slot(chat)  # the chat's and the group's rate buckets
        # The poller's note of the chat's last update (written by its script).
        await store.redis.set(keys.CHAT_LAST + str(chat), "41", ex=60)
        # A 429's hold on the chat, and the parts of its digest Telegram already took.
        await store.redis.set(keys.RATE_HOLD.format(chat_id=chat), "1", ex=60)
        await store.mark_part_sent(digest_scope(chat), "0:abc")
        await store.cache_admin(chat, 7, True, T)  # a group admin check
        await store.remember_channel(chat, -1009)  # a channel managed from this chat
        await store.hold(chat, ["held in quiet hours"], T)  # and its quiet end
        # An alert, what it knows, and a delivery's lock on the chat.
        await store.add_alerts(chat, [("d1", PYTHON)], None, {"d1": []}, {"d1": T})
        await store.lock_alert_chat(chat, "owner")

    def of_chat(chat: int, found: list[str]) -> list[str]:
        return [key for key in found if key.rsplit(":", 1)[-1] == str(chat)]

    before = [key async for key in store.redis.scan_iter()]
    assert len(of_chat(-1005, before)) == len(keys.CHAT_KEYS)
    await store.forget_chat(-1005)
    after = [key async for key in store.redis.scan_iter()]
    assert of_chat(-1005, after) == []
    assert await store.next_due(-1005) is None
    assert await store.held_due(-1005) is None
    # The other chat keeps everything.
    assert sorted(of_chat(-1006, after)) == sorted(of_chat(-1006, before))
    assert await store.next_due(-1006) == T
    assert await store.unseen(-1006, ["a", "c"]) == {"c"}


# --- migration -------------------------------------------------------------------------


async def test_migrate_chat_moves_sources_subscription_and_seen_items(store: Store) -> None:
    old, new = -4001, -1004001
    await store.set_sources(old, [PYTHON, FEED])
    await store.subscribe(old, 3600, T + 3600)
    await store.mark_seen(old, ["x", "y"])

    await store.migrate_chat(old, new)

    assert await store.get_sources(new) == [PYTHON, FEED]
    assert await store.get_interval(new) == 3600
    assert await store.next_due(new) == T + 3600
    assert await store.unseen(new, ["x", "y", "z"]) == {"z"}
    assert await store.get_sources(old) == []
    assert await store.get_interval(old) is None
    assert await store.next_due(old) is None
    assert await store.unseen(old, ["x"]) == {"x"}
    assert await store.claim_due(T + 3600, 10) == [new]


async def test_migrating_an_unknown_chat_is_harmless(store: Store) -> None:
    await store.migrate_chat(-1, -1001)
    assert await store.get_sources(-1001) == []
    assert await store.next_due(-1001) is None


# --- fetch cache -----------------------------------------------------------------------


async def test_cache_round_trip(store: Store) -> None:
    news = CachedNews(
        fetched_at=T,
        items=(
            Item("1", 'A "title" & <more>', "https://example.org/1", T - 60),
            Item("2", "Undated", "https://example.org/2"),
        ),
        etag='"abc"',
        last_modified="Tue, 26 Nov 2024 09:30:00 GMT",
    )
    assert await store.get_cached("d1") is None
    await store.put_cached("d1", news)
    assert await store.get_cached("d1") == news
    failed = CachedNews(fetched_at=T + 1, error="not found (404)")
    await store.put_cached("d1", failed)
    assert await store.get_cached("d1") == failed
    ttl = await store.redis.ttl(keys.FEED.format(digest="d1"))
    assert 0 < ttl <= keys.FEED_TTL_SECONDS


async def test_an_unreadable_cache_entry_counts_as_missing(store: Store) -> None:
    await store.redis.hset(keys.FEED.format(digest="d2"), mapping={"items": "not json"})
    assert await store.get_cached("d2") is None


async def test_fetch_lock_has_one_holder(store: Store, other_store: Store) -> None:
    assert await store.lock_fetch("d3", "replica-a")
    assert not await other_store.lock_fetch("d3", "replica-b")
    await other_store.unlock_fetch("d3", "replica-b")  # not its lock: no effect
    assert not await other_store.lock_fetch("d3", "replica-b")
    await store.unlock_fetch("d3", "replica-a")
    assert await other_store.lock_fetch("d3", "replica-b")
    ttl = await store.redis.ttl(keys.FETCH_LOCK.format(digest="d3"))
    assert 0 < ttl <= keys.FETCH_LOCK_SECONDS


# --- keys, connections -----------------------------------------------------------------


async def test_every_key_lives_under_the_prefix(store: Store) -> None:
    await store.set_sources(1, [PYTHON])
    await store.set_stopped(2, True)
    await store.subscribe(3, 900, T)
    await store.claim_due(T, 10)
    await store.reschedule(3, T + 900)
    await store.mark_seen(3, ["a"])
    await store.subscribe(4, 900, T)
    await store.mark_seen(4, ["b"])
    await store.migrate_chat(4, -1004)
    await store.put_cached("d", CachedNews(fetched_at=T))
    await store.lock_fetch("d", "me")
    written = [key async for key in store.redis.scan_iter()]
    assert len(written) >= 6
    assert all(key.startswith("newsbot:") for key in written), written


async def test_ping(store: Store) -> None:
    assert await store.ping() is True
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = Store(
        aioredis.Redis.from_url(
            f"redis://127.0.0.1:{port}/0", decode_responses=True, socket_connect_timeout=1
        )
    )
    try:
        assert await down.ping() is False
    finally:
        await down.close()


async def test_connect_uses_redis_url(redis_url: str, store: Store) -> None:
    client = connect(Settings(redis_url=redis_url))
    assert not isinstance(client, fakeredis.FakeAsyncRedis)
    connected = Store(client)
    try:
        await store.set_sources(9, [GOLANG])
        assert await connected.get_sources(9) == [GOLANG]
    finally:
        await connected.close()


async def test_embedded_store_works_without_redis_url(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="newsbot.store"):
        client = connect(Settings())
    assert "embedded" in caplog.text
    embedded = Store(client)
    try:
        assert await embedded.ping()
        await embedded.set_sources(1, [PYTHON, FEED])
        assert await embedded.get_sources(1) == [PYTHON, FEED]
        await embedded.subscribe(1, 900, T)
        assert await embedded.claim_due(T, 10) == [1]
        assert await embedded.claim_due(T, 10) == []
        await embedded.mark_seen(1, ["a"])
        assert await embedded.unseen(1, ["a", "b"]) == {"b"}
        assert await embedded.lock_fetch("d", "me")
        await embedded.unlock_fetch("d", "me")
        assert await embedded.lock_fetch("d", "you")
    finally:
        await embedded.close()


async def test_a_migrated_group_keeps_its_delivery_settings_and_topic(store: Store) -> None:
    from newsbot.models import Delivery

    await store.set_flag(-4001, keys.FIELD_PREVIEWS, True)
    await store.set_flag(-4001, keys.FIELD_SILENT, True)
    await store.set_digest_thread(-4001, 7)
    await store.migrate_chat(-4001, -1004001)
    assert await store.delivery(-1004001) == Delivery(True, True, 7)
    assert await store.delivery(-4001) == Delivery()
    # A binding is dropped only while it still names the gone topic.
    assert not await store.drop_digest_thread(-1004001, 8)
    assert await store.drop_digest_thread(-1004001, 7)
    assert (await store.delivery(-1004001)).digest_thread is None


async def test_admin_answers_expire_after_five_minutes(store: Store) -> None:
    await store.cache_admin(-5, 11, True, T)
    await store.cache_admin(-5, 12, False, T)
    assert await store.cached_admin(-5, 11, T + keys.ADMIN_CACHE_SECONDS) is True
    assert await store.cached_admin(-5, 12, T + 1) is False
    assert await store.cached_admin(-5, 11, T + keys.ADMIN_CACHE_SECONDS + 1) is None
    assert await store.cached_admin(-5, 13, T) is None
    assert 0 < await store.redis.ttl(keys.ADMINS.format(chat_id=-5)) <= 300


def test_no_two_parts_of_the_store_define_the_same_name() -> None:
    """Store is made of parts (newsbot/store/): a method two parts define would be
    shadowed by whichever comes first among Store's bases, silently."""
    defined: dict[str, str] = {}
    clashes = []
    for part in Store.__mro__[1:-1]:  # not Store itself, not object
        for name in vars(part):
            if name.startswith("__") and name != "__init__":
                continue  # __doc__, __module__ and the like are every class's own
            if name in defined:
                clashes.append(f"{name}: {part.__name__} and {defined[name]}")
            defined[name] = part.__name__
    assert clashes == []
    assert "get_sources" in defined  # the parts are there: the test looks at something
