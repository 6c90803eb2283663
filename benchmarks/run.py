"""Newsbot's benchmarks: each figure is a ratio measured side by side in one run.

    python benchmarks/run.py [throughput|scaling|fanout|latency|memory|burst|slowfeeds|
                              refresh|statesize|alerts|webhook|commands|replicas|all]

Needs `pip install -e '.[test]'` and redis-server on PATH. Everything runs on loopback:
a redis-server of its own on a free port, the fake Telegram of the test suite in this
process, and the bots as subprocesses (`python -m newsbot run`, and for the baseline
benchmarks/echo_bot.py). Each benchmark stops itself within two minutes and ends with
a markdown table of what it measured.

(a) throughput  updates/s through one replica ÷ a bare python-telegram-bot echo bot
(b) scaling     updates/s of 3 replicas ÷ 1 replica when each reply takes 50 ms of I/O
(c) fanout      digests to 2,000 chats at Telegram's limits: msg/s ÷ 30, and the 429s
(d) latency     p50/p99 command-to-reply at 100 updates/s, 1 and 3 replicas
(e) memory      resident memory per replica, idle and after a mixed load
(f) burst       /fetch from 64 chats at once, 20 cached sources each: p50/p99 reply latency
(g) slowfeeds   due digests at Telegram's limits with 1 % of their feeds slow (3 s):
                msg/s ÷ 30, and the 429s
(h) refresh     5,000 distinct feeds fetched at 100 and 500 ms server latency ÷ cache TTL
(i) statesize   Redis bytes per chat after 100 digests (MEMORY USAGE of its keys)
(j) alerts      alert fan-out, 1,000 chats watching 100 feeds, 1 new item each: upstream
                fetches per source per window, time to every alert ÷ what the limiter's
                booked rate allows, and the 429s
(k) webhook     updates/s of 3 replicas in webhook mode (the fake pushing through a
                round-robin proxy) ÷ the same 3 replicas polling, on the same fake
(l) commands    Redis round trips per handled /help update of one replica (MONITOR)
(m) replicas    /fetch replies/s of 3 replicas ÷ 1 when every chat's own feed takes
                500 ms, one replica bound by its own downloads at once
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

import telegram  # noqa: E402

from cluster_support import (  # noqa: E402
    MARKER,
    REAL_LIMITS,
    Pusher,
    RedisProcess,
    Replica,
    RoundRobinProxy,
    close_all,
    marked_commands,
    start_replicas,
    stream_settled,
)
from fakes.news import FakeNews  # noqa: E402
from fakes.telegram_api import FakeTelegram  # noqa: E402
from harness import stop_process  # noqa: E402

# Telegram's pacing is switched off where a benchmark is not about it: otherwise every
# figure would read "30 messages a second".
UNPACED = {
    "NEWSBOT_SEND_PER_SECOND": "100000",
    "NEWSBOT_SEND_PER_CHAT_SECOND": "100000",
    "NEWSBOT_SEND_PER_GROUP_MINUTE": "600000",
}
CHATS = 100
# The default download deadline, where the test suite's shorter one would cut a queue.
FETCH_DEFAULT = {"NEWSBOT_FETCH_TIMEOUT": "10"}


@dataclass
class Row:
    """One line of the result table."""

    name: str
    measured: str
    reference: str
    value: float
    target: str
    met: bool


# --- pieces shared by the benchmarks ------------------------------------------------------


class SlowTelegram(FakeTelegram):
    """The fake Bot API, answering sendMessage only after ``delay`` seconds of 'network'."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        time.sleep(self.delay)  # each request has its own server thread
        return super()._send_message(params)


class EchoBot:
    """benchmarks/echo_bot.py as a subprocess (``*args``: its options)."""

    def __init__(self, fake: FakeTelegram, *args: str) -> None:
        env = {**os.environ, "TELEGRAM_TOKEN": fake.token, "TELEGRAM_API_URL": fake.url}
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / "echo_bot.py"), *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def close(self) -> None:
        stop_process(self.process, 15)


@contextlib.contextmanager
def redis_server() -> Iterator[RedisProcess]:
    with tempfile.TemporaryDirectory(prefix="newsbot-bench-") as directory:
        with RedisProcess(Path(directory), appendonly=False) as server:
            yield server


@contextlib.contextmanager
def replicas(
    fake: FakeTelegram,
    redis_url: str,
    count: int,
    news: Any = None,
    health: bool = False,
    **env: str,
) -> Iterator[list[Replica]]:
    """Replicas that run until the block ends, then get SIGTERM."""
    started = start_replicas(fake, redis_url, count, news, health, **env)
    try:
        yield started
    finally:
        for replica in started:
            if replica.process.poll() is None:
                replica.terminate()
        close_all(started)


def warm_up(fake: FakeTelegram, count: int = 20) -> None:
    """Send a few messages through whatever bot polls now and wait for the replies."""
    before = len(fake.sent())
    for i in range(count):
        fake.push_message(1 + i % CHATS, f"warm up {i}")
    fake.wait_for_sent(before + count, timeout=60)


def burst_rate(fake: FakeTelegram, count: int, text: Callable[[int], str]) -> float:
    """Push ``count`` messages at once from CHATS chats; replies per second until the last."""
    before = len(fake.sent())
    started = time.monotonic()
    for i in range(count):
        fake.push_message(1 + i % CHATS, text(i))
    sent = fake.wait_for_sent(before + count, timeout=110)
    return count / (sent[before + count - 1].sent_at - started)


