"""HTTP downloads for sources: timeouts, a size cap, conditional GET, guarded redirects.

Blocking (requests); callers run it with ``asyncio.to_thread``. Every failure becomes a
``FetchError`` with a short reason a user can read.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from urllib.parse import urljoin

import requests

from newsbot import __version__
from newsbot.errors import FetchError, SourceError
from newsbot.sources.guard import Guard, guarded_adapter

USER_AGENT = f"newsbot/{__version__} (+https://github.com/newsbot/newsbot)"
CONNECT_TIMEOUT = 5.0
MAX_BYTES = 5 * 1024 * 1024
MAX_REDIRECTS = 5
CHUNK = 64 * 1024


@dataclasses.dataclass(frozen=True)
class Validators:
    """What a server said about a response, for a conditional GET next time."""

    etag: str | None = None
    last_modified: str | None = None

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


@dataclasses.dataclass(frozen=True)
class Download:
    """A finished download. ``status`` 304 means: unchanged since ``Validators``."""

    url: str
    status: int
    body: bytes
    headers: Mapping[str, str]

    @property
    def validators(self) -> Validators:
        return Validators(self.headers.get("ETag"), self.headers.get("Last-Modified"))


class HTTPStatusError(FetchError):
    """The server answered with an error status."""

    def __init__(self, status: int, headers: Mapping[str, str]) -> None:
        super().__init__(describe_status(status))
        self.status = status
        self.headers = headers


def describe_status(status: int) -> str:
    """A short reason for an HTTP error status."""
    if status == 404 or status == 410:
        return f"not found ({status})"
    if status in (401, 403):
        return f"access denied ({status})"
    if status == 429:
        return "the server asks us to slow down (429)"
    if status >= 500:
        return f"the server failed ({status})"
    return f"unexpected answer ({status})"


class Downloader:
    """Fetches URLs politely and safely."""

    def __init__(self, guard: Guard | None = None, max_bytes: int = MAX_BYTES,
                 timeout: float = 10.0) -> None:
        self.guard = guard
        self.max_bytes = max_bytes
        # requests' read timeout is per read; a server dripping a byte at a time would
        # never trip it, so the whole download also ends after twice the timeout.
        self.timeout = (min(CONNECT_TIMEOUT, timeout), timeout)
        self.total_timeout = 2 * timeout
        self.session = requests.Session()
        # Proxies from the environment would hide the real peer from the guard.
        self.session.trust_env = False
        self.session.headers["User-Agent"] = USER_AGENT
        if guard is not None:
            self.session.mount("http://", guarded_adapter(guard))
            self.session.mount("https://", guarded_adapter(guard))

    def close(self) -> None:
        self.session.close()

    def get(self, url: str, headers: Mapping[str, str] | None = None,
            validators: Validators | None = None, follow_redirects: bool = True) -> Download:
        """GET a URL; raise FetchError on any failure, 304 counts as success."""
        request_headers = dict(headers or {})
        if validators is not None:
            request_headers.update(validators.headers())
        deadline = time.monotonic() + self.total_timeout
        for _ in range(MAX_REDIRECTS + 1):
            if self.guard is not None:
                self.guard.check_url(url)
            response = self._request(url, request_headers)
            with response:
                if response.is_redirect and follow_redirects:
                    url = urljoin(url, response.headers["Location"])
                    continue
                if response.status_code == 304:
                    return Download(url, 304, b"", response.headers)
                if response.status_code >= 300 and not response.is_redirect:
                    raise HTTPStatusError(response.status_code, response.headers)
                return Download(url, response.status_code,
                                self._read(response, deadline), response.headers)
        raise FetchError("too many redirects")

    def post(self, url: str, data: Mapping[str, str], auth: tuple[str, str]) -> Download:
        """POST a form (Reddit's OAuth token endpoint); FetchError on any failure."""
        try:
            response = self.session.post(url, data=data, auth=auth, timeout=self.timeout)
        except requests.RequestException as error:
            raise FetchError(_describe_exception(error)) from None
        with response:
            if response.status_code >= 300:
                raise HTTPStatusError(response.status_code, response.headers)
            return Download(url, response.status_code, response.content, response.headers)

    def _request(self, url: str, headers: Mapping[str, str]) -> requests.Response:
        try:
            return self.session.get(url, headers=headers, timeout=self.timeout,
                                    stream=True, allow_redirects=False)
        except SourceError:
            raise  # the guard refused the peer of a connection
        except requests.RequestException as error:
            raise FetchError(_describe_exception(error)) from None

    def _read(self, response: requests.Response, deadline: float) -> bytes:
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            raise FetchError(f"too big (over {self.max_bytes // 1024 // 1024} MB)")
        body = bytearray()
        try:
            for chunk in response.iter_content(CHUNK):
                body += chunk
                if len(body) > self.max_bytes:
                    raise FetchError(f"too big (over {self.max_bytes // 1024 // 1024} MB)")
                if time.monotonic() > deadline:
                    raise FetchError("timed out")
        except requests.RequestException as error:
            raise FetchError(_describe_exception(error)) from None
        return bytes(body)


def _describe_exception(error: requests.RequestException) -> str:
    if isinstance(error, requests.Timeout):
        return "timed out"
    if isinstance(error, requests.exceptions.SSLError):
        return "TLS certificate problem"
    if isinstance(error, requests.ConnectionError):
        return "could not connect"
    return "download failed"
