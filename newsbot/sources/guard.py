"""The SSRF guard: feed URLs must not reach the bot's own network.

A feed URL is a request the bot makes on a stranger's behalf. Without this guard a user
could make the bot fetch ``http://169.254.169.254/`` (cloud credentials), Redis, or an
admin page on the cluster network. Two layers, both needed:

* ``check_url`` resolves the host and refuses any non-public address before a request
  is made, for the first URL and again for every redirect hop;
* ``guarded_adapter`` checks the address each connection actually reached, which also
  defeats DNS rebinding (a name that resolves to a public address for the check and to
  a private one for the connection).

Every name is resolved by the guard's ``Resolver``, also for the connection itself:
``getaddrinfo`` cannot be cancelled, so lookups run on a small pool of their own and
the caller stops waiting at its deadline. A name whose DNS never answers then costs a
resolver thread, never a download thread or a chat's whole reply.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from newsbot.errors import InvalidSource
from newsbot.sources.threads import DaemonPool

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses it resolves to; raises OSError when it does not.
Lookup = Callable[[str, int], list[str]]
# Lookups in flight at once. Real resolvers give up after a few seconds (resolv.conf's
# timeout × attempts), so a thread held by a dead name comes back; the pool only has
# to cover the lookups that are slow at the same moment.
RESOLVER_THREADS = 16
# How long a lookup may take when the caller has no deadline of its own.
RESOLVE_SECONDS = 10.0
# Answers are reused this long (a common DNS TTL, and NEWSBOT_CACHE_TTL's default)...
CACHE_SECONDS = 300.0
# ...and kept this long as a fallback for when a new lookup fails.
STALE_SECONDS = 3600.0
CACHE_ENTRIES = 10_000


def is_public(address: IPAddress) -> bool:
    """Tell whether an address is on the public internet."""
    if isinstance(address, ipaddress.IPv6Address):
        # v6 forms that carry a v4 address are judged by that address.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is not None:
            address = embedded
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def system_lookup(host: str, port: int) -> list[str]:
    """Resolve a name with the system resolver (getaddrinfo)."""
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


def _literal(host: str) -> str | None:
    """The host itself if it is an IP address, which needs no lookup."""
    try:
        return str(ipaddress.ip_address(host.strip("[]").split("%", 1)[0]))
    except ValueError:
        return None


class Resolver:
    """Resolves names on a bounded pool of its own, giving up at the caller's deadline.

    Answers are kept for ``CACHE_SECONDS``, so a feed fetched every cache window needs
    no lookup of its own, and past that for ``STALE_SECONDS`` as a fallback when a new
    lookup fails or does not answer in time: a name that resolved a minute ago is not
    lost because a flood of dead names holds the pool.
    """

    def __init__(self, lookup: Lookup = system_lookup, threads: int = RESOLVER_THREADS) -> None:
        self.lookup = lookup
        self._pool = DaemonPool(threads, "newsbot-dns")
        self._answers: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._lock = threading.Lock()

    def resolve(self, host: str, port: int, timeout: float | None = None) -> list[str]:
        """The addresses of a host; InvalidSource if it does not resolve within timeout."""
        found, stale = self._known(host, port)
        if found is not None:
            return found
        future = self._submit(host, port)
        try:
            return future.result(_wait(timeout))
        except concurrent.futures.TimeoutError:
            # A lookup still queued never starts; one that started ends on its own.
            future.cancel()
            return _fallback(stale, "the host name did not resolve in time")
        except (OSError, UnicodeError, InvalidSource):
            return _fallback(stale, "the host name does not resolve")

    async def resolve_async(self, host: str, port: int, timeout: float | None = None) -> list[str]:
        """``resolve`` for the event loop: no thread of the caller's waits for DNS."""
        found, stale = self._known(host, port)
        if found is not None:
            return found
        future = self._submit(host, port)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), _wait(timeout))
        except TimeoutError:  # wait_for cancelled the lookup if it had not started
            return _fallback(stale, "the host name did not resolve in time")
        except (OSError, UnicodeError, InvalidSource):
            return _fallback(stale, "the host name does not resolve")

    def close(self) -> None:
        """Stop the pool; lookups still queued are dropped."""
        self._pool.shutdown()

    def _known(self, host: str, port: int) -> tuple[list[str] | None, list[str] | None]:
        """(fresh answer, stale answer) from what is known without a lookup."""
        literal = _literal(host)
        if literal is not None:
            return [literal], None
        with self._lock:
            known = self._answers.get((host.lower(), port))
        if known is None:
            return None, None
        age = time.monotonic() - known[0]
        if age < CACHE_SECONDS:
            return known[1], None
        return None, known[1] if age < STALE_SECONDS else None

    def _submit(self, host: str, port: int) -> concurrent.futures.Future[list[str]]:
        try:
            return self._pool.submit(functools.partial(self._look_up, host, port))
        except RuntimeError:  # the pool was shut down: the bot is stopping
            raise InvalidSource("the host name could not be looked up") from None

    def _look_up(self, host: str, port: int) -> list[str]:
        addresses = self.lookup(host, port)
        if not addresses:
            raise InvalidSource("the host name does not resolve")
        with self._lock:
            if len(self._answers) >= CACHE_ENTRIES:
                self._answers.clear()  # crude, but bounded; the next window refills it
            self._answers[(host.lower(), port)] = (time.monotonic(), list(addresses))
        return addresses


