"""/export and OPML import end to end: the real bot, a real Redis, the fake Telegram and news.

Files travel as Telegram carries them: the bot uploads with ``sendDocument``; a user's
document arrives as a ``document`` message, and the bot fetches it with ``getFile`` and
the file download path. Hostile files must be refused without the bot fetching anything
(the fake news server records every request).
"""

from __future__ import annotations

import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from telegram import Bot
from telegram.error import BadRequest

from harness import bot_env, running_bot, wait_sent
from newsbot.config import Settings
from newsbot.store import Store, connect
from test_bot import CHAT, GROUP, say

DATA = Path(__file__).parent / "data"
OTHER = 5252


async def sources_of(env: dict[str, str], chat_id: int) -> list[tuple[str, str]]:
    store = Store(connect(Settings.from_env(env)))
    try:
        return [(source.kind, source.key) for source in await store.get_sources(chat_id)]
    finally:
        await store.close()


async def send_file(telegram, data: bytes | None = None, chat_id: int = CHAT, **document) -> str:
    """Send the bot a document as the user; return the displayed reply."""
    before = len(telegram.sent(chat_id))
    telegram.push_document(chat_id, data, **document)
    sent = await wait_sent(telegram, before + 1, chat_id)
    (reply,) = [message.displayed for message in sent[before:]]
    return reply


async def test_export_then_import_into_another_chat_gives_the_same_sources(
    telegram, news, redis_url
):
    env = bot_env(telegram, redis_url, news)
    feed = f"{news.url}/feeds/rss20.xml?x=1&y=2"
    async with running_bot(env):
        await say(telegram, f"/source python {feed} r/golang")
        (caption,) = await say(telegram, "/export")
        assert caption.startswith("Your 3 sources.")
        document = telegram.sent(CHAT)[-1].document
        assert document["file_name"] == "newsbot-sources.opml"
        exported = telegram.file_bytes(document["file_id"])
        # The user forwards the file to another chat: Telegram passes the same file on.
        reply = await send_file(telegram, chat_id=OTHER, file_id=document["file_id"])
        assert reply.startswith("Imported 3 sources:\n• r/python\n• " + feed + "\n• r/golang")
        assert await sources_of(env, OTHER) == await sources_of(env, CHAT)
        # Again: everything is there already, nothing is doubled.
        reply = await send_file(telegram, chat_id=OTHER, file_id=document["file_id"])
        assert reply == "Nothing imported: your sources are unchanged.\n3 already in your list."
        assert len(await sources_of(env, OTHER)) == 3
    root = ET.fromstring(exported)
    assert root.get("version") == "2.0"
    assert [o.get("xmlUrl") for o in root.iter("outline")] == [
        "https://www.reddit.com/r/python/.rss",
        feed,
        "https://www.reddit.com/r/golang/.rss",
    ]
    assert news.count("/feeds/") == 0  # neither export nor import fetches a feed


async def test_a_feedly_style_export_is_imported_up_to_the_limit(telegram, news, redis_url):
    env = bot_env(telegram, redis_url, news, NEWSBOT_MAX_SOURCES="6")
    data = (DATA / "feedly_export.opml").read_bytes()
    async with running_bot(env):
        await say(telegram, "/source golang")
        reply = await send_file(telegram, data, file_name="feedly.opml", mime_type="text/x-opml")
    assert reply == (
        "Imported 5 sources:\n"
        "• https://news.ycombinator.com/rss\n"
        "• https://lwn.net/headlines/rss\n"
        "• https://blog.python.org/feeds/posts/default\n"
        "• r/Python\n"
        "• https://feeds.bbci.co.uk/news/world/rss.xml\n"
        "1 already in your list.\n\n"  # r/golang, as old.reddit.com/r/golang.rss
        "Not added:\n"
        "⚠️ https://xkcd.com/atom.xml: over the limit of 6 sources"
    )
    assert [key for _, key in await sources_of(env, CHAT)][:2] == [
        "r/golang",
        "https://news.ycombinator.com/rss",
    ]


