"""How the bot reaches Redis: the client for REDIS_URL (plain, Sentinel or embedded), the
size of its pool, and the questions asked of the deployment (the master the sentinels
name, whether a replica has the writes).

The client waits for a free connection rather than failing when its pool is busy: a
burst of work is queued, not mistaken for an outage (``pool_size`` says how big).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from newsbot import metrics, redis_url
from newsbot.config import Settings

logger = logging.getLogger(__name__)

# How long a command waits for a free connection of a busy pool before it fails (and
# the bot treats Redis as unreachable): as long as a command may take on the wire.
POOL_WAIT_SECONDS = 10.0
# Connections for the loops beside the work: the poller's long poll and lease, the
# consumer's read, touch and claim, the readiness check, the digest claim and prefetch.
LOOP_CONNECTIONS = 8


def pool_size(updates_in_flight: int, digest_slots: int, downloads: int) -> int:
    """Connections one replica needs so that its work never waits for a connection.

    ``updates_in_flight + digest_slots + downloads + LOOP_CONNECTIONS``: each update in
    hand, digest being built (or source being prefetched) and download finishing (it
    stores its result and drops its lock) uses one connection at a time, and the loops
    beside them a few more. More concurrent commands than that wait for a connection
    (``POOL_WAIT_SECONDS`` at most): a burst is slowed, never failed.
    """
    return updates_in_flight + digest_slots + downloads + LOOP_CONNECTIONS


def connect(settings: Settings, max_connections: int = 64) -> aioredis.Redis:
    """A Redis client for REDIS_URL, or the embedded in-process store without one.

    Its pool holds at most ``max_connections`` connections and, when all are busy, a
    command waits for one (``BlockingConnectionPool``) instead of raising.
    """
    if settings.redis_url and redis_url.is_sentinel(settings.redis_url):
        return _sentinel_client(redis_url.parse(settings.redis_url), max_connections)
    if settings.redis_url:
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=max_connections,
            timeout=POOL_WAIT_SECONDS,
            decode_responses=True,
            health_check_interval=15,
            socket_timeout=10,
            socket_connect_timeout=5,
        )
        return aioredis.Redis.from_pool(pool)
    import fakeredis  # only needed for the embedded default

    logger.info(
        "REDIS_URL is not set: using an embedded in-process store; "
        "state is lost when the bot stops and replicas cannot share it"
    )
    return fakeredis.FakeAsyncRedis(decode_responses=True)


class _BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """The master's pool as the sentinels name it, waiting for a free connection as
    ``BlockingConnectionPool`` does (Sentinel's own pool raises when all are busy)."""


# A sentinel that does not answer is skipped for the next one; waiting long on it would
# stretch every lookup of the master during a failover.
SENTINEL_TIMEOUT_SECONDS = 2.0


def _sentinel_client(url: redis_url.SentinelURL, max_connections: int) -> aioredis.Redis:
    """A client of the master the sentinels name, following it through failovers.

    Each new connection asks the sentinels where the master is, and a connection to a
    server that is no longer the master is dropped, so the next command goes to the
    new one: the bot needs no restart.
    """
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(url.sentinels),
        sentinel_kwargs={
            "username": url.sentinel_username,
            "password": url.sentinel_password,
            "socket_timeout": SENTINEL_TIMEOUT_SECONDS,
            "socket_connect_timeout": SENTINEL_TIMEOUT_SECONDS,
            "decode_responses": True,
        },
    )
    client: aioredis.Redis = sentinel.master_for(
        url.master,
        connection_pool_class=_BlockingSentinelPool,
        max_connections=max_connections,
        timeout=POOL_WAIT_SECONDS,
        db=url.db,
        username=url.username,
        password=url.password,
        decode_responses=True,
        health_check_interval=15,
        socket_timeout=10,
        socket_connect_timeout=5,
    )
    return client


async def sentinel_master(redis: aioredis.Redis) -> tuple[str, int] | None:
    """The master's address as the sentinels name it now; None for a plain Redis URL.

    Raises MasterNotFoundError when no sentinel names one (``newsbot check``).
    """
    pool = redis.connection_pool
    if not isinstance(pool, SentinelConnectionPool):
        return None
    host, port = await pool.get_master_address()  # type: ignore[no-untyped-call]
    return str(host), int(port)


async def wait_for_replicas(
    redis: aioredis.Redis, timeout_ms: int, attached: int | None = None
) -> int | None:
    """Wait until a replica has what this connection wrote; how many have (None: none
    is attached, counted in ``newsbot_replica_ack_skipped_total``).

    ``WAIT`` waits for the writes of the connection it runs on, so ``redis`` must be the
    one that wrote: a single-connection client (``async with redis.client() as
    conn``) or a pipeline's connection. 0 means the timeout passed unacknowledged (a
    slow or cut-off replica): the write is on the master and the caller goes on, as it
    would with no replica. With no replica attached ``WAIT`` would only sleep out its
    timeout, so it is not sent. ``attached`` is the number of replicas attached, when
    the caller's own script has read it already (it saves a round trip).
    """
    if attached is None:
        info = await redis.info("replication")
        attached = int(info.get("connected_slaves", 0))
    if not attached:
        metrics.REPLICA_ACK_SKIPPED.inc()
        return None
    acknowledged = int(await redis.wait(1, timeout_ms))
    if not acknowledged:
        metrics.REPLICA_ACK_TIMEOUTS.inc()
    return acknowledged


# Lua, for the scripts of AcknowledgedScript: how many Redis replicas are attached, read
# by the script itself (INFO) to save a round trip of its own.
_REPLICAS_ATTACHED = """
local function replicas_attached()
    local replication = redis.call('INFO', 'replication')
    return tonumber(string.match(replication, 'connected_slaves:(%d+)')) or 0
end
"""


class AcknowledgedScript:
    """A Lua script whose writes a Redis replica holds before ``run`` returns (WAIT).

    The script returns ``{result, replicas_attached()}``. ``WAIT`` acknowledges the
    writes of its own connection, and a connection of one's own (``redis.client()``)
    costs a client object at every call; so while the last run saw no replica attached,
    the script runs on any pooled connection and no ``WAIT`` follows. When a replica is
    attached it runs (again, if the first run found one: so it must be idempotent) on a
    connection of its own, with ``WAIT`` after it. The first run takes that way, until
    it knows.
    """

    def __init__(self, redis: aioredis.Redis, source: str, ack_timeout_ms: int) -> None:
        self.redis = redis
        self.ack_timeout_ms = ack_timeout_ms
        self._script = redis.register_script(_REPLICAS_ATTACHED + source)
        self.replicas_attached = True

    async def run(self, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        """Run the script, acknowledged by a replica if one is attached; its result."""
        first: list[Any] | None = None
        if not self.replicas_attached:
            first = await self._script(keys=keys, args=args)
            if not int(first[1]):
                await wait_for_replicas(self.redis, self.ack_timeout_ms, 0)
                return first[0]
            # A replica attached meanwhile: again on a connection WAIT can wait for.
        async with self.redis.client() as connection:
            reply = await self._script(keys=keys, args=args, client=connection)
            attached = int(reply[1])
            self.replicas_attached = attached > 0
            await wait_for_replicas(connection, self.ack_timeout_ms, attached)
        # The first run's result is the one that did the work.
        return reply[0] if first is None else first[0]
