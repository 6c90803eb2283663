"""HTTP downloads for sources: a hard deadline, a size cap, conditional GET, guarded hops.

Blocking (requests), run on a ``FetchPool``: a thread pool of the sources' own, so that
slow servers can never hold the threads the rest of the bot needs (``asyncio.to_thread``
shares the default executor, six threads on two cores), with a per-host limit so one
host cannot take the pool either.

Every download has one deadline for everything (DNS, connect, TLS, headers and body).
requests' timeouts are per read, so a server sending a byte every few seconds would
never trip them: a watchdog thread shuts the download's socket down when its deadline
passes, which ends whatever read is blocked. Every failure becomes a ``FetchError``
with a short reason a user can read.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar
from urllib.parse import urljoin

import requests

from newsbot import __version__
from newsbot.errors import FetchError, SourceError
from newsbot.sources.guard import Guard, guarded_adapter
from newsbot.sources.threads import DaemonPool

USER_AGENT = f"newsbot/{__version__} (+https://github.com/newsbot/newsbot)"
CONNECT_TIMEOUT = 5.0
MAX_BYTES = 5 * 1024 * 1024
MAX_REDIRECTS = 5
CHUNK = 64 * 1024
# Downloads in flight at once per replica. They wait on the network, not the CPU, so
# far more than the cores: 64 fetches of 500 ms each refresh 5,000 feeds in ~40 s.
FETCH_THREADS = 64
# Downloads from one host at once: a guest's manners, and one slow host (or a user with
# many feeds on it) takes at most this share of the pool.
PER_HOST = 8
# How long past its deadline a caller still waits for a download to wind up.
GRACE_SECONDS = 1.0

T = TypeVar("T")


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


class Deadline:
    """When one download must be over, and the sockets to shut down when it is."""

    def __init__(self, expires: float) -> None:
        self.expires = expires
        self.expired = False
        self.finished = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def remaining(self) -> float:
        return self.expires - time.monotonic()

    def opened(self, sock: socket.socket) -> None:
        """Watch a socket the download uses."""
        with self._lock:
            if self.expired:
                _shut(sock)
            elif not self.finished:
                self._sockets.append(sock)

    def abort(self) -> None:
        """End the download: a blocked read or write on its sockets returns at once."""
        with self._lock:
            if self.finished:
                return
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def finish(self) -> None:
        """The download is over; its (pooled, reusable) sockets are left alone from now."""
        with self._lock:
            self.finished = True
            self._sockets.clear()


def _shut(sock: socket.socket) -> None:
    try:
        # shutdown, not close: it wakes a thread blocked in recv on this socket, and
        # the socket's owner still closes it. The plain socket's method also for TLS.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by its owner: nothing is left to stop


class Watchdog:
    """One thread that aborts downloads whose deadline has passed."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: Deadline) -> None:
        with self._wake:
            heapq.heappush(self._heap, (deadline.expires, next(self._order), deadline))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="newsbot-watchdog", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while True:
                    while self._heap and self._heap[0][2].finished:
                        heapq.heappop(self._heap)
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        due = heapq.heappop(self._heap)[2]
                        break
                    self._wake.wait(self._heap[0][0] - now if self._heap else None)
            due.abort()


WATCHDOG = Watchdog()


