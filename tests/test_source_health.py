"""Source health: backoff of failing sources, the ⚠️ mark, the digest's failed line, and
the dead/recovered notices, exactly once per chat per transition.

The pure arithmetic is table-driven. The rest runs the real pieces on a real Redis, with
the fake news server failing on cue (``set_route``) and the fake Telegram. Time is
simulated by making the stored streak older (``elapse``), never by sleeping: that is the
clock News reads (a cache entry's fetch time and its streak's start).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import time
import zoneinfo
from collections.abc import AsyncIterator
from typing import Any

import pytest
from telegram import Bot

from harness import bot_env, running_bot, wait_sent
from newsbot import keys, source_health
from newsbot.app import build_application
from newsbot.config import Settings
from newsbot.digests import Digests
from newsbot.health import HealthServer
from newsbot.models import Source
from newsbot.news import News, source_id
from newsbot.source_notices import SourceNotices
from newsbot.store import CachedNews, Store, connect

UTC = zoneinfo.ZoneInfo("UTC")
HOUR = 3600
BROKEN = "the server failed (503)"


def rss(titles: list[str], name: str) -> str:
    items = "".join(
        f"<item><title>{title}</title><link>https://example.org/{name}/{n}</link>"
        f"<guid>{name}-{n}</guid></item>"
        for n, title in enumerate(titles)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>{name}</title>'
        f"<link>https://example.org/</link><description>d</description>{items}"
        f"</channel></rss>"
    )


def source(news: Any, path: str) -> Source:
    url = f"{news.url}{path}"
    return Source("feed", url, url)


def fail(news: Any, path: str) -> None:
    news.set_route(path, status=503, body="down for maintenance\n")


def answer(news: Any, path: str, title: str = "Back again") -> None:
    news.set_route(
        path, body=rss([title], path.strip("/")), headers={"Content-Type": "application/rss+xml"}
    )


async def elapse(store: Store, src: Source, seconds: float) -> None:
    """Let ``seconds`` pass for a source: its fetch and its streak become that much older."""
    digest = source_id(src)
    entry = await store.get_cached(digest)
    assert entry is not None
    since = entry.failing_since
    await store.put_cached(
        digest,
        dataclasses.replace(
            entry,
            fetched_at=entry.fetched_at - seconds,
            failing_since=None if since is None else since - seconds,
        ),
    )


# --- the arithmetic ----------------------------------------------------------------


@pytest.mark.parametrize(
    "failures, ttl, seconds",
    [
        (0, 300, 60),  # an entry of an older version: one failure
        (1, 300, 60),  # one failure is often a blip: asked again soon
        (2, 300, 300),  # then the cache TTL...
        (3, 300, 600),  # ...doubling with each failure
        (4, 300, 1200),
        (8, 300, 19_200),
        (9, 300, 6 * HOUR),  # 38,400 capped at 6 hours
        (10_000, 300, 6 * HOUR),
        (1, 30, 30),  # never longer than the TTL for the first failure
        (2, 30, 30),
        (5, 30, 240),
        (1, 0, 0),  # no cache: every ask fetches
        (7, 0, 0),
        (2, 86_400, 86_400),  # a TTL over 6 hours: never more often than a working source
        (6, 86_400, 86_400),
    ],
)
def test_retry_after(failures: int, ttl: int, seconds: int) -> None:
    assert source_health.retry_after(failures, ttl) == seconds


T0 = 1_700_000_000.0


def failed(
    at: float, failures: int = 0, since: float | None = None, dead: bool = False
) -> CachedNews:
    return CachedNews(
        fetched_at=at, error=BROKEN, failures=failures, failing_since=since, dead=dead
    )


GOOD = CachedNews(fetched_at=T0 + 500)


@pytest.mark.parametrize(
    "previous, fetched, failures, since, dead, transition",
    [
        (None, failed(T0), 1, T0, False, None),  # first failure
        (GOOD, failed(T0 + 600), 1, T0 + 600, False, None),  # after news
        (failed(T0, 1, T0), failed(T0 + 60), 2, T0, False, None),  # the streak goes on
        (failed(T0, 0, None), failed(T0 + 60), 2, T0, False, None),  # an older entry
        (failed(T0 + 50, 3, T0), failed(T0 + 100), 4, T0, True, "dead"),  # failed 100 s
        (failed(T0 + 50, 3, T0), failed(T0 + 99), 4, T0, False, None),  # not quite
        (failed(T0 + 200, 4, T0, True), failed(T0 + 900), 5, T0, True, None),  # told once
        (failed(T0 + 200, 4, T0, True), GOOD, 0, None, False, "recovered"),
        (failed(T0 + 20, 2, T0), GOOD, 0, None, False, None),  # never dead
        (GOOD, CachedNews(fetched_at=T0 + 900), 0, None, False, None),
    ],
)
def test_follow_counts_the_streak_and_each_transition_once(
    previous: CachedNews | None,
    fetched: CachedNews,
    failures: int,
    since: float | None,
    dead: bool,
    transition: str | None,
) -> None:
    entry, made = source_health.follow(previous, fetched, dead_after=100)
    assert (entry.failures, entry.failing_since, entry.dead, made) == (
        failures,
        since,
        dead,
        transition,
    )
    assert entry.fetched_at == fetched.fetched_at and entry.error == fetched.error


def test_the_failed_line_ends_the_last_message_or_follows_it() -> None:
    line = "⚠️ <i>Failed, not in this digest: a &lt;b&gt;, c</i>"
    assert source_health.with_failed_line(["<b>Your digest</b>"], ["a <b>", "c"]) == [
        "<b>Your digest</b>\n\n" + line
    ]
    full = "x" * 3990
    assert source_health.with_failed_line(["one", full], ["a <b>", "c"]) == ["one", full, line]
    assert source_health.with_failed_line(["one"], []) == ["one"]
    many = source_health.failed_line([f"feed {n}" for n in range(8)])
    assert many.endswith("feed 4, 3 more</i>")


# --- backoff, measured as upstream requests over time ------------------------------


@pytest.fixture
async def stores(redis_url: str) -> AsyncIterator[list[Store]]:
    """Two stores on one real Redis, as two replicas have."""
    settings = Settings(redis_url=redis_url)
    opened = [Store(connect(settings)) for _ in range(2)]
    yield opened
    for store in opened:
        await store.close()


async def test_a_dead_source_is_asked_less_and_less_often_then_normally_again(
    news: Any, stores: list[Store]
) -> None:
    fail(news, "/down.xml")
    src = source(news, "/down.xml")
    fetcher = News(
        Settings(reddit_url=news.url, allow_private_urls=True, cache_ttl=300), stores[0]
    )
    try:
        # A chat (or digest, or alert) asks once a minute for a day.
        asked_at: list[int] = []
        for minute in range(24 * 60):
            before = news.count("/down.xml")
            result = await fetcher.get_one(src)
            assert result.error == BROKEN  # answered from the recorded failure meanwhile
            if news.count("/down.xml") > before:
                asked_at.append(minute)
            await elapse(stores[0], src, 60)
        # 60 s, then 5, 10, 20, 40, 80, 160 and 320 minutes, then every 6 hours: 11
        # requests instead of 1,440.
        assert asked_at == [0, 1, 6, 16, 36, 76, 156, 316, 636, 996, 1356]
        entry = await stores[0].get_cached(source_id(src))
        assert entry is not None and entry.failures == 11

        # It answers again: the next try (6 hours after the last) finds it, and from
        # then on it is fetched every cache TTL (5 minutes), as any working source.
        answer(news, "/down.xml")
        asked_at = []
        for minute in range(24 * 60, 1735):
            before = news.count("/down.xml")
            await fetcher.get_one(src)
            if news.count("/down.xml") > before:
                asked_at.append(minute)
            await elapse(stores[0], src, 60)
        assert asked_at == [1716, 1721, 1726, 1731]
        result = await fetcher.get_one(src)
        assert result.error is None and result.items[0].title == "Back again"
    finally:
        fetcher.close()


# --- the whole bot: /fetch, the ⚠️ mark -----------------------------------------------

CHAT = 5151


async def say(telegram: Any, text: str, chat_id: int = CHAT) -> str:
    before = len(telegram.sent(chat_id))
    telegram.push_message(chat_id, text)
    sent = await wait_sent(telegram, before + 1, chat_id)
    return str(sent[before].displayed)


async def test_fetch_answers_from_the_failure_and_source_marks_it(
    telegram: Any, news: Any, redis_url: str
) -> None:
    fail(news, "/down.xml")
    answer(news, "/up.xml", "Good story")
    down, up = f"{news.url}/down.xml", f"{news.url}/up.xml"
    async with running_bot(bot_env(telegram, redis_url, news)):
        # /source fetches what it is given once (feed discovery): the failure is known.
        await say(telegram, f"/source {up} {down}")
        first = await say(telegram, "/fetch")
        assert "Good story" in first and f"⚠️ {down}: {BROKEN}" in first
        second = await say(telegram, "/fetch")
        assert f"⚠️ {down}: {BROKEN}" in second
        assert news.count("/down.xml") == 1  # the second /fetch: from the failure

        store = Store(connect(Settings(redis_url=redis_url)))
        try:
            entry = await store.get_cached(source_id(Source("feed", down, down)))
        finally:
            await store.close()
        assert entry is not None and entry.failing_since is not None
        since = datetime.datetime.fromtimestamp(entry.failing_since, UTC)
        listing = await say(telegram, "/source")
        assert listing == (
            f"Your sources:\n• {up}\n• {down} ⚠️ {BROKEN} (failing since "
            f"{since:%Y-%m-%d %H:%M} UTC)"
        )
        await say(telegram, "/tz Asia/Tokyo")
        tokyo = since.astimezone(zoneinfo.ZoneInfo("Asia/Tokyo"))
        assert (await say(telegram, "/source")).endswith(
            f"(failing since {tokyo:%Y-%m-%d %H:%M} JST)"
        )


# --- digests and notices, with two replicas ----------------------------------------


@dataclasses.dataclass
class Replica:
    store: Store
    news: News
    bot: Bot

    def notices(self) -> SourceNotices:
        return SourceNotices(self.store, self.bot, every=0.05)


@pytest.fixture
def settings(telegram: Any, news: Any, redis_url: str) -> Settings:
    return Settings.from_env(bot_env(telegram, redis_url, news, NEWSBOT_DEAD_SOURCE_AFTER="3600"))


@pytest.fixture
async def replicas(settings: Settings) -> AsyncIterator[list[Replica]]:
    """Two replicas' news, store and bot on the same Redis and fakes."""
    started = []
    for _ in range(2):
        store = Store(connect(settings), settings.items_per_source)
        fetcher = News(settings, store)
        assert settings.telegram_token is not None
        application = build_application(settings, store, fetcher, settings.telegram_token)
        await application.initialize()
        started.append((Replica(store, fetcher, application.bot), application))
    yield [replica for replica, _ in started]
    for replica, application in started:
        await application.shutdown()
        replica.news.close()
        await replica.store.close()


