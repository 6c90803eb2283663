"""The probes and metrics on NEWSBOT_HTTP_PORT, and a clean exit on SIGTERM.

The bot runs as `python -m newsbot run` with a health port, on a redis-server of the
test's own so that a test can stop Redis under it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster_support import (
    REAL_LIMITS,
    UPDATES_KEY,
    RedisProcess,
    Replica,
    delivery_report,
    marked_commands,
    metric,
    replies_per_marker,
    start_replicas,
    stream_settled,
    wait_answered,
)
from newsbot import health

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


@pytest.mark.alone
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


# --- junk on the health port ----------------------------------------------------------------


def _exchange(port: int, data: bytes, half_close: bool = True) -> bytes:
    """Send raw bytes to the health port and read until the server closes; b"" if reset."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as connection:
        try:
            connection.sendall(data)
            if half_close:
                connection.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
            return answer
        except ConnectionResetError:
            return b""  # closed on us: an acceptable answer to junk


def _status(answer: bytes) -> int | None:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None


@pytest.mark.parametrize(
    "junk, statuses",
    [
        (b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n", {414, None}),  # a 100 KB line
        (bytes(range(256)) * 40, {400, None}),  # garbage bytes
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # TLS on plain HTTP
            {400, None},
        ),
        (b"DELETE /healthz HTTP/1.1\r\nHost: x\r\n\r\n", {405}),  # unknown method
        (b"BREW /healthz HTTP/1.1\r\n\r\n", {405}),
        (b"GET /healthz HTTP/1.1\r\n" + b"X-Junk: y\r\n" * 500 + b"\r\n", {431}),
        (b"GET /healthz HTTP/1.1\r\nX-Big: " + b"y" * 100_000 + b"\r\n\r\n", {431, None}),
        (b"GET healthz\r\n\r\n", {400}),
        (b"GET /healthz HTTP/1.1\r\nHost:", {None}),  # ends mid-header: closed
        (b"\r\n", {400}),
        (b"", {None}),
    ],
)
def test_junk_on_the_health_port_is_refused_and_the_probes_still_answer(bot, junk, statuses):
    answer = _exchange(bot.http_port, junk)
    assert _status(answer) in statuses, answer[:200]
    if answer:
        assert answer.count(b"\r\n\r\n") == 1 and b"Connection: close" in answer
    assert bot.get("/healthz") == (200, "ok\n")
    assert bot.process.poll() is None
    for sign in ("Traceback", "Unhandled exception"):
        assert sign not in bot.output


def test_a_405_names_the_methods_allowed_and_head_has_no_body(bot):
    answer = _exchange(bot.http_port, b"POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    assert b"\r\nAllow: GET, HEAD\r\n" in answer
    answer = _exchange(bot.http_port, b"HEAD /healthz HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 3\r\n" in answer
    assert answer.endswith(b"\r\n\r\n")


def test_half_open_connections_are_closed_and_do_not_hold_the_probes(bot):
    # Clients that never finish their request, as a slow-loris attacker's do.
    stalled = [
        socket.create_connection(("127.0.0.1", bot.http_port), timeout=30) for _ in range(20)
    ]
    try:
        for number, connection in enumerate(stalled):
            connection.sendall(b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"y" * number)
        # While all of them are open, the probes answer.
        assert bot.get("/healthz") == (200, "ok\n")
        assert bot.get("/readyz") == (200, "ready\n")
        # And the server ends each of them by itself (a bounded wait for the whole request).
        for connection in stalled:
            assert connection.recv(1024) == b""
    finally:
        for connection in stalled:
            connection.close()
    assert bot.get("/healthz") == (200, "ok\n")
    assert "Traceback" not in bot.output


_REQUESTISH = st.builds(
    lambda method, path, version, headers: (
        f"{method} {path} {version}\r\n".encode() + headers + b"\r\n"
    ),
    st.sampled_from(["GET", "HEAD", "POST", "get", "BREW", "", "G ET"]),
    st.text(max_size=30),
    st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", ""]),
    st.binary(max_size=200),
)


@settings(max_examples=400, deadline=None)
@given(data=st.one_of(st.binary(max_size=20_000), _REQUESTISH))
def test_any_bytes_read_as_a_request_or_refused(data: bytes) -> None:
    async def read() -> tuple[str, str] | int | None:
        reader = asyncio.StreamReader(limit=health.MAX_LINE)
        reader.feed_data(data)
        reader.feed_eof()
        try:
            return await health._read_request(reader)
        except health._Refused as refused:
            return refused.status
        except asyncio.IncompleteReadError:
            return None  # the client hung up before the end: the connection is closed

    outcome = asyncio.run(read())
    if isinstance(outcome, tuple):
        method, path = outcome
        assert method in ("GET", "HEAD") and path.startswith("/") and "?" not in path
    else:
        assert outcome in (400, 405, 414, 431, None)
