"""Webhook mode: Telegram pushes updates to every replica; each is stored and answered once.

Replicas are `python -m newsbot run` processes on a real redis-server; the fake Telegram
pushes (push mode: POST with the secret header, retried until answered 2xx) through a
small round-robin TCP proxy standing in for the Kubernetes Service. Each update carries
a marker its reply shows (see cluster_support), so counting markers in what the fake
received tells whether an update was lost, answered once, or twice.
"""

from __future__ import annotations

import json
import socketserver
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import redis

from cluster_support import (
    MARKER,
    Pusher,
    Replica,
    RoundRobinProxy,
    by_pid,
    close_all,
    delivery_report,
    free_port,
    kill_between_replies,
    leader_pid,
    marked_commands,
    metric,
    replies_per_marker,
    start_replicas,
    stream_settled,
    wait_answered,
)
from fakes.telegram_api import FakeTelegram
from harness import bot_env
from test_cli import newsbot

SECRET = "s3cret_Value-for-tests"
PATH = "/telegram"
ANSWER_TIMEOUT = 90


def webhook_env(port: int) -> dict[str, str]:
    return {
        "NEWSBOT_WEBHOOK_URL": f"http://127.0.0.1:{port}{PATH}",
        "NEWSBOT_WEBHOOK_SECRET": SECRET,
    }


def post(
    port: int,
    body: bytes,
    secret: str | None = SECRET,
    path: str = PATH,
    content_type: str = "application/json",
) -> int:
    """POST a body to a replica's webhook path; the status it answered."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body,
        method="POST",
        headers={"Content-Type": content_type},
    )
    if secret is not None:
        request.add_header("X-Telegram-Bot-Api-Secret-Token", secret)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def message_update(update_id: int, chat_id: int, text: str) -> dict[str, object]:
    """An update as Telegram pushes it: a private text message with its command entity."""
    command = text.split(" ", 1)[0]
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": int(time.time()),
            "text": text,
            "chat": {"id": chat_id, "type": "private", "first_name": "Alice"},
            "from": {"id": chat_id, "is_bot": False, "first_name": "Alice"},
            "entities": [{"type": "bot_command", "offset": 0, "length": len(command)}],
        },
    }


def call_api(telegram, method: str, **params: object) -> dict[str, object]:
    """Call the fake Bot API as a client would; the decoded answer, errors included."""
    request = urllib.request.Request(
        f"{telegram.url}/bot{telegram.token}/{method}",
        data=json.dumps(params).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: dict[str, object] = json.load(response)
    except urllib.error.HTTPError as error:
        answer = json.load(error)
    return answer


def wait_until(condition, timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url, decode_responses=True)
    yield connection
    connection.close()


@pytest.fixture
def proxy() -> Iterator[RoundRobinProxy]:
    with RoundRobinProxy() as server:
        yield server


@pytest.fixture
def launched() -> Iterator[list[Replica]]:
    started: list[Replica] = []
    yield started
    for replica in started:
        print(f"--- replica pid {replica.pid} ---\n{replica.output}")
    close_all(started)


def hooked_replica(telegram, redis_url: str, port: int, launched: list[Replica]) -> Replica:
    """One replica in webhook mode whose health port is the webhook's (no proxy)."""
    replica = Replica(bot_env(telegram, redis_url, **webhook_env(port)), port)
    launched.append(replica)
    return replica.wait_ready()


def stream_ids(client: redis.Redis) -> list[int]:
    return [int(fields["update_id"]) for _, fields in client.xrange("newsbot:updates")]