class Downloader:
    """Fetches URLs politely and safely, each download within one deadline."""

    def __init__(
        self, guard: Guard | None = None, max_bytes: int = MAX_BYTES, timeout: float = 10.0
    ) -> None:
        # Without a guard (Reddit: a URL the operator chose), names are still resolved
        # on a bounded pool within the deadline; only the address checks are off.
        self.guard = guard
        self.max_bytes = max_bytes
        # The whole download, DNS to last byte, ends after this many seconds.
        self.total_timeout = timeout
        self.timeout = (min(CONNECT_TIMEOUT, timeout), timeout)
        self._local = threading.local()
        self.session = requests.Session()
        # Proxies from the environment would hide the real peer from the guard.
        self.session.trust_env = False
        self.session.headers["User-Agent"] = USER_AGENT
        resolving = guard if guard is not None else Guard(allow_private=True)
        self._resolving = None if guard is not None else resolving  # ours to close
        self.resolver = resolving.resolver
        adapter = guarded_adapter(resolving, self)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def close(self) -> None:
        self.session.close()
        if self._resolving is not None:
            self._resolving.close()

    # --- the deadline of the download running on this thread (guard.Deadlines) -------

    def remaining(self) -> float | None:
        deadline: Deadline | None = getattr(self._local, "deadline", None)
        return deadline.remaining() if deadline is not None else None

    def opened(self, sock: socket.socket) -> None:
        deadline: Deadline | None = getattr(self._local, "deadline", None)
        if deadline is not None:
            deadline.opened(sock)

    @contextlib.contextmanager
    def bounded(self, expires: float | None = None) -> Iterator[Deadline]:
        """Run what follows on this thread within one deadline (nested calls share it)."""
        current: Deadline | None = getattr(self._local, "deadline", None)
        if current is not None:
            yield current
            return
        deadline = Deadline(
            expires if expires is not None else time.monotonic() + self.total_timeout
        )
        self._local.deadline = deadline
        WATCHDOG.watch(deadline)
        try:
            yield deadline
        except (requests.RequestException, OSError):
            if deadline.expired:
                raise FetchError("timed out") from None
            raise
        finally:
            deadline.finish()
            self._local.deadline = None

    def _left(self, deadline: Deadline) -> tuple[float, float]:
        """requests' (connect, read) timeouts, shrunk to the time left."""
        left = deadline.remaining()
        if left <= 0 or deadline.expired:
            raise FetchError("timed out")
        return (min(self.timeout[0], left), min(self.timeout[1], left))

    # --- requests --------------------------------------------------------------------

    def get(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        validators: Validators | None = None,
        follow_redirects: bool = True,
        expires: float | None = None,
    ) -> Download:
        """GET a URL; raise FetchError on any failure, 304 counts as success."""
        request_headers = dict(headers or {})
        if validators is not None:
            request_headers.update(validators.headers())
        with self.bounded(expires) as deadline:
            for _ in range(MAX_REDIRECTS + 1):
                if self.guard is not None:
                    self.guard.check_url(url, deadline.remaining())
                response = self._request(url, request_headers, deadline)
                with response:
                    if response.is_redirect and follow_redirects:
                        url = urljoin(url, response.headers["Location"])
                        continue
                    if response.status_code == 304:
                        return Download(url, 304, b"", response.headers)
                    if response.status_code >= 300 and not response.is_redirect:
                        raise HTTPStatusError(response.status_code, response.headers)
                    return Download(
                        url, response.status_code, self._read(response, deadline), response.headers
                    )
            raise FetchError("too many redirects")

    def post(self, url: str, data: Mapping[str, str], auth: tuple[str, str]) -> Download:
        """POST a form (Reddit's OAuth token endpoint); FetchError on any failure."""
        with self.bounded() as deadline:
            try:
                response = self.session.post(
                    url, data=data, auth=auth, timeout=self._left(deadline)
                )
            except SourceError:
                raise
            except requests.RequestException as error:
                raise FetchError(_describe_exception(error, deadline)) from None
            with response:
                if response.status_code >= 300:
                    raise HTTPStatusError(response.status_code, response.headers)
                return Download(
                    url, response.status_code, self._read(response, deadline), response.headers
                )

    def _request(
        self, url: str, headers: Mapping[str, str], deadline: Deadline
    ) -> requests.Response:
        try:
            response = self.session.get(
                url,
                headers=headers,
                timeout=self._left(deadline),
                stream=True,
                allow_redirects=False,
            )
        except SourceError:
            raise  # the guard refused the peer of a connection, or its name
        except (requests.RequestException, OSError) as error:
            raise FetchError(_describe_exception(error, deadline)) from None
        if deadline.expired:
            # Cut off inside the headers: what was parsed of them cannot be trusted.
            response.close()
            raise FetchError("timed out")
        return response

    def _read(self, response: requests.Response, deadline: Deadline) -> bytes:
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            raise FetchError(f"too big (over {self.max_bytes // 1024 // 1024} MB)")
        body = bytearray()
        try:
            for chunk in response.iter_content(CHUNK):
                body += chunk
                if len(body) > self.max_bytes:
                    raise FetchError(f"too big (over {self.max_bytes // 1024 // 1024} MB)")
                if deadline.remaining() <= 0:
                    raise FetchError("timed out")
        except (requests.RequestException, OSError) as error:
            raise FetchError(_describe_exception(error, deadline)) from None
        if deadline.expired:
            # The watchdog cut the body short; what was read is not the document.
            raise FetchError("timed out")
        return bytes(body)


def _describe_exception(error: Exception, deadline: Deadline | None = None) -> str:
    if deadline is not None and deadline.expired:
        return "timed out"
    if isinstance(error, requests.Timeout | socket.timeout):
        return "timed out"
    if isinstance(error, requests.exceptions.SSLError):
        return "TLS certificate problem"
    if isinstance(error, requests.ConnectionError):
        return "could not connect"
    return "download failed"


class FetchPool:
    """Runs blocking downloads on threads of their own, at most PER_HOST per host."""

    def __init__(self, threads: int = FETCH_THREADS, per_host: int = PER_HOST) -> None:
        self.per_host = per_host
        # Daemon threads: a stopping replica does not wait for a download in flight.
        self._executor = DaemonPool(threads, "newsbot-fetch")
        # host -> (its slots, how many callers hold or wait for one); dropped at zero,
        # so a replica that has seen a million hosts keeps none of them.
        self._hosts: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}

    def close(self) -> None:
        """Stop taking downloads; those queued are dropped, those running end by deadline."""
        self._executor.shutdown()

    async def run(self, host: str, expires: float, call: Callable[[], T]) -> T:
        """Run ``call`` on the pool; FetchError("timed out") at ``expires`` (monotonic).

        The wait for a slot counts against the deadline too: a chat with many feeds on
        one slow host gets its reply at the deadline, with those feeds timed out.
        """
        loop = asyncio.get_running_loop()
        slots, users = self._hosts.setdefault(host, (asyncio.Semaphore(self.per_host), [0]))
        users[0] += 1
        started = False
        try:
            try:
                await asyncio.wait_for(slots.acquire(), max(0.0, expires - time.monotonic()))
            except TimeoutError:
                raise FetchError("timed out (too many downloads from this host)") from None
            try:
                future = self._executor.submit(call)
            except RuntimeError:
                slots.release()
                raise FetchError("the bot is stopping") from None
            started = True

            def done(_: concurrent.futures.Future[T]) -> None:
                # The slot is free only when the thread is: a download that outlives
                # its caller's wait still counts against its host.
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(self._release, host, slots)

            future.add_done_callback(done)
            waited = max(0.0, expires - time.monotonic()) + GRACE_SECONDS
            try:
                return await asyncio.wait_for(asyncio.wrap_future(future), waited)
            except TimeoutError:
                raise FetchError("timed out") from None
        finally:
            if not started:
                self._forget(host)

    def _release(self, host: str, slots: asyncio.Semaphore) -> None:
        slots.release()
        self._forget(host)

    def _forget(self, host: str) -> None:
        entry = self._hosts.get(host)
        if entry is None:
            return
        entry[1][0] -= 1
        if entry[1][0] <= 0:
            del self._hosts[host]
