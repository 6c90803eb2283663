"""Redis under pressure: a busy connection pool is waited for, a full Redis is told apart.

The bot runs in-process against a real redis-server (for ``maxmemory``, one of the
test's own), the fake Telegram and the fake news server; its /readyz is read over its
real HTTP port.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from cluster_support import RedisProcess, free_port, http_get
from harness import bot_env, running_bot, wait_sent
from newsbot.config import Settings
from newsbot.models import Source
from newsbot.news import News
from newsbot.store import Store, connect

CHATS = list(range(5001, 5065))  # 64 chats
DIGEST_CHATS = list(range(5101, 5117))  # their digests are due meanwhile
SOURCES = 20


def feed(name: str) -> str:
    items = "".join(
        f"<item><title>{name} story {n}</title><link>https://example.org/{name}/{n}</link></item>"
        for n in range(5)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>{name}</title>'
        f"<link>https://example.org/</link><description>d</description>{items}"
        f"</channel></rss>"
    )


async def test_a_small_pool_makes_commands_wait_instead_of_failing(redis_url: str) -> None:
    watcher = aioredis.Redis.from_url(redis_url, decode_responses=True)
    before = {client["id"] for client in await watcher.client_list()}
    store = Store(connect(Settings(redis_url=redis_url), max_connections=2))
    try:
        source = [Source("reddit", "r/python", "python")]
        await asyncio.gather(*(store.set_sources(chat, source) for chat in range(300)))
        read = await asyncio.gather(*(store.get_sources(chat) for chat in range(300)))
        assert read == [source] * 300
        opened = {client["id"] for client in await watcher.client_list()} - before
        assert 1 <= len(opened) <= 2  # 600 commands took turns on two connections
    finally:
        await store.close()
        await watcher.aclose()


async def test_64_chats_with_20_sources_fetching_at_once_are_all_answered(
    telegram, news, redis_url, caplog: pytest.LogCaptureFixture
) -> None:
    for n in range(SOURCES):
        news.set_route(f"/f{n}.xml", body=feed(f"feed{n}"))
    sources = [Source("feed", f"{news.url}/f{n}.xml", f"feed{n}") for n in range(SOURCES)]
    env = bot_env(telegram, redis_url, news)
    settings = Settings.from_env(env)
    setup = Store(aioredis.Redis.from_url(redis_url, decode_responses=True))
    warm = News(settings, setup)
    try:
        await warm.get(sources)  # every source in the shared cache
        for chat in CHATS + DIGEST_CHATS:
            await setup.set_sources(chat, sources)
        for chat in DIGEST_CHATS:
            await setup.subscribe(chat, 86_400, time.time())
    finally:
        warm.close()
        await setup.close()
    fetched_before = news.count("/f")

    with caplog.at_level(logging.INFO):
        async with running_bot(env):
            for chat in CHATS:
                telegram.push_message(chat, "/fetch")

            def answered() -> bool:
                replies = [" ".join(m.displayed for m in telegram.sent(chat)) for chat in CHATS]
                return all("feed19 story 4" in text for text in replies) and all(
                    "Your digest" in " ".join(m.displayed for m in telegram.sent(chat))
                    for chat in DIGEST_CHATS
                )

            await asyncio.to_thread(_wait_until, answered, 90)
            # A later update answered last: everything before it was handled.
            telegram.push_message(CHATS[0], "/help")
            await asyncio.to_thread(
                _wait_until,
                lambda: any("/subscribe" in m.displayed for m in telegram.sent(CHATS[0])),
                30,
            )

    for chat in CHATS:
        text = " ".join(m.displayed for m in telegram.sent(chat))
        assert all(f"feed{n} story 0" in text for n in range(SOURCES)), chat
    assert news.count("/f") == fetched_before  # served from the cache
    problems = [
        r.getMessage()
        for r in caplog.records
        if "deferred" in r.getMessage() or r.levelno >= logging.ERROR
    ]
    assert problems == []


async def test_redis_out_of_memory_fails_readiness_once_and_recovers(
    telegram, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    with RedisProcess(tmp_path, appendonly=False) as server:
        client = server.client()
        env = bot_env(telegram, server.url, NEWSBOT_HTTP_PORT=str(port))
        ready_url = f"http://127.0.0.1:{port}/readyz"
        with caplog.at_level(logging.INFO):
            async with running_bot(env):
                await _wait_status(ready_url, 200)
                telegram.push_message(1, "/help")
                await wait_sent(telegram, 1, chat_id=1)

                _fill_to_maxmemory(client)
                _status, reason = await _wait_status(ready_url, 503)
                assert "out of memory" in reason and "maxmemory" in reason, reason
                for chat in range(2, 8):  # users keep writing meanwhile
                    telegram.push_message(chat, "/help")
                # Several more checks see the same state: still one line.
                for _ in range(3):
                    await _wait_status(ready_url, 503)
                    await asyncio.sleep(1)

                client.delete(*client.keys("filler:*"))  # memory is freed
                await _wait_status(ready_url, 200)
                for chat in range(2, 8):  # what was sent meanwhile is answered now
                    await wait_sent(telegram, 1, chat_id=chat, timeout=60)
        client.close()
    full = [r for r in caplog.records if r.getMessage().startswith("Redis is out of memory")]
    assert len(full) == 1 and full[0].levelno == logging.ERROR
    assert "maxmemory" in full[0].getMessage()
    again = [r for r in caplog.records if r.getMessage().startswith("Redis takes writes")]
    assert len(again) == 1


def _fill_to_maxmemory(client: redis.Redis) -> None:
    """Fill Redis with 4 MB, then cap it (noeviction) 1 MB below what it uses then.

    Well over the cap, the keys that expire on their own cannot bring it back under.
    """
    chunk = "x" * 64 * 1024
    for n in range(64):
        client.set(f"filler:{n}", chunk)
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", str(used - 1024 * 1024))
    try:
        client.set("filler:more", chunk)
    except redis.exceptions.OutOfMemoryError:
        return
    raise AssertionError("Redis did not run out of memory")


async def _wait_status(url: str, status: int, timeout: float = 30) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = await asyncio.to_thread(http_get, url, 10)
        except OSError as error:  # URLError: the bot is not listening yet
            answer = (0, str(error))
        if answer[0] == status:
            return answer
        assert time.monotonic() < deadline, f"{url} answered {answer}, not {status}"
        await asyncio.sleep(0.1)


def _wait_until(condition, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.05)