def burst_cpu(fake: FakeTelegram, count: int, pids: Sequence[int]) -> tuple[float, float]:
    """``burst_rate`` of "hello" messages, and the CPU time (user + system) the processes
    ``pids`` spent on it together, in ms per update."""
    before = sum(cpu_seconds(pid) for pid in pids)
    rate = burst_rate(fake, count, lambda i: f"hello {i}")
    return rate, (sum(cpu_seconds(pid) for pid in pids) - before) / count * 1000


def rss_kib(pid: int) -> tuple[int, int]:
    """Resident set size now and at its peak, in KiB (Linux /proc)."""
    fields = dict(
        line.split(":", 1)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if ":" in line
    )
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far, in seconds (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


# --- (a) throughput against a bare echo bot -------------------------------------------------


def throughput(count: int = 2000, rounds: int = 3) -> list[Row]:
    """Updates/s through one replica ÷ a python-telegram-bot echo bot, in turns.

    Each round runs Newsbot, the echo bot as python-telegram-bot ships it (httpx, the
    stock event loop: the target's reference) and the echo bot on Newsbot's transport
    (aiohttp, uvloop: what Newsbot's own work costs). The best round of each counts, as
    timeit does: on a shared machine the slow rounds measure the neighbours.
    """
    rates: dict[str, list[float]] = {"newsbot": [], "echo": [], "echo, same transport": []}
    # CPU time of the bot's process per update, the rate's other side: the fake Telegram
    # in this process is the same for all three.
    cpu: dict[str, list[float]] = {name: [] for name in rates}

    def measure(name: str, pid: int) -> None:
        rate, ms = burst_cpu(fake, count, [pid])
        rates[name].append(rate)
        cpu[name].append(ms)

    with redis_server() as server, FakeTelegram() as fake:
        for _ in range(rounds):
            with replicas(fake, server.url, 1, **UNPACED) as started:
                warm_up(fake)
                measure("newsbot", started[0].process.pid)
            for name, args in (("echo", ()), ("echo, same transport", ("--newsbot-transport",))):
                echo = EchoBot(fake, *args)
                try:
                    warm_up(fake)
                    measure(name, echo.process.pid)
                finally:
                    echo.close()
    best = {name: max(values) for name, values in rates.items()}
    print(
        "throughput: "
        + ", ".join(f"{name} {fmt(values)} updates/s" for name, values in rates.items())
        + f" ({count} updates per round)"
    )
    print(
        "CPU per update: "
        + ", ".join(f"{name} {fmt_ms(values)} ms" for name, values in cpu.items())
    )
    ratio = best["newsbot"] / best["echo"]
    own = best["newsbot"] / best["echo, same transport"]
    return [
        Row(
            "(a) throughput, 1 replica ÷ PTB echo bot",
            f"{best['newsbot']:.0f} updates/s",
            f"{best['echo']:.0f} updates/s",
            ratio,
            ">= 0.8",
            ratio >= 0.8,
        ),
        Row(
            "(a) the same ÷ the echo bot on Newsbot's transport (aiohttp, uvloop)",
            f"{best['newsbot']:.0f} updates/s",
            f"{best['echo, same transport']:.0f} updates/s",
            own,
            "(what Newsbot's own work costs)",
            True,
        ),
    ]


# --- (m) replicas for slow sources -----------------------------------------------------


async def _own_feeds(redis_url: str, chats: Sequence[int], urls: Sequence[str]) -> None:
    """Give chat i the one feed urls[i]."""
    import redis.asyncio as aioredis

    from newsbot.models import Source
    from newsbot.store import Store

    store = Store(aioredis.Redis.from_url(redis_url, decode_responses=True))
    try:
        for chat_id, url in zip(chats, urls, strict=True):
            await store.set_sources(chat_id, [Source("feed", url, url)])
    finally:
        await store.close()


def replicas_scaling(
    count: int = 400, delay: float = 0.5, hosts: int = 1, rounds: int = 2
) -> list[Row]:
    """/fetch replies per second of 3 replicas ÷ 1 when every source takes ``delay`` s.

    Each chat has a feed of its own (the shared cache never answers), on ``hosts`` feed
    servers of their own processes. A replica downloads at most PER_HOST feeds from a
    host at once: with one host that, not its handlers (MAX_IN_FLIGHT), is the
    replica's concurrency, so that three replicas need well under this machine's two
    cores (at 32 fetches at once each they would need about 2.5) and the figure
    measures concurrency, not cores. One replica's rate is checked against what its
    concurrency allows. Telegram's pacing is off (UNPACED): the shared send limit would
    cap both figures at 30 msg/s.
    """
    from newsbot.cluster.stream import MAX_IN_FLIGHT
    from newsbot.sources.download import PER_HOST

    at_once = min(MAX_IN_FLIGHT, hosts * PER_HOST)
    bound = at_once / delay  # replies/s one replica's concurrency allows
    rates: dict[int, list[float]] = {1: [], 3: []}
    failed = 0  # replies without the feed's items: an error message, not news
    first = 50_000
    with redis_server() as server, FakeTelegram() as fake:
        with slow_feed_servers(hosts, delay) as bases:
            for _ in range(rounds):
                for size in (1, 3):
                    chats = range(first, first + count)
                    first += count
                    urls = [f"{bases[chat % hosts]}/slow?feed={chat}" for chat in chats]
                    asyncio.run(_own_feeds(server.url, chats, urls))
                    # The default fetch timeout (the tests' 2 s is shorter than a
                    # queue for the host's downloads: 32 handlers, 8 at once).
                    with replicas(fake, server.url, size, **UNPACED, **FETCH_DEFAULT):
                        warm_up(fake)
                        before = len(fake.sent())
                        for chat in chats:
                            fake.push_message(chat, "/fetch")
                        sent = fake.wait_for_sent(before + count, timeout=110)
                        # From the first reply to the last, as (c): the first fetch's
                        # 500 ms is latency, the same for 1 and 3, not throughput.
                        span = sent[before + count - 1].sent_at - sent[before].sent_at
                        rates[size].append((count - 1) / span)
                        failed += sum("Ferry timetable" not in m.text for m in sent[before:])
    one, three = max(rates[1]), max(rates[3])
    print(
        f"replicas: 1 replica {fmt(rates[1])}, 3 replicas {fmt(rates[3])} /fetch replies/s "
        f"({count} chats, each its own feed answering after {delay * 1000:.0f} ms, on "
        f"{hosts} host(s); a replica fetches {at_once} at once: at most {bound:.0f}/s); "
        f"{failed} replies without news"
    )
    ratio = three / one
    return [
        Row(
            f"(m) replica scaling, 3 ÷ 1 replica, /fetch of sources taking {delay * 1000:.0f} ms",
            f"{three:.1f} replies/s, {failed} failed",
            f"{one:.1f} replies/s ({one / bound:.2f} of the {bound:.0f}/s its "
            f"{at_once} downloads at once allow)",
            ratio,
            ">= 2.7",
            ratio >= 2.7 and failed == 0,
        )
    ]


# --- (l) Redis round trips per update ------------------------------------------------------


class Monitor(threading.Thread):
    """Counts the commands clients send to a redis-server (MONITOR), by name.

    Commands run inside a script are not counted (the script's call is), and a
    transaction (MULTI ... EXEC) counts as one round trip, under "multi".
    """

    def __init__(self, port: int, ignore: str) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"MONITOR\r\n")
        self.ignore = ignore  # the benchmark's own client, ip:port
        self.counts: Counter[str] = Counter()
        self.counting = False
        self._in_multi: set[str] = set()

    def run(self) -> None:
        with contextlib.suppress(OSError), self.sock.makefile("rb") as lines:
            for raw in lines:
                self._count(raw.decode("utf-8", "replace"))

    def _count(self, line: str) -> None:
        head, _, rest = line.partition("] ")
        client = head.rpartition(" ")[2]
        if not self.counting or not rest or client in ("lua", self.ignore):
            return
        name = rest.split(" ", 1)[0].strip().strip('"').lower()
        if name == "multi":
            self._in_multi.add(client)
            self.counts[name] += 1
        elif name == "exec":
            self._in_multi.discard(client)
        elif client not in self._in_multi:
            self.counts[name] += 1

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def commands(count: int = 1000) -> list[Row]:
    """Redis round trips per handled /help update of one replica (MONITOR)."""
    with redis_server() as server, FakeTelegram() as fake:
        client = server.client()
        own = client.client_info()["addr"]
        monitor = Monitor(server.port, own)
        monitor.start()
        try:
            with replicas(fake, server.url, 1, **UNPACED):
                warm_up(fake)
                stream_settled(client)
                sent_before = len(fake.sent())
                monitor.counting = True
                for i in range(count):
                    fake.push_message(1 + i % CHATS, "/help")
                fake.wait_for_sent(sent_before + count, timeout=110)
                stream_settled(client)
                time.sleep(0.5)  # the last lines of MONITOR
                monitor.counting = False
        finally:
            monitor.close()
    per_update = {name: calls / count for name, calls in monitor.counts.items()}
    total = sum(per_update.values())
    print(
        f"round trips per /help update ({count} updates from {CHATS} chats): "
        + ", ".join(f"{name} {calls:.2f}" for name, calls in sorted(per_update.items()))
    )
    return [
        Row(
            "(l) Redis round trips per /help update, 1 replica",
            f"{total:.2f} round trips",
            "main `171d930`: 7.35",
            total,
            "< 5",
            total < 5,
        )
    ]


