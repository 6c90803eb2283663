"""A Redis master, its replica and three sentinels as real processes on loopback.

Shared by test_sentinel.py and the benchmarks. Sentinels here decide fast (the master is
down after 1 s of silence, a failover may take 5 s), so a test's failover is over in
seconds; production settings are in docker-compose.sentinel.yml and
deploy/redis-sentinel/.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

from harness import free_port, stop_process, wait_for_redis

MASTER_NAME = "mymaster"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
QUORUM = 2


def _executable(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not on PATH")
    return found


class Server:
    """One redis-server (master or replica) in its own directory."""

    def __init__(
        self, directory: Path, password: str | None, replica_of: int | None = None
    ) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.password = password
        self.replica_of = replica_of
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def client(self) -> redis.Redis:
        return redis.Redis(
            port=self.port, password=self.password, decode_responses=True, socket_timeout=5
        )

    def start(self) -> Server:
        command = [
            _executable("redis-server"),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        if self.password:
            # masterauth too: after a failover the old master may come back as a replica.
            command += ["--requirepass", self.password, "--masterauth", self.password]
        if self.replica_of is not None:
            command += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_redis(self.port, self.process, self.directory / "redis.log", self.password)
        return self

    def kill(self) -> None:
        """SIGKILL: no goodbye to the replica, the sentinels or the clients."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process, 10)


class SentinelProcess:
    """One redis-sentinel watching the master; it rewrites its own configuration file."""

    def __init__(
        self,
        directory: Path,
        master_port: int,
        password: str | None,
        sentinel_password: str | None,
    ) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.sentinel_password = sentinel_password
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {directory}",
            f"logfile {directory / 'sentinel.log'}",
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} {QUORUM}",
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {MASTER_NAME} 1",
        ]
        if password:
            lines.append(f"sentinel auth-pass {MASTER_NAME} {password}")
        if sentinel_password:
            # Sentinels talk to each other too: they need the password they require.
            lines += [
                f"requirepass {sentinel_password}",
                f"sentinel sentinel-pass {sentinel_password}",
            ]
        self.config = directory / "sentinel.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None

    def client(self) -> redis.Redis:
        return redis.Redis(
            port=self.port,
            password=self.sentinel_password,
            decode_responses=True,
            socket_timeout=5,
        )

    def start(self) -> SentinelProcess:
        self.process = subprocess.Popen(
            [_executable("redis-sentinel"), str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_redis(
            self.port, self.process, self.directory / "sentinel.log", self.sentinel_password
        )
        return self

    def master_port(self) -> int | None:
        """The port of the master this sentinel names now."""
        try:
            address = self.client().execute_command(
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME
            )
        except redis.RedisError:
            return None
        return int(address[1]) if address else None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process, 10)


class SentinelSet:
    """A master, one replica and three sentinels; ``url`` is the bot's REDIS_URL."""

    def __init__(
        self, directory: Path, password: str | None = None, sentinel_password: str | None = None
    ) -> None:
        self.password = password
        self.sentinel_password = sentinel_password
        self.master = Server(directory / "master", password)
        self.replica = Server(directory / "replica", password, replica_of=self.master.port)
        self.sentinels = [
            SentinelProcess(
                directory / f"sentinel{i}", self.master.port, password, sentinel_password
            )
            for i in range(3)
        ]

    def url(self, db: int = 0) -> str:
        auth = f":{self.password}@" if self.password else ""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        query = f"?sentinel_password={self.sentinel_password}" if self.sentinel_password else ""
        return f"redis+sentinel://{auth}{hosts}/{MASTER_NAME}/{db}{query}"

    def start(self) -> SentinelSet:
        self.master.start()
        self.replica.start()
        wait_until(lambda: self.replica_attached(self.master), 20, "the replica to sync")
        for sentinel in self.sentinels:
            sentinel.start()
        # Every sentinel must know the others and the replica before a failover can pass.
        wait_until(self.sentinels_agree, 30, "the sentinels to find each other")
        return self

    def replica_attached(self, server: Server) -> bool:
        try:
            info = server.client().info("replication")
        except redis.RedisError:
            return False
        return (
            int(info.get("connected_slaves", 0)) >= 1
            and info.get("slave0", {}).get("state") == "online"
        )

    def sentinels_agree(self) -> bool:
        for sentinel in self.sentinels:
            try:
                state = sentinel.client().execute_command("SENTINEL", "MASTER", MASTER_NAME)
            except redis.RedisError:
                return False
            fields = (
                dict(zip(state[::2], state[1::2], strict=False))
                if isinstance(state, list)
                else state
            )
            if (
                int(fields.get("num-other-sentinels", 0)) < 2
                or int(fields.get("num-slaves", 0)) < 1
            ):
                return False
        return True

    def named_master_port(self) -> int | None:
        """The master port most sentinels name now (None while they do not agree)."""
        ports = [sentinel.master_port() for sentinel in self.sentinels]
        best = max(set(ports), key=ports.count)
        return best if ports.count(best) >= QUORUM else None

    def stop(self) -> None:
        for process in [*self.sentinels, self.replica, self.master]:
            process.stop()

    def __enter__(self) -> SentinelSet:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
