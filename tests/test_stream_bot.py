"""The update stream end to end, as a user sees it: the bot as a process or in-process,
Telegram's real limits on the fake, the session's redis-server.

One chat's flood does not keep the others waiting, an update the library cannot parse
is set aside for good, and a reply waiting out a 429 at SIGTERM is sent once after the
restart. (The consumer itself, driven directly, is tested in test_stream.py.)
"""

from __future__ import annotations

import asyncio
import json

import pytest
import redis as sync_redis

from cluster_support import (
    OLD_API_POLL,
    REAL_LIMITS,
    close_all,
    http_get,
    metric,
    replies_per_marker,
    start_replicas,
    stream_settled,
    wait_answered,
)
from harness import bot_env, free_port, running_bot, wait_sent
from newsbot import keys


async def test_the_bot_answers_past_an_update_it_cannot_parse_also_after_a_restart(
    telegram, redis, redis_url
):
    port = free_port()
    env = bot_env(telegram, redis_url, NEWSBOT_HTTP_PORT=str(port))
    async with running_bot(env):
        poll_id = telegram.push_update(OLD_API_POLL)
        telegram.push_message(5, "/help")
        await wait_sent(telegram, 1, 5)
        (dead,) = await redis.xrange(keys.DEAD_UPDATES)
        assert dead[1]["update_id"] == str(poll_id)
        assert json.loads(dead[1]["update"])["poll"] == OLD_API_POLL["poll"]
        _, text = await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/metrics")
        counted = metric(text, "newsbot_dead_updates_total", 'reason="unparseable"')
        assert counted is not None and counted >= 1

    async with running_bot(env):  # a restart: the poll is not tried again
        telegram.push_message(5, "/help")
        await wait_sent(telegram, 2, 5)
        _, text = await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/metrics")
        assert metric(text, "newsbot_dead_updates_total", 'reason="unparseable"') == counted
    assert len(await redis.xrange(keys.DEAD_UPDATES)) == 1
    assert telegram.confirmed_offset > poll_id and telegram.pending_updates == 0


async def test_a_private_chat_sending_60_help_at_once_does_not_keep_another_waiting(
    telegram, redis_url
):
    # Telegram's real limits, strictly enforced: 60 replies to one chat take a minute.
    telegram.enforce_limits = True
    flood, other = 1001, 2002
    async with running_bot(bot_env(telegram, redis_url, **REAL_LIMITS)):
        for _ in range(60):
            telegram.push_message(flood, "/help")
        telegram.push_message(other, "/help")
        await wait_sent(telegram, 1, other, timeout=30)
        assert len(telegram.sent(flood)) < 10  # the other chat came long before the end
        await wait_sent(telegram, 60, flood, timeout=110)
    assert all("/source" in message.displayed for message in telegram.sent(flood))
    assert len(telegram.sent(flood)) == 60  # each once


@pytest.mark.timeout(200)
async def test_a_group_sending_40_commands_does_not_keep_a_private_chat_waiting(
    telegram, redis_url
):
    # 20 messages a minute in a group: the group's 40 replies take two minutes.
    telegram.enforce_limits = True
    group, other = -4001, 2002
    async with running_bot(bot_env(telegram, redis_url, **REAL_LIMITS)):
        for _ in range(40):
            telegram.push_message(group, "/help")
        telegram.push_message(other, "/help")
        await wait_sent(telegram, 1, other, timeout=30)
        assert len(telegram.sent(group)) < 10
        await wait_sent(telegram, 40, group, timeout=170)
    assert len(telegram.sent(group)) == 40  # each once


@pytest.mark.cluster
@pytest.mark.timeout(90)
def test_an_update_waiting_out_a_429_at_sigterm_is_answered_once_after_the_restart(
    telegram, redis_url
):
    client = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    replicas = start_replicas(telegram, redis_url, 1)
    try:
        telegram.fail_next("sendMessage", 429, retry_after=20)
        update_id = telegram.push_message(77, "/source q00001")
        telegram.wait_for_calls("sendMessage", 1, timeout=20)  # answered 429: waiting
        assert replicas[0].terminate(15) == 0
        assert telegram.sent() == []  # it stopped before the wait was over
        (_entry,) = client.xpending_range(keys.UPDATES, keys.GROUP, "-", "+", 10)
        assert not client.exists(keys.UPDATE_DONE.format(update_id=update_id))

        replicas += start_replicas(telegram, redis_url, 1)
        counts = wait_answered(telegram, ["q00001"], 60)
        assert stream_settled(client, 30)
        assert replies_per_marker(telegram)["q00001"] == 1, counts
    finally:
        for replica in replicas:
            print(f"--- replica pid {replica.pid} ---\n{replica.output}")
        close_all(replicas)
        client.close()
