"""Running Newsbot as a cluster in tests: replica processes, a Redis of its own, probes.

Shared by test_cluster.py, test_health.py and the benchmarks. Everything stays on
loopback: replicas are `python -m newsbot run` subprocesses (tests/harness.BotProcess)
talking to the fake Telegram in the test process and to a real redis-server.

Every update a test sends carries a unique marker, and the bot's reply shows it:
``/source q00042`` is answered "Your sources are now: • q00042". Counting markers in
what the fake Telegram received tells, per update, whether it was answered not at all,
once, or more than once.
"""

from __future__ import annotations

import re
import shutil
import socket
import socketserver
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import redis

from harness import REDIS_SERVER, BotProcess, bot_env, free_port, stop_process, wait_for_redis
from newsbot import keys

READY_LINE = "newsbot is running"
# Telegram's real limits, for the tests about them (tests/harness.py relaxes them).
REAL_LIMITS = {
    "NEWSBOT_SEND_PER_SECOND": "30",
    "NEWSBOT_SEND_PER_CHAT_SECOND": "1",
    "NEWSBOT_SEND_PER_GROUP_MINUTE": "20",
}
MARKER = re.compile(r"\bq\d{5}\b")
# A poll update as a Bot API server before 9.6 sends it: its options have no
# persistent_id, which python-telegram-bot 22.8 requires ("a required argument since Bot
# API 9.6"). Pushed with FakeTelegram.push_update, it is an update the bot cannot parse.
OLD_API_POLL: dict[str, Any] = {
    "poll": {
        "id": "5432101",
        "question": "Lunch?",
        "options": [{"text": "Pizza", "voter_count": 2}, {"text": "Salad", "voter_count": 1}],
        "total_voter_count": 3,
        "is_closed": False,
        "is_anonymous": True,
        "type": "regular",
        "allows_multiple_answers": False,
    }
}
# Consumer groups, leases and claims are Newsbot's; these keys are only read here.
LEADER_KEY = "newsbot:leader"
UPDATES_KEY = "newsbot:updates"
GROUP = "newsbot"


# --- redis-server of a test's own ---------------------------------------------------------


class RedisProcess:
    """A redis-server in its own directory and port, stopped and started at will.

    With ``appendonly`` every write goes to an append-only file (fsync every second, and
    in full on a clean shutdown), so a restart brings the data back.
    """

    def __init__(self, directory: Path, appendonly: bool = True) -> None:
        executable = shutil.which(REDIS_SERVER)
        if executable is None:
            raise RuntimeError("redis-server is not on PATH")
        self.executable = executable
        self.directory = directory
        self.appendonly = appendonly
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A synchronous client for the test's own reads and writes."""
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)

    def start(self) -> RedisProcess:
        """Start (or restart) the server on the same port and directory; wait for PONG."""
        self.process = subprocess.Popen(
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_redis(self.port, self.process, self.directory / "redis.log")
        return self

    def stop(self) -> None:
        """Shut down cleanly (SIGTERM: the append-only file is flushed first)."""
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process, 10)
        self.process = None

    def __enter__(self) -> RedisProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --- replicas -----------------------------------------------------------------------------


class Replica(BotProcess):
    """One `newsbot run` process; with ``http_port`` its probes can be read."""

    def __init__(self, env: dict[str, str], http_port: int = 0) -> None:
        self.http_port = http_port
        super().__init__({**env, "NEWSBOT_HTTP_PORT": str(http_port)})

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 30) -> Replica:
        """Wait until the replica says it runs."""
        self.wait_for_output(READY_LINE, timeout)
        return self

    def get(self, path: str, timeout: float = 5) -> tuple[int, str]:
        """GET a path of the health server: status and body."""
        assert self.http_port, "this replica was started without a health port"
        return http_get(f"http://127.0.0.1:{self.http_port}{path}", timeout)

    def wait_for_status(self, path: str, status: int, timeout: float = 15) -> tuple[int, str]:
        """Poll a probe until it answers ``status``; return that answer."""
        deadline = time.monotonic() + timeout
        while True:
            answer = self.get(path, timeout=10)
            if answer[0] == status or time.monotonic() > deadline:
                assert answer[0] == status, f"{path} answered {answer} after {timeout} s"
                return answer
            time.sleep(0.2)

    def terminate_timed(self, timeout: float = 15) -> tuple[int, float]:
        """SIGTERM; return the exit code and how long the replica took to exit."""
        started = time.monotonic()
        code = self.terminate(timeout)
        return code, time.monotonic() - started


