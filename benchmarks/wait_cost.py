"""What `WAIT` costs per update: a master, its replica and three sentinels on loopback.

    python benchmarks/wait_cost.py [updates]

An update costs the bot two writes that must survive a failover (the stored update
before the getUpdates offset moves, the done mark before XACK). Each is timed here on
one connection through the real client (redis+sentinel:// URL, newsbot.store.connect)
without and with ``wait_for_replicas`` after it (INFO replication, then WAIT 1), one
update after another, so the figure is the latency each update gains. Ends with a
markdown table.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from newsbot.config import Settings  # noqa: E402
from newsbot.store import connect, wait_for_replicas  # noqa: E402
from sentinel_support import SentinelSet  # noqa: E402

WAIT_TIMEOUT_MS = 1000
ROUNDS = 5


async def per_update(url: str, updates: int, acknowledged: bool) -> float:
    """Seconds per update: two writes, each acknowledged by the replica or not."""
    redis = connect(Settings(redis_url=url))
    try:
        async with redis.client() as connection:
            started = time.perf_counter()
            for i in range(updates):
                await connection.xadd("bench:updates", {"update": str(i)}, maxlen=10_000)
                if acknowledged:
                    await wait_for_replicas(connection, WAIT_TIMEOUT_MS)
                await connection.set(f"bench:done:{i}", "1", ex=60)
                if acknowledged:
                    await wait_for_replicas(connection, WAIT_TIMEOUT_MS)
            return (time.perf_counter() - started) / updates
    finally:
        await redis.aclose()


async def measure(url: str, updates: int) -> tuple[float, float]:
    plain, waited = [], []
    for _ in range(ROUNDS):  # interleaved, so the machine's noise hits both alike
        plain.append(await per_update(url, updates, False))
        waited.append(await per_update(url, updates, True))
    return statistics.median(plain), statistics.median(waited)


def main() -> None:
    updates = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with tempfile.TemporaryDirectory(prefix="nb-wait-") as directory:
        with SentinelSet(Path(directory)) as cluster:
            plain, waited = asyncio.run(measure(cluster.url(), updates))
    print(
        f"| writes per update | without WAIT | with WAIT (INFO + WAIT 1 after each) "
        f"| cost per update |\n|---|---|---|---|\n"
        f"| 2 | {plain * 1e6:.0f} µs | {waited * 1e6:.0f} µs "
        f"| +{(waited - plain) * 1e6:.0f} µs ({waited / plain:.2f}×) |"
    )
    print(f"\n{updates} updates one after another, median of {ROUNDS} rounds.")


if __name__ == "__main__":
    main()
