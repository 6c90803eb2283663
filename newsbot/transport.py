"""The HTTP client beneath python-telegram-bot: aiohttp, through PTB's ``BaseRequest``.

python-telegram-bot speaks to the Bot API through a ``BaseRequest`` and ships one on
httpx. Every reply of a replica is one such request, and at full load httpx's stack
(httpx, httpcore, h11, anyio) was over a third of a replica's CPU, more than Newsbot's
own code and Redis client together (`benchmarks/run.py throughput`). aiohttp does the
same work in a fraction of it: its HTTP parser and its connection pool are compiled.
Everything above this seam is python-telegram-bot's: the mapping of Telegram's answers
(400, 403, 409, 429, 5xx) to ``telegram.error``, JSON decoding, the bot methods.

What httpx's request did that this one does too: keep-alive connections in a bounded
pool, the four timeouts (aiohttp has no write timeout of its own; the sum of the four
bounds a request that stalls while writing), uploads as multipart, a proxy from the
environment (``HTTPS_PROXY``, ``NO_PROXY``...), and the same errors (``TimedOut``,
``NetworkError``) for a transport that fails. The proxy settings are read once, when
the session opens: aiohttp's ``trust_env`` would read the environment and stat
``~/.netrc`` at every request, a tenth of a replica's CPU at full load.
"""

from __future__ import annotations

import urllib.parse
import urllib.request

import aiohttp

# The type of BaseRequest's timeout parameters and of their "not given" default: the
# abstract method's signature uses them, and python-telegram-bot's own HTTPXRequest too.
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

# The defaults of python-telegram-bot's HTTPXRequest, so that a switch changes no wait.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 5.0
WRITE_TIMEOUT = 5.0
MEDIA_WRITE_TIMEOUT = 20.0
POOL_TIMEOUT = 1.0


class AiohttpRequest(BaseRequest):
    """A ``BaseRequest`` on one aiohttp session with at most ``connections`` connections."""

    def __init__(
        self,
        connections: int = 1,
        *,
        connect_timeout: float | None = CONNECT_TIMEOUT,
        read_timeout: float | None = READ_TIMEOUT,
        write_timeout: float | None = WRITE_TIMEOUT,
        pool_timeout: float | None = POOL_TIMEOUT,
        media_write_timeout: float | None = MEDIA_WRITE_TIMEOUT,
    ) -> None:
        self.connections = connections
        self._timeouts = (connect_timeout, read_timeout, write_timeout, pool_timeout)
        self._media_write_timeout = media_write_timeout
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, str] = {}

    @property
    def read_timeout(self) -> float | None:
        """How long a request waits for Telegram's answer unless told otherwise."""
        return self._timeouts[1]

    async def initialize(self) -> None:
        """Open the session; its connections are made as requests need them."""
        if self._session is None or self._session.closed:
            # As httpx does, the environment's proxies are honoured (see above).
            self._proxies = urllib.request.getproxies()
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.connections),
                # Telegram's answers are JSON; cookies are never part of the Bot API.
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"User-Agent": self.USER_AGENT},
            )

    async def shutdown(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """Send one request; Telegram's status and body, or TimedOut/NetworkError."""
        if self._session is None:
            raise RuntimeError("this AiohttpRequest is not initialized")
        files = request_data is not None and request_data.contains_files
        connect, read, write, pool = self._timeouts
        timeout = request_timeout(
            _given(connect_timeout, connect),
            _given(read_timeout, read),
            _given(write_timeout, self._media_write_timeout if files else write),
            _given(pool_timeout, pool),
        )
        try:
            async with self._session.request(
                method,
                url,
                data=_body(request_data),
                timeout=timeout,
                proxy=proxy_for(url, self._proxies),
            ) as response:
                return response.status, await response.read()
        except TimeoutError as error:
            raise TimedOut from error
        except aiohttp.ClientError as error:
            # The class name too: some of aiohttp's errors have an empty message.
            raise NetworkError(f"aiohttp.{type(error).__name__}: {error}") from error


def request_timeout(
    connect: float | None, read: float | None, write: float | None, pool: float | None
) -> aiohttp.ClientTimeout:
    """The four timeouts of python-telegram-bot as aiohttp's (None: no limit).

    aiohttp's ``connect`` covers the wait for a pooled connection and the connecting;
    ``sock_connect`` the connecting alone; ``sock_read`` each wait for Telegram's bytes.
    It has no write timeout: a total of all four bounds a request stalled mid-write.
    """
    parts = (connect, read, write, pool)
    return aiohttp.ClientTimeout(
        total=None if None in parts else sum(p for p in parts if p is not None),
        connect=None if connect is None or pool is None else connect + pool,
        sock_connect=connect,
        sock_read=read,
    )


def proxy_for(url: str, proxies: dict[str, str]) -> str | None:
    """The proxy for ``url`` among the environment's (``urllib.request.getproxies``)."""
    if not proxies:
        return None
    parts = urllib.parse.urlsplit(url)
    proxy = proxies.get(parts.scheme)
    # NO_PROXY as urllib (and httpx) read it; the function is missing from typeshed.
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if proxy is None or bypass(parts.netloc, proxies):
        return None
    return proxy


def _given(value: ODVInput[float], default: float | None) -> float | None:
    """The timeout a call gave, or the request's own if it gave none."""
    return default if isinstance(value, DefaultValue) else value


def _body(request_data: RequestData | None) -> aiohttp.FormData | dict[str, str] | None:
    """The parameters as a form, multipart when files go with them (as httpx sends them)."""
    if request_data is None:
        return None
    if not request_data.contains_files:
        return request_data.json_parameters
    form = aiohttp.FormData(request_data.json_parameters)
    for name, (filename, content, mimetype) in request_data.multipart_data.items():
        form.add_field(name, content, filename=filename, content_type=mimetype)
    return form
