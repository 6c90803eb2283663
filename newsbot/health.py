"""/healthz, /readyz and /metrics over plain HTTP, for Docker and Kubernetes probes.

Liveness and readiness answer different questions (and each says why it failed):
``/healthz`` — is the main loop still turning? A stuck process is restarted.
``/readyz`` — does Redis answer and is the consumer running? A replica that cannot do
its work is taken out of rotation, not killed: Redis may come back.

The port may be reachable by anyone on the network, so a request is read within limits
(line length, header count, one deadline for all of it) and junk is answered with a
plain 400, 405, 414 or 431, or the connection is simply closed; never a traceback.

In webhook mode the same port takes Telegram's pushes: ``POST`` at the webhook's path
only, with a Content-Length of at most ``webhook.MAX_BODY`` (else 411 or 413), handed
to ``newsbot.webhook.Webhook``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from newsbot.errors import ConfigError
from newsbot.webhook import MAX_BODY, SECRET_HEADER, Webhook

logger = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"
# The main loop beats at least every few seconds; this long without a beat is a hang.
HEARTBEAT_MAX_AGE = 60.0

# A probe's request is a few dozen bytes; these bounds only keep junk from costing memory.
MAX_LINE = 8192
MAX_HEADERS = 100
# Slow or half-open clients get this long for the whole request, however they trickle.
REQUEST_SECONDS = 5.0
ALLOWED_METHODS = ("GET", "HEAD")
_REQUEST_LINE = re.compile(r"([A-Z]{1,20}) (/[\x21-\x7e]*) HTTP/1\.[01]")
_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,20}")
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}

Check = Callable[[], Awaitable[str | None]]  # None when fine, else the reason


class _Refused(Exception):
    """A request answered with an error status, without looking further."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class HealthServer:
    """A tiny HTTP server for probes and metrics."""

    def __init__(
        self,
        port: int,
        heartbeat: Callable[[], float],
        ready: Check,
        host: str = "0.0.0.0",
        webhook: Webhook | None = None,
    ) -> None:
        self.port = port
        self.webhook = webhook
        self.host = host
        self.heartbeat = heartbeat
        self.ready = ready
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen; a port that cannot be had is a configuration error, not a crash."""
        try:
            self._server = await asyncio.start_server(
                self._serve, self.host, self.port, limit=MAX_LINE
            )
        except OSError as error:
            reason = os.strerror(error.errno) if error.errno else str(error)
            raise ConfigError(
                "NEWSBOT_HTTP_PORT", f"NEWSBOT_HTTP_PORT={self.port} cannot be used: {reason}"
            ) from None
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
            try:
                async with asyncio.timeout(REQUEST_SECONDS):
                    method, path, headers = await _read_head(
                        reader, ALLOWED_METHODS + (("POST",) if self.webhook else ())
                    )
                    body = b""
                    if method == "POST":
                        if self.webhook is None or path != self.webhook.path:
                            raise _Refused(405)
                        body = await _read_body(reader, headers)
            except _Refused as refused:
                logger.debug("health: refused a malformed request (%s)", refused.status)
                await _respond(
                    writer,
                    refused.status,
                    "text/plain",
                    f"{_REASONS[refused.status].lower()}\n".encode(),
                )
                return
            if method == "POST":
                assert self.webhook is not None
                status, text = await self.webhook.receive(headers.get(SECRET_HEADER), body)
                await _respond(writer, status, "text/plain", f"{text}\n".encode())
                return
            status, content_type, answer = await self.answer(path)
            await _respond(
                writer, status, content_type, b"" if method == "HEAD" else answer, len(answer)
            )
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass  # a client that was too slow, hung up or went half-open: nothing to answer
        finally:
            writer.close()


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
    """The method and path of a probe's request, its headers dropped; raise _Refused."""
    method, path, _ = await _read_head(reader, ALLOWED_METHODS)
    return method, path


async def _read_head(
    reader: asyncio.StreamReader, allowed: tuple[str, ...]
) -> tuple[str, str, dict[str, str]]:
    """The method, path and headers (names in lower case) of a request; raise _Refused."""
    line = await _read_line(reader, 414)
    text = line.decode("latin-1").rstrip("\r\n")
    match = _REQUEST_LINE.fullmatch(text)
    if match is None:
        word = text.split(" ", 1)[0]
        # A well-formed line with another method is 405; anything else is junk.
        known_shape = _METHOD.fullmatch(word) and text.count(" ") == 2
        raise _Refused(405 if known_shape and word not in allowed else 400)
    method, target = match.groups()
    if method not in allowed:
        raise _Refused(405)
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        header = (await _read_line(reader, 431)).decode("latin-1").strip()
        if not header:
            return method, target.split("?", 1)[0], headers
        name, _, value = header.partition(":")
        headers[name.strip().lower()] = value.strip()
    raise _Refused(431)


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    """A request's body by its Content-Length, at most MAX_BODY bytes; raise _Refused."""
    if "transfer-encoding" in headers or "content-length" not in headers:
        raise _Refused(411)  # Telegram sends a Content-Length; chunked is not read
    length = headers["content-length"]
    if not (length.isascii() and length.isdigit()):
        raise _Refused(400)
    if int(length) > MAX_BODY:
        raise _Refused(413)
    return await reader.readexactly(int(length))


async def _read_line(reader: asyncio.StreamReader, too_long: int) -> bytes:
    """One line of at most MAX_LINE bytes; EOF before its end raises IncompleteReadError."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError:
        raise _Refused(too_long) from None
    if len(line) > MAX_LINE:
        raise _Refused(too_long)
    return line


async def _respond(
    writer: asyncio.StreamWriter,
    status: int,
    content_type: str,
    body: bytes,
    length: int | None = None,
) -> None:
    allow = "Allow: GET, HEAD\r\n" if status == 405 else ""
    writer.write(
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\n{allow}"
        "Connection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()
