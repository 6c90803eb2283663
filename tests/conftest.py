"""Shared fixtures: a real redis-server, the fake Telegram and news servers, a network guard.

Everything a test talks to lives on loopback. The autouse ``loopback_only`` guard fails a
test whose process tries to connect anywhere else, even if the code under test swallowed
the error.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import settings

from fakes.news import FakeNews
from fakes.telegram_api import FakeTelegram
from harness import REDIS_SERVER, free_port, stop_process, wait_for_redis

# Hypothesis' 200 ms deadline per example would time the machine, not the code: the
# suite runs on several workers at once, under coverage. Examples still have to pass.
settings.register_profile("newsbot", deadline=None)
settings.load_profile("newsbot")

# --- network guard ---------------------------------------------------------------------


class NonLoopbackConnection(AssertionError):
    """Raised when a test tries to connect to an address outside loopback.

    An AssertionError rather than an OSError, so that code handling network errors does
    not mistake it for an unreachable host and carry on.
    """


def is_loopback(family: int, address: Any) -> bool:
    """Return True for AF_UNIX and for 127.0.0.0/8, ::1 (also IPv4-mapped) and localhost."""
    if family == getattr(socket, "AF_UNIX", object()):
        return True
    host = address[0] if isinstance(address, tuple) else address
    if not isinstance(host, str):
        return False
    if host.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False  # an unresolved name: refuse rather than resolve it here
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


_violations: list[str] = []


@pytest.fixture(scope="session", autouse=True)
def _guard_connections() -> Iterator[None]:
    """Wrap socket.connect/connect_ex for the whole session (session fixtures included)."""
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def check(sock: socket.socket, address: Any) -> None:
        if not is_loopback(sock.family, address):
            message = f"test tried to connect to non-loopback address {address!r}"
            _violations.append(message)
            raise NonLoopbackConnection(message)

    def connect(self: socket.socket, address: Any) -> None:
        check(self, address)
        original_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(self, address)
        return original_connect_ex(self, address)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", connect)
        patch.setattr(socket.socket, "connect_ex", connect_ex)
        yield


@pytest.fixture(autouse=True)
def loopback_only(_guard_connections: None) -> Iterator[list[str]]:
    """Fail the test if it tried a non-loopback connection; yield the list of attempts."""
    _violations.clear()
    yield _violations
    if _violations:
        found = list(_violations)
        _violations.clear()
        pytest.fail("\n".join(found), pytrace=False)


# --- parallel workers ------------------------------------------------------------------

_worker_figures: dict[str, str] = {}


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """Keep what an xdist worker's container tests measured, to print at the end."""
    _worker_figures.update(getattr(node, "workeroutput", {}).get("container_figures", {}))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _worker_figures:
        terminalreporter.section("container figures", sep="-")
        for name, value in _worker_figures.items():
            terminalreporter.write_line(f"{name}: {value}")


# --- timing ----------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--alone",
        choices=("include", "skip", "only"),
        default="include",
        help="the tests judged on timing (marked alone): run them too (include), leave them "
        "out (skip: the parallel phase of `make test`) or run only them (only)",
    )


# The modules whose tests take minutes of real time (a group's replies at Telegram's 20 a
# minute, a quiet window on the minute clock, sentinels, control planes), longest first.
# They are collected first, so pytest-xdist hands them out first: started last, one of
# them would keep the parallel phase waiting long after the rest were done.
LONG_MODULES = (
    "test_stream_bot.py",
    "test_sentinel.py",
    "test_quiet_bot.py",
    "test_alerts_cluster.py",
    "test_cli.py",
    "test_k8s_apiserver.py",
    "test_health.py",
    "test_container.py",
    "test_cluster.py",
    "test_kind_e2e.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests that need the machine to themselves; keep the phase's share; put
    the long modules first (the sort is stable: each module's own order is kept)."""
    first = {name: rank for rank, name in enumerate(LONG_MODULES)}
    items.sort(key=lambda item: first.get(item.path.name, len(first)))
    for item in items:
        if "untraced" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.alone)
    choice = config.getoption("alone")
    if choice == "include":
        return
    wanted = choice == "only"
    keep = [item for item in items if (item.get_closest_marker("alone") is not None) == wanted]
    if len(keep) < len(items):
        kept = set(keep)
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = keep


@pytest.fixture
def untraced() -> Iterator[None]:
    """Run a test that is judged on its timing without a tracer (coverage's, when on).

    The tracer costs about twice the CPU a line; under it a test of Telegram's send
    limits would measure the tracer, not the limiter.
    """
    trace, thread_trace = sys.gettrace(), threading.gettrace()
    sys.settrace(None)
    threading.settrace(None)  # type: ignore[arg-type]
    try:
        yield
    finally:
        threading.settrace(thread_trace)  # type: ignore[arg-type]
        sys.settrace(trace)


# --- Redis -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisServer:
    """A redis-server started for the test session."""

    port: int

    @property
    def url(self) -> str:
        """Return the redis:// URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"


def redis_command(port: int, *args: str, timeout: float = 2.0) -> bytes:
    """Send one command in RESP and return the first reply line (enough for PING/FLUSHALL)."""
    request = f"*{len(args)}\r\n" + "".join(f"${len(arg.encode())}\r\n{arg}\r\n" for arg in args)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(request.encode())
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = connection.recv(4096)
            if not chunk:
                break
            reply += chunk
        return reply.strip()


def _start_redis(executable: str, directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start redis-server on a free port; retry if another process grabbed the port first."""
    for _ in range(5):
        port = free_port()
        log = directory / f"redis-{port}.log"
        process = subprocess.Popen(
            [
                executable,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(directory),
                "--logfile",
                str(log),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_redis(port, process, log)
            return process, port
        except RuntimeError:
            pass  # most likely another process took the port first: another one
        process.kill()
        process.wait()
    raise RuntimeError(f"redis-server did not start; see the logs in {directory}")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """Run a real redis-server on a free loopback port for the whole session."""
    executable = shutil.which(REDIS_SERVER)
    if executable is None:
        pytest.skip("redis-server is not on PATH (apt-get install redis-server)")
    process, port = _start_redis(executable, tmp_path_factory.mktemp("redis"))
    try:
        yield RedisServer(port)
    finally:
        stop_process(process, 10)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """Return the URL of an empty Redis database."""
    reply = redis_command(redis_server.port, "FLUSHALL")
    assert reply == b"+OK", f"FLUSHALL answered {reply!r}"
    return redis_server.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """An asyncio client of that empty database (decoded replies)."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


# --- fake upstream services ------------------------------------------------------------


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    """Run a fake Telegram Bot API; hand the bot telegram.url and telegram.token."""
    with FakeTelegram() as fake:
        yield fake


@pytest.fixture
def news() -> Iterator[FakeNews]:
    """Run a fake Reddit and feed server; hand the bot news.url as REDDIT_URL."""
    with FakeNews() as fake:
        yield fake
