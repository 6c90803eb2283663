"""A fake Telegram Bot API server, served over loopback HTTP in a background thread.

It answers ``{url}/bot{token}/{method}`` the way api.telegram.org does, so the bot under
test talks to it through nothing but ``TELEGRAM_API_URL``:

- ``getUpdates`` keeps a queue of updates confirmed by ``offset``, long-polls, and answers
  the older of two concurrent polls with ``409 Conflict`` as Telegram does;
- ``sendMessage`` validates HTML like Telegram (stricter about a bare ``&``, so escaping
  bugs show up), enforces the 4096-character limit and, with ``enforce_limits``, the flood
  limits of the Bot API FAQ, strictly: 30 messages in any 1 s window overall, 1/s per
  chat with a burst of 3 ("we may allow short bursts"), 20 in any 60 s window per group,
  answered ``429`` with ``parameters.retry_after`` for that chat only;
- files: ``push_document`` sends the bot a ``document`` message (a caption with its
  command entity); ``getFile`` answers a ``File`` (``400 file is too big`` over 20 MB,
  ``400 invalid file_id``) and ``/file/bot{token}/{file_path}`` serves the bytes;
  ``sendDocument`` takes a multipart upload (or a known ``file_id``), checks it as
  Telegram does and keeps the file, so a test can send it back (``file_bytes``);
- failures can be injected (``fail_next``, optionally for one chat and after some
  successes, ``drop_next``, ``block_chat``, ``delete_chat``, ``migrate_chat``,
  ``flood_chat``), ``my_chat_member`` updates pushed as Telegram shapes them, and
  everything is recorded for assertions (``calls``, ``sent``);
- push mode: after ``setWebhook`` the fake POSTs each update to the URL (plain http on
  loopback is accepted, unlike Telegram) with the ``X-Telegram-Bot-Api-Secret-Token``
  header, from up to ``max_connections`` threads, one update of a chat at a time and in
  order (a chat's next update waits until its previous one was answered 2xx); a
  non-2xx answer, a refused connection or no answer within ``push_timeout`` is retried
  after ``push_retry_delay``, and ``getWebhookInfo`` reports it as
  ``last_error_message``. ``getUpdates`` is answered 409 while a webhook is set, and
  ``deleteWebhook`` goes back to polling. Every push is recorded (``pushes``);
- ``hold_sends`` holds every call that posts or edits a message unanswered and not yet
  taken, and a post whose client hangs up before it is taken is never carried out: a
  test can kill a bot at a moment no reply of it is in flight (see tests/cluster_support).

The same state can be driven over HTTP under ``/_fake/...`` (see ``FakeTelegramClient``),
for a fake that runs in another process or container::

    python tests/fakes/telegram_api.py --host 0.0.0.0 --port 8081 --token 123:abc

Standard library only: this file must run in a bare ``python:3`` image.
"""

from __future__ import annotations

import argparse
import bisect
import email.parser
import email.policy
import http.client
import json
import math
import re
import select
import signal
import socket
import socketserver
import threading
import time
import urllib.parse
import urllib.request
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_TOKEN = "123456:TEST-secret-token"
BOT_USERNAME = "newsbot_test_bot"
MAX_MESSAGE_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
# Bots download files of at most 20 MB (getFile) and upload at most 50 MB.
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
CONFLICT = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)
# Telegram's flood limits (Bot API FAQ), kept strictly: no tolerance for jitter, so a bot
# that paces itself exactly at the limit is caught. Telegram "may allow short bursts" in
# one chat; the fake allows CHAT_BURST messages at once, then one a second.
LIMIT_PER_SECOND = 30
LIMIT_PER_CHAT_SECOND = 1.0
CHAT_BURST = 3
LIMIT_PER_GROUP_MINUTE = 20

# Values of these parameters are free text: never JSON-decode them ("123" stays "123").
_TEXT_PARAMS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "callback_query_id",
        "inline_message_id",
        "query",
        "description",
        "short_description",
        "name",
        "title",
        "url",
        "emoji",
        "language_code",
        "secret_token",
    }
)
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
# Telegram's exact error descriptions for the chat, topic, button and menu behaviours.
THREAD_NOT_FOUND = "Bad Request: message thread not found"
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and "
    "reply markup are exactly the same as a current content and reply markup "
    "of the message"
)
BUTTON_DATA_INVALID = "Bad Request: BUTTON_DATA_INVALID"
NEED_ADMIN = "Bad Request: need administrator rights in the channel chat"
NOT_CHANNEL_MEMBER = "Forbidden: bot is not a member of the channel chat"
MESSAGE_TO_EDIT_NOT_FOUND = "Bad Request: message to edit not found"
# A callback query must be answered this soon after the press (Telegram: "the answer
# will be displayed to the user"... within about 15 seconds, then the query is too old).
CALLBACK_ANSWER_SECONDS = 15.0
MAX_CALLBACK_DATA_BYTES = 64
# Who an anonymous group admin's messages come from.
ANONYMOUS_ADMIN = {
    "id": 1087968824,
    "is_bot": True,
    "first_name": "Group",
    "username": "GroupAnonymousBot",
}
_COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")
_COMMAND = re.compile(r"/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{1,64})?")


