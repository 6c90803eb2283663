"""Several replicas as one bot: each update answered once through crashes and restarts.

Every replica is a `python -m newsbot run` process on a real redis-server, driven only
through the fake Telegram. Each update carries a unique marker (``/source q00042``)
that its reply shows, so counting markers in what the fake received tells, per update,
whether it was lost, answered once, or answered twice.

Failover is slow on purpose (the poller's lease lives 6 s, a dead replica's stream
entries are claimed after 10 s idle), so the waits here are generous and nothing is
timed except SIGTERM's exit.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from cluster_support import (
    REAL_LIMITS,
    Pusher,
    RedisProcess,
    Replica,
    by_pid,
    close_all,
    delivery_report,
    kill_between_replies,
    leader_pid,
    marked_commands,
    metric,
    replies_per_marker,
    start_replicas,
    stream_settled,
    wait_answered,
)

pytestmark = pytest.mark.cluster

# Generous: failover needs the lease (6 s) to expire and entries to idle for 10 s.
ANSWER_TIMEOUT = 60
SIGTERM_DEADLINE = 10.0

Launch = Callable[..., list[Replica]]


@pytest.fixture
def launch(telegram) -> Iterator[Launch]:
    """Start replicas against the fake Telegram; kill leftovers and show logs at the end.

    The logs are printed at teardown, so pytest shows them only for a failed test.
    """
    started: list[Replica] = []

    def launch(redis_url: str, count: int = 1, **options: object) -> list[Replica]:
        replicas = start_replicas(telegram, redis_url, count, **options)  # type: ignore[arg-type]
        started.extend(replicas)
        return replicas

    yield launch
    for replica in started:
        print(f"--- replica pid {replica.pid} ---\n{replica.output}")
    close_all(started)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the session's redis-server, to look at the bot's keys."""
    connection = redis.Redis.from_url(redis_url, decode_responses=True)
    yield connection
    connection.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test's own, with the append-only file on."""
    with RedisProcess(tmp_path, appendonly=True) as server:
        yield server


def assert_each_answered_once(
    telegram, client: redis.Redis, markers: list[str], timeout: float = ANSWER_TIMEOUT
) -> None:
    """Wait for every marker's reply, then for the stream to settle; none twice."""
    missing, _ = delivery_report(wait_answered(telegram, markers, timeout), markers)
    assert not missing, f"{len(missing)} update(s) never answered: {missing[:20]}"
    # Once nothing is pending, no late duplicate can come any more.
    assert stream_settled(client), "updates left pending in the stream"
    _, duplicated = delivery_report(replies_per_marker(telegram), markers)
    assert not duplicated, f"{len(duplicated)} update(s) answered twice: {duplicated}"


def assert_no_conflict_loop(telegram, quiet_seconds: float = 4.5) -> None:
    """Once things settle, one replica polls alone: no new 409, no storm of getUpdates."""
    conflicts, polls = telegram.conflicts, telegram.count("getUpdates")
    time.sleep(quiet_seconds)
    assert telegram.conflicts == conflicts, "409 Conflict keeps coming back"
    # A lone long-poller (2 s timeout) asks about twice in that window.
    assert telegram.count("getUpdates") - polls <= 5


def test_the_leader_killed_mid_stream_loses_and_repeats_nothing(
    telegram, launch, client, redis_url
):
    replicas = launch(redis_url, 3)
    commands = marked_commands(300, chats=100)
    markers = [marker for *_, marker in commands]
    with Pusher(telegram, commands, per_second=50) as pusher:
        pusher.wait_pushed(150)
        victim = by_pid(replicas, leader_pid(client))
        kill_between_replies(telegram, client, victim, pusher.update_ids)

    assert_each_answered_once(telegram, client, markers)
    survivors = {replica.pid for replica in replicas if replica is not victim}
    assert leader_pid(client) in survivors
    # The dead leader's last long poll ran out before the lease did: no 409 needed.
    assert telegram.conflicts <= 1
    assert_no_conflict_loop(telegram)