async def test_a_digest_ends_naming_its_failed_sources(
    telegram: Any, news: Any, replicas: list[Replica]
) -> None:
    replica = replicas[0]
    answer(news, "/up.xml", "Fresh story")
    fail(news, "/down.xml")
    fail(news, "/gone.xml")
    up, down = source(news, "/up.xml"), Source("feed", f"{news.url}/down.xml", "Down Feed")
    gone = Source("feed", f"{news.url}/gone.xml", "Gone Feed")
    await replica.store.set_sources(6001, [up, down, gone])
    await replica.store.subscribe(6001, 86_400, time.time() - 1)
    digests = Digests(replica.store, replica.news, replica.bot, idle_seconds=0.05)
    assert await digests.run_once() == 1
    (digest,) = await wait_sent(telegram, 1, 6001)
    lines = digest.displayed.split("\n")
    assert lines[0] == "Your digest" and "Fresh story" in digest.displayed
    assert lines[-1] == "⚠️ Failed, not in this digest: Down Feed, Gone Feed"
    assert "Down Feed:" not in digest.displayed  # named once, at the end


CHATS = [7001, 7002, 7003]
OTHER = 7009


async def run_notices(replicas: list[Replica]) -> int:
    """Both replicas' notice loops, one round each at once; how many notices were taken."""
    taken = await asyncio.gather(*(replica.notices().run_once() for replica in replicas))
    return sum(taken)


