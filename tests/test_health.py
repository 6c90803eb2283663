"""The probes and metrics on NEWSBOT_HTTP_PORT, and a clean exit on SIGTERM.

The bot runs as `python -m newsbot run` with a health port, on a redis-server of the
test's own so that a test can stop Redis under it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster_support import (REAL_LIMITS, UPDATES_KEY, RedisProcess, Replica, delivery_report,
                             marked_commands, metric, replies_per_marker, start_replicas,
                             stream_settled, wait_answered)

# Kubernetes' default grace period is 30 s; the compose file gives 10 s.
SIGTERM_DEADLINE = 10.0


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server this test may stop and start."""
    with RedisProcess(tmp_path, appendonly=False) as server:
        yield server


@pytest.fixture
def replicas(telegram, own_redis) -> Iterator[list[Replica]]:
    """Replicas started by a test; killed if still running, logs shown on failure."""
    started: list[Replica] = []
    yield started
    for replica in started:
        print(f"--- replica pid {replica.pid} ---\n{replica.output}")
        replica.close()


@pytest.fixture
def bot(telegram, own_redis, replicas) -> Replica:
    """One replica with its health server on a free port."""
    replicas += start_replicas(telegram, own_redis.url, 1, health=True)
    return replicas[0]


def test_liveness_and_readiness_answer_on_the_http_port(bot):
    assert bot.get("/healthz") == (200, "ok\n")
    assert bot.get("/readyz") == (200, "ready\n")
    assert bot.get("/favicon.ico")[0] == 404


def test_readiness_names_a_redis_outage_and_returns_without_a_restart(bot, own_redis):
    own_redis.stop()
    _, reason = bot.wait_for_status("/readyz", 503)
    assert reason == "Redis does not answer\n"
    # Liveness is about a stuck process, not about Redis: no restart for this.
    assert bot.get("/healthz") == (200, "ok\n")

    own_redis.start()
    bot.wait_for_status("/readyz", 200, timeout=30)
    assert bot.process.poll() is None


def test_metrics_count_updates_messages_and_leadership(bot, telegram, own_redis):
    for chat_id, text, _ in marked_commands(3, chats=3):
        telegram.push_message(chat_id, text)
    telegram.wait_for_sent(3, timeout=20)
    # An update is counted once handled, a moment after its reply went out.
    with own_redis.client() as client:
        assert stream_settled(client)

    status, text = bot.get("/metrics")
    assert status == 200
    assert metric(text, "newsbot_updates_total", 'outcome="handled"') == 3
    assert metric(text, "newsbot_messages_sent_total") == 3
    assert metric(text, "newsbot_handler_seconds_count") == 3
    assert metric(text, "newsbot_leader") == 1
    assert metric(text, "newsbot_telegram_429_total") == 0


def test_sigterm_drains_and_exits_0_in_time(telegram, own_redis, replicas):
    # At Telegram's pace, a batch of updates is still in hand when SIGTERM comes.
    replicas += start_replicas(telegram, own_redis.url, 1, **REAL_LIMITS)
    bot = replicas[0]
    commands = marked_commands(60, chats=60)
    for chat_id, text, _ in commands:
        telegram.push_message(chat_id, text)
    telegram.wait_for_sent(1, timeout=20)
    code, seconds = bot.terminate_timed()
    assert code == 0
    assert seconds < SIGTERM_DEADLINE
    assert "newsbot stopped" in bot.output
    with own_redis.client() as client:
        # Every update it had read, it finished and acknowledged before exiting.
        (group,) = client.xinfo_groups(UPDATES_KEY)
        assert group["pending"] == 0

        # The rest were left with Telegram, for the next replica.
        replicas += start_replicas(telegram, own_redis.url, 1)
        markers = [marker for *_, marker in commands]
        missing, _ = delivery_report(wait_answered(telegram, markers, 30), markers)
        assert not missing
        assert stream_settled(client)
    _, duplicated = delivery_report(replies_per_marker(telegram), markers)
    assert not duplicated


def test_sigterm_exits_0_in_time_while_redis_is_down(bot, own_redis):
    own_redis.stop()
    bot.wait_for_status("/readyz", 503)
    code, seconds = bot.terminate_timed()
    assert code == 0
    assert seconds < SIGTERM_DEADLINE