@pytest.mark.alone
def test_a_replica_killed_under_a_burst_at_telegrams_strict_limits(
    telegram, launch, client, redis_url
):
    # 300 updates at once from 100 chats, Telegram's limits counted strictly (30 in any
    # second, 1/s a chat with a burst of 3), the leader killed half-way: every update
    # answered once, and not one 429.
    telegram.enforce_limits = True
    replicas = launch(redis_url, 3, **REAL_LIMITS)
    commands = marked_commands(300, chats=100)
    markers = [marker for *_, marker in commands]
    with Pusher(telegram, commands, per_second=300) as pusher:
        pusher.wait_pushed(150)
        victim = by_pid(replicas, leader_pid(client))
        kill_between_replies(telegram, client, victim, pusher.update_ids)

    assert_each_answered_once(telegram, client, markers)
    assert telegram.too_many == 0


@pytest.mark.alone
def test_rolling_restart_by_sigterm_loses_and_repeats_nothing(telegram, launch, client, redis_url):
    replicas = launch(redis_url, 3)
    commands = marked_commands(300, chats=100)
    markers = [marker for *_, marker in commands]
    exits = []
    with Pusher(telegram, commands, per_second=20) as pusher:
        for old in list(replicas):
            pusher.wait_pushed(pusher.pushed + 40)
            exits.append(old.terminate_timed())
            replicas += launch(redis_url, 1)

    assert_each_answered_once(telegram, client, markers)
    for code, seconds in exits:
        assert code == 0
        assert seconds < SIGTERM_DEADLINE
    # A leader that stops hands the lease over at once; its last poll may see one 409.
    assert telegram.conflicts <= len(exits)
    assert_no_conflict_loop(telegram)


def test_an_update_in_hand_of_a_killed_replica_is_answered_by_another(
    telegram, launch, client, redis_url
):
    # One message per 5 s in a chat: the second update waits for its slot, in hand.
    replicas = launch(redis_url, 2, NEWSBOT_SEND_PER_CHAT_SECOND="0.2")
    telegram.push_message(77, "/source q00001")
    telegram.wait_for_sent(1, timeout=20)
    update_id = telegram.push_message(77, "/source q00002")
    lock = f"newsbot:update-lock:{update_id}"
    deadline = time.monotonic() + 20
    while not (owner := client.get(lock)) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert owner, "no replica took the update"
    by_pid(replicas, int(owner.rsplit("-", 2)[1])).kill()

    # Claimed after 10 s idle; the dead replica's lock on the update must not hold the
    # claimer off much longer than that.
    assert_each_answered_once(telegram, client, ["q00001", "q00002"], timeout=40)


def test_redis_restart_under_load_loses_no_state(telegram, launch, own_redis):
    replicas = launch(own_redis.url, 3, health=True)
    before = marked_commands(100, chats=100, first_chat=1000)
    with Pusher(telegram, before, per_second=100):
        pass
    wait_answered(telegram, [marker for *_, marker in before], ANSWER_TIMEOUT)

    during = marked_commands(150, chats=50, start=100, first_chat=2000)
    with Pusher(telegram, during, per_second=20) as pusher:
        pusher.wait_pushed(50)
        own_redis.stop()
        outage = time.monotonic()
        for replica in replicas:
            status, body = replica.wait_for_status("/readyz", 503)
            assert "Redis" in body
            assert replica.get("/healthz")[0] == 200  # not a reason to restart it
        time.sleep(max(0.0, 3 - (time.monotonic() - outage)))
        own_redis.start()
        for replica in replicas:
            replica.wait_for_status("/readyz", 200, timeout=30)

    with own_redis.client() as client:
        assert_each_answered_once(telegram, client, [marker for *_, marker in before + during])
        for chat_id, _, marker in before:
            sources = json.loads(client.hget(f"newsbot:chat:{chat_id}", "sources") or "[]")
            assert [source["label"] for source in sources] == [marker]
    assert all(replica.process.poll() is None for replica in replicas), "a replica restarted"