async def failing_gauge() -> str:
    health = HealthServer(0, time.monotonic, lambda: asyncio.sleep(0))  # type: ignore[arg-type]
    _, _, body = await health.answer("/metrics")
    (line,) = [
        line for line in body.decode().splitlines() if line.startswith("newsbot_failing_sources ")
    ]
    return line


async def test_each_chat_is_told_once_when_a_source_dies_and_once_when_it_answers(
    telegram: Any, news: Any, replicas: list[Replica]
) -> None:
    first, second = replicas
    fail(news, "/down.xml")
    answer(news, "/fine.xml", "Fine story")
    down = Source("feed", f"{news.url}/down.xml", "Down Feed")
    for chat in CHATS:
        await first.store.set_sources(chat, [source(news, "/fine.xml"), down])
    await second.store.set_sources(OTHER, [source(news, "/fine.xml")])
    await first.store.set_sources(7004, [down])
    await first.store.set_sources(7004, [])  # had it, dropped it: not told

    async def ask_both() -> None:
        # Both replicas ask at once: one fetch, one transition.
        before = news.count("/down.xml")
        await asyncio.gather(first.news.get_one(down), second.news.get_one(down))
        assert news.count("/down.xml") == before + 1

    await ask_both()
    assert await run_notices(replicas) == 0  # failing, not dead yet
    assert await failing_gauge() == "newsbot_failing_sources 1.0"

    await elapse(first.store, down, 3599)  # past the backoff, short of dead
    await ask_both()
    assert await run_notices(replicas) == 0

    await elapse(first.store, down, 301)  # failing for an hour now
    await ask_both()
    assert await run_notices(replicas) == 1  # one notice, taken by one replica
    for chat in CHATS:
        (told,) = await wait_sent(telegram, 1, chat)
        assert told.displayed.startswith("⚠️ Down Feed has not answered since ")
        assert BROKEN in told.displayed and "/remove Down Feed" in told.displayed

    await elapse(first.store, down, 900)  # still failing: no second notice
    await ask_both()
    assert await run_notices(replicas) == 0

    answer(news, "/down.xml")
    await elapse(first.store, down, 1200)
    await ask_both()
    assert await failing_gauge() == "newsbot_failing_sources 1.0"  # not looked yet
    assert await run_notices(replicas) == 1
    assert await failing_gauge() == "newsbot_failing_sources 0.0"
    for chat in CHATS:
        _dead, recovered = await wait_sent(telegram, 2, chat)
        assert recovered.displayed == (
            "✅ Down Feed answers again: its news is back in /fetch and your digests."
        )

    # Later rounds (and the source fetched again) send nothing more, to anyone.
    await elapse(first.store, down, 300)
    await ask_both()
    assert await run_notices(replicas) == 0
    await first.bot.send_message(OTHER, "end of test")
    await wait_sent(telegram, 1, OTHER)
    assert [len(telegram.sent(chat)) for chat in [*CHATS, 7004, OTHER]] == [2, 2, 2, 0, 1]