def start_replicas(
    telegram: Any,
    redis_url: str,
    count: int,
    news: Any = None,
    health: bool = False,
    **overrides: str,
) -> list[Replica]:
    """Start ``count`` replicas side by side and wait until each runs."""
    env = bot_env(telegram, redis_url, news, **overrides)
    replicas = [Replica(env, free_port() if health else 0) for _ in range(count)]
    try:
        for replica in replicas:
            replica.wait_ready()
    except BaseException:
        close_all(replicas)
        raise
    return replicas


def close_all(replicas: Iterable[BotProcess]) -> None:
    """Kill whatever still runs and remove the log files."""
    for replica in replicas:
        replica.close()


def http_get(url: str, timeout: float = 5) -> tuple[int, str]:
    """GET a loopback URL: status and body, error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def leader_pid(client: redis.Redis, timeout: float = 15) -> int:
    """The pid of the replica that holds the poller's lease (its owner is host-pid-id)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        owner = client.get(LEADER_KEY)
        if owner:
            return int(owner.rsplit("-", 2)[1])
        time.sleep(0.05)
    raise AssertionError("no replica took the poller's lease")


def by_pid(replicas: Sequence[Replica], pid: int) -> Replica:
    return next(replica for replica in replicas if replica.pid == pid)


def stream_settled(client: redis.Redis, timeout: float = 60) -> bool:
    """Wait until every update in the stream was read and acknowledged."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            groups = client.xinfo_groups(UPDATES_KEY)
        except redis.RedisError:
            groups = []  # no stream yet, or Redis restarting
        group = next((g for g in groups if g.get("name") == GROUP), None)
        if group is not None and not group.get("pending") and not group.get("lag"):
            return True
        time.sleep(0.1)
    return False


# --- updates with markers -------------------------------------------------------------------


def marked_commands(
    count: int, chats: int, start: int = 0, first_chat: int = 1000
) -> list[tuple[int, str, str]]:
    """``count`` (chat id, command, marker), round-robin over ``chats`` private chats."""
    out = []
    for i in range(start, start + count):
        marker = f"q{i:05d}"
        out.append((first_chat + i % chats, f"/source {marker}", marker))
    return out


class Pusher:
    """Pushes updates to the fake Telegram at a steady pace, in a background thread."""

    def __init__(
        self, telegram: Any, commands: Sequence[tuple[int, str, str]], per_second: float
    ) -> None:
        self.telegram = telegram
        self.commands = commands
        self.interval = 1 / per_second
        self.pushed = 0
        # marker -> time.monotonic() when it was pushed, to measure reply latency
        self.pushed_at: dict[str, float] = {}
        self.update_ids: dict[str, int] = {}  # marker -> the update that carried it
        self._thread = threading.Thread(target=self._run, name="pusher", daemon=True)

    def __enter__(self) -> Pusher:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.join()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def wait_pushed(self, count: int, timeout: float = 60) -> None:
        """Wait until at least ``count`` updates were pushed."""
        deadline = time.monotonic() + timeout
        while self.pushed < count and time.monotonic() < deadline:
            time.sleep(0.01)

    def _run(self) -> None:
        started = time.monotonic()
        for i, (chat_id, text, marker) in enumerate(self.commands):
            delay = started + i * self.interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.pushed_at[marker] = time.monotonic()
            self.update_ids[marker] = self.telegram.push_message(chat_id, text)
            self.pushed = i + 1


def kill_between_replies(
    telegram: Any, client: redis.Redis, victim: BotProcess, update_ids: dict[str, int]
) -> None:
    """SIGKILL ``victim`` at a moment none of its replies is taken but not yet recorded.

    Telegram has no idempotency key: a replica killed after Telegram took a reply and
    before the update's done mark was written repeats that reply (README, "Each
    update's effect once"), and a kill at a random moment lands there now and then (a
    few milliseconds a reply on a busy machine). Everywhere else a kill must lose and
    repeat nothing, so the kill lands there (see kill_while_posts_held); the replies
    are told apart by their markers.
    """

    def all_taken_recorded() -> bool:
        taken = list(replies_per_marker(telegram))
        if not set(taken) <= update_ids.keys():
            return False  # answered before its pusher noted the update id: a moment more
        marks = [keys.UPDATE_DONE.format(update_id=update_ids[marker]) for marker in taken]
        return not marks or client.exists(*marks) == len(marks)

    kill_while_posts_held(telegram, all_taken_recorded, victim.kill)


def kill_while_posts_held(
    telegram: Any, all_taken_recorded: Callable[[], bool], kill: Callable[[], None]
) -> None:
    """Hold every new post at ``telegram``, wait until each reply it took is recorded,
    ``kill`` (which returns once the process is dead, its connections closed), let go:
    the posts the dead process left held are never taken."""
    with telegram.hold_sends():
        deadline = time.monotonic() + 30
        while not all_taken_recorded():
            assert time.monotonic() < deadline, "replies taken by Telegram never recorded"
            time.sleep(0.005)
        kill()


def replies_per_marker(telegram: Any) -> Counter[str]:
    """How many sent messages show each marker."""
    counts: Counter[str] = Counter()
    for message in telegram.sent():
        counts.update(set(MARKER.findall(message.displayed)))
    return counts


def wait_answered(telegram: Any, markers: Iterable[str], timeout: float) -> Counter[str]:
    """Wait until every marker was answered at least once; return the counts then."""
    wanted = set(markers)
    deadline = time.monotonic() + timeout
    while True:
        counts = replies_per_marker(telegram)
        if wanted <= set(counts) or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)


def delivery_report(
    counts: Counter[str], markers: Iterable[str]
) -> tuple[list[str], dict[str, int]]:
    """The markers never answered, and those answered more than once (with counts)."""
    wanted = list(markers)
    missing = [marker for marker in wanted if counts[marker] == 0]
    duplicated = {marker: counts[marker] for marker in wanted if counts[marker] > 1}
    return missing, duplicated


def metric(text: str, name: str, labels: str = "") -> float | None:
    """The value of one sample in Prometheus text format, or None when absent."""
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        if sample == wanted:
            return float(value)
    return None


# --- a Service in front of replicas -----------------------------------------------------


class RoundRobinProxy(socketserver.ThreadingTCPServer):
    """A TCP proxy handing each connection to the next backend in turn, like a Service.

    A backend that refuses the connection (a killed replica) makes the client's
    connection close unanswered: the caller (the fake Telegram) retries, as Telegram
    would, and the retry goes to the next backend.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Pipe)
        self.backends: list[int] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        port: int = self.server_address[1]
        return port

    def next_backend(self) -> int:
        with self._lock:
            self.connections += 1
            return self.backends[self.connections % len(self.backends)]

    def __enter__(self) -> RoundRobinProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
        self.server_close()


class _Pipe(socketserver.BaseRequestHandler):
    server: RoundRobinProxy

    def handle(self) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.server.next_backend()), 5)
        except OSError:
            return  # the backend is gone: the client sees its connection closed
        with upstream:
            threading.Thread(target=_copy, args=(upstream, self.request), daemon=True).start()
            _copy(self.request, upstream)


def _copy(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
        target.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # one side went away: the other sees the connection end
