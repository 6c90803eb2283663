"""The ``redis+sentinel://`` form of REDIS_URL, read into the parts redis-py's Sentinel takes.

``redis+sentinel://[user:password@]host1:26379,host2:26379/MASTER/DB?sentinel_password=...``
names the sentinels to ask, the master they monitor and the database; the password is
the Redis servers' (master and replicas share it), ``sentinel_password`` the sentinels'
own when they require one. Parsing is pure and strict: a URL redis-py would take in a
way the operator did not mean (a missing port read as 6379 instead of Sentinel's 26379
is fine; a master name with a slash, a sixth path part, an unknown option are not) is
refused with the reason, so the bot fails at the start and not at the first failover.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from urllib.parse import parse_qsl, unquote

SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379
# More sentinels than this in one URL is a pasted list, not a deployment.
MAX_SENTINELS = 16
# Sentinel's master names are one word; Redis' configuration parser splits on spaces.
_MASTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_HOST_NAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?"
    r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?"
)
_PORT = re.compile(r"[0-9]{1,5}")
# Query parameters a sentinel URL may carry.
_OPTIONS = ("sentinel_password", "sentinel_username")


@dataclasses.dataclass(frozen=True)
class SentinelURL:
    """Where the sentinels are, which master they name, and the credentials for each."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None

    @property
    def location(self) -> str:
        """Sentinels and master name, without credentials: for logs and `newsbot check`."""
        hosts = ",".join(
            f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            for host, port in self.sentinels
        )
        return f"master {self.master!r} via sentinels {hosts}"


def is_sentinel(url: str) -> bool:
    """Tell whether a REDIS_URL is the sentinel form."""
    return url.lower().startswith(SCHEME + "://")


def parse(url: str, databases: int = 16) -> SentinelURL:
    """Read a ``redis+sentinel://`` URL; ValueError says what is wrong (never a secret)."""
    if not is_sentinel(url):
        raise ValueError(f"the scheme must be {SCHEME}")
    rest = url[len(SCHEME) + 3 :]
    rest, _, query = rest.partition("?")
    if "#" in query or "#" in rest:
        raise ValueError("no fragment")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon and secret else None
        if password is None:
            raise ValueError("the password is missing after ':' (use :password@)")
    sentinels = tuple(_sentinel(part) for part in hosts.split(","))
    if len(sentinels) > MAX_SENTINELS:
        raise ValueError(f"at most {MAX_SENTINELS} sentinels")
    parts = path.split("/") if slash else []
    if not parts or not parts[0]:
        raise ValueError("the master name is missing (…/MASTER/DB)")
    if len(parts) > 2:
        raise ValueError("the path is /MASTER or /MASTER/DB, nothing after the database")
    master = unquote(parts[0])
    if not _MASTER_NAME.fullmatch(master):
        raise ValueError("the master name is one word of letters, digits, '.', '_' or '-'")
    db = 0
    if len(parts) == 2:
        database = parts[1]
        if not (database.isascii() and database.isdigit() and int(database) < databases):
            raise ValueError(f"the database must be a number from 0 to {databases - 1}")
        db = int(database)
    options: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in _OPTIONS:
            raise ValueError(
                f"unknown query parameter {name!r} (only " + ", ".join(_OPTIONS) + ")"
            )
        if not value or name in options:
            raise ValueError(f"{name} must be given once, not empty")
        options[name] = value
    return SentinelURL(
        sentinels,
        master,
        db,
        username,
        password,
        options.get("sentinel_username"),
        options.get("sentinel_password"),
    )


def _sentinel(text: str) -> tuple[str, int]:
    """One ``host[:port]`` of the list; IPv6 addresses in brackets."""
    if text.startswith("["):
        host, bracket, after = text[1:].partition("]")
        if not bracket or not _is_ip(host) or (after and not after.startswith(":")):
            raise ValueError("an IPv6 sentinel is written [address]:port")
        port_text = after[1:] if after else None
    else:
        host, colon, port_text_given = text.partition(":")
        port_text = port_text_given if colon else None
        if not host:
            raise ValueError("a sentinel's host is missing (two commas in a row?)")
        if not (_HOST_NAME.fullmatch(host) or _is_ip(host)):
            raise ValueError("a sentinel's host is not a valid name or address")
    if port_text is None:
        return host, DEFAULT_SENTINEL_PORT
    if not (_PORT.fullmatch(port_text) and 1 <= int(port_text) <= 65_535):
        raise ValueError("a sentinel's port must be a number from 1 to 65535")
    return host, int(port_text)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