@pytest.mark.cluster
def test_pushes_through_a_service_reach_three_replicas_one_killed_each_answered_once(
    telegram, redis_url, client, proxy, launched
):
    replicas = start_replicas(telegram, redis_url, 3, health=True, **webhook_env(proxy.port))
    launched.extend(replicas)
    proxy.backends = [replica.http_port for replica in replicas]
    wait_until(lambda: telegram.webhook_url.endswith(PATH), what="setWebhook")
    commands = marked_commands(300, chats=100)
    markers = [marker for *_, marker in commands]
    with Pusher(telegram, commands, per_second=60) as pusher:
        pusher.wait_pushed(150)
        # The leader: its lease runs out and another replica sets the webhook again.
        victim = by_pid(replicas, leader_pid(client))
        kill_between_replies(telegram, client, victim, pusher.update_ids)

    missing, _ = delivery_report(wait_answered(telegram, markers, ANSWER_TIMEOUT), markers)
    assert not missing, f"{len(missing)} update(s) never answered: {missing[:20]}"
    assert stream_settled(client), "updates left pending in the stream"
    _, duplicated = delivery_report(replies_per_marker(telegram), markers)
    assert not duplicated, f"{len(duplicated)} update(s) answered twice: {duplicated}"
    # Each update went into the stream once, however often it was pushed.
    ids = stream_ids(client)
    assert len(ids) == len(set(ids)) == 300
    # Per chat, the replies came in the order the updates were sent.
    for chat in range(1000, 1100):
        sent = [marker for c, _, marker in commands if c == chat]
        shown = [m for message in telegram.sent(chat) for m in MARKER.findall(message.displayed)]
        assert shown == sent, f"chat {chat}: replies in order {shown}, sent {sent}"
    # Nobody polled: Telegram pushed, and every survivor stored a share of the pushes.
    assert telegram.count("getUpdates") == 0
    for replica in replicas:
        if replica is not victim:
            stored = metric(
                replica.get("/metrics")[1], "newsbot_webhook_requests_total", 'outcome="stored"'
            )
            assert stored and stored > 0
    assert telegram.stats()["pending_updates"] == 0
    # The killed leader's lease ran out; the next one set the webhook again.
    wait_until(lambda: leader_pid(client) != victim.pid, what="a new leader")
    wait_until(lambda: telegram.count("setWebhook") >= 2, what="setWebhook by the new leader")
    assert telegram.webhook_url.endswith(PATH)


def test_a_wrong_secret_is_401_and_nothing_is_handled_until_telegram_has_the_right_one(
    telegram, redis_url, client, launched
):
    port = free_port()
    hooked_replica(telegram, redis_url, port, launched)
    # The bot set the webhook at the replica's own port (no proxy here).
    wait_until(lambda: telegram.webhook_url == f"http://127.0.0.1:{port}{PATH}", what="setWebhook")
    body = json.dumps(message_update(900_001, 77, "/source q90001")).encode()
    assert post(port, body, secret="wrong") == 401
    assert post(port, body, secret=None) == 401
    assert post(port, body, secret=SECRET + "x") == 401

    # Telegram itself with a wrong secret: its pushes are refused and it says so.
    answer = call_api(
        telegram, "setWebhook", url=f"http://127.0.0.1:{port}{PATH}", secret_token="not-the-secret"
    )
    assert answer["ok"] is True
    telegram.push_message(78, "/source q90002")
    wait_until(lambda: any(status == 401 for _, status in telegram.pushes), what="a 401")
    result = newsbot(
        "check",
        env={
            "TELEGRAM_TOKEN": telegram.token,
            "TELEGRAM_API_URL": telegram.url,
            "REDIS_URL": redis_url,
            **webhook_env(port),
        },
    )
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("webhook:"))
    assert f"http://127.0.0.1:{port}{PATH}" in line and "1 updates pending" in line
    assert "last error: Wrong response from the webhook: 401 Unauthorized" in line

    # The right secret again: the held update goes through, the refused POSTs never did.
    call_api(telegram, "setWebhook", url=f"http://127.0.0.1:{port}{PATH}", secret_token=SECRET)
    telegram.wait_for_sent(1, chat_id=78, timeout=30)
    assert stream_settled(client)
    assert telegram.sent(77) == []
    assert 900_001 not in stream_ids(client)


def test_a_duplicate_push_is_handled_once_and_junk_is_refused_and_stored_nowhere(
    telegram, redis_url, client, launched
):
    port = free_port()
    hooked_replica(telegram, redis_url, port, launched)
    wait_until(lambda: bool(telegram.webhook_url), what="setWebhook")
    duplicate = json.dumps(message_update(800_001, 55, "/source q80001")).encode()
    assert post(port, duplicate) == 200
    assert post(port, duplicate) == 200  # Telegram's retry of an answer it did not see

    too_big = json.dumps(message_update(800_002, 56, "/source q80002" + " x" * 200_000))
    assert post(port, too_big.encode()) == 413
    assert post(port, b"update_id=800003") == 400
    assert post(port, b"[1, 2, 3]") == 400
    assert post(port, json.dumps({"message": {"text": "/help"}}).encode()) == 400
    assert post(port, json.dumps({"update_id": "800004"}).encode()) == 400
    assert post(port, json.dumps({"update_id": True}).encode()) == 400
    assert post(port, duplicate, path="/elsewhere") == 405

    # A later update of the same chat is answered: by then the first was handled once.
    assert post(port, json.dumps(message_update(800_010, 55, "/source q80010")).encode()) == 200
    telegram.wait_for_sent(2, chat_id=55, timeout=30)
    assert stream_settled(client)
    assert [MARKER.findall(m.displayed) for m in telegram.sent(55)] == [["q80001"], ["q80010"]]
    assert sorted(stream_ids(client)) == [800_001, 800_010]
    assert telegram.sent(56) == []