async def test_a_notice_taken_over_mid_way_reaches_only_the_chats_left(
    telegram: Any, news: Any, replicas: list[Replica]
) -> None:
    dying, survivor = replicas
    fail(news, "/down.xml")
    down = Source("feed", f"{news.url}/down.xml", "Down Feed")
    for chat in CHATS:
        await dying.store.set_sources(chat, [down])
    await dying.news.get_one(down)
    await elapse(dying.store, down, 3600)
    await dying.news.get_one(down)
    # The dying replica claims the notice and reaches only the first chat.
    (notice,) = await dying.store.claim_source_notices(time.time(), 16, hold=1)
    await dying.bot.send_message(CHATS[0], "⚠️ Down Feed has not answered (first try)")
    await dying.store.mark_told_of_notice(notice, CHATS[0])
    assert await survivor.notices().run_once() == 0  # still claimed
    assert await survivor.notices().run_once(now=time.time() + 2) == 1  # claim ran out
    assert [len(await wait_sent(telegram, 1, chat)) for chat in CHATS] == [1, 1, 1]
    assert telegram.sent(CHATS[0])[0].displayed.endswith("(first try)")


async def test_the_index_of_chats_follows_their_sources(stores: list[Store]) -> None:
    store = stores[0]
    a, b = Source("reddit", "r/a", "a"), Source("reddit", "r/b", "b")
    await store.set_sources(1, [a, b])
    await store.set_sources(2, [b])
    assert (await store.chats_using("r/a"), await store.chats_using("r/b")) == ([1], [1, 2])
    await store.set_sources(1, [a])
    assert await store.chats_using("r/b") == [2]
    await store.migrate_chat(2, -1002)  # a group became a supergroup
    assert await store.chats_using("r/b") == [-1002]
    await store.forget_chat(1)
    assert await store.chats_using("r/a") == []
    assert not await store.redis.exists(keys.SOURCE_CHATS.format(digest=source_id(a)))