def test_telegram_errors_neither_lose_nor_repeat_replies(telegram, launch, client, redis_url):
    launch(redis_url, 3)
    commands = marked_commands(150, chats=50)
    markers = [marker for *_, marker in commands]
    injected = 0
    with Pusher(telegram, commands, per_second=30) as pusher:
        for burst in (
            lambda: telegram.fail_next("sendMessage", 500, times=8),
            lambda: telegram.drop_next("sendMessage", times=5),
            lambda: telegram.fail_next("sendMessage", 429, retry_after=1, times=5),
            lambda: telegram.fail_next("sendMessage", 502, times=4),
            lambda: telegram.drop_next("sendMessage", times=4),
        ):
            pusher.wait_pushed(pusher.pushed + 20)
            burst()
        injected = 8 + 5 + 5 + 4 + 4
        pusher.wait_pushed(pusher.pushed + 10)
        telegram.fail_next("getUpdates", 500, times=3)
        telegram.drop_next("getUpdates", times=2)

    assert_each_answered_once(telegram, client, markers)
    # Every injected failure met a send, and every send either failed by injection or
    # arrived: nothing was sent twice behind the fake's back.
    assert telegram.count("sendMessage") == len(telegram.sent()) + injected
    assert telegram.too_many == 5


async def subscribe_all(redis_url: str, chats: list[int], due: float) -> None:
    """Give every chat r/python and a daily digest due at ``due``, through the store."""
    import redis.asyncio as aioredis

    from newsbot.sources.parsing import parse_source
    from newsbot.store import Store

    store = Store(aioredis.Redis.from_url(redis_url, decode_responses=True))
    try:
        for chat_id in chats:
            await store.set_sources(chat_id, [parse_source("python")])
            await store.subscribe(chat_id, 86_400, due)
    finally:
        await store.close()


@pytest.mark.alone
def test_digests_due_at_once_go_out_once_each_within_telegrams_limits(
    telegram, news, launch, client, redis_url
):
    chats = [3000 + i for i in range(100)] + [-(5000 + i) for i in range(20)]
    telegram.enforce_limits = True
    replicas = launch(redis_url, 3, news=news, health=True, **REAL_LIMITS)
    asyncio.run(subscribe_all(redis_url, chats, due=time.time() + 1))

    telegram.wait_for_sent(len(chats), timeout=60)
    time.sleep(2)  # a second digest to any chat would come now
    per_chat = {chat_id: len(telegram.sent(chat_id)) for chat_id in chats}
    assert {count for count in per_chat.values()} == {1}, per_chat
    assert len(telegram.sent()) == len(chats)
    assert all("Your digest" in message.displayed for message in telegram.sent())
    assert telegram.too_many == 0
    # The replicas shared the work, and their own counts add up to one digest a chat.
    sent = [
        metric(replica.get("/metrics")[1], "newsbot_digests_total", 'outcome="sent"') or 0
        for replica in replicas
    ]
    assert sum(sent) == len(chats)
    assert sum(1 for count in sent if count) >= 2
    assert news.count("/r/python") == 1  # one upstream fetch for every chat and replica
    assert all(client.zscore("newsbot:due", chat_id) > time.time() + 86_000 for chat_id in chats)


def test_each_chats_updates_are_handled_in_order_across_replicas(
    telegram, launch, redis_url, client
):
    # "/source x" then, at once, "/sources": whichever replicas take the two updates,
    # the listing must show x. Without per-chat order across replicas, some listings
    # would show the chat's previous sources.
    replicas = launch(redis_url, 3, health=True)
    rounds, chats = 4, range(9001, 9041)
    for round_ in range(rounds):
        for chat in chats:
            telegram.push_message(chat, f"/source r{chat}_{round_}")
            telegram.push_message(chat, "/sources")
    telegram.wait_for_sent(2 * rounds * len(chats), timeout=ANSWER_TIMEOUT)
    assert stream_settled(client)
    for chat in chats:
        replies = [message.displayed for message in telegram.sent(chat)]
        assert replies == [
            text
            for round_ in range(rounds)
            for text in (
                f"Your sources are now:\n• r{chat}_{round_}",
                f"Your sources:\n• r{chat}_{round_}",
            )
        ]
    handled = [
        metric(replica.get("/metrics")[1], "newsbot_updates_total", 'outcome="handled"') or 0
        for replica in replicas
    ]
    assert sum(1 for count in handled if count) >= 2  # the replicas really shared the work