def _hostile(news) -> dict[str, bytes]:
    probe = f"{news.url}/probe"
    return {
        "xxe.opml": (
            f'<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY x SYSTEM "{probe}/x">]>'
            f'<opml version="2.0"><body><outline text="&x;" xmlUrl="{news.url}'
            f'/feeds/rss20.xml"/></body></opml>'
        ).encode(),
        "dtd.xml": (
            f'<?xml version="1.0"?><!DOCTYPE opml SYSTEM "{probe}/opml.dtd">'
            f'<opml version="2.0"><body/></opml>'
        ).encode(),
        "param.opml": (
            f'<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY % p SYSTEM '
            f'"{probe}/p.dtd"> %p;]><opml version="2.0"><body/></opml>'
        ).encode(),
        "laughs.opml": b'<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY a "aaaaaaaaaa">'
        + b"".join(
            f'<!ENTITY {chr(98 + n)} "{("&" + chr(97 + n) + ";") * 10}">'.encode()
            for n in range(9)
        )
        + b']><opml version="2.0"><body><outline text="&j;"/></body></opml>',
    }


async def test_xxe_and_billion_laughs_are_refused_without_any_fetch(telegram, news, redis_url):
    async with running_bot(bot_env(telegram, redis_url, news)):
        for name, data in _hostile(news).items():
            reply = await send_file(telegram, data, file_name=name)
            assert reply == (
                "Nothing imported: the file has a DTD (<!DOCTYPE …>), which is not accepted."
            ), name
        (listing,) = await say(telegram, "/sources")  # still answering
        assert listing.startswith("You have no sources")
    assert news.requests == []


async def test_private_addresses_are_refused_and_the_rest_imported(telegram, news, redis_url):
    port = news.url.rsplit(":", 1)[1]
    urls = [
        f"http://127.0.0.1:{port}/feeds/rss20.xml",
        "http://169.254.169.254/latest/",
        f"http://localhost:{port}/feeds/atom.xml",
        f"http://[::1]:{port}/x",
        "http://10.0.0.7/feed",
        "https://old.reddit.com/r/rust/",
        "gopher://x.example/",
        "not a url",
    ]
    outlines = "".join(f'<outline type="rss" text="f" xmlUrl="{url}"/>' for url in urls)
    data = f'<opml version="2.0"><body>{outlines}</body></opml>'.encode()
    env = bot_env(telegram, redis_url, news, NEWSBOT_ALLOW_PRIVATE_URLS="false")
    async with running_bot(env):
        reply = await send_file(telegram, data, file_name="mine.xml")
    head, refusals = reply.split("\n\nNot added:\n")
    assert head == "Imported 1 source:\n• r/rust"
    assert refusals.splitlines() == [
        "⚠️ gopher://x.example/: invalid: only http:// and https:// feeds can be followed",
        "⚠️ not a url: invalid: not a feed URL",
    ] + [f"⚠️ {url}: private or local address" for url in urls[:5]]
    assert news.requests == []


async def test_which_documents_are_imported(telegram, news, redis_url):
    opml = (
        b'<opml version="2.0"><body><outline xmlUrl="https://reddit.com/r/python"/></body></opml>'
    )
    async with running_bot(bot_env(telegram, redis_url, news)):
        # In a group, only a file captioned /import: members' XML files are theirs.
        telegram.push_document(GROUP, opml, file_name="shared.opml")
        (listing,) = await say(telegram, "/sources", chat_id=GROUP)
        assert listing.startswith("You have no sources")
        telegram.push_document(GROUP, opml, file_name="notes.txt", caption="/import@otherbot")
        (listing,) = await say(telegram, "/sources", chat_id=GROUP)
        assert listing.startswith("You have no sources")
        reply = await send_file(
            telegram, opml, chat_id=GROUP, file_name="subs.txt", caption="/import@newsbot_test_bot"
        )
        assert reply.startswith("Imported 1 source:\n• r/python")
        # In a private chat, any .opml or .xml file; other documents are left alone.
        telegram.push_document(CHAT, opml, file_name="photo.png")
        (listing,) = await say(telegram, "/sources")
        assert listing.startswith("You have no sources")
        reply = await send_file(telegram, opml, file_name="Subscriptions.XML")
        assert reply.startswith("Imported 1 source:")
        (reply,) = await say(telegram, "/import")
        assert "caption /import" in reply
        reply = await send_file(telegram, b"<rss/>", file_name="feed.xml")
        assert reply == "Nothing imported: the file is not OPML (no <opml> root)."
    assert telegram.count("getFile") == 3


