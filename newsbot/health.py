"""/healthz, /readyz and /metrics over plain HTTP, for Docker and Kubernetes probes.

Liveness and readiness answer different questions (and each says why it failed):
``/healthz`` — is the main loop still turning? A stuck process is restarted.
``/readyz`` — does Redis answer and is the consumer running? A replica that cannot do
its work is taken out of rotation, not killed: Redis may come back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

logger = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"
# The main loop beats at least every few seconds; this long without a beat is a hang.
HEARTBEAT_MAX_AGE = 60.0

Check = Callable[[], Awaitable[str | None]]  # None when fine, else the reason


class HealthServer:
    """A tiny HTTP server for probes and metrics."""

    def __init__(self, port: int, heartbeat: Callable[[], float], ready: Check,
                 host: str = "0.0.0.0") -> None:
        self.port = port
        self.host = host
        self.heartbeat = heartbeat
        self.ready = ready
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("health and metrics on port %s", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def answer(self, path: str) -> tuple[int, str, bytes]:
        """Status, content type and body for a path."""
        if path == HEALTH_PATH:
            age = time.monotonic() - self.heartbeat()
            if age > HEARTBEAT_MAX_AGE:
                return 503, "text/plain", f"main loop stuck for {age:.0f} s\n".encode()
            return 200, "text/plain", b"ok\n"
        if path == READY_PATH:
            reason = await self.ready()
            if reason is not None:
                return 503, "text/plain", f"{reason}\n".encode()
            return 200, "text/plain", b"ready\n"
        if path == METRICS_PATH:
            return 200, CONTENT_TYPE_LATEST, generate_latest()
        return 404, "text/plain", b"not found\n"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)).strip():
                pass  # headers are not needed
            parts = request_line.decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) >= 2 else "/"
            status, content_type, body = await self.answer(path)
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                         .encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass  # a probe that hung up or spoke garbage; nothing to answer
        finally:
            writer.close()