def _wait(timeout: float | None) -> float:
    return RESOLVE_SECONDS if timeout is None else max(0.0, timeout)


def _fallback(stale: list[str] | None, reason: str) -> list[str]:
    if stale is None:
        raise InvalidSource(reason)
    return stale


class Guard:
    """Decides which addresses feed requests may reach."""

    def __init__(
        self,
        allow_private: bool = False,
        exempt: frozenset[IPAddress] = frozenset(),
        resolver: Resolver | None = None,
    ) -> None:
        self.allow_private = allow_private
        # Addresses allowed although not public: only tests use this, to stand a
        # "public" server on a second loopback address.
        self.exempt = exempt
        self.resolver = resolver or Resolver()

    def close(self) -> None:
        self.resolver.close()

    def check_address(self, text: str) -> None:
        """Refuse an address that is not public, unless private URLs are allowed."""
        if self.allow_private:
            return
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if address not in self.exempt and not is_public(address):
            raise InvalidSource("the address is private or local, which is not allowed")

    def check_url(self, url: str, timeout: float | None = None) -> None:
        """Refuse a URL whose scheme is not http(s) or whose host is not public."""
        target = self._target(url)
        if target is not None:
            for address in self.resolver.resolve(*target, timeout):
                self.check_address(address)

    async def check_url_async(self, url: str, timeout: float | None = None) -> None:
        """``check_url`` for the event loop: the lookup holds no thread of the caller's."""
        target = self._target(url)
        if target is not None:
            for address in await self.resolver.resolve_async(*target, timeout):
                self.check_address(address)

    def _target(self, url: str) -> tuple[str, int] | None:
        """The (host, port) to resolve and check, or None when nothing needs checking."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidSource("only http:// and https:// URLs can be followed")
        if self.allow_private:
            return None
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise InvalidSource("not a valid URL") from None
        return parts.hostname, port


class Deadlines(Protocol):
    """What a connection asks of the download it serves (see download.Downloader)."""

    def remaining(self) -> float | None:
        """Seconds left to the current download's deadline; None without one."""

    def opened(self, sock: socket.socket) -> None:
        """Hand over a connected socket, so the deadline can shut it down."""


def guarded_adapter(
    guard: Guard, deadlines: Deadlines | None = None, **kwargs: Any
) -> HTTPAdapter:
    """An HTTPAdapter whose connections refuse to talk to a non-public peer.

    Names are resolved by the guard's resolver within the download's deadline, and the
    connection goes to an address the guard accepted.
    """

    def connect(
        connection: HTTPConnection, new_conn: Callable[[], socket.socket]
    ) -> socket.socket:
        left = deadlines.remaining() if deadlines is not None else None
        if left is not None:
            if left <= 0:
                raise ConnectTimeoutError(connection, "deadline passed before connecting")
            if connection.timeout is None or connection.timeout > left:
                connection.timeout = left
        name = connection._dns_host  # with a trailing dot, if any: what DNS needs
        # InvalidSource goes up as it is, like the guard's refusals: its reason is
        # the one the user should read.
        addresses = guard.resolver.resolve(name, connection.port or 0, left)
        error: Exception | None = None
        for address in addresses:
            guard.check_address(address)
            # Connect to the address just checked rather than let urllib3 look the name
            # up again; the name comes back at once, for TLS (SNI, certificate).
            connection._dns_host = address
            try:
                sock = new_conn()
            except (NewConnectionError, ConnectTimeoutError) as failed:
                error = failed
                continue
            finally:
                connection._dns_host = name
            try:
                guard.check_address(sock.getpeername()[0])
            except InvalidSource:
                sock.close()
                raise
            if deadlines is not None:
                deadlines.opened(sock)
            return sock
        assert error is not None
        raise error

    def reused(connection: HTTPConnection) -> None:
        # A kept-alive connection from an earlier download: this one's deadline must
        # be able to shut it down too.
        if deadlines is not None and connection.sock is not None:
            deadlines.opened(connection.sock)

    class GuardedHTTPConnection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return connect(self, super()._new_conn)

        def request(self, *args: Any, **kwargs: Any) -> None:
            reused(self)
            super().request(*args, **kwargs)

    class GuardedHTTPSConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return connect(self, super()._new_conn)

        def request(self, *args: Any, **kwargs: Any) -> None:
            reused(self)
            super().request(*args, **kwargs)

    class GuardedHTTPPool(HTTPConnectionPool):
        ConnectionCls = GuardedHTTPConnection

    class GuardedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = GuardedHTTPSConnection

    adapter = HTTPAdapter(**kwargs)
    adapter.poolmanager.pool_classes_by_scheme = {
        "http": GuardedHTTPPool,
        "https": GuardedHTTPSPool,
    }
    return adapter