def test_switching_back_to_polling_deletes_the_webhook(telegram, redis_url, launched):
    hooked = hooked_replica(telegram, redis_url, free_port(), launched)
    wait_until(lambda: bool(telegram.webhook_url), what="setWebhook")
    assert call_api(telegram, "getUpdates") == {
        "ok": False,
        "error_code": 409,
        "description": "Conflict: can't use getUpdates method while webhook is active; "
        "use deleteWebhook to delete the webhook first",
    }
    assert hooked.terminate() == 0

    [polling] = start_replicas(telegram, redis_url, 1)
    launched.append(polling)
    telegram.push_message(66, "/source q66000")
    telegram.wait_for_sent(1, chat_id=66, timeout=30)
    assert telegram.webhook_url == ""
    assert telegram.count("deleteWebhook") >= 1 and telegram.count("getUpdates") >= 1


@pytest.mark.parametrize(
    "env",
    [
        {"NEWSBOT_WEBHOOK_URL": "https://bot.example.org/telegram"},
        {
            "NEWSBOT_WEBHOOK_URL": "https://bot.example.org/telegram",
            "NEWSBOT_WEBHOOK_SECRET": "has spaces and é",
        },
        {
            "NEWSBOT_WEBHOOK_URL": "https://bot.example.org/telegram",
            "NEWSBOT_WEBHOOK_SECRET": "x" * 257,
        },
        {"NEWSBOT_WEBHOOK_SECRET": "only-the-secret"},
        {"NEWSBOT_WEBHOOK_URL": "bot.example.org/telegram", "NEWSBOT_WEBHOOK_SECRET": "abc"},
        {
            "NEWSBOT_WEBHOOK_URL": "https://bot.example.org/telegram",
            "NEWSBOT_WEBHOOK_SECRET": "abc",
            "NEWSBOT_HTTP_PORT": "0",
        },
    ],
)
def test_a_webhook_without_a_usable_secret_stops_the_bot_with_one_line(env):
    result = newsbot("run", env={"TELEGRAM_TOKEN": "123:abc", **env})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "NEWSBOT_" in lines[0] and "Traceback" not in result.stderr
    secret = env.get("NEWSBOT_WEBHOOK_SECRET", "")
    assert not secret or secret not in result.stderr


class _Receiver(socketserver.ThreadingTCPServer):
    """A webhook endpoint that answers its first pushes badly: 500, then nothing in time."""

    daemon_threads = True

    def __init__(self, hang_seconds: float) -> None:
        super().__init__(("127.0.0.1", 0), _Receive)
        self.hang_seconds = hang_seconds
        self.bodies: list[tuple[str | None, dict[str, object]]] = []


class _Receive(socketserver.StreamRequestHandler):
    server: _Receiver

    def handle(self) -> None:
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += self.rfile.read(1)
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if line)
        body = json.loads(self.rfile.read(int(headers["Content-Length"])))
        self.server.bodies.append((headers.get("X-Telegram-Bot-Api-Secret-Token"), body))
        attempt = len(self.server.bodies)
        if attempt == 1:
            self.wfile.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
        elif attempt == 2:
            time.sleep(self.server.hang_seconds)  # past the fake's push timeout
        else:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


def test_the_fake_pushes_with_the_secret_and_retries_a_5xx_and_a_timeout() -> None:
    with FakeTelegram(push_timeout=0.5, push_retry_delay=0.05) as fake:
        receiver = _Receiver(hang_seconds=2)
        threading.Thread(target=receiver.serve_forever, daemon=True).start()
        try:
            update_id = fake.push_message(5, "/help")
            url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
            assert call_api(fake, "setWebhook", url=url, secret_token="abc")["ok"] is True
            wait_until(lambda: fake.pending_updates == 0, what="the update delivered")
            assert [status for _, status in fake.pushes] == [500, 0, 200]
            assert [(secret, body["update_id"]) for secret, body in receiver.bodies] == [
                ("abc", update_id)
            ] * 3
            info = call_api(fake, "getWebhookInfo")["result"]
            assert info["url"] == url and info["pending_update_count"] == 0
            assert info["last_error_message"] == "Connection timed out"
        finally:
            receiver.shutdown()
            receiver.server_close()