async def test_chats_stored_before_the_index_are_indexed_once(stores: list[Store]) -> None:
    store = stores[0]
    # As an older version stored it: the chat hash alone.
    await store.redis.hset(
        keys.CHAT.format(chat_id=-1009),
        "sources",
        '[{"kind": "reddit", "key": "r/a", "label": "a"}]',
    )
    await store.redis.hset(keys.CHAT.format(chat_id=8), "stopped", "1")
    built = await asyncio.gather(stores[0].build_source_index(), stores[1].build_source_index())
    assert sorted(built) == [0, 2]  # one replica read both chats, the other nothing
    assert await store.chats_using("r/a") == [-1009]


async def test_the_running_bot_tells_a_chat_once_of_a_dead_source_and_its_return(
    telegram: Any, news: Any, redis_url: str
) -> None:
    fail(news, "/down.xml")
    down = f"{news.url}/down.xml"
    env = bot_env(telegram, redis_url, news, NEWSBOT_CACHE_TTL="1", NEWSBOT_DEAD_SOURCE_AFTER="1")

    async def fetch_until(text: str) -> None:
        # Each /fetch past the (1 s) backoff tries the source again; the notice loop
        # looks every few seconds.
        for _ in range(40):
            if any(text in message.displayed for message in telegram.sent(CHAT)):
                return
            await say(telegram, "/fetch")
            await asyncio.sleep(0.5)
        raise AssertionError(f"no message with {text!r}")

    async with running_bot(env):
        await say(telegram, f"/source {down}")
        await fetch_until("has not answered since")
        answer(news, "/down.xml", "Back story")
        await fetch_until("answers again: its news")
        shown = [message.displayed for message in telegram.sent(CHAT)]
    assert sum("has not answered since" in text for text in shown) == 1
    assert sum("answers again: its news" in text for text in shown) == 1
    assert shown.index(next(t for t in shown if "answers again: its news" in t)) > shown.index(
        next(t for t in shown if "has not answered" in t)
    )


async def test_a_stopped_chat_and_one_that_dropped_the_source_are_not_told(
    telegram: Any, news: Any, replicas: list[Replica]
) -> None:
    replica = replicas[0]
    fail(news, "/down.xml")
    down = Source("feed", f"{news.url}/down.xml", "Down Feed")
    for chat in (7101, 7102, 7103):
        await replica.store.set_sources(chat, [down])
    await replica.store.set_stopped(7102, True)
    # An index behind the chat's list (a source dropped while the index was built).
    await replica.store.redis.hset(keys.CHAT.format(chat_id=7103), "sources", "[]")
    await replica.news.get_one(down)
    await elapse(replica.store, down, 3600)
    await replica.news.get_one(down)
    assert await replica.notices().run_once() == 1
    await replica.bot.send_message(7102, "end of test")
    await wait_sent(telegram, 1, 7102)
    assert [len(telegram.sent(chat)) for chat in (7101, 7102, 7103)] == [1, 1, 0]
    assert "has not answered" in telegram.sent(7101)[0].displayed
    assert await replica.store.chats_using(down.key) == [7101, 7102]  # 7103 unindexed
