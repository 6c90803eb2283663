"""A fake Reddit and feed server, served over loopback HTTP in a background thread.

It gives the bot's sources real HTTP to talk to, with the awkward cases of the real web:

- Reddit: ``/r/{name}/hot.json`` from ``tests/data/reddit_{name}.json`` (``?limit=``,
  legacy HTML escaping of strings unless ``?raw_json=1``, ``X-Ratelimit-*`` headers),
  ``privatesub`` (403), ``bannedsub`` and unknown names (404), ``brokensub`` (503),
  ``limitedsub`` (429), ``slowsub`` (answers after ``slow_seconds``), ``emptysub`` (no
  posts), and app-only OAuth at ``/api/v1/access_token`` when ``oauth_client`` is set;
- feeds: ``/feeds/{file}`` with ``ETag``/``Last-Modified`` and ``304`` on a conditional
  GET; ``/slow``, ``/huge`` (~20 MB, no Content-Length), ``/html``, ``/bomb`` (billion
  laughs), ``/xxe`` (external entity), ``/empty``, ``/status/{code}``,
  ``/redirect?to=URL``; any path can be replaced at run time with ``set_route``;
- hostile servers: ``/trickle`` sends its answer (status line and headers too) one byte
  every ``trickle_seconds`` and never ends (``trickled`` says how far each one got);
  ``/nested?depth=N`` is an RSS document of
  N nested elements (default 700,000: 4.9 MB, under a 5 MB cap), ``/wide?count=N``
  one of N empty elements side by side, both generated on the fly.

Every request is recorded in ``requests``; ``open_connections(prefix)`` tells how many
requests are being answered right now (a trickle until its client hangs up) and
``peak_connections(prefix)`` the most at once. Standard library only; runs standalone::

    python tests/fakes/news.py --host 0.0.0.0 --port 8082
"""

from __future__ import annotations

import argparse
import base64
import email.utils
import hashlib
import json
import re
import secrets
import select
import signal
import socket
import socketserver
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
HUGE_BYTES = 20 * 1024 * 1024
RATELIMIT_WINDOW = 600  # Reddit counts requests per 10-minute window

BOMB = b"""<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE rss [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<rss version="2.0">
  <channel>
    <title>Laughing Matters</title>
    <link>http://bomb.example/</link>
    <description>&lol9;</description>
    <item><title>&lol9;</title><link>http://bomb.example/1</link></item>
  </channel>
</rss>
"""

XXE = b"""<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE rss [<!ENTITY secret SYSTEM "file:///etc/hostname">]>
<rss version="2.0">
  <channel>
    <title>Leaky Feed</title>
    <link>http://xxe.example/</link>
    <description>external entity</description>
    <item><title>Secret: &secret;</title><link>http://xxe.example/1</link></item>
  </channel>
</rss>
"""

