"""deploy/kind/e2e.py's checks, run here against real replicas on loopback.

The workflow's kind job runs the script against the cluster (kubectl scales and rolls
the bot there, and port-forwards to the fake Telegram and to Redis); this machine has
no kind, so its checking part runs here on what it reads in the cluster: the fake
Telegram's control API and the update stream in a real redis-server, with
`python -m newsbot run` replicas in between. A rolling restart under load must pass;
an update left unanswered, an update answered twice, or a bot that never answers must
each fail it.
"""

from __future__ import annotations

import importlib.util
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cluster_support import Replica, close_all, start_replicas
from newsbot import keys

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "deploy" / "kind" / "e2e.py"
UPDATES_PER_SECOND = 10


def load_script() -> ModuleType:
    """The script as a module (it is a file in deploy/kind/, not a package)."""
    spec = importlib.util.spec_from_file_location("kind_e2e", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


e2e = load_script()

Launch = Callable[[int], list[Replica]]


@pytest.fixture
def launch(telegram: Any, redis_url: str) -> Iterator[Launch]:
    """Start replicas on the fake Telegram and the session's (emptied) Redis."""
    started: list[Replica] = []

    def launch(count: int) -> list[Replica]:
        replicas = start_replicas(telegram, redis_url, count)
        started.extend(replicas)
        return replicas

    yield launch
    for replica in started:
        print(f"--- replica pid {replica.pid} ---\n{replica.output}")
    close_all(started)


@pytest.fixture
def checks(telegram: Any, redis_url: str) -> tuple[Any, Any]:
    """The script's views of the fake Telegram and of Redis, as port-forwards give them."""
    port = urllib.parse.urlsplit(redis_url).port
    assert port is not None
    return e2e.Telegram(telegram.url), e2e.Redis("127.0.0.1", port)


def test_the_script_reads_the_bots_own_stream() -> None:
    assert (e2e.UPDATES, e2e.GROUP) == (keys.UPDATES, keys.GROUP)


@pytest.mark.timeout(240)
def test_a_rolling_restart_under_load_answers_every_update_once(
    launch: Launch, checks: tuple[Any, Any]
) -> None:
    telegram, redis = checks
    replicas = launch(2)
    per_start = e2e.answer_start(telegram, redis, e2e.PROBE_CHAT, timeout=60)
    assert per_start == 1
    exits: list[int] = []

    def roll() -> None:
        # As the Deployment rolls (maxSurge 1, maxUnavailable 0): a new replica runs
        # before an old one gets SIGTERM.
        for old in list(replicas):
            replicas.extend(launch(1))
            exits.append(old.terminate())

    verdict = e2e.deliver(telegram, redis, per_start, roll, UPDATES_PER_SECOND, timeout=90)
    assert verdict.ok, str(verdict)
    assert exits == [0, 0]
    # Updates came in before, during and after the roll.
    assert verdict.updates >= 4 * UPDATES_PER_SECOND
    assert str(verdict) == f"all {verdict.updates} updates answered exactly once"


@pytest.mark.timeout(120)
def test_an_unanswered_update_fails_the_check(
    telegram: Any, launch: Launch, checks: tuple[Any, Any]
) -> None:
    view, redis = checks
    launch(1)
    # The user of the fourth chat blocked the bot: its reply is refused (403), the user
    # never sees an answer, and the bot goes on.
    unanswered = e2e.FIRST_LOAD_CHAT + 3
    telegram.block_chat(unanswered)
    verdict = e2e.deliver(view, redis, 1, lambda: None, UPDATES_PER_SECOND, timeout=60)
    assert not verdict.ok
    assert verdict.missing == [unanswered], str(verdict)
    assert verdict.repeated == {}
    assert f"1 never answered (chats [{unanswered}])" in str(verdict)


@pytest.mark.timeout(120)
def test_an_update_answered_twice_fails_the_check(
    telegram: Any, launch: Launch, checks: tuple[Any, Any]
) -> None:
    view, redis = checks
    launch(1)
    twice = e2e.FIRST_LOAD_CHAT

    def answer_again() -> None:
        # What a second replica handling the same update would do: send its reply too,
        # through the Bot API like the bot.
        body = urllib.parse.urlencode({"chat_id": twice, "text": "Hello again"}).encode()
        url = f"{telegram.url}/bot{telegram.token}/sendMessage"
        with urllib.request.urlopen(url, data=body, timeout=10) as response:
            assert response.status == 200

    verdict = e2e.deliver(view, redis, 1, answer_again, UPDATES_PER_SECOND, timeout=60)
    assert not verdict.ok
    assert verdict.repeated == {twice: 2}, str(verdict)
    assert verdict.missing == []


@pytest.mark.timeout(60)
def test_a_bot_that_never_answers_fails_the_check(checks: tuple[Any, Any]) -> None:
    # No replica runs: the updates stay with the fake, nothing settles.
    view, redis = checks
    with pytest.raises(e2e.CheckFailed, match="waiting for the bot to take and handle"):
        e2e.deliver(view, redis, 1, lambda: None, UPDATES_PER_SECOND, timeout=3)


@pytest.mark.timeout(120)
def test_a_reply_still_on_its_way_is_waited_for_not_counted_missing(
    telegram: Any, launch: Launch, checks: tuple[Any, Any]
) -> None:
    # The first chat's reply is held back by a flood wait longer than the whole load
    # lasts: when the fake has handed out every update, that reply is still to come. The
    # check waits for the stream to settle, so it sees the reply instead of a loss.
    view, redis = checks
    launch(1)
    telegram.fail_next("sendMessage", status=429, retry_after=8, chat_id=e2e.FIRST_LOAD_CHAT)
    verdict = e2e.deliver(view, redis, 1, lambda: None, UPDATES_PER_SECOND, timeout=60)
    assert telegram.too_many == 1
    assert verdict.ok, str(verdict)
