"""The Bot API's HTTP client (newsbot.transport) against the fake Telegram and bare sockets.

The bot's calls through ``AiohttpRequest`` must come back as they do through
python-telegram-bot's own ``HTTPXRequest``: each test of the first half runs on both.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from telegram import Bot, InputFile
from telegram.error import BadRequest, NetworkError, RetryAfter, TimedOut
from telegram.request import BaseRequest, HTTPXRequest

from fakes.telegram_api import FakeTelegram
from harness import free_port
from newsbot.transport import AiohttpRequest, proxy_for, request_timeout

CHAT = 4242


@pytest.fixture(params=["aiohttp", "httpx"])
async def bot(request: pytest.FixtureRequest, telegram: FakeTelegram) -> AsyncIterator[Bot]:
    """A bot on the fake, through Newsbot's request or python-telegram-bot's own."""
    transport: BaseRequest = AiohttpRequest(4) if request.param == "aiohttp" else HTTPXRequest()
    async with Bot(
        telegram.token,
        base_url=f"{telegram.url}/bot",
        base_file_url=f"{telegram.url}/file/bot",
        request=transport,
    ) as started:
        yield started


async def test_a_message_is_sent_and_telegram_s_answer_parsed(bot, telegram) -> None:
    message = await bot.send_message(CHAT, "<b>hello</b> &amp; welcome", parse_mode="HTML")
    assert message.chat.id == CHAT
    assert [sent.displayed for sent in telegram.sent(CHAT)] == ["hello & welcome"]


async def test_a_file_goes_as_a_multipart_upload_with_its_name(bot, telegram) -> None:
    data = b"<opml version='2.0'><body/></opml>"
    message = await bot.send_document(
        CHAT, InputFile(data, filename="feeds.opml"), caption="your feeds"
    )
    assert message.document is not None and message.document.file_name == "feeds.opml"
    assert message.caption == "your feeds"
    assert telegram.file_bytes(message.document.file_id) == data


async def test_a_file_telegram_holds_is_downloaded(bot, telegram) -> None:
    stored = telegram.add_file(b"<opml/>", "in.opml")
    telegram_file = await bot.get_file(stored.file_id)
    assert bytes(await telegram_file.download_as_bytearray()) == b"<opml/>"


async def test_a_429_is_python_telegram_bots_retry_after(bot, telegram) -> None:
    telegram.fail_next("sendMessage", 429, retry_after=7)
    with pytest.raises(RetryAfter) as raised:
        await bot.send_message(CHAT, "hi")
    assert raised.value.retry_after.total_seconds() == 7


async def test_telegram_s_description_of_a_400_reaches_the_bot(bot, telegram) -> None:
    telegram.fail_next("sendMessage", 400, "Bad Request: chat not found")
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(CHAT, "hi")


# --- what only the transport decides: timeouts and failed connections -------------------


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """A server that takes connections and requests and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def take(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read(65536)

    server = await asyncio.start_server(take, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/bot123:abc/getMe"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_server_that_never_answers_times_out(silent_server) -> None:
    async with AiohttpRequest(read_timeout=0.2) as request:
        with pytest.raises(TimedOut):
            await request.post(silent_server)


async def test_a_call_s_own_read_timeout_wins_over_the_request_s(silent_server) -> None:
    async with AiohttpRequest(read_timeout=60) as request:
        with pytest.raises(TimedOut):
            await request.post(silent_server, read_timeout=0.2)


async def test_a_full_pool_times_out_instead_of_waiting_forever(silent_server) -> None:
    # aiohttp bounds the pool's wait and the connecting together: both are short here.
    limits = {"read_timeout": 30, "pool_timeout": 0.1, "connect_timeout": 0.1}
    async with AiohttpRequest(1, **limits) as request:
        first = asyncio.create_task(request.post(silent_server))
        await asyncio.sleep(0)  # the first takes the one connection
        with pytest.raises(TimedOut):
            await request.post(silent_server)
        assert not first.done()  # it still holds the connection: the second timed out
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)


async def test_a_refused_connection_is_a_network_error_naming_aiohttp() -> None:
    async with AiohttpRequest() as request:
        with pytest.raises(NetworkError, match=r"^aiohttp\.ClientConnectorError"):
            await request.post(f"http://127.0.0.1:{free_port()}/bot123:abc/getMe")


async def test_a_request_not_initialized_says_so() -> None:
    with pytest.raises(RuntimeError, match="not initialized"):
        await AiohttpRequest().do_request("http://127.0.0.1:9/", "POST")


async def test_shutdown_closes_the_session_and_initialize_opens_a_new_one(telegram) -> None:
    request = AiohttpRequest()
    await request.shutdown()  # before initialize: nothing to close
    url = f"{telegram.url}/bot{telegram.token}/getMe"
    for _ in range(2):
        await request.initialize()
        assert (await request.post(url))["is_bot"] is True
        await request.shutdown()
    with pytest.raises(NetworkError, match="not initialized"):
        await request.post(url)  # python-telegram-bot wraps the RuntimeError


async def test_the_environment_s_proxy_carries_the_requests(monkeypatch) -> None:
    lines: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lines.append(await reader.readline())
        while (await reader.readline()).strip():
            pass  # the headers
        body = b'{"ok": true, "result": true}'
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    monkeypatch.setenv("NO_PROXY", "bypassed.example")
    try:
        async with AiohttpRequest() as request:
            assert await request.post("http://api.example/bot1:a/close") is True
    finally:
        server.close()
        await server.wait_closed()
    # The absolute form of a request line: to a proxy, not to the host itself.
    assert lines == [b"POST http://api.example/bot1:a/close HTTP/1.1\r\n"]


@pytest.mark.parametrize(
    "url, proxies, expected",
    [
        ("https://api.telegram.org/bot1:a/getMe", {}, None),
        ("https://api.telegram.org/bot1:a/getMe", {"https": "http://p:3128"}, "http://p:3128"),
        ("https://api.telegram.org/bot1:a/getMe", {"http": "http://p:3128"}, None),
        ("http://bot-api:8081/bot1:a/getMe", {"http": "http://p:3128", "no": "bot-api"}, None),
        (
            "http://bot-api:8081/bot1:a/getMe",
            {"http": "http://p:3128", "no": "other"},
            "http://p:3128",
        ),
    ],
)
def test_the_proxy_of_a_url(url: str, proxies: dict[str, str], expected: str | None) -> None:
    assert proxy_for(url, proxies) == expected


@pytest.mark.parametrize(
    "given, expected",
    [
        # connect, read, write, pool -> total, connect (pool wait + connecting),
        # sock_connect, sock_read
        ((5.0, 5.0, 5.0, 1.0), (16.0, 6.0, 5.0, 5.0)),
        ((5.0, 8.0, 20.0, 10.0), (43.0, 15.0, 5.0, 8.0)),
        ((5.0, None, 5.0, 1.0), (None, 6.0, 5.0, None)),
        ((None, 5.0, 5.0, 1.0), (None, None, None, 5.0)),
        ((5.0, 5.0, None, None), (None, None, 5.0, 5.0)),
    ],
)
def test_ptb_s_four_timeouts_as_aiohttp_s(
    given: tuple[float | None, ...], expected: tuple[float | None, ...]
) -> None:
    timeout = request_timeout(*given)
    assert (timeout.total, timeout.connect, timeout.sock_connect, timeout.sock_read) == expected
    assert isinstance(timeout, aiohttp.ClientTimeout)