_HUGE_HEAD = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Endless Feed</title><link>http://huge.example/</link>
<description>A feed that never ends</description>
"""
_HUGE_ITEM = (
    b"<item><title>Endless item</title><link>http://huge.example/item</link>"
    b"<description>" + b"padding " * 120 + b"</description></item>\n"
)

_REDDIT_HTML_503 = (
    b"<!doctype html><html><head><title>Reddit - Service Unavailable</title>"
    b"</head><body><h1>Our CDN was unable to reach our servers</h1>"
    b"</body></html>"
)


@dataclass
class Route:
    """A canned answer set with FakeNews.set_route."""

    status: int
    body: bytes
    headers: dict[str, str]
    delay: float


class FakeNews:
    """Fake Reddit and feed server on loopback HTTP; start()/stop() or `with`."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, data_dir: Path | str = DATA_DIR
    ) -> None:
        self.host = host
        self.port = port
        self.data_dir = Path(data_dir)
        self.slow_seconds = 5.0
        # Reddit escapes &, < and > in every JSON string unless asked for raw_json=1.
        self.legacy_escaping = True
        self.ratelimit_limit = 1000
        # (client id, secret): when set, listings need a bearer token from access_token.
        self.oauth_client: tuple[str, str] | None = None
        self.token_ttl = 86400
        self.trickle_seconds = 0.2
        # Bytes each finished trickle got out before its client hung up, and how many
        # of them are the status line and headers.
        self.trickled: list[int] = []
        self.trickle_head_bytes = 0
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._lock = threading.Lock()
        # Requests being answered, by id -> path, and the most at once per path prefix.
        self._open: dict[int, str] = {}
        self._open_ids = iter(range(1 << 62))
        self._peaks: dict[str, int] = {}
        self._routes: dict[str, Route] = {}
        self._tokens: set[str] = set()
        self._window_start = time.monotonic()
        self._window_used = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    @property
    def url(self) -> str:
        """Base URL, e.g. to hand the bot as REDDIT_URL."""
        if self._server is None:
            raise RuntimeError("FakeNews is not started")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> FakeNews:
        """Bind and serve in a daemon thread."""
        self._server = _Server((self.host, self.port), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-news",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every connection."""
        if self._server is not None:
            self._server.shutdown()
            self._server.close_all()
            if self._thread is not None:
                self._thread.join(5)
            self._server = None
            self._thread = None

    def __enter__(self) -> FakeNews:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # configuration and introspection

    def set_route(
        self,
        path: str,
        status: int = 200,
        body: bytes | str = b"",
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        """Serve a canned answer at path (query ignored), replacing any built-in route."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        headers = dict(headers or {})
        if not any(name.lower() == "content-type" for name in headers):
            looks_xml = data.lstrip()[:5] in (b"<?xml", b"<rss ", b"<feed", b"<rdf:")
            headers["Content-Type"] = (
                "application/xml; charset=utf-8" if looks_xml else "text/plain; charset=utf-8"
            )
        with self._lock:
            self._routes[path] = Route(status, data, headers, delay)

    def remove_route(self, path: str) -> None:
        """Forget a route set with set_route."""
        with self._lock:
            self._routes.pop(path, None)

    def revoke_tokens(self) -> None:
        """Expire every issued OAuth token: listings answer 401 until a new one is fetched."""
        with self._lock:
            self._tokens.clear()

    def open_connections(self, path_prefix: str = "/") -> set[int]:
        """Ids of the requests with a path starting with path_prefix being answered now."""
        with self._lock:
            return {key for key, path in self._open.items() if path.startswith(path_prefix)}

    def peak_connections(self, path_prefix: str) -> int:
        """The most requests under path_prefix answered at once (watch it first)."""
        with self._lock:
            return self._peaks.get(path_prefix, 0)

    def watch_peak(self, path_prefix: str) -> None:
        """Start counting the peak of concurrent requests under path_prefix."""
        with self._lock:
            self._peaks.setdefault(path_prefix, 0)

    def count(self, path_prefix: str = "/") -> int:
        """Return how many requests had a path (query included) starting with path_prefix."""
        with self._lock:
            return sum(1 for _, path, _ in self.requests if path.startswith(path_prefix))

    # request handling (runs on the server's threads)

    def _record(self, method: str, path: str, headers: dict[str, str]) -> Route | None:
        with self._lock:
            self.requests.append((method, path, headers))
            return self._routes.get(path.partition("?")[0])

    def _ratelimit_headers(self) -> dict[str, str]:
        """Count a Reddit request and describe the window as Reddit does (remaining: float)."""
        with self._lock:
            now = time.monotonic()
            if now - self._window_start >= RATELIMIT_WINDOW:
                self._window_start, self._window_used = now, 0
            self._window_used += 1
            remaining = max(0, self.ratelimit_limit - self._window_used)
            reset = int(RATELIMIT_WINDOW - (now - self._window_start))
            return {
                "X-Ratelimit-Used": str(self._window_used),
                "X-Ratelimit-Remaining": f"{remaining:.1f}",
                "X-Ratelimit-Reset": str(reset),
            }

    def answer(self, handler: _Handler) -> None:
        """Route one request, counting it as open while it is answered."""
        with self._lock:
            key = next(self._open_ids)
            self._open[key] = handler.path
            for prefix in self._peaks:
                now = sum(1 for path in self._open.values() if path.startswith(prefix))
                self._peaks[prefix] = max(self._peaks[prefix], now)
        try:
            self._answer(handler)
        finally:
            with self._lock:
                del self._open[key]

    def _answer(self, handler: _Handler) -> None:
        path, _, query = handler.path.partition("?")
        headers = {name.lower(): value for name, value in handler.headers.items()}
        route = self._record(handler.command, handler.path, headers)
        args = dict(urllib.parse.parse_qsl(query))
        if route is not None:
            if route.delay:
                time.sleep(route.delay)
            handler.send(route.status, route.body, route.headers)
            return
        reddit = re.fullmatch(r"/r/([^/]+)/hot(?:\.json)?/?", path)
        if reddit:
            self._listing(handler, reddit.group(1), args, headers)
        elif path == "/api/v1/access_token":
            self._access_token(handler, headers)
        elif path.startswith("/feeds/"):
            self._feed(handler, path[len("/feeds/") :], headers)
        elif path == "/slow":
            time.sleep(self.slow_seconds)
            self._feed(handler, "rss20.xml", {})
        elif path == "/huge":
            self._huge(handler)
        elif path == "/trickle":
            self._trickle(handler)
        elif path == "/nested":
            depth = int(args["depth"]) if args.get("depth", "").isdigit() else 700_000
            handler.send(
                200,
                _RSS_HEAD + b"<b>" * depth + b"</b>" * depth + _RSS_TAIL,
                {"Content-Type": "application/rss+xml; charset=utf-8"},
            )
        elif path == "/wide":
            count = int(args["count"]) if args.get("count", "").isdigit() else 700_000
            handler.send(
                200,
                _RSS_HEAD + b"<b/>" * count + _RSS_TAIL,
                {"Content-Type": "application/rss+xml; charset=utf-8"},
            )
        elif path == "/html":
            self._feed(handler, "not_a_feed.html", {})
        elif path == "/bomb":
            handler.send(200, BOMB, {"Content-Type": "application/rss+xml; charset=utf-8"})
        elif path == "/xxe":
            handler.send(200, XXE, {"Content-Type": "application/rss+xml; charset=utf-8"})
        elif path == "/empty":
            handler.send(200, b"", {"Content-Type": "application/rss+xml; charset=utf-8"})
        elif re.fullmatch(r"/status/[1-5]\d\d", path):
            status = int(path.rsplit("/", 1)[1])
            handler.send(
                status,
                f"status {status}\n".encode(),
                {"Content-Type": "text/plain; charset=utf-8"},
            )
        elif path == "/redirect" and "to" in args:
            status = int(args["status"]) if args.get("status", "").isdigit() else 302
            handler.send(status, b"", {"Location": args["to"]})
        else:
            handler.send(404, b"not found\n", {"Content-Type": "text/plain; charset=utf-8"})

    def _listing(
        self, handler: _Handler, name: str, args: dict[str, str], headers: dict[str, str]
    ) -> None:
        """Serve a subreddit's hot listing, or the error Reddit gives for it."""
        reply = self._ratelimit_headers()
        reply["Content-Type"] = "application/json; charset=UTF-8"

        def error(status: int, message: str, reason: str | None = None) -> None:
            body: dict[str, Any] = {"message": message, "error": status}
            if reason:
                body = {"reason": reason, **body}
            handler.send(status, json.dumps(body).encode(), reply)

        if self.oauth_client is not None:
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer":
                return error(403, "Forbidden")
            with self._lock:
                valid = token in self._tokens
            if not valid:
                return error(401, "Unauthorized")
        lowered = name.lower()
        if lowered == "privatesub":
            return error(403, "Forbidden", "private")
        if lowered == "bannedsub":
            return error(404, "Not Found", "banned")
        if lowered == "brokensub":
            reply["Content-Type"] = "text/html; charset=utf-8"
            return handler.send(503, _REDDIT_HTML_503, reply)
        if lowered == "limitedsub":
            reply.update(
                {"Retry-After": "30", "X-Ratelimit-Remaining": "0.0", "X-Ratelimit-Reset": "30"}
            )
            return error(429, "Too Many Requests")
        if lowered == "slowsub":
            time.sleep(self.slow_seconds)
        source = self.data_dir / f"reddit_{lowered}.json"
        if not source.is_file():
            return error(404, "Not Found")
        listing = json.loads(source.read_text(encoding="utf-8"))
        limit = args.get("limit", "")
        if limit.isdigit():
            children = listing["data"]["children"][: max(1, min(int(limit), 100))]
            listing["data"]["children"] = children
            listing["data"]["dist"] = len(children)
            listing["data"]["after"] = children[-1]["data"]["name"] if children else None
        if self.legacy_escaping and args.get("raw_json") != "1":
            listing = _legacy_escape(listing)
        handler.send(200, json.dumps(listing).encode(), reply)

    def _access_token(self, handler: _Handler, headers: dict[str, str]) -> None:
        """Grant an app-only token for the configured client id and secret."""
        reply = {"Content-Type": "application/json; charset=UTF-8"}
        scheme, _, encoded = headers.get("authorization", "").partition(" ")
        try:
            client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            client_id = secret = ""
        body = handler.body.decode("utf-8", "replace")
        grant = dict(urllib.parse.parse_qsl(body)).get("grant_type")
        if (
            handler.command != "POST"
            or scheme.lower() != "basic"
            or self.oauth_client is None
            or (client_id, secret) != self.oauth_client
        ):
            handler.send(
                401, json.dumps({"message": "Unauthorized", "error": 401}).encode(), reply
            )
        elif grant != "client_credentials":
            # Reddit answers a bad grant with 200 and an error field.
            handler.send(200, json.dumps({"error": "unsupported_grant_type"}).encode(), reply)
        else:
            token = "fake-" + secrets.token_urlsafe(24)
            with self._lock:
                self._tokens.add(token)
            handler.send(
                200,
                json.dumps(
                    {
                        "access_token": token,
                        "token_type": "bearer",
                        "expires_in": self.token_ttl,
                        "scope": "*",
                    }
                ).encode(),
                reply,
            )

    def _feed(self, handler: _Handler, name: str, headers: dict[str, str]) -> None:
        """Serve a file from the data directory with validators and conditional GET."""
        source = self.data_dir / Path(name).name
        if not name or "/" in name or not source.is_file():
            handler.send(404, b"not found\n", {"Content-Type": "text/plain; charset=utf-8"})
            return
        data = source.read_bytes()
        modified = int(source.stat().st_mtime)
        validators = {
            "ETag": '"' + hashlib.sha1(data).hexdigest()[:20] + '"',
            "Last-Modified": email.utils.formatdate(modified, usegmt=True),
        }
        if _not_modified(headers, validators["ETag"], modified):
            handler.send(304, b"", validators)
            return
        validators["Content-Type"] = _content_type(source.name, data)
        handler.send(200, data, validators)

    def _huge(self, handler: _Handler) -> None:
        """Stream ~20 MB of valid-looking RSS, chunked, with no Content-Length."""
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml; charset=utf-8\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        ).encode("latin-1")
        block = _HUGE_ITEM * (65536 // len(_HUGE_ITEM))
        chunk = f"{len(block):x}\r\n".encode() + block + b"\r\n"
        try:
            handler.wfile.write(head + f"{len(_HUGE_HEAD):x}\r\n".encode() + _HUGE_HEAD + b"\r\n")
            for _ in range(HUGE_BYTES // len(block)):
                handler.wfile.write(chunk)
            tail = b"</channel></rss>\n"
            handler.wfile.write(f"{len(tail):x}\r\n".encode() + tail + b"\r\n0\r\n\r\n")
        except OSError:
            pass  # the client stopped reading, which is what a size cap should do
        handler.close_connection = True

    def _trickle(self, handler: _Handler) -> None:
        """Send a feed one byte every trickle_seconds until the client hangs up."""
        body = (DATA_DIR / "rss20.xml").read_bytes() * 1000
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1")
        self.trickle_head_bytes = len(head)
        handler.close_connection = True
        connection = handler.connection
        sent = 0
        try:
            for byte in head + body:
                # Wait by watching the socket: a client that hangs up (FIN or RST) ends
                # the trickle at once, so open_connections shows when it gave up.
                readable, _, _ = select.select([connection], [], [], self.trickle_seconds)
                if readable and not connection.recv(1024):
                    return
                connection.sendall(bytes([byte]))
                sent += 1
        except OSError:
            return  # the client went away, which is what a deadline should do
        finally:
            with self._lock:
                self.trickled.append(sent)


_RSS_HEAD = (
    b'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
    b"<title>Deep Feed</title><link>http://deep.example/</link>"
    b"<item><title>Deep item</title><link>http://deep.example/1</link></item>"
)
_RSS_TAIL = b"</channel></rss>\n"


def _legacy_escape(value: Any) -> Any:
    """Escape &, < and > in every string, as Reddit's JSON does without raw_json=1."""
    if isinstance(value, str):
        return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if isinstance(value, list):
        return [_legacy_escape(item) for item in value]
    if isinstance(value, dict):
        return {key: _legacy_escape(item) for key, item in value.items()}
    return value


def _not_modified(headers: dict[str, str], etag: str, modified: int) -> bool:
    """Apply RFC 9110: If-None-Match wins over If-Modified-Since."""
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
        return "*" in tags or etag in tags
    since = headers.get("if-modified-since")
    if since:
        try:
            return email.utils.parsedate_to_datetime(since).timestamp() >= modified
        except (TypeError, ValueError):
            return False  # an unparseable date is ignored, as servers do
    return False


def _content_type(name: str, data: bytes) -> str:
    """Return the content type a typical server sends for a data file."""
    if name.endswith(".json"):
        return "application/json; charset=utf-8"
    if name.endswith((".html", ".htm")):
        return "text/html; charset=utf-8"
    head = data[:1024]
    if b"<rdf:RDF" in head:
        return "application/rdf+xml; charset=utf-8"
    if b"<feed" in head:
        return "application/atom+xml; charset=utf-8"
    if b"<rss" in head:
        return "application/rss+xml; charset=utf-8"
    return "application/xml; charset=utf-8"


class _Server(ThreadingHTTPServer):
    """A threaded HTTP server that can close its idle keep-alive connections on stop."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], fake: FakeNews
    ) -> None:
        self.fake = fake
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn): slow and pointless.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def close_all(self) -> None:
        """Close the listening socket and shut every open connection down."""
        self.server_close()
        with self.connections_lock:
            for connection in self.connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # the peer closed it already; its handler thread will clean up


class _Handler(BaseHTTPRequestHandler):
    """Read the body, let FakeNews route the request, write the answer in one go."""

    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    body = b""

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep quiet: per-request logging would swamp benchmarks."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length > 0 else b""
        self.server.fake.answer(self)

    do_GET = do_POST = do_HEAD = _serve

    def send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        """Write status, headers and body with a single write."""
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        lines = [
            f"HTTP/1.1 {status} {phrase}",
            "Server: fake-news",
            f"Date: {email.utils.formatdate(usegmt=True)}",
        ]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if status != 304 and not 100 <= status < 200 and status != 204:
            lines.append(f"Content-Length: {len(body)}")
        else:
            body = b""
        if self.close_connection:
            lines.append("Connection: close")
        if self.command == "HEAD":
            body = b""
        try:
            self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        except OSError:
            self.close_connection = True  # the client went away; nothing left to tell it


def main(argv: list[str] | None = None) -> None:
    """Run the fake until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--data-dir", default=str(DATA_DIR))
    parser.add_argument("--slow-seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    fake = FakeNews(args.host, args.port, args.data_dir)
    fake.slow_seconds = args.slow_seconds
    with fake:
        print(f"fake news server listening on {fake.url}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