class ApiError(Exception):
    """An error answer of the Bot API: HTTP status = error_code, plus a description."""

    def __init__(
        self, status: int, description: str, parameters: dict[str, Any] | None = None
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


@dataclass(frozen=True)
class SentMessage:
    """One message the bot sent successfully, as the fake recorded it."""

    chat_id: int | str
    message_id: int
    text: str  # what the bot sent, markup included
    displayed: str  # what the user sees: tags removed, entities decoded
    parse_mode: str | None
    previews_disabled: bool
    sent_at: float  # the fake's clock (time.monotonic) when it accepted it
    reply_to: int | None = None
    thread_id: int | None = None  # the forum topic it went to (None: General)
    silent: bool = False  # sent with disable_notification
    preview_url: str | None = None  # link_preview_options.url, when previews are on
    reply_markup: dict[str, Any] | None = None  # current inline keyboard (after edits)
    document: dict[str, Any] | None = None  # sendDocument: the Document (text = caption)


class Upload(bytes):
    """The bytes of a multipart file part, with the file name the client gave it."""

    filename: str = ""
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class StoredFile:
    """A file Telegram holds: what a user sent the bot, or what the bot uploaded."""

    file_id: str
    file_unique_id: str
    data: bytes
    file_name: str | None
    mime_type: str | None
    file_path: str
    report_size: bool = True  # Telegram's file_size is optional; False leaves it out

    def document(self) -> dict[str, Any]:
        """The Document object the Bot API gives for this file."""
        document: dict[str, Any] = {"file_id": self.file_id, "file_unique_id": self.file_unique_id}
        if self.file_name is not None:
            document["file_name"] = self.file_name
        if self.mime_type is not None:
            document["mime_type"] = self.mime_type
        if self.report_size:
            document["file_size"] = len(self.data)
        return document


@dataclass(frozen=True)
class _Raw:
    """An answer that is not JSON: a file download."""

    status: int
    body: bytes
    content_type: str


# --- HTML parse mode -------------------------------------------------------------------

_ALLOWED_TAGS = frozenset(
    {
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "a",
        "code",
        "pre",
        "span",
        "tg-spoiler",
        "blockquote",
        "tg-emoji",
    }
)
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ENTITY = re.compile(r"&(?:#(\d{1,7})|#[xX]([0-9a-fA-F]{1,6})|([A-Za-z][A-Za-z0-9]*));")
_ATTRIBUTE = re.compile(r"""\s*([A-Za-z_][A-Za-z0-9_-]*)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s>"']+))?""")
_END_TAG = re.compile(r"</([^\s>]*)\s*>")


def _byte_offset(text: str, index: int) -> int:
    """Return the UTF-8 byte offset Telegram reports for a character index."""
    return len(text[:index].encode("utf-8"))


def _decode_entities(text: str, start: int, end: int, source: str) -> str:
    """Decode the character entities in text[start:end]; reject anything Telegram would not."""
    out: list[str] = []
    i = start
    while i < end:
        amp = text.find("&", i, end)
        if amp < 0:
            out.append(text[i:end])
            break
        out.append(text[i:amp])
        match = _ENTITY.match(text, amp, end)
        char = _entity_char(match) if match else None
        if char is None:
            # Real Telegram keeps an unknown "&" as text; the fake refuses it so that a
            # missing html.escape() in the bot fails a test instead of slipping through.
            shown = text[amp : amp + 10].split(" ")[0]
            raise ApiError(
                400,
                "Bad Request: can't parse entities: unsupported entity "
                f'"{shown}" at byte offset {_byte_offset(source, amp)}',
            )
        out.append(char)
        i = match.end() if match else end
    return "".join(out)


def _entity_char(match: re.Match[str]) -> str | None:
    """Return the character an entity stands for, or None when Telegram does not know it."""
    decimal, hexadecimal, name = match.groups()
    if name is not None:
        return _NAMED_ENTITIES.get(name)
    code = int(decimal) if decimal is not None else int(hexadecimal, 16)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return None
    return chr(code)


def parse_html(text: str) -> str:
    """Return the text Telegram would display for an HTML message, or raise ApiError(400)."""

    def error(reason: str) -> ApiError:
        return ApiError(400, f"Bad Request: can't parse entities: {reason}")

    out: list[str] = []
    stack: list[tuple[str, int]] = []
    i, n = 0, len(text)
    while i < n:
        lt = text.find("<", i)
        if lt < 0:
            out.append(_decode_entities(text, i, n, text))
            break
        out.append(_decode_entities(text, i, lt, text))
        offset = _byte_offset(text, lt)
        if text.startswith("</", lt):
            match = _END_TAG.match(text, lt)
            if not match:
                raise error(f"Unclosed end tag at byte offset {offset}")
            name = match.group(1).lower()
            if not stack:
                raise error(f"Unexpected end tag at byte offset {offset}")
            if stack[-1][0] != name:
                raise error(
                    f"Unmatched end tag at byte offset {offset}, expected "
                    f'"</{stack[-1][0]}>", found "</{name}>"'
                )
            stack.pop()
            i = match.end()
            continue
        # A start tag: like tdlib, the name runs to the first space or ">".
        j = lt + 1
        while j < n and text[j] not in " \t\r\n>":
            j += 1
        if j >= n:
            raise error(f"Unclosed start tag at byte offset {offset}")
        name = text[lt + 1 : j].lower()
        if name not in _ALLOWED_TAGS:
            raise error(f'Unsupported start tag "{name}" at byte offset {offset}')
        attributes: dict[str, str] = {}
        while True:
            while j < n and text[j] in " \t\r\n":
                j += 1
            if j >= n:
                raise error(f"Unclosed start tag at byte offset {offset}")
            if text[j] == ">":
                j += 1
                break
            match = _ATTRIBUTE.match(text, j)
            if not match:
                raise error(
                    f"Expected equal sign in declaration of an attribute of the tag "
                    f'"{name}" at byte offset {offset}'
                )
            value = match.group(2) or ""
            if value[:1] in ("'", '"'):
                value = value[1:-1]
            attributes[match.group(1).lower()] = _decode_entities(value, 0, len(value), value)
            j = match.end()
        if name == "span" and attributes.get("class") != "tg-spoiler":
            raise error(f'Tag "span" must have class "tg-spoiler" at byte offset {offset}')
        if name == "tg-emoji" and "emoji-id" not in attributes:
            raise error(f'Tag "tg-emoji" must have attribute "emoji-id" at byte offset {offset}')
        stack.append((name, offset))
        i = j
    if stack:
        raise error(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return "".join(out)


# --- request parameters ----------------------------------------------------------------


def _normalize(name: str, value: Any) -> Any:
    """Turn a form value into what the Bot API means by it.

    python-telegram-bot sends every parameter as a form field whose value is JSON for
    objects, lists, numbers and booleans, and the bare string for strings.
    """
    if not isinstance(value, str) or name in _TEXT_PARAMS:
        return value
    if value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if value in ("true", "false"):
        return value == "true"
    if _NUMBER.fullmatch(value):
        return float(value) if "." in value else int(value)
    return value


def _parse_multipart(content_type: str, body: bytes) -> dict[str, Any]:
    """Parse multipart/form-data with the email package (the cgi module is deprecated)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    params: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if part.get_filename():
            upload = Upload(data)  # an uploaded file: keep the bytes and its name
            upload.filename = str(part.get_filename())
            upload.content_type = part.get_content_type()
            params[name] = upload
        else:
            params[name] = data.decode(part.get_content_charset() or "utf-8")
    return params


def _update_chat(update: dict[str, Any]) -> int:
    """The chat an update belongs to (0 if none): its message's, callback's, member's."""
    for key, value in update.items():
        if key == "update_id" or not isinstance(value, dict):
            continue
        for holder in (value, value.get("message")):
            chat = holder.get("chat") if isinstance(holder, dict) else None
            if isinstance(chat, dict) and isinstance(chat.get("id"), int):
                return int(chat["id"])
    return 0


def _chat_id(params: dict[str, Any]) -> int | str:
    """Return the chat_id parameter (an int, or an "@channel" string)."""
    value = params.get("chat_id")
    if value is None or value == "":
        raise ApiError(400, "Bad Request: chat_id is empty")
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ApiError(400, "Bad Request: chat not found")
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    return value


def _chat_type(chat_id: int) -> str:
    """The type of chat an id belongs to, by Telegram's numbering."""
    if chat_id > 0:
        return "private"
    if str(chat_id).startswith("-100") and len(str(chat_id)) >= 14:
        return "supergroup"
    return "group"


def _scope_key(params: dict[str, Any]) -> tuple[str, str]:
    """The key setMyCommands files commands under: the scope, then the language."""
    scope = params.get("scope") or {"type": "default"}
    if not isinstance(scope, dict) or "type" not in scope:
        raise ApiError(400, "Bad Request: can't parse BotCommandScope JSON object")
    return json.dumps(dict(sorted(scope.items()))), str(params.get("language_code") or "")


def _check_markup(markup: Any) -> dict[str, Any] | None:
    """Validate an inline keyboard as Telegram does; return it (None without one)."""
    if markup is None or markup == "":
        return None
    if not isinstance(markup, dict) or not isinstance(markup.get("inline_keyboard"), list):
        raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    for row in markup["inline_keyboard"]:
        for button in row:
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA_BYTES:
                raise ApiError(400, BUTTON_DATA_INVALID)
    return markup


def _int(value: Any, default: int) -> int:
    """Read an integer parameter that may arrive as int, float or string."""
    if value is None or value == "":
        return default
    try:
        return int(float(value))
    except (TypeError, ValueError):
        raise ApiError(400, f"Bad Request: invalid integer value {value!r}") from None


# --- flood limits ----------------------------------------------------------------------


class _FloodLimits:
    """Telegram's sending limits: sliding windows overall and per group, a bucket per chat."""

    def __init__(self) -> None:
        self.overall: deque[float] = deque()
        # chat -> (tokens left, when counted): a token bucket of CHAT_BURST at 1/s.
        self.per_chat: dict[int | str, tuple[float, float]] = {}
        self.per_group: dict[int | str, deque[float]] = {}

    def _chat_tokens(self, chat_id: int | str, now: float) -> float:
        tokens, then = self.per_chat.get(chat_id, (float(CHAT_BURST), now))
        return min(float(CHAT_BURST), tokens + (now - then) * LIMIT_PER_CHAT_SECOND)

    def retry_after(self, chat_id: int | str, now: float) -> int | None:
        """Return seconds to wait if a message to chat_id now would exceed a limit."""
        waits: list[float] = []
        tokens = self._chat_tokens(chat_id, now)
        if tokens < 1.0:
            waits.append((1.0 - tokens) / LIMIT_PER_CHAT_SECOND)
        recent = [t for t in self.overall if t > now - 1.0]
        if len(recent) >= LIMIT_PER_SECOND:
            waits.append(recent[-LIMIT_PER_SECOND] + 1.0 - now)
        if isinstance(chat_id, int) and chat_id < 0:
            group = [t for t in self.per_group.get(chat_id, ()) if t > now - 60.0]
            if len(group) >= LIMIT_PER_GROUP_MINUTE:
                waits.append(group[-LIMIT_PER_GROUP_MINUTE] + 60.0 - now)
        if not waits:
            return None
        return max(1, math.ceil(max(waits)))

    def record(self, chat_id: int | str, now: float) -> None:
        """Remember an accepted message, forgetting what no limit looks at any more."""
        self.overall.append(now)
        while self.overall and self.overall[0] <= now - 1.0:
            self.overall.popleft()
        self.per_chat[chat_id] = (self._chat_tokens(chat_id, now) - 1.0, now)
        if isinstance(chat_id, int) and chat_id < 0:
            group = self.per_group.setdefault(chat_id, deque())
            group.append(now)
            while group and group[0] <= now - 60.0:
                group.popleft()


# --- the fake ---------------------------------------------------------------------------

_DROP = object()  # a handler result meaning: close the connection, answer nothing
# The calls that post or change what a chat shows: what hold_sends holds.
_POSTING = frozenset({"sendmessage", "senddocument", "editmessagetext", "editmessagereplymarkup"})
Answer = tuple[int, Any]


class _ClientGone(Exception):
    """The client of a long poll closed its connection; there is nobody to answer."""


class FakeTelegram:
    """A Telegram Bot API double on loopback HTTP; thread-safe, start()/stop() or `with`."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        host: str = "127.0.0.1",
        port: int = 0,
        enforce_limits: bool = False,
        first_update_id: int = 1,
        clock: Callable[[], float] = time.monotonic,
        push_timeout: float = 5.0,
        push_retry_delay: float = 0.2,
    ) -> None:
        self.token = token
        # Push mode: how long a push may take before it counts as failed, and the pause
        # before a failed one is tried again (Telegram's are longer; tests want speed).
        self.push_timeout = push_timeout
        self.push_retry_delay = push_retry_delay
        self._webhook: dict[str, Any] | None = None
        self._webhook_generation = 0
        self._pushing: set[int] = set()  # update ids in flight
        self._pushing_chats: set[int] = set()
        self._retry_at: dict[int, float] = {}
        self._last_push_error: tuple[int, str] | None = None
        # (update_id, HTTP status or 0 when no answer came), every push attempt in order
        self.pushes: list[tuple[int, int]] = []
        self.host = host
        self.port = port
        self.enforce_limits = enforce_limits
        # Flood limits and SentMessage.sent_at read this clock; a test can pass a fake one.
        self.clock = clock
        bot_id = token.split(":", 1)[0]
        self.bot_user: dict[str, Any] = {
            "id": int(bot_id) if bot_id.isdigit() else 123456,
            "is_bot": True,
            "first_name": "Newsbot",
            "username": BOT_USERNAME,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.conflicts = 0
        self.too_many = 0
        self.confirmed_offset = 0
        self._cond = threading.Condition()
        self._call_counts: dict[str, int] = {}
        self._updates: list[tuple[int, dict[str, Any]]] = []
        self._next_update_id = first_update_id
        self._allowed_updates: set[str] | None = None
        self._poll_seq = 0
        self._poller: int | None = None
        self._terminated: set[int] = set()
        self._sent: list[SentMessage] = []
        self._message_ids: dict[int | str, int] = {}
        self._chats: dict[int | str, dict[str, Any]] = {}
        self._failures: dict[str, deque[ApiError]] = {}
        # (method, chat_id) -> [calls to let through first, failures to answer then]
        self._chat_failures: dict[tuple[str, int | str], list[Any]] = {}
        self._flooded: dict[int | str, float] = {}  # chat -> flood wait ends (self.clock)
        self._deleted: set[int | str] = set()
        self._drops: dict[str, int] = {}
        self._blocked: set[int | str] = set()
        self._migrated: dict[int | str, int] = {}
        self._limits = _FloodLimits()
        # (scope as JSON, language_code) -> the commands set for it (setMyCommands).
        self._commands: dict[tuple[str, str], list[Any]] = {}
        # chat -> user id -> ChatMember as Telegram shapes it (getChatMember).
        self._members: dict[int | str, dict[int, dict[str, Any]]] = {}
        # forum chat -> its topics' message_thread_id -> name.
        self._topics: dict[int | str, dict[int, str]] = {}
        # callback query id -> (when pressed, answered?); the answers given, in order.
        self._queries: dict[str, list[Any]] = {}
        self.answers: dict[str, dict[str, Any]] = {}
        # (chat, message id) -> the message as it is now, after edits.
        self._current: dict[tuple[int | str, int], SentMessage] = {}
        self._next_query = 1
        self._files: dict[str, StoredFile] = {}
        self.downloads: list[str] = []  # file paths fetched from /file/bot<token>/
        self._stopping = False
        self._holding = False  # hold_sends: posts wait, not yet taken
        self.hung_up = 0  # posts never carried out: their client hung up first
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "getMe": lambda p: self.bot_user,
            "getUpdates": self._get_updates,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "answerCallbackQuery": self._answer_callback_query,
            "getChatMember": self._get_chat_member,
            "getChatAdministrators": self._get_chat_administrators,
            "sendDocument": self._send_document,
            "getFile": self._get_file,
            "deleteMessage": lambda p: True,
            "sendChatAction": lambda p: True,
            "deleteWebhook": self._delete_webhook,
            "setWebhook": self._set_webhook,
            "getWebhookInfo": self._webhook_info,
            "setMyCommands": self._set_commands,
            "getMyCommands": self._get_commands,
            "deleteMyCommands": self._delete_commands,
            "setMyDescription": lambda p: True,
            "setMyShortDescription": lambda p: True,
            "setMyName": lambda p: True,
            "setChatMenuButton": lambda p: True,
            "getChat": self._get_chat,
            "logOut": lambda p: True,
            "close": lambda p: True,
        }
        # Telegram matches method names case-insensitively; keep the canonical spelling.
        self._methods = {name.lower(): (name, handler) for name, handler in handlers.items()}

    # lifecycle

    @property
    def url(self) -> str:
        """Base URL to hand the bot as TELEGRAM_API_URL."""
        if self._server is None:
            raise RuntimeError("FakeTelegram is not started")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> FakeTelegram:
        """Bind and serve in a daemon thread."""
        self._stopping = False
        self._server = _Server((self.host, self.port), _Handler, self._answer)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-telegram",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Answer pending long polls, stop serving and close every connection."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.close_all()
            if self._thread is not None:
                self._thread.join(5)
            self._server = None
            self._thread = None

    def __enter__(self) -> FakeTelegram:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # updates

    def push_update(self, update: dict[str, Any]) -> int:
        """Queue a raw update (update_id assigned when missing); return its update_id."""
        with self._cond:
            update_id = int(update.get("update_id", self._next_update_id))
            update = {"update_id": update_id, **update}
            self._next_update_id = max(self._next_update_id, update_id + 1)
            bisect.insort(self._updates, (update_id, update), key=lambda entry: entry[0])
            self._cond.notify_all()
            return update_id

    def push_message(
        self,
        chat_id: int,
        text: str,
        chat_type: str | None = None,
        user_id: int | None = None,
        username: str = "alice",
        thread_id: int | None = None,
        anonymous: bool = False,
    ) -> int:
        """Queue a text message from a user, as Telegram would deliver it; return update_id.

        ``thread_id`` sends it in a forum topic; ``anonymous`` as an anonymous group
        admin (from GroupAnonymousBot, ``sender_chat`` the group itself).
        """
        if chat_type is None:
            known_type = self._chats.get(chat_id, {}).get("type")
            chat_type = known_type if isinstance(known_type, str) else _chat_type(chat_id)
        user_id = self.user_id(chat_id, username) if user_id is None else user_id
        user = {
            "id": user_id,
            "is_bot": False,
            "first_name": username.capitalize(),
            "username": username,
            "language_code": "en",
        }
        chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat.update(first_name=user["first_name"], username=username)
        else:
            chat["title"] = f"Test {chat_type} {chat_id}"
        with self._cond:
            known = self._chats.get(chat_id)
            if known is not None and known.get("type") == chat_type:
                chat = known  # a forum stays a forum, a channel keeps its username
            self._chats[chat_id] = chat
            if chat_type in ("group", "supergroup") and not anonymous:
                # Whoever writes in a group is in it; an admin set earlier stays one.
                # Someone made the group: with no creator or admin recorded yet, the
                # first user heard in it is its creator (tests that are not about
                # admins then run as the group's owner).
                members = self._members.setdefault(chat_id, {})
                ruled = any(
                    m["status"] in ("creator", "administrator") and not m["user"].get("is_bot")
                    for m in members.values()
                )
                members.setdefault(
                    user_id,
                    {
                        "user": user,
                        "status": ("member" if ruled else "creator"),
                        **({} if ruled else {"is_anonymous": False}),
                    },
                )
            message: dict[str, Any] = {
                "message_id": self._next_message_id(chat_id),
                "date": int(time.time()),
                "chat": chat,
                "text": text,
            }
            if thread_id is not None:
                if thread_id not in self._topics.get(chat_id, {}):
                    raise ValueError(f"chat {chat_id} has no topic {thread_id}")
                message.update(message_thread_id=thread_id, is_topic_message=True)
        if chat_type == "channel":
            message["sender_chat"] = chat
        elif anonymous:
            message.update({"from": dict(ANONYMOUS_ADMIN), "sender_chat": chat})
        else:
            message["from"] = user
        command = _COMMAND.match(text)
        if command:
            # PTB's CommandHandler only fires on a bot_command entity at offset 0;
            # lengths are in UTF-16 code units, as everywhere in the Bot API.
            length = len(command.group().encode("utf-16-le")) // 2
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        kind = "channel_post" if chat_type == "channel" else "message"
        return self.push_update({kind: message})

    @staticmethod
    def user_id(chat_id: int, username: str = "alice") -> int:
        """The id push_message gives a user: the chat's in private, by name elsewhere."""
        if chat_id > 0:
            return chat_id
        return zlib.crc32(username.encode()) % 900_000_000 + 100_000_000

    # chats, members, topics

    def set_member(
        self,
        chat_id: int | str,
        user_id: int,
        status: str,
        username: str | None = None,
        **rights: Any,
    ) -> None:
        """Record a user's (or the bot's) membership, as getChatMember will answer it.

        ``status`` is Telegram's: "creator", "administrator", "member", "restricted",
        "left", "kicked"; ``rights`` are an administrator's (can_post_messages=True...).
        """
        if user_id == self.bot_user["id"]:
            user = dict(self.bot_user)
        else:
            name = username or f"user{user_id}"
            user = {
                "id": user_id,
                "is_bot": False,
                "first_name": name.capitalize(),
                "username": name,
            }
        member: dict[str, Any] = {"user": user, "status": status}
        if status == "creator":
            member["is_anonymous"] = False
        elif status == "administrator":
            member.update(
                {
                    "can_be_edited": False,
                    "is_anonymous": False,
                    "can_manage_chat": True,
                    "can_delete_messages": True,
                    "can_manage_video_chats": True,
                    "can_restrict_members": True,
                    "can_promote_members": False,
                    "can_change_info": True,
                    "can_invite_users": True,
                    "can_post_stories": False,
                    "can_edit_stories": False,
                    "can_delete_stories": False,
                }
            )
            member.update(rights)
        elif status == "kicked":
            member["until_date"] = 0
        with self._cond:
            self._members.setdefault(chat_id, {})[user_id] = member

    def make_chat(
        self, chat_id: int, chat_type: str, username: str | None = None, forum: bool = False
    ) -> dict[str, Any]:
        """Create a chat of a type ("channel", "supergroup" with ``forum``...); return it."""
        chat: dict[str, Any] = {
            "id": chat_id,
            "type": chat_type,
            "title": f"Test {chat_type} {chat_id}",
        }
        if username:
            chat["username"] = username
        if forum:
            chat["is_forum"] = True
        with self._cond:
            self._chats[chat_id] = chat
            if forum:
                self._topics.setdefault(chat_id, {})
        return chat

    def add_topic(self, chat_id: int, thread_id: int, name: str = "News") -> None:
        """Open a topic in a forum supergroup (made one if it is not yet)."""
        if not self._chats.get(chat_id, {}).get("is_forum"):
            self.make_chat(chat_id, "supergroup", forum=True)
        with self._cond:
            self._topics.setdefault(chat_id, {})[thread_id] = name

    def delete_topic(self, chat_id: int, thread_id: int) -> None:
        """Delete a forum topic: sends into it answer 400 message thread not found."""
        with self._cond:
            self._topics.get(chat_id, {}).pop(thread_id, None)

    # buttons

    def message(self, chat_id: int | str, message_id: int) -> SentMessage:
        """A message the bot sent, as it looks now (after any edits)."""
        with self._cond:
            return self._current[(chat_id, message_id)]

    def buttons(self, chat_id: int | str, message_id: int) -> list[str]:
        """The texts of a message's inline buttons, row by row."""
        markup = self.message(chat_id, message_id).reply_markup or {}
        return [button["text"] for row in markup.get("inline_keyboard", []) for button in row]

    def press(
        self,
        chat_id: int,
        message_id: int,
        button: str,
        username: str = "alice",
        user_id: int | None = None,
        twice: bool = False,
    ) -> str:
        """Press the inline button whose text contains ``button``; return the query id.

        Queued as the callback_query update Telegram sends, carrying the button's
        callback_data and the message as it is now. With ``twice`` the same update is
        queued twice, as Telegram delivers it again when a getUpdates answer was lost.
        """
        current = self.message(chat_id, message_id)
        rows = (current.reply_markup or {}).get("inline_keyboard", [])
        found = [b for row in rows for b in row if button in b["text"]]
        if len(found) != 1:
            raise ValueError(f"{len(found)} buttons match {button!r} on message {message_id}")
        user_id = self.user_id(chat_id, username) if user_id is None else user_id
        with self._cond:
            query_id = str(8_000_000_000 + self._next_query)
            self._next_query += 1
            self._queries[query_id] = [self.clock(), False]
            chat = self._chat(chat_id)
        message: dict[str, Any] = {
            "message_id": message_id,
            "from": dict(self.bot_user),
            "chat": chat,
            "date": int(time.time()),
            "text": current.displayed,
            "reply_markup": current.reply_markup,
        }
        if current.thread_id is not None:
            message.update(message_thread_id=current.thread_id, is_topic_message=True)
        update = {
            "callback_query": {
                "id": query_id,
                "from": {
                    "id": user_id,
                    "is_bot": False,
                    "first_name": username.capitalize(),
                    "username": username,
                    "language_code": "en",
                },
                "message": message,
                "chat_instance": str(zlib.crc32(str(chat_id).encode())),
                "data": found[0]["callback_data"],
            }
        }
        update_id = self.push_update(update)
        if twice:
            self.push_update({"update_id": update_id, **update})
        return query_id

    def wait_for_answer(self, query_id: str, timeout: float = 10) -> dict[str, Any]:
        """Wait until a callback query was answered; return the answer's parameters."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while query_id not in self.answers:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"callback query {query_id} was not answered within {timeout}s"
                    )
                self._cond.wait(remaining)
            return self.answers[query_id]

    def add_file(
        self,
        data: bytes,
        file_name: str | None = None,
        mime_type: str | None = None,
        report_size: bool = True,
    ) -> StoredFile:
        """Keep a file as Telegram would (a user's upload); return it with its file_id."""
        with self._cond:
            number = len(self._files) + 1
            suffix = ""
            if file_name and "." in file_name:
                suffix = "." + file_name.rsplit(".", 1)[1]
            stored = StoredFile(
                file_id=f"BQACAgIAAxkBAAI{number:08d}{zlib.crc32(data):08x}",
                file_unique_id=f"AgAD{number:06d}",
                data=bytes(data),
                file_name=file_name,
                mime_type=mime_type,
                file_path=f"documents/file_{number}{suffix}",
                report_size=report_size,
            )
            self._files[stored.file_id] = stored
            return stored

    def file_bytes(self, file_id: str) -> bytes:
        """The content of a file Telegram holds (e.g. one the bot sent)."""
        with self._cond:
            return self._files[file_id].data

    def push_document(
        self,
        chat_id: int,
        data: bytes | None = None,
        file_name: str | None = "file.opml",
        caption: str | None = None,
        file_id: str | None = None,
        mime_type: str | None = None,
        report_size: bool = True,
        chat_type: str | None = None,
        username: str = "alice",
    ) -> int:
        """Queue a document message from a user: new bytes, or a file_id Telegram holds."""
        if file_id is not None:
            with self._cond:
                known = self._files[file_id]
            stored = StoredFile(
                known.file_id,
                known.file_unique_id,
                known.data,
                file_name if file_name is not None else known.file_name,
                mime_type or known.mime_type,
                known.file_path,
                report_size,
            )
        else:
            stored = self.add_file(data or b"", file_name, mime_type, report_size)
        if chat_type is None:
            chat_type = (
                "private"
                if chat_id > 0
                else ("supergroup" if str(chat_id).startswith("-100") else "group")
            )
        user_id = (
            chat_id
            if chat_type == "private"
            else (zlib.crc32(username.encode()) % 900_000_000 + 100_000_000)
        )
        user = {
            "id": user_id,
            "is_bot": False,
            "first_name": username.capitalize(),
            "username": username,
            "language_code": "en",
        }
        chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat.update(first_name=user["first_name"], username=username)
        else:
            chat["title"] = f"Test {chat_type} {chat_id}"
        with self._cond:
            self._chats[chat_id] = chat
            message: dict[str, Any] = {
                "message_id": self._next_message_id(chat_id),
                "date": int(time.time()),
                "chat": chat,
                "from": user,
                "document": stored.document(),
            }
        if caption is not None:
            message["caption"] = caption
            command = _COMMAND.match(caption)
            if command:
                length = len(command.group().encode("utf-16-le")) // 2
                message["caption_entities"] = [
                    {"type": "bot_command", "offset": 0, "length": length}
                ]
        return self.push_update({"message": message})

    @property
    def pending_updates(self) -> int:
        """Number of updates not yet confirmed by an offset."""
        with self._cond:
            return len(self._updates)

    # failure injection

    def fail_next(
        self,
        method: str,
        status: int = 500,
        description: str | None = None,
        retry_after: int | None = None,
        migrate_to_chat_id: int | None = None,
        times: int = 1,
        chat_id: int | str | None = None,
        after: int = 0,
    ) -> None:
        """Make the next `times` calls of method fail with this error.

        With ``chat_id`` only calls for that chat fail, and the first ``after`` of them
        are answered normally before that (the second part of a reply fails, say).
        """
        parameters: dict[str, Any] = {}
        if retry_after is not None:
            parameters["retry_after"] = retry_after
        if migrate_to_chat_id is not None:
            parameters["migrate_to_chat_id"] = migrate_to_chat_id
        if description is None:
            description = _default_description(status, retry_after)
        errors = [ApiError(status, description, parameters or None) for _ in range(times)]
        with self._cond:
            if chat_id is None:
                self._failures.setdefault(method.lower(), deque()).extend(errors)
            else:
                entry = self._chat_failures.setdefault((method.lower(), chat_id), [0, deque()])
                entry[0] += after
                entry[1].extend(errors)

    def flood_chat(self, chat_id: int | str, seconds: float) -> None:
        """Flood-wait one chat: for ``seconds`` its sends answer 429 with the time left.

        Telegram's flood waits are per chat: other chats are served meanwhile.
        """
        with self._cond:
            self._flooded[chat_id] = self.clock() + seconds

    def delete_chat(self, chat_id: int | str) -> None:
        """Act as if the account or group was deleted: sends answer 400 chat not found."""
        with self._cond:
            self._deleted.add(chat_id)

    def push_my_chat_member(
        self,
        chat_id: int,
        new_status: str,
        old_status: str = "member",
        chat_type: str | None = None,
        user_id: int | None = None,
        username: str = "alice",
    ) -> int:
        """Queue a my_chat_member update: the bot's own status in a chat changed.

        Shaped as Telegram sends it: a private chat that blocks the bot gives
        "member" -> "kicked"; a group that removes it "member" -> "left" (or "kicked"
        when banned), ``from`` being whoever did it.
        """
        chat_type = chat_type or _chat_type(chat_id)
        if user_id is None:
            user_id = (
                chat_id
                if chat_type == "private"
                else (zlib.crc32(username.encode()) % 900_000_000 + 100_000_000)
            )
        user = {
            "id": user_id,
            "is_bot": False,
            "first_name": username.capitalize(),
            "username": username,
            "language_code": "en",
        }
        chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat.update(first_name=user["first_name"], username=username)
        else:
            chat["title"] = f"Test {chat_type} {chat_id}"

        def member(status: str) -> dict[str, Any]:
            entry: dict[str, Any] = {"user": dict(self.bot_user), "status": status}
            if status == "kicked":
                entry["until_date"] = 0  # banned for good
            return entry

        return self.push_update(
            {
                "my_chat_member": {
                    "chat": chat,
                    "from": user,
                    "date": int(time.time()),
                    "old_chat_member": member(old_status),
                    "new_chat_member": member(new_status),
                }
            }
        )

    @contextmanager
    def hold_sends(self) -> Iterator[None]:
        """Hold every post (sendMessage, sendDocument, edits) untaken until the block ends.

        A held post whose client hangs up meanwhile (a killed bot) is never carried out;
        the others are carried out when the block ends, in the order they are let go.
        """
        self._hold(True)
        try:
            yield
        finally:
            self._hold(False)

    def _hold(self, on: bool) -> None:
        with self._cond:
            self._holding = on
            self._cond.notify_all()

    def _hung_up_while_held(self, gone: Callable[[], bool]) -> bool:
        """Wait while posts are held; True if the client hung up before the post was taken."""
        with self._cond:
            while self._holding and not gone():
                self._cond.wait(0.02)
            if not gone():
                return False
            self.hung_up += 1
            self._cond.notify_all()
            return True

    def drop_next(self, method: str, times: int = 1) -> None:
        """Make the next `times` calls of method lose their connection without an answer."""
        with self._cond:
            self._drops[method.lower()] = self._drops.get(method.lower(), 0) + times

    def block_chat(self, chat_id: int | str) -> None:
        """Act as if the user blocked the bot: sendMessage to chat_id answers 403."""
        with self._cond:
            self._blocked.add(chat_id)

    def unblock_chat(self, chat_id: int | str) -> None:
        """Undo block_chat."""
        with self._cond:
            self._blocked.discard(chat_id)

    def migrate_chat(
        self, old_id: int, new_id: int, notify: bool = True, username: str = "alice"
    ) -> list[int]:
        """Act as if group old_id became supergroup new_id: sends to old_id answer 400.

        With ``notify``, deliver the two service messages Telegram sends on an upgrade:
        ``migrate_to_chat_id`` in the old group, then ``migrate_from_chat_id`` in the new
        supergroup, both from the user who upgraded it. Return their update ids.
        """
        user = {
            "id": zlib.crc32(username.encode()) % 900_000_000 + 100_000_000,
            "is_bot": False,
            "first_name": username.capitalize(),
            "username": username,
        }
        with self._cond:
            self._migrated[old_id] = new_id
            title = self._chats.get(old_id, {}).get("title", f"Test group {old_id}")
            group = {"id": old_id, "type": "group", "title": title}
            supergroup = {"id": new_id, "type": "supergroup", "title": title}
            self._chats[old_id], self._chats[new_id] = group, supergroup
            messages = [
                {
                    "message_id": self._next_message_id(old_id),
                    "from": user,
                    "date": int(time.time()),
                    "chat": group,
                    "migrate_to_chat_id": new_id,
                },
                {
                    "message_id": self._next_message_id(new_id),
                    "from": user,
                    "date": int(time.time()),
                    "chat": supergroup,
                    "migrate_from_chat_id": old_id,
                },
            ]
        if not notify:
            return []
        return [self.push_update({"message": message}) for message in messages]

    # introspection

    def count(self, method: str) -> int:
        """Return how many times method was called (any outcome)."""
        with self._cond:
            return self._call_counts.get(self._canonical(method), 0)

    def sent(self, chat_id: int | str | None = None) -> list[SentMessage]:
        """Return the messages sent successfully, optionally only those to chat_id."""
        with self._cond:
            return [m for m in self._sent if chat_id is None or m.chat_id == chat_id]

    def wait_for_sent(
        self, count: int, chat_id: int | str | None = None, timeout: float = 10
    ) -> list[SentMessage]:
        """Wait until at least count messages were sent (to chat_id); return them all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(messages := self.sent(chat_id)) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    shown = "\n".join(f"  {m.chat_id}: {m.displayed!r}" for m in messages)
                    raise AssertionError(
                        f"expected {count} sent message(s)"
                        f"{'' if chat_id is None else f' to chat {chat_id}'} within "
                        f"{timeout}s, got {len(messages)}:\n{shown or '  (nothing)'}"
                    )
                self._cond.wait(remaining)
            return messages

    def wait_for_calls(self, method: str, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        """Wait until method was called count times; return the parameters of every call."""
        name = self._canonical(method)
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._call_counts.get(name, 0) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"expected {count} call(s) of {name} within {timeout}s, "
                        f"got {self._call_counts.get(name, 0)}"
                    )
                self._cond.wait(remaining)
            return [params for called, params in self.calls if called == name]

    def stats(self) -> dict[str, Any]:
        """Return counters, as GET /_fake/stats does."""
        with self._cond:
            return {
                "calls": dict(self._call_counts),
                "sent": len(self._sent),
                "conflicts": self.conflicts,
                "too_many": self.too_many,
                "pending_updates": len(self._updates),
                "confirmed_offset": self.confirmed_offset,
                "next_update_id": self._next_update_id,
            }

    # request handling (runs on the server's threads)

    def _canonical(self, method: str) -> str:
        entry = self._methods.get(method.lower())
        return entry[0] if entry else method

    def _answer(
        self,
        http_method: str,
        path: str,
        query: str,
        params: dict[str, Any] | None,
        gone: Callable[[], bool] = lambda: False,
    ) -> Any:
        """Answer one HTTP request: (status, JSON-able body) or _DROP.

        gone() tells whether the client closed the connection: a long poll whose client
        went away (a cancelled task) ends quietly instead of counting as a conflict later.
        """
        if path.startswith("/_fake/"):
            if params is None:
                return 400, {"ok": False, "error": "the control API takes a JSON object"}
            return self._control(http_method, path, query, params)
        download = re.fullmatch(r"/file/bot([^/]*)/(.+)", path)
        if download:
            return self._download(*(urllib.parse.unquote(part) for part in download.groups()))
        match = re.fullmatch(r"/bot([^/]*)/([^/]*)", path)
        if not match:
            return _error(ApiError(404, "Not Found"))
        if match.group(1) != self.token:
            return _error(ApiError(401, "Unauthorized"))
        if params is None:
            return _error(ApiError(400, "Bad Request: can't parse request body"))
        name = self._canonical(match.group(2))
        if name.lower() in _POSTING and self._hung_up_while_held(gone):
            return _DROP
        with self._cond:
            self.calls.append((name, params))
            self._call_counts[name] = self._call_counts.get(name, 0) + 1
            self._cond.notify_all()
            key = name.lower()
            if self._drops.get(key):
                self._drops[key] -= 1
                return _DROP
            failure = self._chat_failure(key, params)
            if failure is None:
                failures = self._failures.get(key)
                failure = failures.popleft() if failures else None
        try:
            if failure is not None:
                raise failure
            entry = self._methods.get(name.lower())
            if entry is None:
                raise ApiError(404, "Not Found")
            if name == "getUpdates":
                return 200, {"ok": True, "result": self._get_updates(params, gone)}
            return 200, {"ok": True, "result": entry[1](params)}
        except _ClientGone:
            return _DROP
        except ApiError as exc:
            with self._cond:
                if exc.status == 409:
                    self.conflicts += 1
                elif exc.status == 429:
                    self.too_many += 1
            return _error(exc)

    def _chat_failure(self, method: str, params: dict[str, Any]) -> ApiError | None:
        """The failure injected for this call's chat, if any (call with the lock held)."""
        try:
            chat_id = _chat_id(params)
        except ApiError:
            return None
        entry = self._chat_failures.get((method, chat_id))
        if entry is None or not entry[1]:
            return None
        if entry[0] > 0:
            entry[0] -= 1  # answered normally: the failures start after it
            return None
        error: ApiError = entry[1].popleft()
        return error

    def _get_updates(
        self, params: dict[str, Any], gone: Callable[[], bool] = lambda: False
    ) -> list[dict[str, Any]]:
        offset = _int(params.get("offset"), 0)
        limit = min(max(_int(params.get("limit"), 100), 1), 100)
        try:
            timeout = max(0.0, float(params.get("timeout") or 0))
        except (TypeError, ValueError):
            raise ApiError(400, "Bad Request: invalid timeout") from None
        allowed = params.get("allowed_updates")
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._webhook is not None:
                raise ApiError(409, WEBHOOK_CONFLICT)
            if self._poller is not None:
                # Telegram keeps the newest poll and terminates the one already waiting.
                self._terminated.add(self._poller)
                self._cond.notify_all()
            self._poll_seq += 1
            me = self._poll_seq
            self._poller = me
            try:
                self._confirm(offset)
                if isinstance(allowed, list):
                    self._allowed_updates = set(allowed) or None  # [] means all types
                while True:
                    if me in self._terminated:
                        self._terminated.discard(me)
                        if gone():
                            raise _ClientGone
                        raise ApiError(409, CONFLICT)
                    batch = self._select(offset, limit)
                    remaining = deadline - time.monotonic()
                    if batch or self._stopping or remaining <= 0:
                        return batch
                    # Wake up now and then to notice a client that hung up.
                    self._cond.wait(min(remaining, 0.25))
                    if gone():
                        raise _ClientGone
            finally:
                if self._poller == me:
                    self._poller = None

    def _confirm(self, offset: int) -> None:
        """Forget updates an offset confirms, as Telegram does."""
        if offset > 0:
            self._updates = self._updates[
                bisect.bisect_left(self._updates, offset, key=lambda entry: entry[0]) :
            ]
            self.confirmed_offset = max(self.confirmed_offset, offset)
        elif offset < 0:
            # A negative offset keeps only the last -offset updates.
            self._updates = self._updates[offset:]

    def _select(self, offset: int, limit: int) -> list[dict[str, Any]]:
        start = bisect.bisect_left(self._updates, offset, key=lambda entry: entry[0])
        batch = []
        for _, update in self._updates[start:]:
            if self._allowed_updates is None or any(k in self._allowed_updates for k in update):
                batch.append(update)
                if len(batch) >= limit:
                    break
        return batch

    def _delete_webhook(self, params: dict[str, Any]) -> bool:
        with self._cond:
            if params.get("drop_pending_updates") is True:
                self._updates.clear()
            self._webhook = None
            self._webhook_generation += 1  # the push threads see it and end
            self._last_push_error = None
            self._cond.notify_all()
        return True

    def _set_webhook(self, params: dict[str, Any]) -> bool:
        url = params.get("url")
        if not isinstance(url, str):
            raise ApiError(400, 'Bad Request: parameter "url" is required')
        if not url:
            return self._delete_webhook(params)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ApiError(
                400, "Bad Request: bad webhook: Failed to resolve host: Name or service not known"
            )
        secret = params.get("secret_token")
        if secret is not None and not (
            isinstance(secret, str) and _SECRET_TOKEN.fullmatch(secret)
        ):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        connections = _int(params.get("max_connections"), 40)
        if not 1 <= connections <= 100:
            raise ApiError(400, "Bad Request: bad webhook: max_connections must be 1-100")
        allowed = params.get("allowed_updates")
        with self._cond:
            if params.get("drop_pending_updates") is True:
                self._updates.clear()
            if isinstance(allowed, list):
                self._allowed_updates = set(allowed) or None
            self._webhook = {
                "url": url,
                "secret_token": secret,
                "max_connections": connections,
                "allowed_updates": sorted(self._allowed_updates or []),
            }
            self._webhook_generation += 1
            generation = self._webhook_generation
            self._last_push_error = None
            self._cond.notify_all()
        for number in range(connections):
            threading.Thread(
                target=self._push_loop,
                args=(generation,),
                name=f"fake-telegram-push-{number}",
                daemon=True,
            ).start()
        return True

    def _webhook_info(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._cond:
            info: dict[str, Any] = {
                "url": "",
                "has_custom_certificate": False,
                "pending_update_count": len(self._updates),
            }
            if self._webhook is not None:
                info["url"] = self._webhook["url"]
                info["max_connections"] = self._webhook["max_connections"]
                if self._webhook["allowed_updates"]:
                    info["allowed_updates"] = self._webhook["allowed_updates"]
                if self._last_push_error is not None:
                    info["last_error_date"], info["last_error_message"] = self._last_push_error
            return info

    @property
    def webhook_url(self) -> str:
        """The webhook set now ("" while polling)."""
        with self._cond:
            return self._webhook["url"] if self._webhook else ""

    def _push_loop(self, generation: int) -> None:
        """One of the webhook's connections: push updates until the webhook changes."""
        while True:
            with self._cond:
                while True:
                    if self._stopping or self._webhook_generation != generation:
                        return
                    picked = self._next_push()
                    if picked is not None:
                        break
                    self._cond.wait(0.05)
                update_id, update = picked
                chat = _update_chat(update)
                self._pushing.add(update_id)
                if chat:
                    self._pushing_chats.add(chat)
                hook = dict(self._webhook or {})
            status, error = self._push(hook, update)
            with self._cond:
                self._pushing.discard(update_id)
                self._pushing_chats.discard(chat)
                self.pushes.append((update_id, status))
                if error is None:
                    # Delivered: Telegram forgets the update.
                    self._updates = [entry for entry in self._updates if entry[0] != update_id]
                    self._retry_at.pop(update_id, None)
                else:
                    self._last_push_error = (int(time.time()), error)
                    self._retry_at[update_id] = time.monotonic() + self.push_retry_delay
                self._cond.notify_all()

    def _next_push(self) -> tuple[int, dict[str, Any]] | None:
        """The first update that may go now (call with the lock held): not in flight, not
        waiting for a retry, and no earlier update of its chat still undelivered."""
        now = time.monotonic()
        waiting_chats: set[int] = set()
        for update_id, update in self._updates:
            chat = _update_chat(update)
            if chat and chat in waiting_chats:
                continue
            if (
                update_id in self._pushing
                or self._retry_at.get(update_id, 0) > now
                or (chat and chat in self._pushing_chats)
            ):
                if chat:
                    waiting_chats.add(chat)
                continue
            if self._allowed_updates is not None and not any(
                kind in self._allowed_updates for kind in update
            ):
                continue
            return update_id, update
        return None

    def _push(self, hook: dict[str, Any], update: dict[str, Any]) -> tuple[int, str | None]:
        """POST one update to the webhook: the status (0: no answer) and the error, if any."""
        parts = urllib.parse.urlsplit(hook["url"])
        headers = {"Content-Type": "application/json"}
        if hook.get("secret_token"):
            headers["X-Telegram-Bot-Api-Secret-Token"] = hook["secret_token"]
        connection_class = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        connection = connection_class(parts.hostname or "", parts.port, timeout=self.push_timeout)
        try:
            connection.request("POST", parts.path or "/", json.dumps(update).encode(), headers)
            response = connection.getresponse()
            response.read()
        except TimeoutError:
            return 0, "Connection timed out"
        except ConnectionRefusedError:
            return 0, "Connection refused"
        except (OSError, http.client.HTTPException):
            return 0, "Connection reset by peer"
        finally:
            connection.close()
        if 200 <= response.status < 300:
            return response.status, None
        return response.status, (
            f"Wrong response from the webhook: {response.status} {response.reason}"
        )

    def _set_commands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise ApiError(400, "Bad Request: can't parse commands JSON object")
        for command in commands:
            if (
                not isinstance(command, dict)
                or not _COMMAND_NAME.fullmatch(str(command.get("command", "")))
                or not 1 <= len(str(command.get("description", ""))) <= 256
            ):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
        with self._cond:
            self._commands[_scope_key(params)] = commands
        return True

    def _get_commands(self, params: dict[str, Any]) -> list[Any]:
        with self._cond:
            return list(self._commands.get(_scope_key(params), []))

    def _delete_commands(self, params: dict[str, Any]) -> bool:
        with self._cond:
            self._commands.pop(_scope_key(params), None)
        return True

    def commands(self, scope: str = "default", language_code: str = "") -> list[Any]:
        """The commands set for a scope type ("default", "all_chat_administrators", ...)."""
        with self._cond:
            return list(self._commands.get((json.dumps({"type": scope}), language_code), []))

    def _next_message_id(self, chat_id: int | str) -> int:
        """Allocate a message id; like Telegram, ids count up per chat."""
        self._message_ids[chat_id] = self._message_ids.get(chat_id, 0) + 1
        return self._message_ids[chat_id]

    def _chat(self, chat_id: int | str) -> dict[str, Any]:
        with self._cond:
            known = self._chats.get(chat_id)
        if known is not None:
            return known
        if isinstance(chat_id, str):
            return {
                "id": -1001000000000,
                "type": "channel",
                "title": chat_id,
                "username": chat_id.lstrip("@"),
            }
        if chat_id > 0:
            return {"id": chat_id, "type": "private", "first_name": "User"}
        kind = "supergroup" if str(chat_id).startswith("-100") else "group"
        return {"id": chat_id, "type": kind, "title": f"Test {kind} {chat_id}"}

    def _displayed(self, params: dict[str, Any]) -> tuple[str, str, str | None]:
        """Validate text and parse_mode; return (raw text, displayed text, parse mode)."""
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        parse_mode = params.get("parse_mode") or None
        if parse_mode is None or parse_mode.lower() in ("markdown", "markdownv2"):
            displayed = text  # Markdown is not validated; the bot uses HTML
        elif parse_mode.lower() == "html":
            displayed = parse_html(text)
        else:
            raise ApiError(400, f"Bad Request: unsupported parse_mode {parse_mode!r}")
        displayed = displayed.strip()  # Telegram trims the message text
        if not displayed:
            raise ApiError(400, "Bad Request: message text is empty")
        if len(displayed) > MAX_MESSAGE_LENGTH:
            raise ApiError(400, "Bad Request: message is too long")
        return text, displayed, parse_mode

    def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = _chat_id(params)
        with self._cond:
            if chat_id in self._deleted:
                raise ApiError(400, "Bad Request: chat not found")
            if chat_id in self._blocked:
                raise ApiError(403, "Forbidden: bot was blocked by the user")
            if chat_id in self._migrated:
                raise ApiError(
                    400,
                    "Bad Request: group chat was upgraded to a supergroup chat",
                    {"migrate_to_chat_id": self._migrated[chat_id]},
                )
            chat_id = self._channel_poster(chat_id)
            thread_id = params.get("message_thread_id")
            if thread_id is not None and thread_id not in self._topics.get(chat_id, {}):
                raise ApiError(400, THREAD_NOT_FOUND)
        text, displayed, parse_mode = self._displayed(params)
        markup = _check_markup(params.get("reply_markup"))
        preview = params.get("link_preview_options")
        previews_disabled = (
            isinstance(preview, dict) and preview.get("is_disabled") is True
        ) or params.get("disable_web_page_preview") is True
        preview_url = preview.get("url") if isinstance(preview, dict) else None
        reply_to = params.get("reply_to_message_id")
        reply = params.get("reply_parameters")
        if isinstance(reply, dict):
            reply_to = reply.get("message_id")
        chat = self._chat(chat_id)
        with self._cond:
            now = self.clock()
            flood_ends = self._flooded.get(chat_id, now)
            if now < flood_ends:
                wait = max(1, math.ceil(flood_ends - now))
                raise ApiError(
                    429, f"Too Many Requests: retry after {wait}", {"retry_after": wait}
                )
            if self.enforce_limits:
                retry_after = self._limits.retry_after(chat_id, now)
                if retry_after is not None:
                    raise ApiError(
                        429,
                        f"Too Many Requests: retry after {retry_after}",
                        {"retry_after": retry_after},
                    )
            self._limits.record(chat_id, now)
            message_id = self._next_message_id(chat_id)
            message = SentMessage(
                chat_id=chat_id,
                message_id=message_id,
                text=text,
                displayed=displayed,
                parse_mode=parse_mode,
                previews_disabled=previews_disabled,
                sent_at=now,
                reply_to=reply_to if isinstance(reply_to, int) else None,
                thread_id=thread_id if isinstance(thread_id, int) else None,
                silent=params.get("disable_notification") is True,
                preview_url=preview_url if isinstance(preview_url, str) else None,
                reply_markup=markup,
            )
            self._sent.append(message)
            self._current[(chat_id, message_id)] = message
            self._cond.notify_all()
        answer: dict[str, Any] = {
            "message_id": message_id,
            "from": self.bot_user,
            "chat": chat,
            "date": int(time.time()),
            "text": displayed,
        }
        if markup is not None:
            answer["reply_markup"] = markup
        if message.thread_id is not None:
            answer.update(message_thread_id=message.thread_id, is_topic_message=True)
        return answer

    def _channel_poster(self, chat_id: int | str) -> int | str:
        """The channel a send goes to, if the bot may post there (lock held).

        ``@username`` names a known channel by its username. Telegram: a bot that is not
        in the channel gets 403, one without the right to post 400.
        """
        if isinstance(chat_id, str):
            named = [
                cid
                for cid, chat in self._chats.items()
                if chat.get("username", "").lower() == chat_id.lstrip("@").lower()
            ]
            if not named:
                raise ApiError(400, "Bad Request: chat not found")
            chat_id = named[0]
        if self._chats.get(chat_id, {}).get("type") != "channel":
            return chat_id
        me = self._members.get(chat_id, {}).get(self.bot_user["id"])
        if me is None or me["status"] in ("left", "kicked"):
            raise ApiError(403, NOT_CHANNEL_MEMBER)
        if me["status"] != "creator" and not me.get("can_post_messages"):
            raise ApiError(400, NEED_ADMIN)
        return chat_id

    def _get_chat_member(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = _chat_id(params)
        user_id = _int(params.get("user_id"), 0)
        with self._cond:
            chat_id = self._known_chat(chat_id)
            members = self._members.get(chat_id, {})
            if self._chats.get(chat_id, {}).get("type") == "channel":
                me = members.get(self.bot_user["id"])
                if me is None or me["status"] in ("left", "kicked"):
                    raise ApiError(403, NOT_CHANNEL_MEMBER)
                if (
                    me["status"] not in ("creator", "administrator")
                    and user_id != self.bot_user["id"]
                ):
                    raise ApiError(400, NEED_ADMIN)
            found = members.get(user_id)
        if found is not None:
            return found
        if user_id == self.bot_user["id"]:
            # The bot is in every group it hears from, as a plain member by default.
            return {"user": dict(self.bot_user), "status": "member"}
        if user_id <= 0:
            raise ApiError(400, "Bad Request: invalid user_id specified")
        return {
            "user": {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"},
            "status": "left",
        }

    def _get_chat_administrators(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        chat_id = _chat_id(params)
        with self._cond:
            chat_id = self._known_chat(chat_id)
            if self._chats.get(chat_id, {}).get("type") == "channel":
                me = self._members.get(chat_id, {}).get(self.bot_user["id"])
                if me is None or me["status"] in ("left", "kicked"):
                    raise ApiError(403, NOT_CHANNEL_MEMBER)
            return [
                member
                for member in self._members.get(chat_id, {}).values()
                if member["status"] in ("creator", "administrator")
            ]

    def _get_chat(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = _chat_id(params)
        if isinstance(chat_id, str):
            with self._cond:
                chat_id = self._known_chat(chat_id)  # an unknown @username: not found
        # getChat answers a ChatFullInfo: the chat plus fields that object requires.
        return {**self._chat(chat_id), "accent_color_id": 0, "max_reaction_count": 11}

    def _known_chat(self, chat_id: int | str) -> int | str:
        """The id of a chat named by id or @username (lock held); 400 if unknown."""
        if isinstance(chat_id, str):
            named = [
                cid
                for cid, chat in self._chats.items()
                if chat.get("username", "").lower() == chat_id.lstrip("@").lower()
            ]
            if not named:
                raise ApiError(400, "Bad Request: chat not found")
            return named[0]
        return chat_id

    def _answer_callback_query(self, params: dict[str, Any]) -> bool:
        query_id = str(params.get("callback_query_id") or "")
        with self._cond:
            query = self._queries.get(query_id)
            if query is None or query[1] or self.clock() - query[0] > CALLBACK_ANSWER_SECONDS:
                raise ApiError(400, QUERY_TOO_OLD)
            query[1] = True
            self.answers[query_id] = dict(params)
            self._cond.notify_all()
        return True

    def _get_file(self, params: dict[str, Any]) -> dict[str, Any]:
        file_id = params.get("file_id")
        if not isinstance(file_id, str) or not file_id:
            raise ApiError(
                400,
                "Bad Request: file_id is empty" if not file_id else "Bad Request: invalid file_id",
            )
        with self._cond:
            stored = self._files.get(file_id)
        if stored is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        if len(stored.data) > MAX_DOWNLOAD_BYTES:
            raise ApiError(400, "Bad Request: file is too big")
        result: dict[str, Any] = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_path": stored.file_path,
        }
        if stored.report_size:
            result["file_size"] = len(stored.data)
        return result

    def _download(self, token: str, file_path: str) -> Any:
        """GET /file/bot<token>/<file_path>: the file's bytes, or Telegram's 404."""
        with self._cond:
            self.downloads.append(file_path)
            found = next((f for f in self._files.values() if f.file_path == file_path), None)
        if token != self.token or found is None:
            return _error(ApiError(404, "Not Found"))
        return _Raw(200, found.data, found.mime_type or "application/octet-stream")

    def _send_document(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = _chat_id(params)
        with self._cond:
            if chat_id in self._blocked:
                raise ApiError(403, "Forbidden: bot was blocked by the user")
            if chat_id in self._migrated:
                raise ApiError(
                    400,
                    "Bad Request: group chat was upgraded to a supergroup chat",
                    {"migrate_to_chat_id": self._migrated[chat_id]},
                )
        document = params.get("document")
        if isinstance(document, Upload):
            if not document:
                raise ApiError(400, "Bad Request: file must be non-empty")
            if len(document) > MAX_UPLOAD_BYTES:
                raise ApiError(413, "Request Entity Too Large")
            stored = self.add_file(
                bytes(document), document.filename or None, document.content_type
            )
        elif isinstance(document, str) and document:
            with self._cond:
                known = self._files.get(document)
            if known is None:
                raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
            stored = known
        else:
            raise ApiError(400, "Bad Request: there is no document in the request")
        caption, displayed, parse_mode = "", "", None
        if params.get("caption"):
            caption, displayed, parse_mode = self._displayed(
                {"text": params["caption"], "parse_mode": params.get("parse_mode")}
            )
            if len(displayed) > MAX_CAPTION_LENGTH:
                raise ApiError(400, "Bad Request: message caption is too long")
        chat = self._chat(chat_id)
        with self._cond:
            now = self.clock()
            if self.enforce_limits:
                retry_after = self._limits.retry_after(chat_id, now)
                if retry_after is not None:
                    raise ApiError(
                        429,
                        f"Too Many Requests: retry after {retry_after}",
                        {"retry_after": retry_after},
                    )
            self._limits.record(chat_id, now)
            message_id = self._next_message_id(chat_id)
            self._sent.append(
                SentMessage(
                    chat_id=chat_id,
                    message_id=message_id,
                    text=caption,
                    displayed=displayed,
                    parse_mode=parse_mode,
                    previews_disabled=False,
                    sent_at=now,
                    document=stored.document(),
                )
            )
            self._cond.notify_all()
        message: dict[str, Any] = {
            "message_id": message_id,
            "from": self.bot_user,
            "chat": chat,
            "date": int(time.time()),
            "document": stored.document(),
        }
        if displayed:
            message["caption"] = displayed
        return message

    def _edit_message_reply_markup(self, params: dict[str, Any]) -> dict[str, Any] | bool:
        if "inline_message_id" in params:
            return True
        markup = _check_markup(params.get("reply_markup"))
        return self._edit(params, None, markup)

    def _edit(
        self,
        params: dict[str, Any],
        new_text: tuple[str, str] | None,
        markup: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Edit a stored message's text (None: keep it) and keyboard, as Telegram does."""
        chat_id = _chat_id(params)
        message_id = _int(params.get("message_id"), 0)
        with self._cond:
            current = self._current.get((chat_id, message_id))
            if current is None:
                raise ApiError(400, MESSAGE_TO_EDIT_NOT_FOUND)
            text, displayed = new_text or (current.text, current.displayed)
            if displayed == current.displayed and markup == current.reply_markup:
                raise ApiError(400, NOT_MODIFIED)
            edited = replace(current, text=text, displayed=displayed, reply_markup=markup)
            self._current[(chat_id, message_id)] = edited
            self._cond.notify_all()
        answer: dict[str, Any] = {
            "message_id": message_id,
            "from": self.bot_user,
            "chat": self._chat(chat_id),
            "date": int(time.time()),
            "edit_date": int(time.time()),
            "text": displayed,
        }
        if markup is not None:
            answer["reply_markup"] = markup
        return answer

    def _edit_message_text(self, params: dict[str, Any]) -> dict[str, Any] | bool:
        text, displayed, _ = self._displayed(params)
        if "inline_message_id" in params:
            return True
        # Without reply_markup an edit removes the message's inline keyboard.
        return self._edit(params, (text, displayed), _check_markup(params.get("reply_markup")))

    def _control(self, http_method: str, path: str, query: str, body: dict[str, Any]) -> Answer:
        """Serve the /_fake/ control API used when the fake runs in another process."""
        args = dict(urllib.parse.parse_qsl(query))
        route = (http_method, path.rstrip("/"))
        try:
            if route == ("POST", "/_fake/messages"):
                update_id = self.push_message(
                    int(body["chat_id"]),
                    str(body["text"]),
                    chat_type=body.get("chat_type"),
                    user_id=body.get("user_id"),
                    username=body.get("username", "alice"),
                )
                return 200, {"update_id": update_id}
            if route == ("POST", "/_fake/updates"):
                return 200, {"update_id": self.push_update(body)}
            if route == ("GET", "/_fake/sent"):
                chat = args.get("chat_id")
                chat_id: int | str | None = (
                    int(chat) if chat and re.fullmatch(r"-?\d+", chat) else chat
                )
                return 200, [asdict(m) for m in self.sent(chat_id)]
            if route == ("GET", "/_fake/stats"):
                return 200, self.stats()
            if route == ("POST", "/_fake/fail"):
                self.fail_next(
                    str(body["method"]),
                    int(body.get("status", 500)),
                    body.get("description"),
                    body.get("retry_after"),
                    body.get("migrate_to_chat_id"),
                    int(body.get("times", 1)),
                    body.get("chat_id"),
                    int(body.get("after", 0)),
                )
                return 200, {"ok": True}
            if route == ("POST", "/_fake/flood"):
                self.flood_chat(int(body["chat_id"]), float(body["seconds"]))
                return 200, {"ok": True}
            if route == ("POST", "/_fake/delete_chat"):
                self.delete_chat(int(body["chat_id"]))
                return 200, {"ok": True}
            if route == ("POST", "/_fake/my_chat_member"):
                update_id = self.push_my_chat_member(
                    int(body["chat_id"]),
                    str(body["new_status"]),
                    str(body.get("old_status", "member")),
                    body.get("chat_type"),
                )
                return 200, {"update_id": update_id}
            if route == ("POST", "/_fake/drop"):
                self.drop_next(str(body["method"]), int(body.get("times", 1)))
                return 200, {"ok": True}
            if route == ("POST", "/_fake/block"):
                self.block_chat(int(body["chat_id"]))
                return 200, {"ok": True}
            if route == ("POST", "/_fake/hold"):
                self._hold(bool(body.get("on", True)))
                return 200, {"ok": True, "holding": self._holding}
            if route == ("POST", "/_fake/limits"):
                self.enforce_limits = bool(body.get("enforce", True))
                return 200, {"ok": True, "enforce": self.enforce_limits}
        except (KeyError, TypeError, ValueError) as exc:
            return 400, {"ok": False, "error": f"bad control request: {exc!r}"}
        return 404, {"ok": False, "error": f"no control route {http_method} {path}"}


def _default_description(status: int, retry_after: int | None) -> str:
    """Return the description Telegram gives for a bare status code."""
    if status == 429:
        return f"Too Many Requests: retry after {retry_after or 1}"
    if status == 409:
        return CONFLICT
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _error(exc: ApiError) -> Answer:
    body: dict[str, Any] = {"ok": False, "error_code": exc.status, "description": exc.description}
    if exc.parameters:
        body["parameters"] = exc.parameters
    return exc.status, body


# --- HTTP plumbing ----------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    """A threaded HTTP server that can close its idle keep-alive connections on stop."""

    daemon_threads = True
    block_on_close = False  # stop() closes connections itself instead of joining
    request_queue_size = 128  # benchmarks open many connections at once

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        answer: Callable[..., Any],
    ) -> None:
        self.answer = answer
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
    """Parse a request into parameters, pass it to the fake, write the JSON answer."""

    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # one write per answer, no 40 ms delayed-ACK stalls

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

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _client_gone(self) -> bool:
        """Return True when the client closed the connection (EOF waiting to be read)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # skip trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _params(self, query: str, body: bytes) -> dict[str, Any] | None:
        """Merge query-string and body parameters; None when the body cannot be parsed."""
        raw: dict[str, Any] = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        content_type = self.headers.get_content_type()
        try:
            if not body:
                pass
            elif content_type == "application/json":
                parsed = json.loads(body)
                if not isinstance(parsed, dict):
                    return None
                raw.update(parsed)
            elif content_type == "multipart/form-data":
                raw.update(_parse_multipart(self.headers["Content-Type"], body))
            else:
                raw.update(urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except (ValueError, UnicodeDecodeError):
            return None
        return {name: _normalize(name, value) for name, value in raw.items()}

    def _serve(self) -> None:
        path, _, query = self.path.partition("?")
        body = self._body()
        if path.startswith("/_fake/"):
            # The control API speaks JSON whatever Content-Type a client (curl -d) claims.
            try:
                params = json.loads(body) if body else {}
            except ValueError:
                params = None
            if not isinstance(params, dict):
                params = None
        else:
            params = self._params(query, body)
        answer = self.server.answer(self.command, path, query, params, self._client_gone)
        if answer is _DROP:
            self.close_connection = True
            return
        if isinstance(answer, _Raw):
            head = (
                f"HTTP/1.1 {answer.status} OK\r\nServer: fake-telegram\r\n"
                f"Content-Type: {answer.content_type}\r\n"
                f"Content-Length: {len(answer.body)}\r\n"
            )
            try:
                self.wfile.write(head.encode("latin-1") + b"\r\n" + answer.body)
            except OSError:
                self.close_connection = True  # the client went away mid-download
            return
        status, payload = answer
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        head = (
            f"HTTP/1.1 {status} {phrase}\r\n"
            f"Server: fake-telegram\r\n"
            f"Content-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n"
        )
        if self.close_connection:
            head += "Connection: close\r\n"
        try:
            self.wfile.write(head.encode("latin-1") + b"\r\n" + data)
        except OSError:
            self.close_connection = True  # the client went away; nothing left to tell it


# --- a client for the control API ------------------------------------------------------


class FakeTelegramClient:
    """Drive a FakeTelegram running in another process through its /_fake/ API."""

    def __init__(self, url: str, timeout: float = 10) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read())

    def push_message(
        self,
        chat_id: int,
        text: str,
        chat_type: str | None = None,
        user_id: int | None = None,
        username: str = "alice",
    ) -> int:
        """Queue a user's text message; return its update_id."""
        payload: dict[str, Any] = {"chat_id": chat_id, "text": text, "username": username}
        if chat_type is not None:
            payload["chat_type"] = chat_type
        if user_id is not None:
            payload["user_id"] = user_id
        return int(self._call("POST", "/_fake/messages", payload)["update_id"])

    def push_update(self, update: dict[str, Any]) -> int:
        """Queue a raw update; return its update_id."""
        return int(self._call("POST", "/_fake/updates", update)["update_id"])

    def sent(self, chat_id: int | str | None = None) -> list[SentMessage]:
        """Return the messages the bot sent (to chat_id)."""
        query = "" if chat_id is None else "?" + urllib.parse.urlencode({"chat_id": chat_id})
        return [SentMessage(**item) for item in self._call("GET", f"/_fake/sent{query}")]

    def wait_for_sent(
        self, count: int, chat_id: int | str | None = None, timeout: float = 10
    ) -> list[SentMessage]:
        """Poll until at least count messages were sent (to chat_id); return them all."""
        deadline = time.monotonic() + timeout
        while len(messages := self.sent(chat_id)) < count:
            if time.monotonic() > deadline:
                shown = "\n".join(f"  {m.chat_id}: {m.displayed!r}" for m in messages)
                raise AssertionError(
                    f"expected {count} sent message(s) within {timeout}s, "
                    f"got {len(messages)}:\n{shown or '  (nothing)'}"
                )
            time.sleep(0.05)
        return messages

    def stats(self) -> dict[str, Any]:
        """Return the fake's counters."""
        result: dict[str, Any] = self._call("GET", "/_fake/stats")
        return result

    def fail_next(
        self,
        method: str,
        status: int = 500,
        description: str | None = None,
        retry_after: int | None = None,
        migrate_to_chat_id: int | None = None,
        times: int = 1,
        chat_id: int | None = None,
        after: int = 0,
    ) -> None:
        """Make the next `times` calls of method (for chat_id, after `after` of them) fail."""
        self._call(
            "POST",
            "/_fake/fail",
            {
                "method": method,
                "status": status,
                "description": description,
                "retry_after": retry_after,
                "migrate_to_chat_id": migrate_to_chat_id,
                "times": times,
                "chat_id": chat_id,
                "after": after,
            },
        )

    def flood_chat(self, chat_id: int, seconds: float) -> None:
        """Make sends to chat_id answer 429 for ``seconds``."""
        self._call("POST", "/_fake/flood", {"chat_id": chat_id, "seconds": seconds})

    def delete_chat(self, chat_id: int) -> None:
        """Make sends to chat_id answer 400 chat not found from now on."""
        self._call("POST", "/_fake/delete_chat", {"chat_id": chat_id})

    def push_my_chat_member(
        self, chat_id: int, new_status: str, old_status: str = "member"
    ) -> int:
        """Queue a my_chat_member update for the bot; return its update_id."""
        return int(
            self._call(
                "POST",
                "/_fake/my_chat_member",
                {"chat_id": chat_id, "new_status": new_status, "old_status": old_status},
            )["update_id"]
        )

    def drop_next(self, method: str, times: int = 1) -> None:
        """Make the next `times` calls of method lose their connection."""
        self._call("POST", "/_fake/drop", {"method": method, "times": times})

    def block_chat(self, chat_id: int) -> None:
        """Make sendMessage to chat_id answer 403 from now on."""
        self._call("POST", "/_fake/block", {"chat_id": chat_id})

    @contextmanager
    def hold_sends(self) -> Iterator[None]:
        """Hold posts untaken until the block ends (FakeTelegram.hold_sends)."""
        self._call("POST", "/_fake/hold", {"on": True})
        try:
            yield
        finally:
            self._call("POST", "/_fake/hold", {"on": False})

    def set_limits(self, enforce: bool) -> None:
        """Switch flood-limit enforcement on or off."""
        self._call("POST", "/_fake/limits", {"enforce": enforce})


def main(argv: list[str] | None = None) -> None:
    """Run the fake until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--enforce-limits", action="store_true")
    parser.add_argument("--first-update-id", type=int, default=1)
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    fake = FakeTelegram(
        args.token, args.host, args.port, args.enforce_limits, args.first_update_id
    )
    with fake:
        print(f"fake Telegram Bot API listening on {fake.url}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