# --- (b) scaling out when replies are slow --------------------------------------------------


def scaling(count: int = 1500, delay: float = 0.05, rounds: int = 2) -> list[Row]:
    """Updates/s of 3 replicas ÷ 1 replica when every sendMessage takes ``delay`` s."""
    rates: dict[int, list[float]] = {1: [], 3: []}
    with redis_server() as server, SlowTelegram(delay) as fake:
        for _ in range(rounds):
            for size in (1, 3):
                with replicas(fake, server.url, size, **UNPACED):
                    warm_up(fake, 60)
                    rates[size].append(burst_rate(fake, count, lambda i: f"hello {i}"))
    one, three = max(rates[1]), max(rates[3])
    print(
        f"scaling: 1 replica {fmt(rates[1])}, 3 replicas {fmt(rates[3])} updates/s "
        f"({count} updates from {CHATS} chats, {delay * 1000:.0f} ms per reply)"
    )
    ratio = three / one
    return [
        Row(
            f"(b) scaling, 3 ÷ 1 replica, {delay * 1000:.0f} ms I/O per update",
            f"{three:.0f} updates/s",
            f"{one:.0f} updates/s",
            ratio,
            ">= 2.5",
            ratio >= 2.5,
        )
    ]


# --- (c) digest fan-out at Telegram's limits ------------------------------------------------


async def subscribe(redis_url: str, chats: Sequence[int], due: float) -> None:
    """Give every chat r/python and a daily digest first due at ``due``."""
    import redis.asyncio as aioredis

    from newsbot.sources.parsing import parse_source
    from newsbot.store import Store

    store = Store(aioredis.Redis.from_url(redis_url, decode_responses=True))
    try:
        sources = [parse_source("python")]
        for chat_id in chats:
            await store.set_sources(chat_id, sources)
            await store.subscribe(chat_id, 86_400, due)
    finally:
        await store.close()


