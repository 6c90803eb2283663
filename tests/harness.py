"""Running the real bot in tests: in-process (a task in the test's loop) or as a process.

Both talk to the fake Telegram and news servers over HTTP and to a real redis-server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import IO, Any

import redis

from newsbot.config import Settings
from newsbot.service import serve

ROOT = Path(__file__).resolve().parent.parent
# The redis-server every test starts: NEWSBOT_REDIS_SERVER names another build (the
# workflow's Redis matrix runs the suite on the oldest version the bot supports).
REDIS_SERVER = os.environ.get("NEWSBOT_REDIS_SERVER", "redis-server")


def bot_env(
    telegram: Any, redis_url: str | None, news: Any = None, **overrides: str
) -> dict[str, str]:
    """Environment variables for a bot that talks to the fakes."""
    env = {
        "TELEGRAM_TOKEN": telegram.token,
        "TELEGRAM_API_URL": telegram.url,
        "NEWSBOT_HTTP_PORT": "0",
        "NEWSBOT_ALLOW_PRIVATE_URLS": "true",
        "NEWSBOT_LOG_LEVEL": "INFO",
        "NEWSBOT_FETCH_TIMEOUT": "2",
        # Functional tests need not wait out Telegram's pacing; rate-limit tests set
        # the real figures back.
        "NEWSBOT_SEND_PER_SECOND": "1000",
        "NEWSBOT_SEND_PER_CHAT_SECOND": "1000",
        "NEWSBOT_SEND_PER_GROUP_MINUTE": "60000",
    }
    if redis_url:
        env["REDIS_URL"] = redis_url
    if news is not None:
        env["REDDIT_URL"] = news.url
    env.update(overrides)
    return env


@contextlib.asynccontextmanager
async def running_bot(env: Mapping[str, str]) -> AsyncIterator[asyncio.Event]:
    """Run one replica in this event loop; stop it cleanly on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(serve(Settings.from_env(env), stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def wait_sent(
    telegram: Any, count: int, chat_id: int | None = None, timeout: float = 15
) -> list[Any]:
    """Wait, without blocking the loop, until the fake has seen ``count`` messages."""
    return await asyncio.to_thread(telegram.wait_for_sent, count, chat_id, timeout)


def text_update(update_id: int, chat_id: int = 42, text: str = "/help") -> dict[str, Any]:
    """A Bot API update of a text message: private for a positive chat id, else a group."""
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 1_700_000_000,
            "text": text,
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
            "from": {"id": abs(chat_id), "is_bot": False, "first_name": "A"},
        },
    }


# The ports this process handed out. bind(("127.0.0.1", 0)) may give back a port as
# soon as its probe is closed, so a test asking for several at once (a Redis master, its
# replica and three sentinels) could get one twice: the second server fails to start,
# and a ping of its port reaches the first.
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now and that this process did not
    hand out before."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_for_redis(
    port: int,
    process: subprocess.Popen[bytes],
    log: Path,
    password: str | None = None,
    timeout: float = 10,
) -> None:
    """Wait until the redis-server (or sentinel) ``process`` answers on ``port``.

    The answer must come from that process: if another server took the port meanwhile,
    this one failed to start, and a mere ping would reach the other. RuntimeError, with
    the end of its log, if it does not come up.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with redis.Redis(port=port, password=password, socket_timeout=5) as client:
                answering = client.info("server").get("process_id")
        except redis.RedisError:
            answering = None
        if answering == process.pid:
            return
        if process.poll() is not None or time.monotonic() > deadline:
            text = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"did not start on port {port}; {log}:\n{text[-2000:]}")
        time.sleep(0.05)


def stop_process(process: subprocess.Popen[Any], timeout: float = 10) -> None:
    """SIGTERM a child and wait for it; SIGKILL it if it does not end in ``timeout``."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class BotProcess:
    """`python -m newsbot run` as a child process, with its output in a file."""

    def __init__(self, env: Mapping[str, str], command: str = "run") -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="newsbot-", suffix=".log", delete=False)
        full_env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("NEWSBOT_", "TELEGRAM_", "REDIS_", "REDDIT_"))
        }
        full_env.update(env)
        full_env["PYTHONPATH"] = str(ROOT)
        if float(full_env.get("NEWSBOT_SEND_PER_SECOND", "30")) <= 30:
            # Held to Telegram's real send limits, a bot is judged on its timing; the
            # coverage tracer (about twice the CPU a line) would be measured instead.
            full_env.pop("COVERAGE_PROCESS_CONFIG", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "newsbot", command],
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    @property
    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM, then wait; return the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()
        self.log.close()
        os.unlink(self.log.name)

    def wait_for_output(self, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"bot never printed {text!r}; output:\n{self.output}")
            time.sleep(0.05)


def read_log(log: IO[bytes]) -> str:
    return Path(log.name).read_text(errors="replace")
