"""Redis Sentinel: the redis+sentinel:// URL, the master found through the sentinels, a
failover followed without a restart, and replicas acknowledging writes with WAIT.

The servers are real: a redis-server master, a replica and three redis-sentinel
processes on loopback (tests/sentinel_support.py), with passwords on both the Redis
servers and the sentinels, as a production setup has them.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from cluster_support import (Pusher, Replica, close_all, delivery_report, marked_commands,
                             replies_per_marker, start_replicas, stream_settled,
                             wait_answered)
from newsbot import redis_url
from newsbot.config import Settings
from newsbot.errors import ConfigError
from newsbot.store import Store, connect, sentinel_master, wait_for_replicas
from sentinel_support import MASTER_NAME, SentinelSet, wait_until
from test_cli import newsbot

REDIS_PASSWORD = "srv-pw-4e1b"
SENTINEL_PASSWORD = "snt-pw-90ac"


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    """A master, a replica and three sentinels, passwords on servers and sentinels."""
    with SentinelSet(tmp_path, REDIS_PASSWORD, SENTINEL_PASSWORD) as cluster:
        yield cluster


# --- the URL ------------------------------------------------------------------------------


@pytest.mark.parametrize("url, expected", [
    ("redis+sentinel://s1:26379,s2:26380/mymaster/0",
     redis_url.SentinelURL((("s1", 26379), ("s2", 26380)), "mymaster", 0)),
    ("redis+sentinel://s1/mymaster",  # Sentinel's port and database 0 by default
     redis_url.SentinelURL((("s1", 26379),), "mymaster", 0)),
    ("redis+sentinel://:pw@10.0.0.1:5000,[::1]:5001/bot.main-1/15",
     redis_url.SentinelURL((("10.0.0.1", 5000), ("::1", 5001)), "bot.main-1", 15,
                           password="pw")),
    ("redis+sentinel://newsbot:p%40ss@s1/m/2?sentinel_password=sp",
     redis_url.SentinelURL((("s1", 26379),), "m", 2, "newsbot", "p@ss",
                           sentinel_password="sp")),
    ("REDIS+SENTINEL://s1/m?sentinel_username=u&sentinel_password=sp",
     redis_url.SentinelURL((("s1", 26379),), "m", 0, sentinel_username="u",
                           sentinel_password="sp")),
])
def test_a_sentinel_url_is_read_into_its_parts(url: str,
                                               expected: redis_url.SentinelURL) -> None:
    assert Settings.from_env({"REDIS_URL": url}).redis_url == url
    assert redis_url.parse(url) == expected


@pytest.mark.parametrize("value", [
    "redis+sentinel://s1:26379,s2:26379",             # no master name
    "redis+sentinel://s1:26379/",                     # no master name
    "redis+sentinel://s1:26379/mymaster/16",          # no such database
    "redis+sentinel://s1:26379/mymaster/x",
    "redis+sentinel://s1:26379/mymaster/0/extra",
    "redis+sentinel://s1:26379/my%20master/0",        # not one word
    "redis+sentinel://s1:26379,,s2:26379/mymaster/0",  # a sentinel went missing
    "redis+sentinel://s1:99999/mymaster/0",
    "redis+sentinel://s1:0/mymaster/0",
    "redis+sentinel://s1:port/mymaster/0",
    "redis+sentinel://bad_host!/mymaster/0",
    "redis+sentinel://[::1/mymaster/0",
    "redis+sentinel://[nothost]:26379/mymaster/0",
    "redis+sentinel:///mymaster/0",                   # no sentinel at all
    "redis+sentinel://s1/mymaster/0?socket_timeout=1",  # unknown option
    "redis+sentinel://s1/mymaster/0?sentinel_password=",
    "redis+sentinel://s1/mymaster/0#frag",
    "redis+sentinel://user@s1/mymaster/0",            # a user and no password
    "redis+sentinel://s1 s2/mymaster/0",
    "redis+sentinel://" + ",".join(f"s{i}" for i in range(17)) + "/mymaster",
    "sentinel://s1:26379/mymaster/0",
])
def test_a_malformed_sentinel_url_is_one_line_naming_redis_url(value: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({"REDIS_URL": value})
    assert error.value.variable == "REDIS_URL"
    message = str(error.value)
    assert message.startswith("REDIS_URL=") and "\n" not in message


@pytest.mark.parametrize("value", [
    "redis+sentinel://:srvsecret@s1,s2/mymaster/0?sentinel_password=sntsecret",
    "redis+sentinel://:srvsecret@s1,s2/mymaster/99?sentinel_password=sntsecret",
])
def test_sentinel_url_passwords_are_masked(value: str) -> None:
    try:
        settings = Settings.from_env({"REDIS_URL": value})
    except ConfigError as error:
        shown = str(error)
    else:
        assert set(settings.secrets) == {"srvsecret", "sntsecret"}
        shown = repr(settings)
    assert "srvsecret" not in shown and "sntsecret" not in shown
    assert "s1,s2/mymaster" in shown  # the rest is there to debug with


# --- the master through the sentinels --------------------------------------------------


async def test_the_store_finds_the_master_through_the_sentinels(sentinels: SentinelSet) -> None:
    store = Store(connect(Settings(redis_url=sentinels.url(db=3))))
    try:
        assert await sentinel_master(store.redis) == ("127.0.0.1", sentinels.master.port)
        await store.redis.set("written-through-sentinel", "yes")
        assert await store.write_problem() is None
    finally:
        await store.close()
    with sentinels.master.client() as master:
        master.select(3)  # the database of the URL's path
        assert master.get("written-through-sentinel") == "yes"


async def test_a_wrong_sentinel_password_is_refused_not_ignored(
        sentinels: SentinelSet) -> None:
    url = sentinels.url().replace(SENTINEL_PASSWORD, "wrong")
    store = Store(connect(Settings(redis_url=url)))
    try:
        assert await store.write_problem() is not None
        assert not await store.ping()
    finally:
        await store.close()


def test_check_names_the_master_the_sentinels_found(telegram, sentinels: SentinelSet) -> None:
    result = newsbot("check", env={"REDIS_URL": sentinels.url(), "TELEGRAM_TOKEN":
                                   telegram.token, "TELEGRAM_API_URL": telegram.url})
    assert result.returncode == 0, result.stderr
    assert f"master {MASTER_NAME!r} via sentinels" in result.stdout
    assert f"master at 127.0.0.1:{sentinels.master.port}" in result.stdout
    assert REDIS_PASSWORD not in result.stdout + result.stderr
    assert SENTINEL_PASSWORD not in result.stdout + result.stderr

    unknown = sentinels.url().replace(f"/{MASTER_NAME}/", "/nosuchmaster/")
    result = newsbot("check", env={"REDIS_URL": unknown})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        result.stderr.strip()]  # one line
    assert "no sentinel names a master" in result.stderr and "REDIS_URL" in result.stderr


# --- WAIT -----------------------------------------------------------------------------------


def _sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_wait_for_replicas_is_acknowledged_by_the_replica_or_says_why_not(
        sentinels: SentinelSet) -> None:
    store = Store(connect(Settings(redis_url=sentinels.url())))
    try:
        async with store.redis.client() as connection:  # WAIT counts this connection's writes
            await connection.set("acknowledged", "1")
            assert await wait_for_replicas(connection, 2000) == 1
            with sentinels.replica.client() as replica:
                assert replica.get("acknowledged") == "1"  # it is there, not on its way

            # A replica that stops reading: the master still counts it as attached,
            # the write is not acknowledged within the timeout, and the bot is told.
            assert sentinels.replica.process is not None
            os.kill(sentinels.replica.process.pid, signal.SIGSTOP)
            try:
                timeouts = _sample("newsbot_replica_ack_timeouts_total")
                await connection.set("unacknowledged", "1")
                assert await wait_for_replicas(connection, 300) == 0
                assert _sample("newsbot_replica_ack_timeouts_total") == timeouts + 1
            finally:
                os.kill(sentinels.replica.process.pid, signal.SIGCONT)
    finally:
        await store.close()


async def test_wait_for_replicas_without_a_replica_goes_on_and_counts_it(
        redis_url: str) -> None:
    store = Store(connect(Settings(redis_url=redis_url)))
    try:
        skipped = _sample("newsbot_replica_ack_skipped_total")
        async with store.redis.client() as connection:
            await connection.set("alone", "1")
            assert await wait_for_replicas(connection, 60_000) is None
        assert _sample("newsbot_replica_ack_skipped_total") == skipped + 1
    finally:
        await store.close()


# --- failover -------------------------------------------------------------------------------


@pytest.mark.cluster
def test_the_bot_follows_a_failover_losing_and_repeating_nothing(
        telegram, sentinels: SentinelSet) -> None:
    replicas: list[Replica] = []
    try:
        replicas = start_replicas(telegram, sentinels.url(), 3, health=True)
        before = marked_commands(100, chats=100, first_chat=1000)
        with Pusher(telegram, before, per_second=100):
            pass
        missing, _ = delivery_report(
            wait_answered(telegram, [m for *_, m in before], 60), [m for *_, m in before])
        assert not missing

        during = marked_commands(200, chats=50, start=100, first_chat=2000)
        with Pusher(telegram, during, per_second=40) as pusher:
            pusher.wait_pushed(60)
            sentinels.master.kill()
            killed = time.monotonic()
            # While the sentinels still name the dead master, no replica is ready.
            for replica in replicas:
                status, body = replica.wait_for_status("/readyz", 503)
                assert "Redis" in body
                assert replica.get("/healthz")[0] == 200  # not a reason to restart it
            wait_until(lambda: sentinels.named_master_port() == sentinels.replica.port,
                       60, "the sentinels to promote the replica")
            promoted = time.monotonic() - killed
            for replica in replicas:
                replica.wait_for_status("/readyz", 200, timeout=60)
            ready = time.monotonic() - killed
        print(f"failover: replica promoted {promoted:.1f} s after SIGKILL of the master, "
              f"all bot replicas ready again after {ready:.1f} s")

        markers = [marker for *_, marker in before + during]
        with sentinels.replica.client() as new_master:
            missing, _ = delivery_report(wait_answered(telegram, markers, 90), markers)
            assert not missing, f"{len(missing)} update(s) never answered: {missing[:20]}"
            assert stream_settled(new_master), "updates left pending in the stream"
            _, duplicated = delivery_report(replies_per_marker(telegram), markers)
            assert not duplicated, f"{len(duplicated)} answered twice: {duplicated}"
            for chat_id, _, marker in before:
                sources = json.loads(new_master.hget(f"newsbot:chat:{chat_id}", "sources")
                                     or "[]")
                assert [source["label"] for source in sources] == [marker]
        assert all(replica.process.poll() is None for replica in replicas), \
            "a bot replica restarted"
    finally:
        for replica in replicas:
            print(f"--- replica pid {replica.pid} ---\n{replica.output}")
        close_all(replicas)