async def test_files_over_a_megabyte_are_refused_before_or_after_the_download(
    telegram, news, redis_url
):
    big = b'<opml version="2.0"><body>' + b" " * (1024 * 1024) + b"</body></opml>"
    huge = b"<opml>" + b" " * (21 * 1024 * 1024) + b"</opml>"
    too_big = "That file is too big to import: at most 1024 KB."
    async with running_bot(bot_env(telegram, redis_url, news)):
        # Telegram says how big it is: not even asked for.
        assert await send_file(telegram, big, file_name="big.opml") == too_big
        assert telegram.count("getFile") == 0 and telegram.downloads == []
        # No size given: the downloaded bytes are measured.
        assert await send_file(telegram, big, file_name="big.opml", report_size=False) == too_big
        assert telegram.count("getFile") == 1 and len(telegram.downloads) == 1
        # Over Telegram's own 20 MB, getFile refuses; the user is told why.
        reply = await send_file(telegram, huge, file_name="huge.opml", report_size=False)
        assert reply == "Telegram would not give me that file: File is too big"
        assert len(telegram.downloads) == 1


async def test_export_with_no_sources_says_so(telegram, redis_url):
    async with running_bot(bot_env(telegram, redis_url)):
        (reply,) = await say(telegram, "/export")
    assert reply.startswith("You have no sources to export.")
    assert telegram.count("sendDocument") == 0


async def test_the_fake_answers_file_calls_as_telegram_does(telegram):
    bot = Bot(
        telegram.token, base_url=f"{telegram.url}/bot", base_file_url=f"{telegram.url}/file/bot"
    )
    async with bot:
        message = await bot.send_document(
            CHAT, document=b"<opml/>", filename="a.opml", caption="<b>Yours</b>", parse_mode="HTML"
        )
        assert (message.document.file_name, message.document.file_size) == ("a.opml", 7)
        assert message.caption == "Yours"
        again = await bot.send_document(OTHER, document=message.document.file_id)
        assert again.document.file_unique_id == message.document.file_unique_id
        file = await bot.get_file(message.document.file_id)
        assert file.file_size == 7 and file.file_path.endswith(".opml")
        assert await file.download_as_bytearray() == bytearray(b"<opml/>")
        big = telegram.add_file(b"x" * (20 * 1024 * 1024 + 1), "big.opml")
        for file_id, error in [(big.file_id, "File is too big"), ("nope", "Invalid file_id")]:
            with pytest.raises(BadRequest, match=error):
                await bot.get_file(file_id)
        for document, error in [
            (b"", "File must be non-empty"),
            ("AgADnope", "Wrong file identifier/http url specified"),
        ]:
            with pytest.raises(BadRequest, match=error):
                await bot.send_document(CHAT, document=document, filename="e.opml")
        with pytest.raises(BadRequest, match="Message caption is too long"):
            await bot.send_document(CHAT, document=b"x", filename="x.txt", caption="x" * 1025)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{telegram.url}/file/bot123:wrong/{file.file_path[-25:]}")
    refused.value.close()
    assert refused.value.code == 404
    assert [m.chat_id for m in telegram.sent()] == [CHAT, OTHER]