def fanout(count: int = 2000, size: int = 3) -> list[Row]:
    """Digests due at once for ``count`` chats, sent by ``size`` replicas at 30 msg/s."""
    with redis_server() as server, FakeTelegram() as fake, FakeNews() as news:
        fake.enforce_limits = True
        with replicas(fake, server.url, size, news, **REAL_LIMITS):
            lead = 2.0
            due_at = time.monotonic() + lead
            asyncio.run(subscribe(server.url, range(10_000, 10_000 + count), time.time() + lead))
            sent = fake.wait_for_sent(count, timeout=110)
            time.sleep(1)  # anything sent twice would show now
            total, too_many = len(fake.sent()), fake.too_many
    span = sent[count - 1].sent_at - sent[0].sent_at
    rate = (count - 1) / span
    from_due = count / (sent[count - 1].sent_at - due_at)
    print(
        f"fanout: {count} digests by {size} replicas in {span:.1f} s: {rate:.2f} msg/s "
        f"between first and last, {from_due:.2f} msg/s from the due time; "
        f"{total} messages in all, {too_many} × 429"
    )
    ratio = rate / 30
    return [
        Row(
            f"(c) digest fan-out to {count} chats, {size} replicas, ÷ 30 msg/s",
            f"{rate:.2f} msg/s, {too_many} × 429, {total - count} extra",
            "30 msg/s",
            ratio,
            ">= 0.95, 0 × 429",
            ratio >= 0.95 and too_many == 0 and total == count,
        )
    ]


# --- (d) latency at a steady 100 updates/s --------------------------------------------------


def latency(rate: float = 100, seconds: float = 10, sizes: Sequence[int] = (1, 3)) -> list[Row]:
    """Command-to-reply latency percentiles at a steady rate of updates."""
    rows = []
    with redis_server() as server, FakeTelegram() as fake:
        start = 0
        for size in sizes:
            with replicas(fake, server.url, size, **UNPACED):
                warm_up(fake, 100)
                commands = marked_commands(int(rate * seconds), CHATS, start=start)
                start += len(commands)
                with Pusher(fake, commands, rate) as pusher:
                    pass
                wanted = {marker for *_, marker in commands}
                deadline = time.monotonic() + 60
                answered: dict[str, float] = {}
                while len(answered) < len(wanted) and time.monotonic() < deadline:
                    for message in fake.sent():
                        for marker in wanted.intersection(MARKER.findall(message.displayed)):
                            answered.setdefault(marker, message.sent_at)
                    time.sleep(0.2)
            waits = [
                (answered[marker] - pushed) * 1000
                for marker, pushed in pusher.pushed_at.items()
                if marker in answered
            ]
            p50, p99 = percentile(waits, 0.50), percentile(waits, 0.99)
            print(
                f"latency, {size} replica(s), {rate:.0f} updates/s for {seconds:.0f} s: "
                f"p50 {p50:.1f} ms, p90 {percentile(waits, 0.9):.1f} ms, p99 {p99:.1f} ms, "
                f"max {max(waits):.1f} ms, {len(commands) - len(waits)} unanswered"
            )
            rows.append(
                Row(
                    f"(d) latency at {rate:.0f} updates/s, {size} replica(s)",
                    f"p50 {p50:.1f} ms, p99 {p99:.1f} ms",
                    "-",
                    p99,
                    "p99 <= 50 ms",
                    p99 <= 50 and len(waits) == len(commands),
                )
            )
    return rows


# --- (e) memory -----------------------------------------------------------------------------


