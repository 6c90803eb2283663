"""Tests of the test doubles themselves: the fakes must behave like the services they stand for.

Driven with plain requests/urllib and with python-telegram-bot, never with the bot's code.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from telegram import Bot, LinkPreviewOptions, Update
from telegram.error import BadRequest, Forbidden, RetryAfter
from telegram.ext import ApplicationBuilder, CommandHandler, ContextTypes

from conftest import NonLoopbackConnection, RedisServer, is_loopback, redis_command
from fakes.news import FakeNews
from fakes.telegram_api import CONFLICT, FakeTelegram, FakeTelegramClient, parse_html


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """A requests session that is closed after the test (no ResourceWarning)."""
    with requests.Session() as session:
        yield session


def api(
    http: requests.Session, fake: FakeTelegram, method: str, **params: Any
) -> tuple[int, dict[str, Any]]:
    """Call a Bot API method the way python-telegram-bot does (form-encoded POST)."""
    response = http.post(f"{fake.url}/bot{fake.token}/{method}", data=params, timeout=10)
    return response.status_code, response.json()


# --- Telegram: protocol --------------------------------------------------------------


def test_rejects_wrong_token_and_unknown_method(telegram: FakeTelegram, http: Any) -> None:
    response = http.post(f"{telegram.url}/bot999:wrong/getMe", timeout=5)
    assert response.status_code == 401
    assert response.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
    status, body = api(http, telegram, "sendCarrierPigeon")
    assert (status, body["description"]) == (404, "Not Found")


def test_get_me_answers_json_get_and_form(telegram: FakeTelegram, http: Any) -> None:
    by_get = http.get(f"{telegram.url}/bot{telegram.token}/getMe", timeout=5).json()
    by_json = http.post(f"{telegram.url}/bot{telegram.token}/getme", json={}, timeout=5).json()
    assert by_get == by_json
    assert by_get["ok"] is True
    assert by_get["result"]["username"] == "newsbot_test_bot"
    assert telegram.count("getMe") == 2


def test_push_message_has_bot_command_entity(telegram: FakeTelegram, http: Any) -> None:
    telegram.push_message(-42, "/fetch@newsbot_test_bot now")
    telegram.push_message(7, "hello")
    _, body = api(http, telegram, "getUpdates")
    group, private = (update["message"] for update in body["result"])
    assert group["chat"]["type"] == "group" and "title" in group["chat"]
    assert group["entities"] == [{"type": "bot_command", "offset": 0, "length": 23}]
    assert private["chat"] == {
        "id": 7,
        "type": "private",
        "first_name": "Alice",
        "username": "alice",
    }
    assert "entities" not in private and private["from"]["id"] == 7


def test_offset_confirms_updates(telegram: FakeTelegram, http: Any) -> None:
    first = telegram.push_message(1, "one")
    telegram.push_message(1, "two")
    third = telegram.push_message(1, "three")
    assert first == 1
    _, body = api(http, telegram, "getUpdates", limit=2)
    assert [u["update_id"] for u in body["result"]] == [1, 2]
    _, body = api(http, telegram, "getUpdates", offset=first + 1)
    assert [u["message"]["text"] for u in body["result"]] == ["two", "three"]
    assert telegram.pending_updates == 2  # offset 2 confirmed only update 1
    _, body = api(http, telegram, "getUpdates", offset=third + 1)
    assert body["result"] == []
    assert telegram.pending_updates == 0 and telegram.confirmed_offset == third + 1


def test_long_poll_wakes_up_on_new_update(telegram: FakeTelegram, http: Any) -> None:
    timer = threading.Timer(0.3, telegram.push_message, args=(5, "late news"))
    timer.start()
    started = time.monotonic()
    _, body = api(http, telegram, "getUpdates", timeout=5)
    elapsed = time.monotonic() - started
    timer.join()
    assert [u["message"]["text"] for u in body["result"]] == ["late news"]
    assert 0.25 < elapsed < 2


def test_long_poll_times_out_empty(telegram: FakeTelegram, http: Any) -> None:
    started = time.monotonic()
    _, body = api(http, telegram, "getUpdates", timeout=0.3)
    assert body == {"ok": True, "result": []}
    assert time.monotonic() - started >= 0.3


def test_concurrent_get_updates_gets_409(telegram: FakeTelegram) -> None:
    def poll(timeout: float) -> tuple[int, dict[str, Any]]:
        with requests.Session() as session:
            return api(session, telegram, "getUpdates", timeout=timeout)

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(poll, 5)
        telegram.wait_for_calls("getUpdates", 1)
        time.sleep(0.1)  # let the first poll start waiting
        second = pool.submit(poll, 0.5)
        status, body = first.result(timeout=5)
        assert (status, body["error_code"], body["description"]) == (409, 409, CONFLICT)
        assert second.result(timeout=5) == (200, {"ok": True, "result": []})
    assert telegram.conflicts == 1


# --- Telegram: sendMessage ------------------------------------------------------------


@pytest.mark.parametrize(
    "markup, shown",
    [
        ("<b>bold</b> and <i>it</i>", "bold and it"),
        ('<a href="https://e.org/?a=1&amp;b=2">link</a>', "link"),
        ("Fish &amp; Chips &lt;3 &quot;q&quot; &#38; &#x26;", 'Fish & Chips <3 "q" & &'),
        ('<span class="tg-spoiler">s</span><tg-spoiler>t</tg-spoiler>', "st"),
        ('<pre><code class="language-python">x = 1</code></pre>', "x = 1"),
        ("<blockquote expandable>q</blockquote> a > b", "q a > b"),
        ("<B>upper</B>", "upper"),
    ],
)
def test_html_accepted(markup: str, shown: str) -> None:
    assert parse_html(markup) == shown


@pytest.mark.parametrize(
    "markup, reason",
    [
        ("<script>alert(1)</script>", 'Unsupported start tag "script" at byte offset 0'),
        ("Fish & Chips", 'unsupported entity "&" at byte offset 5'),
        ("&nbsp;", "unsupported entity"),
        ("a < b", 'Unsupported start tag "" at byte offset 2'),
        ("<b>bold", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ('<span class="red">x</span>', 'Tag "span" must have class "tg-spoiler"'),
        ("é<p>", 'Unsupported start tag "p" at byte offset 2'),
    ],
)
def test_html_rejected(telegram: FakeTelegram, http: Any, markup: str, reason: str) -> None:
    status, body = api(http, telegram, "sendMessage", chat_id=1, text=markup, parse_mode="HTML")
    assert status == 400
    assert body["description"].startswith("Bad Request: can't parse entities: ")
    assert reason in body["description"]
    assert telegram.sent() == []


def test_send_message_records_what_the_user_sees(telegram: FakeTelegram, http: Any) -> None:
    status, body = api(
        http,
        telegram,
        "sendMessage",
        chat_id=77,
        text="<b>Top</b> &amp; more",
        parse_mode="HTML",
        link_preview_options='{"is_disabled": true}',
    )
    assert status == 200
    result = body["result"]
    assert result["text"] == "Top & more" and result["chat"]["id"] == 77
    assert result["from"]["is_bot"] is True
    [sent] = telegram.sent(77)
    assert (sent.message_id, sent.text, sent.displayed) == (
        result["message_id"],
        "<b>Top</b> &amp; more",
        "Top & more",
    )
    assert sent.parse_mode == "HTML" and sent.previews_disabled is True


def test_message_length_limit(telegram: FakeTelegram, http: Any) -> None:
    # The limit counts displayed characters, so markup and entities do not count.
    fits = "<b>" + "&amp;" * 4096 + "</b>"
    assert api(http, telegram, "sendMessage", chat_id=1, text=fits, parse_mode="HTML")[0] == 200
    status, body = api(http, telegram, "sendMessage", chat_id=1, text="x" * 4097)
    assert (status, body["description"]) == (400, "Bad Request: message is too long")
    status, body = api(http, telegram, "sendMessage", chat_id=1, text="   ")
    assert (status, body["description"]) == (400, "Bad Request: message text is empty")


def test_fail_next_429_with_retry_after(telegram: FakeTelegram, http: Any) -> None:
    telegram.fail_next("sendMessage", 429, retry_after=3)
    status, body = api(http, telegram, "sendMessage", chat_id=1, text="hi")
    assert status == 429
    assert body == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 3",
        "parameters": {"retry_after": 3},
    }
    assert api(http, telegram, "sendMessage", chat_id=1, text="hi")[0] == 200
    assert telegram.too_many == 1 and telegram.count("sendMessage") == 2


def test_block_and_migrate(telegram: FakeTelegram, http: Any) -> None:
    telegram.block_chat(5)
    telegram.migrate_chat(-5, -1005)
    status, body = api(http, telegram, "sendMessage", chat_id=5, text="hi")
    assert (status, body["description"]) == (403, "Forbidden: bot was blocked by the user")
    status, body = api(http, telegram, "sendMessage", chat_id=-5, text="hi")
    assert status == 400 and body["parameters"] == {"migrate_to_chat_id": -1005}
    assert telegram.sent() == []


def test_drop_next_closes_without_answer(telegram: FakeTelegram, http: Any) -> None:
    telegram.drop_next("sendMessage")
    with pytest.raises(requests.ConnectionError):
        api(http, telegram, "sendMessage", chat_id=1, text="lost")
    assert api(http, telegram, "sendMessage", chat_id=1, text="kept")[0] == 200


def test_held_posts_wait_and_one_whose_client_hung_up_is_never_taken(
    telegram: FakeTelegram, http: Any
) -> None:
    path = f"/bot{telegram.token}/sendMessage"
    body = b'{"chat_id": 1, "text": "from a killed bot"}'
    request = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with ThreadPoolExecutor(1) as pool, telegram.hold_sends():
        kept = pool.submit(api, http, telegram, "sendMessage", chat_id=2, text="kept")
        with socket.create_connection(("127.0.0.1", int(telegram.url.rsplit(":", 1)[1]))) as dead:
            dead.sendall(request)
        deadline = time.monotonic() + 10
        while telegram.hung_up == 0:
            assert time.monotonic() < deadline, "the hung-up post was never given up"
            time.sleep(0.01)
        assert telegram.sent() == [] and not kept.done()  # held: not taken yet
    assert kept.result(10)[0] == 200
    assert [m.text for m in telegram.sent()] == ["kept"]


def test_flood_limits(http: Any) -> None:
    now = [1000.0]
    with FakeTelegram(enforce_limits=True, clock=lambda: now[0]) as fake:
        # One chat: a burst of three, then one a second.
        codes = [api(http, fake, "sendMessage", chat_id=1, text="a")[0] for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        now[0] += 1.0
        codes = [api(http, fake, "sendMessage", chat_id=1, text="b")[0] for _ in range(2)]
        assert codes == [200, 429]
        # 30 messages in any one second overall: distinct chats, still refused past 30.
        now[0] += 1.0
        codes = [api(http, fake, "sendMessage", chat_id=100 + i, text="x")[0] for i in range(35)]
        assert codes.count(200) == 30 and codes[30:] == [429] * 5
        now[0] += 0.999  # a sliding window: no new second starts early
        status, body = api(http, fake, "sendMessage", chat_id=200, text="x")
        assert status == 429 and body["parameters"]["retry_after"] >= 1
        now[0] += 0.002
        assert api(http, fake, "sendMessage", chat_id=200, text="x")[0] == 200
        assert fake.too_many == 8


def test_a_flooded_chat_is_answered_429_alone(http: Any) -> None:
    now = [1000.0]
    with FakeTelegram(clock=lambda: now[0]) as fake:
        fake.flood_chat(5, 60)
        now[0] += 0.5
        status, body = api(http, fake, "sendMessage", chat_id=5, text="x")
        assert (status, body["parameters"]) == (429, {"retry_after": 60})
        assert api(http, fake, "sendMessage", chat_id=6, text="x")[0] == 200
        now[0] += 60
        assert api(http, fake, "sendMessage", chat_id=5, text="x")[0] == 200


def test_failures_for_one_chat_after_some_successes(telegram: FakeTelegram, http: Any) -> None:
    telegram.fail_next("sendMessage", 500, times=2, chat_id=5, after=1)
    codes = [
        api(http, telegram, "sendMessage", chat_id=chat, text="x")[0]
        for chat in (6, 5, 6, 5, 5, 5)
    ]
    assert codes == [200, 200, 200, 500, 500, 200]


def test_a_deleted_chat_is_not_found(telegram: FakeTelegram, http: Any) -> None:
    telegram.delete_chat(5)
    status, body = api(http, telegram, "sendMessage", chat_id=5, text="x")
    assert (status, body["description"]) == (400, "Bad Request: chat not found")


async def test_my_chat_member_updates_parse_as_telegrams(telegram: FakeTelegram) -> None:
    from telegram import ChatMemberBanned, ChatMemberLeft, Update

    telegram.push_my_chat_member(42, "kicked")
    telegram.push_my_chat_member(-77, "left", chat_type="group")
    async with Bot(telegram.token, base_url=f"{telegram.url}/bot") as bot:
        first, second = await bot.get_updates(timeout=0)
    assert isinstance(first, Update) and first.my_chat_member is not None
    assert first.my_chat_member.chat.type == "private"
    assert isinstance(first.my_chat_member.new_chat_member, ChatMemberBanned)
    assert first.my_chat_member.new_chat_member.user.username == "newsbot_test_bot"
    assert second.my_chat_member is not None
    assert isinstance(second.my_chat_member.new_chat_member, ChatMemberLeft)
    assert second.effective_chat is not None and second.effective_chat.id == -77


def test_group_limit_20_per_minute(http: Any) -> None:
    now = [1000.0]
    with FakeTelegram(enforce_limits=True, clock=lambda: now[0]) as fake:
        results = []
        for i in range(21):
            results.append(api(http, fake, "sendMessage", chat_id=-9, text=str(i))[0])
            now[0] += 1.0  # one message a second keeps the per-chat limit
        assert results == [200] * 20 + [429]
        now[0] += 40.0  # the first message leaves the one-minute window
        assert api(http, fake, "sendMessage", chat_id=-9, text="again")[0] == 200


async def test_python_telegram_bot_against_fake(telegram: FakeTelegram) -> None:
    telegram.push_message(42, "/start")
    async with Bot(telegram.token, base_url=f"{telegram.url}/bot") as bot:
        me = await bot.get_me()
        assert me.username == "newsbot_test_bot"
        updates = await bot.get_updates(offset=0, timeout=1)
        assert updates[0].message is not None
        assert updates[0].message.text == "/start"
        assert updates[0].message.entities[0].type == "bot_command"
        message = await bot.send_message(
            42,
            "<b>hi</b>",
            parse_mode="HTML",
            link_preview_options=LinkPreviewOptions(is_disabled=True),
        )
        assert message.text == "hi" and message.chat.id == 42
        assert await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0) == ()
    [sent] = telegram.sent(42)
    assert sent.displayed == "hi" and sent.previews_disabled
    assert telegram.confirmed_offset == 2


async def test_python_telegram_bot_error_mapping(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PTB 22 warns (PTBDeprecationWarning) while *constructing* RetryAfter unless
    # PTB_TIMEDELTA opts in to timedeltas; with filterwarnings=error that warning would
    # replace the RetryAfter exception itself.
    monkeypatch.setenv("PTB_TIMEDELTA", "1")
    telegram.fail_next("sendMessage", 429, retry_after=7)
    telegram.block_chat(9)
    async with Bot(telegram.token, base_url=f"{telegram.url}/bot") as bot:
        with pytest.raises(RetryAfter) as retry:
            await bot.send_message(1, "x")
        assert retry.value.retry_after == timedelta(seconds=7)
        with pytest.raises(Forbidden):
            await bot.send_message(9, "x")
        with pytest.raises(BadRequest, match="parse entities"):
            await bot.send_message(1, "<script>", parse_mode="HTML")


def test_control_api_client(telegram: FakeTelegram, http: Any) -> None:
    client = FakeTelegramClient(telegram.url)
    update_id = client.push_message(-100123, "/help", chat_type="supergroup")
    _, body = api(http, telegram, "getUpdates")
    assert body["result"][0]["update_id"] == update_id
    assert body["result"][0]["message"]["chat"]["type"] == "supergroup"
    client.fail_next("sendMessage", 500)
    assert api(http, telegram, "sendMessage", chat_id=3, text="x")[0] == 500
    api(http, telegram, "sendMessage", chat_id=3, text="y")
    [sent] = client.wait_for_sent(1, chat_id=3, timeout=2)
    assert sent.displayed == "y"
    stats = client.stats()
    assert stats["calls"] == {"getUpdates": 1, "sendMessage": 2}
    assert stats["pending_updates"] == 1 and stats["sent"] == 1
    with pytest.raises(AssertionError, match="got 1"):
        client.wait_for_sent(2, timeout=0.2)


def test_wait_for_sent_reports_what_was_sent(telegram: FakeTelegram, http: Any) -> None:
    api(http, telegram, "sendMessage", chat_id=1, text="only this")
    with pytest.raises(AssertionError, match="'only this'"):
        telegram.wait_for_sent(2, timeout=0.2)


def test_runs_standalone() -> None:
    script = Path(__file__).parent / "fakes" / "telegram_api.py"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-I", str(script), "--port", str(port), "--token", "1:t"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line
        client = FakeTelegramClient(f"http://127.0.0.1:{port}")
        client.push_message(1, "hi")
        assert client.stats()["pending_updates"] == 1
    finally:
        process.terminate()
        assert process.wait(10) == 0
        if process.stdout is not None:
            process.stdout.close()


# --- news server ----------------------------------------------------------------------


def test_reddit_listing(news: FakeNews, http: Any) -> None:
    response = http.get(f"{news.url}/r/python/hot.json?limit=4", timeout=5)
    assert response.status_code == 200
    assert {"X-Ratelimit-Used", "X-Ratelimit-Remaining", "X-Ratelimit-Reset"} <= set(
        response.headers
    )
    posts = [child["data"] for child in response.json()["data"]["children"]]
    assert len(posts) == 4 and posts[0]["stickied"] is True
    # Like Reddit, strings are HTML-escaped unless raw_json=1 is asked for.
    assert "&lt;script&gt;" in posts[2]["title"]
    raw = http.get(f"{news.url}/r/python/hot.json?raw_json=1", timeout=5).json()
    titles = [child["data"]["title"] for child in raw["data"]["children"]]
    assert len(titles) == 10 and any("<script>" in title for title in titles)
    assert news.count("/r/python/") == 2


@pytest.mark.parametrize(
    "name, status",
    [("doesnotexist", 404), ("privatesub", 403), ("brokensub", 503), ("limitedsub", 429)],
)
def test_reddit_errors(news: FakeNews, http: Any, name: str, status: int) -> None:
    response = http.get(f"{news.url}/r/{name}/hot.json", timeout=5)
    assert response.status_code == status
    assert "X-Ratelimit-Remaining" in response.headers
    if status == 429:
        assert response.headers["Retry-After"] == "30"


def test_reddit_oauth(news: FakeNews, http: Any) -> None:
    news.oauth_client = ("id", "secret")
    listing = f"{news.url}/r/golang/hot.json"
    assert http.get(listing, timeout=5).status_code == 403
    denied = http.post(
        f"{news.url}/api/v1/access_token",
        auth=("id", "wrong"),
        data={"grant_type": "client_credentials"},
        timeout=5,
    )
    assert denied.status_code == 401
    granted = http.post(
        f"{news.url}/api/v1/access_token",
        auth=("id", "secret"),
        data={"grant_type": "client_credentials"},
        timeout=5,
    ).json()
    assert granted["token_type"] == "bearer" and granted["expires_in"] == 86400
    headers = {"Authorization": f"bearer {granted['access_token']}"}
    assert http.get(listing, headers=headers, timeout=5).status_code == 200
    news.revoke_tokens()
    assert http.get(listing, headers=headers, timeout=5).status_code == 401


def test_conditional_get(news: FakeNews, http: Any) -> None:
    url = f"{news.url}/feeds/rss20.xml"
    first = http.get(url, timeout=5)
    assert first.status_code == 200
    assert first.headers["Content-Type"].startswith("application/rss+xml")
    assert b"Harbour Gazette" in first.content
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    again = http.get(url, headers={"If-None-Match": etag}, timeout=5)
    assert again.status_code == 304 and again.content == b""
    since = http.get(url, headers={"If-Modified-Since": modified}, timeout=5)
    assert since.status_code == 304
    changed = http.get(url, headers={"If-None-Match": '"other"'}, timeout=5)
    assert changed.status_code == 200
    assert news.count("/feeds/") == 4 and news.count("/feeds/atom") == 0
    assert news.requests[1][2]["if-none-match"] == etag


def test_redirect_and_status_routes(news: FakeNews, http: Any) -> None:
    target = f"{news.url}/feeds/atom.xml"
    hop = http.get(f"{news.url}/redirect", params={"to": target}, allow_redirects=False, timeout=5)
    assert hop.status_code == 302 and hop.headers["Location"] == target
    followed = http.get(f"{news.url}/redirect", params={"to": target}, timeout=5)
    assert followed.status_code == 200 and b"Railway Modeller" in followed.content
    assert http.get(f"{news.url}/status/410", timeout=5).status_code == 410
    assert http.get(f"{news.url}/empty", timeout=5).content == b""


def test_set_route_and_slow(news: FakeNews, http: Any) -> None:
    news.set_route("/custom.xml", body="<rss version='2.0'/>", delay=0.2)
    started = time.monotonic()
    response = http.get(f"{news.url}/custom.xml?x=1", timeout=5)
    assert response.status_code == 200 and response.text == "<rss version='2.0'/>"
    assert time.monotonic() - started >= 0.2
    news.slow_seconds = 0.5
    with pytest.raises(requests.Timeout):
        http.get(f"{news.url}/slow", timeout=0.1)


def test_huge_streams_without_length(news: FakeNews, http: Any) -> None:
    with http.get(f"{news.url}/huge", stream=True, timeout=5) as response:
        assert "Content-Length" not in response.headers
        received = 0
        for chunk in response.iter_content(65536):
            received += len(chunk)
            if received > 2_000_000:
                break  # what a size cap does
    assert received > 2_000_000


def test_other_loopback_address() -> None:
    with FakeNews(host="127.0.0.2") as other, requests.Session() as http:
        assert other.url.startswith("http://127.0.0.2:")
        assert (
            http.get(f"{other.url}/html", timeout=5)
            .headers["Content-Type"]
            .startswith("text/html")
        )


# --- conftest ---------------------------------------------------------------------------


def test_redis_fixture(redis_server: RedisServer, redis_url: str) -> None:
    assert redis_url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert redis_command(redis_server.port, "SET", "k", "v") == b"+OK"
    assert redis_command(redis_server.port, "DBSIZE") == b":1"


def test_redis_url_starts_empty(redis_server: RedisServer, redis_url: str) -> None:
    assert redis_command(redis_server.port, "DBSIZE") == b":0"


@pytest.mark.parametrize(
    "family, address, allowed",
    [
        (socket.AF_INET, ("127.0.0.1", 80), True),
        (socket.AF_INET, ("127.1.2.3", 80), True),
        (socket.AF_INET, ("localhost", 80), True),
        (socket.AF_INET6, ("::1", 80, 0, 0), True),
        (socket.AF_INET6, ("::ffff:127.0.0.1", 80, 0, 0), True),
        (socket.AF_UNIX, "/tmp/x.sock", True),
        (socket.AF_INET, ("10.0.0.1", 80), False),
        (socket.AF_INET, ("192.0.2.1", 443), False),
        (socket.AF_INET, ("www.reddit.com", 443), False),
        (socket.AF_INET6, ("2001:db8::1", 443, 0, 0), False),
    ],
)
def test_loopback_classifier(family: int, address: Any, allowed: bool) -> None:
    assert is_loopback(family, address) is allowed


def test_guard_refuses_before_connecting(loopback_only: list[str]) -> None:
    # A closed socket: even a broken guard could not send a packet anywhere.
    sock = socket.socket()
    sock.close()
    with pytest.raises(NonLoopbackConnection, match="192.0.2.1"):
        sock.connect(("192.0.2.1", 9))
    assert loopback_only == ["test tried to connect to non-loopback address ('192.0.2.1', 9)"]
    loopback_only.clear()  # this test expected the refusal; don't fail it


async def test_python_telegram_bot_application_polls_fake(telegram: FakeTelegram) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_html("Hello <b>there</b> &amp; welcome")

    application = (
        ApplicationBuilder().token(telegram.token).base_url(f"{telegram.url}/bot").build()
    )
    application.add_handler(CommandHandler("start", start))
    telegram.push_message(-77, "/start@newsbot_test_bot")
    async with application:
        await application.start()
        assert application.updater is not None
        await application.updater.start_polling(poll_interval=0, timeout=1)
        [sent] = await asyncio.to_thread(telegram.wait_for_sent, 1, -77, 10)
        await application.updater.stop()
        await application.stop()
    assert sent.displayed == "Hello there & welcome" and sent.reply_to == 1
    assert telegram.pending_updates == 0 and telegram.conflicts == 0


# --- Telegram: members, topics, buttons, menus -----------------------------------------


def test_callback_queries_are_answered_once(telegram: FakeTelegram, http: Any) -> None:
    keyboard = '{"inline_keyboard": [[{"text": "Go", "callback_data": "go"}]]}'
    status, body = api(
        http, telegram, "sendMessage", chat_id=42, text="menu", reply_markup=keyboard
    )
    assert status == 200 and body["result"]["reply_markup"]["inline_keyboard"][0][0]["text"]
    query = telegram.press(42, body["result"]["message_id"], "Go")
    update = api(http, telegram, "getUpdates")[1]["result"][-1]["callback_query"]
    assert (update["id"], update["data"], update["message"]["text"]) == (query, "go", "menu")
    assert api(http, telegram, "answerCallbackQuery", callback_query_id=query)[0] == 200
    status, body = api(http, telegram, "answerCallbackQuery", callback_query_id=query)
    assert (status, body["description"]) == (
        400,
        "Bad Request: query is too old and response timeout expired or query ID is invalid",
    )
    status, body = api(http, telegram, "answerCallbackQuery", callback_query_id="999")
    assert status == 400


def test_edits_and_button_data_as_telegram_checks_them(telegram: FakeTelegram, http: Any) -> None:
    too_long = '{"inline_keyboard": [[{"text": "x", "callback_data": "' + "d" * 65 + '"}]]}'
    status, body = api(http, telegram, "sendMessage", chat_id=42, text="a", reply_markup=too_long)
    assert (status, body["description"]) == (400, "Bad Request: BUTTON_DATA_INVALID")
    keyboard = '{"inline_keyboard": [[{"text": "x", "callback_data": "' + "d" * 64 + '"}]]}'
    _, body = api(http, telegram, "sendMessage", chat_id=42, text="a", reply_markup=keyboard)
    message_id = body["result"]["message_id"]
    status, body = api(
        http,
        telegram,
        "editMessageText",
        chat_id=42,
        message_id=message_id,
        text="a",
        reply_markup=keyboard,
    )
    assert status == 400 and body["description"].startswith(
        "Bad Request: message is not modified: specified new message content"
    )
    assert (
        api(http, telegram, "editMessageText", chat_id=42, message_id=message_id, text="b")[0]
        == 200
    )
    assert telegram.message(42, message_id).reply_markup is None  # no markup: removed
    assert (
        api(
            http,
            telegram,
            "editMessageReplyMarkup",
            chat_id=42,
            message_id=message_id,
            reply_markup=keyboard,
        )[0]
        == 200
    )
    assert telegram.buttons(42, message_id) == ["x"]
    status, body = api(http, telegram, "editMessageText", chat_id=42, message_id=999, text="c")
    assert (status, body["description"]) == (400, "Bad Request: message to edit not found")


def test_forum_topics_and_channel_rights(telegram: FakeTelegram, http: Any) -> None:
    telegram.add_topic(-1005, 7)
    assert (
        api(http, telegram, "sendMessage", chat_id=-1005, text="a", message_thread_id=7)[0] == 200
    )
    telegram.delete_topic(-1005, 7)
    status, body = api(http, telegram, "sendMessage", chat_id=-1005, text="a", message_thread_id=7)
    assert (status, body["description"]) == (400, "Bad Request: message thread not found")
    telegram.make_chat(-1006, "channel", username="news")
    status, body = api(http, telegram, "getChatMember", chat_id="@news", user_id=5)
    assert (status, body["description"]) == (
        403,
        "Forbidden: bot is not a member of the channel chat",
    )
    bot_id = telegram.bot_user["id"]
    telegram.set_member(-1006, bot_id, "administrator", can_post_messages=False)
    status, body = api(http, telegram, "sendMessage", chat_id=-1006, text="a")
    assert (status, body["description"]) == (
        400,
        "Bad Request: need administrator rights in the channel chat",
    )
    telegram.set_member(-1006, 5, "creator")
    _, body = api(http, telegram, "getChatMember", chat_id=-1006, user_id=5)
    assert body["result"]["status"] == "creator"
    _, body = api(http, telegram, "getChatAdministrators", chat_id=-1006)
    assert {m["user"]["id"] for m in body["result"]} == {5, bot_id}


def test_commands_are_kept_per_scope(telegram: FakeTelegram, http: Any) -> None:
    admins = '{"type": "all_chat_administrators"}'
    api(http, telegram, "setMyCommands", commands='[{"command": "a", "description": "A"}]')
    api(
        http,
        telegram,
        "setMyCommands",
        scope=admins,
        commands='[{"command": "b", "description": "B"}]',
    )
    assert api(http, telegram, "getMyCommands")[1]["result"] == [
        {"command": "a", "description": "A"}
    ]
    assert [
        c["command"] for c in api(http, telegram, "getMyCommands", scope=admins)[1]["result"]
    ] == ["b"]
    status, _ = api(
        http, telegram, "setMyCommands", commands='[{"command": "Bad Name", "description": "x"}]'
    )
    assert status == 400
