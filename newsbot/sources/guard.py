"""The SSRF guard: feed URLs must not reach the bot's own network.

A feed URL is a request the bot makes on a stranger's behalf. Without this guard a user
could make the bot fetch ``http://169.254.169.254/`` (cloud credentials), Redis, or an
admin page on the cluster network. Two layers, both needed:

* ``check_url`` resolves the host and refuses any non-public address before a request
  is made, for the first URL and again for every redirect hop;
* ``guarded_adapter`` checks the address each connection actually reached, which also
  defeats DNS rebinding (a name that resolves to a public address for the check and to
  a private one for the connection).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from newsbot.errors import InvalidSource

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


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


class Guard:
    """Decides which addresses feed requests may reach."""

    def __init__(self, allow_private: bool = False,
                 exempt: frozenset[IPAddress] = frozenset()) -> None:
        self.allow_private = allow_private
        # Addresses allowed although not public: only tests use this, to stand a
        # "public" server on a second loopback address.
        self.exempt = exempt

    def check_address(self, text: str) -> None:
        """Refuse an address that is not public, unless private URLs are allowed."""
        if self.allow_private:
            return
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if address not in self.exempt and not is_public(address):
            raise InvalidSource("the address is private or local, which is not allowed")

    def check_url(self, url: str) -> None:
        """Refuse a URL whose scheme is not http(s) or whose host is not public."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidSource("only http:// and https:// URLs can be followed")
        if self.allow_private:
            return
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError):
            raise InvalidSource("the host name does not resolve") from None
        for info in infos:
            self.check_address(str(info[4][0]))


def guarded_adapter(guard: Guard, **kwargs: Any) -> HTTPAdapter:
    """An HTTPAdapter whose connections refuse to talk to a non-public peer."""

    def check_peer(sock: socket.socket) -> None:
        try:
            guard.check_address(sock.getpeername()[0])
        except InvalidSource:
            sock.close()
            raise

    class GuardedHTTPConnection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            check_peer(sock)
            return sock

    class GuardedHTTPSConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            check_peer(sock)
            return sock

    class GuardedHTTPPool(HTTPConnectionPool):
        ConnectionCls = GuardedHTTPConnection

    class GuardedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = GuardedHTTPSConnection

    adapter = HTTPAdapter(**kwargs)
    adapter.poolmanager.pool_classes_by_scheme = {
        "http": GuardedHTTPPool, "https": GuardedHTTPSPool,
    }
    return adapter