def memory(size: int = 3, updates: int = 1000, digests: int = 300) -> list[Row]:
    """Resident memory of each replica, idle and after commands, fetches and digests."""
    with redis_server() as server, FakeTelegram() as fake, FakeNews() as news:
        with replicas(fake, server.url, size, news, **UNPACED) as running:
            warm_up(fake)
            idle = [rss_kib(replica.pid) for replica in running]
            texts = [
                "/source python, golang, news",
                "/fetch",
                "/help",
                "/add r/emptysub",
                "/fetch",
                "/subscribe 1d",
            ]
            commands = [
                (1 + i % CHATS, texts[(i // CHATS) % len(texts)], "") for i in range(updates)
            ]
            before = len(fake.sent())
            with Pusher(fake, commands, 200):
                pass
            fake.wait_for_sent(before + updates, timeout=90)
            asyncio.run(subscribe(server.url, range(20_000, 20_000 + digests), time.time()))
            fake.wait_for_sent(before + updates + digests, timeout=90)
            loaded = [rss_kib(replica.pid) for replica in running]
    idle_mib = max(now for now, _ in idle) / 1024
    peak_mib = max(peak for _, peak in loaded) / 1024
    print(
        f"memory: idle RSS {', '.join(f'{now / 1024:.1f}' for now, _ in idle)} MiB; after "
        f"{updates} updates and {digests} digests: RSS "
        f"{', '.join(f'{now / 1024:.1f}' for now, _ in loaded)} MiB, peak "
        f"{', '.join(f'{peak / 1024:.1f}' for _, peak in loaded)} MiB"
    )
    peak_mb = peak_mib * 1.048576
    return [
        Row(
            f"(e) resident memory per replica ({size} replicas)",
            f"peak {peak_mib:.1f} MiB = {peak_mb:.1f} MB",
            f"idle {idle_mib:.1f} MiB",
            peak_mb,
            "<= 80 MB",
            peak_mb <= 80,
        )
    ]


# --- (g) digests with slow feeds at Telegram's limits ---------------------------------------


def slowfeeds(
    count: int = 2000, slow_share: float = 0.01, delay: float = 3.0, lead: float = 25.0
) -> list[Row]:
    """``count`` digests due at once, each from a feed of its own, 1 % of them slow.

    Each chat has its own feed, so every digest needs a fetch of its own and a slow feed
    cannot hide behind the cache. The digests are due ``lead`` seconds after they are
    set, time for the replica to fetch their sources ahead as it does for digests due in
    the next minutes. 2,000 rather than 10,000: at 30 msg/s 10,000 take 5.5 minutes, past
    the two minutes a benchmark may run here; the rate does not depend on the count.
    """
    with redis_server() as server, FakeTelegram() as fake, FakeNews() as news:
        fake.enforce_limits = True
        slow_every = round(1 / slow_share)
        for n in range(count):
            news.set_route(
                f"/own/{n}.xml",
                body=_feed_xml(f"feed {n}", 0),
                delay=delay if n % slow_every == 0 else 0.0,
                headers={"Content-Type": "application/rss+xml"},
            )
        env = {**REAL_LIMITS, "NEWSBOT_FETCH_TIMEOUT": "10"}
        with replicas(fake, server.url, 1, news, **env):
            due_at = time.monotonic() + lead
            chats = range(30_000, 30_000 + count)
            feeds = [f"{news.url}/own/{n}.xml" for n in range(count)]
            asyncio.run(_subscribe_each(server.url, chats, feeds, time.time() + lead))
            sent = fake.wait_for_sent(count, timeout=lead + count / 30 * 1.5 + 20)
            time.sleep(1)  # anything sent twice would show now
            total, too_many = len(fake.sent()), fake.too_many
    span = sent[count - 1].sent_at - sent[0].sent_at
    rate = (count - 1) / span
    late = sent[0].sent_at - due_at
    print(
        f"slowfeeds: {count} digests, {count // slow_every} slow feeds ({delay:.0f} s), "
        f"in {span:.1f} s: {rate:.2f} msg/s between first and last, the first "
        f"{late:.1f} s after the due time; {total} messages in all, {too_many} × 429"
    )
    ratio = rate / 30
    return [
        Row(
            f"(g) {count} due digests, 1 % of feeds slow ({delay:.0f} s), ÷ 30 msg/s",
            f"{rate:.2f} msg/s, {too_many} × 429, {total - count} extra",
            "30 msg/s",
            ratio,
            ">= 0.95, 0 × 429",
            ratio >= 0.95 and too_many == 0 and total == count,
        )
    ]


def _feed_xml(name: str, round_number: int, items: int = 5) -> str:
    """An RSS feed whose ``items`` newest items are new in each round."""
    entries = "".join(
        f"<item><title>{name}, story {round_number}.{n}</title>"
        f"<link>https://example.org/{name.replace(' ', '-')}/{round_number}/{n}</link></item>"
        for n in range(items)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>{name}</title>'
        f"<link>https://example.org/</link><description>-</description>{entries}"
        f"</channel></rss>"
    )


async def _subscribe_each(
    redis_url: str, chats: Sequence[int], feeds: Sequence[str], due: float
) -> None:
    """Give each chat its own feed and a daily digest first due at ``due``."""
    import redis.asyncio as aioredis

    from newsbot.models import Source
    from newsbot.store import Store

    store = Store(aioredis.Redis.from_url(redis_url, decode_responses=True))
    try:
        for chat_id, url in zip(chats, feeds, strict=False):
            await store.set_sources(chat_id, [Source("feed", url, url)])
            await store.subscribe(chat_id, 86_400, due)
    finally:
        await store.close()


# --- (i) Redis bytes per chat -----------------------------------------------------------------


def statesize(chats: int = 20, digests: int = 100, shapes: Sequence[int] = (5, 20)) -> list[Row]:
    """Redis bytes per chat after ``digests`` digests of new items, for chats of N sources.

    The digests are the real ones (newsbot.digests with the store, the news cache and
    python-telegram-bot against the fake Telegram, in this process); before each round
    every source's cache entry gets 5 new items, as a fetch of a busy feed would. A chat's
    bytes are MEMORY USAGE of each of its keys (keys.CHAT_KEYS) plus its share of the
    due-time set; the feed cache is shared by every chat that follows a source and is
    counted apart.
    """
    rows = []
    for sources in shapes:
        with redis_server() as server, FakeTelegram() as fake:
            per_chat, feeds = asyncio.run(
                _measure_state(server.url, fake, chats, sources, digests)
            )
        print(
            f"statesize: {chats} chats with {sources} sources each, after {digests} "
            f"digests: {per_chat:.0f} bytes a chat; the shared feed cache "
            f"{feeds / sources:.0f} bytes a source"
        )
        rows.append(
            Row(
                f"(i) Redis bytes per chat after {digests} digests, {sources} sources",
                f"{per_chat / 1000:.1f} KB",
                "main: ~252 KB (2,000 seen ids)",
                per_chat / 1000,
                "<= 10 KB",
                per_chat <= 10_000,
            )
        )
    return rows


async def _measure_state(
    redis_url: str, fake: FakeTelegram, chats: int, sources: int, digests: int
) -> tuple[float, float]:
    from prometheus_client import REGISTRY

    from newsbot import keys
    from newsbot.app import build_application
    from newsbot.cluster.stream import MAX_IN_FLIGHT
    from newsbot.config import Settings
    from newsbot.core import DOWNLOADS_IN_FLIGHT
    from newsbot.digests import DIGEST_SLOTS, PREFETCH_SLOTS, Digests
    from newsbot.models import Item, Source
    from newsbot.news import News, source_id
    from newsbot.store import CachedNews, Store, connect, pool_size

    settings = Settings.from_env(
        {
            "TELEGRAM_TOKEN": fake.token,
            "TELEGRAM_API_URL": fake.url,
            "REDIS_URL": redis_url,
            **UNPACED,
        }
    )
    # The client a replica has: a blocking pool of the size newsbot.service gives it.
    store = Store(
        connect(
            settings, pool_size(MAX_IN_FLIGHT, DIGEST_SLOTS + PREFETCH_SLOTS, DOWNLOADS_IN_FLIGHT)
        ),
        settings.items_per_source,
    )
    news = News(settings, store)
    assert settings.telegram_token is not None
    application = build_application(settings, store, news, settings.telegram_token)
    await application.initialize()
    try:
        urls = [f"https://feeds.example.org/{n}.xml" for n in range(sources)]
        chosen = [Source("feed", url, url) for url in urls]
        chat_ids = list(range(40_000, 40_000 + chats))
        for chat_id in chat_ids:
            await store.set_sources(chat_id, chosen)
            await store.subscribe(chat_id, 86_400, time.time())
        sender = Digests(store, news, application.bot, prefetch_seconds=0)
        counted = {"outcome": "sent"}
        before = REGISTRY.get_sample_value("newsbot_digests_total", counted) or 0
        for round_number in range(digests):
            for n, source in enumerate(chosen):
                link = f"https://example.org/feed-{n}/{round_number}/"
                items = tuple(
                    Item(
                        f"{link}{i}",
                        f"Feed {n}, story {round_number}.{i}",
                        f"{link}{i}",
                        time.time(),
                    )
                    for i in range(5)
                )
                await store.put_cached(
                    source_id(source), CachedNews(fetched_at=time.time(), items=items)
                )
            # Every chat is due again: the next round's "now" is past its next due time.
            claimed = await sender.run_once(now=time.time() + 2 * 86_400 * (round_number + 1))
            assert claimed == chats, claimed
        sent = (REGISTRY.get_sample_value("newsbot_digests_total", counted) or 0) - before
        if sent != chats * digests:
            print(f"statesize: {sent:.0f} of {chats * digests} digests were sent")
        redis = store.redis
        per_key: Counter[str] = Counter()
        for chat_id in chat_ids:
            for template in keys.CHAT_KEYS:
                used = await redis.memory_usage(template.format(chat_id=chat_id)) or 0
                per_key[template.removeprefix(keys.PREFIX)] += used
        biggest = ", ".join(f"{key} {used / chats:.0f}" for key, used in per_key.most_common(4))
        print(f"statesize: bytes a chat by key, the biggest: {biggest}")
        total = sum(per_key.values()) + (await redis.memory_usage(keys.DUE) or 0)
        feeds = 0
        for source in chosen:
            feeds += await redis.memory_usage(keys.FEED.format(digest=source_id(source))) or 0
        return total / chats, feeds
    finally:
        await application.shutdown()
        news.close()
        await store.close()


# --- (f) a /fetch burst of many chats with many cached sources ------------------------------


async def cache_sources(
    redis_url: str, chats: Sequence[int], per_chat: int, items: int = 5
) -> None:
    """Give each chat ``per_chat`` feeds of its own, every one fresh in the shared cache."""
    import redis.asyncio as aioredis

    from newsbot.models import Item, Source
    from newsbot.news import source_id
    from newsbot.store import CachedNews, Store

    store = Store(aioredis.Redis.from_url(redis_url, decode_responses=True))
    try:
        for chat_id in chats:
            sources = [
                Source("feed", url, url)
                for url in (f"https://feeds{n}.example/c{chat_id}.xml" for n in range(per_chat))
            ]
            await store.set_sources(chat_id, sources)
            for source in sources:
                news = CachedNews(
                    fetched_at=time.time(),
                    items=tuple(
                        Item(
                            id=f"{source.key}#{i}",
                            title=f"Story {i}",
                            link=f"https://example.org/{i}",
                        )
                        for i in range(items)
                    ),
                )
                await store.put_cached(source_id(source), news)
    finally:
        await store.close()


def burst(chats: int = 64, per_chat: int = 20, rounds: int = 3) -> list[Row]:
    """Latency from a burst of /fetch (every chat at once) to each chat's whole reply."""
    waits: list[float] = []
    with redis_server() as server, FakeTelegram() as fake:
        ids = list(range(30_000, 30_000 + chats + 1))
        asyncio.run(cache_sources(server.url, ids, per_chat))
        with replicas(fake, server.url, 1, **UNPACED):
            warm_up(fake)
            # One chat first, alone: how many messages a reply of this size takes.
            probe = ids.pop()
            fake.push_message(probe, "/fetch")
            fake.wait_for_sent(1, probe, timeout=30)
            time.sleep(1)
            parts = len(fake.sent(probe))
            for _round in range(rounds):
                before = {chat: len(fake.sent(chat)) for chat in ids}
                pushed = time.monotonic()
                for chat in ids:
                    fake.push_message(chat, "/fetch")
                for chat in ids:
                    sent = fake.wait_for_sent(before[chat] + parts, chat, timeout=100)
                    waits.append((sent[before[chat] + parts - 1].sent_at - pushed) * 1000)
    p50, p99 = percentile(waits, 0.50), percentile(waits, 0.99)
    print(
        f"burst: {chats} chats × {per_chat} cached sources, {rounds} rounds, {parts} "
        f"messages a reply: p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {max(waits):.0f} ms"
    )
    return [
        Row(
            f"(f) /fetch burst, {chats} chats × {per_chat} cached sources, 1 replica",
            f"p50 {p50:.0f} ms, p99 {p99:.0f} ms",
            "-",
            p99,
            "p99 <= 5000 ms",
            p99 <= 5000,
        )
    ]


# --- (h) refreshing many distinct feeds -----------------------------------------------------


@contextlib.contextmanager
def slow_feed_servers(hosts: int, delay: float) -> Iterator[list[str]]:
    """Fake feed servers in processes of their own, on 127.0.0.2.., answering after delay."""
    from harness import free_port

    processes, urls = [], []
    try:
        for n in range(hosts):
            host, port = f"127.0.0.{n + 2}", free_port()
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(ROOT / "tests" / "fakes" / "news.py"),
                        "--host",
                        host,
                        "--port",
                        str(port),
                        "--slow-seconds",
                        str(delay),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                )
            )
            urls.append(f"http://{host}:{port}")
        for process in processes:
            assert process.stdout is not None
            process.stdout.readline()  # "listening on ..."
        yield urls
    finally:
        for process in processes:
            stop_process(process, 10)


async def refresh_feeds(redis_url: str, urls: Sequence[str], in_flight: int) -> tuple[float, int]:
    """Fetch every feed once through News, ``in_flight`` asked at a time; (seconds, errors)."""
    import redis.asyncio as aioredis

    from newsbot.config import Settings
    from newsbot.models import Source
    from newsbot.news import News
    from newsbot.store import Store

    pool = aioredis.BlockingConnectionPool.from_url(
        redis_url, decode_responses=True, max_connections=in_flight, timeout=60
    )
    store = Store(aioredis.Redis(connection_pool=pool))
    news = News(Settings(allow_private_urls=True), store)
    gate = asyncio.Semaphore(in_flight)

    async def ask(url: str) -> bool:
        async with gate:
            (got,) = await news.get([Source("feed", url, url)])
            return got.error is None and bool(got.items)

    try:
        started = time.monotonic()
        results = await asyncio.gather(*(ask(url) for url in urls))
        return time.monotonic() - started, results.count(False)
    finally:
        news.close()
        await store.close()


def refresh(
    feeds: int = 5000, delays: Sequence[float] = (0.1, 0.5), hosts: int = 10, in_flight: int = 256
) -> list[Row]:
    """Time to fetch ``feeds`` distinct feeds from ``hosts`` servers ÷ NEWSBOT_CACHE_TTL."""
    from newsbot.config import Settings

    ttl = Settings().cache_ttl
    rows = []
    for delay in delays:
        with redis_server() as server, slow_feed_servers(hosts, delay) as bases:
            urls = [f"{bases[n % hosts]}/slow?feed={n}" for n in range(feeds)]
            seconds, errors = asyncio.run(refresh_feeds(server.url, urls, in_flight))
        ratio = seconds / ttl
        print(
            f"refresh: {feeds} feeds on {hosts} hosts at {delay * 1000:.0f} ms: "
            f"{seconds:.1f} s ({feeds / seconds:.0f} feeds/s), {errors} failed; "
            f"÷ {ttl} s TTL = {ratio:.3f}"
        )
        rows.append(
            Row(
                f"(h) refresh of {feeds} feeds at {delay * 1000:.0f} ms, ÷ cache TTL",
                f"{seconds:.1f} s, {errors} failed",
                f"{ttl} s",
                ratio,
                "<= 0.2 at 500 ms",
                errors == 0 and (delay < 0.5 or ratio <= 0.2),
            )
        )
    return rows


# --- (j) webhook mode against polling -----------------------------------------------------


def webhook(count: int = 1500, size: int = 3, rounds: int = 2) -> list[Row]:
    """Updates/s of ``size`` replicas taking pushes through a proxy ÷ the same polling.

    The fake pushes like Telegram: up to 40 connections (setWebhook's max_connections),
    a chat's next update only once its previous one was answered.
    """
    rates: dict[str, list[float]] = {"polling": [], "webhook": []}
    # The replicas' CPU time per update, all three together: what each mode costs the
    # bot, apart from the pushing fake and the proxy, which share this process.
    cpu: dict[str, list[float]] = {"polling": [], "webhook": []}

    def measure(mode: str, started: list[Replica]) -> None:
        rate, ms = burst_cpu(fake, count, [replica.process.pid for replica in started])
        rates[mode].append(rate)
        cpu[mode].append(ms)

    with redis_server() as server, FakeTelegram() as fake, RoundRobinProxy() as proxy:
        pushed = {
            "NEWSBOT_WEBHOOK_URL": f"http://127.0.0.1:{proxy.port}/telegram",
            "NEWSBOT_WEBHOOK_SECRET": "benchmark-secret",
        }
        for _ in range(rounds):
            with replicas(fake, server.url, size, **UNPACED) as started:
                warm_up(fake)
                measure("polling", started)
            with replicas(fake, server.url, size, health=True, **UNPACED, **pushed) as started:
                proxy.backends = [replica.http_port for replica in started]
                warm_up(fake)
                measure("webhook", started)
    polled, hooked = max(rates["polling"]), max(rates["webhook"])
    print(
        f"webhook: {size} replicas polling {fmt(rates['polling'])}, webhook "
        f"{fmt(rates['webhook'])} updates/s ({count} updates from {CHATS} chats); "
        f"CPU of the replicas per update: polling {fmt_ms(cpu['polling'])}, "
        f"webhook {fmt_ms(cpu['webhook'])} ms"
    )
    ratio = hooked / polled
    return [
        Row(
            f"(k) webhook ÷ polling, {size} replicas",
            f"{hooked:.0f} updates/s",
            f"{polled:.0f} updates/s",
            ratio,
            ">= 0.8",
            ratio >= 0.8,
        )
    ]


# --- the table --------------------------------------------------------------------------------


# --- (j) alert fan-out ----------------------------------------------------------------------


async def _watch_each(
    redis_url: str, chats: Sequence[int], feeds: Sequence[str], every: float
) -> None:
    """Chat i watches feed i % len(feeds), from what the feed has at the first check."""
    import redis.asyncio as aioredis

    from newsbot.alerts import next_check
    from newsbot.models import Source
    from newsbot.news import source_id
    from newsbot.store import Store

    store = Store(aioredis.Redis.from_url(redis_url, decode_responses=True))
    try:
        now = time.time()
        for index, chat_id in enumerate(chats):
            url = feeds[index % len(feeds)]
            digest = source_id(Source("feed", url, url))
            # None: the first check takes what is there as known, as /alert does.
            await store.add_alerts(
                chat_id,
                [(digest, Source("feed", url, url))],
                None,
                {digest: None},
                {digest: next_check(now, every, digest)},
            )
    finally:
        await store.close()


def alerts(chats: int = 1000, feeds: int = 100, ttl: int = 10, size: int = 3) -> list[Row]:
    """1,000 chats watching 100 feeds (10 each), by ``size`` replicas at Telegram's limits.

    Each feed gets one new item: 1,000 alerts, which at the limiter's booked rate (30/s ×
    RATE_MARGIN_GLOBAL) take about 39 s. Measured: from the first alert to the last ÷
    that, the 429s, and each feed's upstream requests per cache window while it ran.
    """
    from newsbot import keys

    booked = 30 * keys.RATE_MARGIN_GLOBAL
    with redis_server() as server, FakeTelegram() as fake, FakeNews() as news:
        fake.enforce_limits = True
        paths = [f"/alert/{n}.xml" for n in range(feeds)]
        for n, path in enumerate(paths):
            news.set_route(
                path,
                body=_feed_xml(f"feed {n}", 0, items=1),
                headers={"Content-Type": "application/rss+xml"},
            )
        env = {**REAL_LIMITS, "NEWSBOT_CACHE_TTL": str(ttl)}
        with replicas(fake, server.url, size, news, **env):
            asyncio.run(
                _watch_each(
                    server.url,
                    range(40_000, 40_000 + chats),
                    [f"{news.url}{path}" for path in paths],
                    ttl,
                )
            )
            time.sleep(ttl + 2)  # every feed read once: what it has now is known
            before = {path: news.count(path) for path in paths}
            started = time.monotonic()
            for n, path in enumerate(paths):
                news.set_route(
                    path,
                    body=_feed_xml(f"feed {n}", 1, items=1),
                    headers={"Content-Type": "application/rss+xml"},
                )
            sent = fake.wait_for_sent(chats, timeout=ttl + chats / booked * 1.5 + 20)
            time.sleep(1)  # anything sent twice would show now
            total, too_many = len(fake.sent()), fake.too_many
            elapsed = time.monotonic() - started
            fetches = [news.count(path) - before[path] for path in paths]
    windows = elapsed / ttl
    per_window = max(fetches) / math.ceil(windows)
    span = sent[chats - 1].sent_at - sent[0].sent_at
    allowed = (chats - 1) / booked
    ratio = span / allowed
    print(
        f"alerts: {chats} alerts from {feeds} feeds by {size} replicas in {span:.1f} s "
        f"(the limiter's {booked:.1f} msg/s allow {allowed:.1f} s); {total} messages, "
        f"{too_many} × 429; upstream requests per feed over {windows:.1f} windows: "
        f"{min(fetches)}..{max(fetches)}"
    )
    return [
        Row(
            f"(j) alert fan-out, {chats} chats on {feeds} feeds, {size} replicas",
            f"{span:.1f} s ÷ {allowed:.1f} s, {per_window:.2f} fetches/source/window, "
            f"{too_many} × 429, {total - chats} extra",
            "booked 25.5 msg/s",
            ratio,
            "<= 1.1, 1 fetch/window, 0 × 429",
            ratio <= 1.1 and per_window <= 1 and too_many == 0 and total == chats,
        )
    ]


BENCHMARKS: dict[str, Callable[[], list[Row]]] = {
    "throughput": throughput,
    "scaling": scaling,
    "fanout": fanout,
    "latency": latency,
    "memory": memory,
    "burst": burst,
    "slowfeeds": slowfeeds,
    "refresh": refresh,
    "statesize": statesize,
    "webhook": webhook,
    "alerts": alerts,
    "commands": commands,
    "replicas": replicas_scaling,
}


def fmt(values: Sequence[float]) -> str:
    return "/".join(f"{value:.0f}" for value in values)


def fmt_ms(values: Sequence[float]) -> str:
    return "/".join(f"{value:.2f}" for value in values)


def table(rows: Sequence[Row]) -> str:
    lines = [
        "| benchmark | Newsbot | reference | ratio or value | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.name} | {row.measured} | {row.reference} | {row.value:.2f} | "
            f"{row.target} | {'yes' if row.met else 'no'} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", default="all", choices=[*BENCHMARKS, "all"])
    args = parser.parse_args(argv)
    names = list(BENCHMARKS) if args.name == "all" else [args.name]
    print(
        f"python {platform.python_version()}, python-telegram-bot {telegram.__version__}, "
        f"{os.cpu_count()} CPUs, {platform.platform()}"
    )
    rows: list[Row] = []
    for name in names:
        started = time.monotonic()
        rows += BENCHMARKS[name]()
        print(f"{name} took {time.monotonic() - started:.0f} s", flush=True)
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
