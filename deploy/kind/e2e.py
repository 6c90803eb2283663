"""Newsbot end to end on a kind cluster, seen only through the fake Telegram and Redis.

The workflow's kind job deploys k8s/ as it is, with deploy/kind/ (the fake Bot API,
tests/fakes/telegram_api.py, behind the Service telegram-api) and TELEGRAM_API_URL
pointing at it, then runs::

    python deploy/kind/e2e.py --roll-image docker.io/newsbot/newsbot:e2e-rolled

which port-forwards to the fake's control API and to Redis, and then:

1. sends ``/start`` and waits for the reply, and sees a connection that no
   NetworkPolicy admits refused (kind's network plugin enforces them);
2. scales the bot to 5 replicas and waits until all are ready;
3. rolls the image (``kubectl set image``) while a new chat sends ``/start`` every
   fifth of a second, from before the roll starts until after it ends;
4. checks that every one of those updates was answered exactly once: once the fake
   holds no update the bot has not taken, and the bot's update stream has none it has
   not acknowledged, no answer can still come, so the counts are final.

The checks (``Telegram``, ``Redis``, ``answer_start``, ``deliver``) are apart from
driving the cluster (``Kubectl``, ``main``), so tests/test_kind_e2e.py runs the checks
against bot replicas on loopback. Standard library only: CI runs it with a bare Python.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

# newsbot/keys.py's UPDATES and GROUP (tests/test_kind_e2e.py holds them equal): the
# stream the leader appends updates to, and the consumer group every replica reads.
UPDATES = "newsbot:updates"
GROUP = "newsbot"
# The chat of the first /start; the load's chats come after it, one chat per update, so
# a reply counted in a chat is the reply to that chat's one update.
PROBE_CHAT = 1
FIRST_LOAD_CHAT = 10_000
# What the reply to /start must show (the help text lists the commands).
START_REPLY_SHOWS = "/source"


class CheckFailed(Exception):
    """The bot did not behave: the message says what a user would have seen."""


def wait_for(what: str, probe: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    """Call probe until it returns something true; return that, or fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise CheckFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


# --- the fake Telegram's control API -------------------------------------------------


class Telegram:
    """The fake Bot API's /_fake/ control routes (tests/fakes/telegram_api.py)."""

    def __init__(self, url: str, timeout: float = 10) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        # No proxy: the fake is on loopback, behind a port-forward or in the test.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with self._opener.open(request, timeout=self.timeout) as response:
            return json.loads(response.read())

    def push_message(self, chat_id: int, text: str) -> int:
        """A user writes text in the private chat chat_id; return the update id."""
        return int(
            self._call("POST", "/_fake/messages", {"chat_id": chat_id, "text": text})["update_id"]
        )

    def sent(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        """What the bot sent (to chat_id), as the fake recorded it."""
        query = "" if chat_id is None else "?" + urllib.parse.urlencode({"chat_id": chat_id})
        result: list[dict[str, Any]] = self._call("GET", f"/_fake/sent{query}")
        return result

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_fake/stats")
        return result


# --- Redis, read only ----------------------------------------------------------------


class RedisError(Exception):
    """Redis answered with an error, or something that is not RESP."""


class Redis:
    """Just enough of the Redis protocol (RESP2) to read the update stream's state."""

    def __init__(self, host: str, port: int, timeout: float = 5) -> None:
        self.address = (host, port)
        self.timeout = timeout

    def command(self, *args: str) -> Any:
        encoded = [arg.encode() for arg in args]
        request = b"*%d\r\n" % len(encoded) + b"".join(
            b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in encoded
        )
        with socket.create_connection(self.address, self.timeout) as connection:
            connection.sendall(request)
            with connection.makefile("rb") as reply:
                return _read_reply(reply)

    def stream_settled(self) -> bool:
        """Every update in the stream was delivered to a replica and acknowledged."""
        try:
            groups = [_pairs(group) for group in self.command("XINFO", "GROUPS", UPDATES)]
            stream = _pairs(self.command("XINFO", "STREAM", UPDATES))
        except RedisError:
            return False  # no stream yet
        group = next((g for g in groups if g.get("name") == GROUP), None)
        # Not the group's lag: Redis 6.2 does not report it.
        return (
            group is not None
            and group.get("pending") == 0
            and group.get("last-delivered-id") == stream.get("last-generated-id")
        )


def _read_reply(reply: Any) -> Any:
    line = reply.readline()
    if not line.endswith(b"\r\n"):
        raise RedisError(f"connection closed mid-reply: {line!r}")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisError(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else reply.read(size + 2)[:-2].decode(errors="replace")
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_read_reply(reply) for _ in range(size)]
    raise RedisError(f"not a RESP2 reply: {line!r}")


def _pairs(flat: Any) -> dict[str, Any]:
    """XINFO's [key, value, key, value, ...] as a dict."""
    if not isinstance(flat, list):
        raise RedisError(f"expected a list of pairs, got {flat!r}")
    return dict(zip(flat[::2], flat[1::2], strict=True))


def settled(telegram: Telegram, redis: Redis) -> bool:
    """No answer can come any more: the fake holds no update the bot has not taken (the
    bot stores an update in the stream before it confirms it), and the stream none that
    was not handled (a replica acknowledges an entry once its replies were sent)."""
    return telegram.stats()["pending_updates"] == 0 and redis.stream_settled()


# --- the checks ----------------------------------------------------------------------


def answer_start(telegram: Telegram, redis: Redis, chat_id: int, timeout: float) -> int:
    """Send /start from a new chat, wait for the reply; return how many messages it is."""
    telegram.push_message(chat_id, "/start")
    [first, *_] = wait_for(
        f"the reply to /start in chat {chat_id}", lambda: telegram.sent(chat_id), timeout
    )
    if START_REPLY_SHOWS not in first["displayed"]:
        raise CheckFailed(f"/start was answered {first['displayed']!r}")
    wait_for("the bot to settle after /start", lambda: settled(telegram, redis), timeout)
    return len(telegram.sent(chat_id))


class Load:
    """A new chat sends /start every `1 / per_second` s, in a thread, until stopped."""

    def __init__(self, telegram: Telegram, per_second: float, first_chat: int) -> None:
        self.telegram = telegram
        self.interval = 1 / per_second
        self.first_chat = first_chat
        self.chats: list[int] = []
        self.error: Exception | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def wait_pushed(self, count: int, timeout: float = 120) -> None:
        wait_for(
            f"{count} updates pushed",
            lambda: len(self.chats) >= count or self.error,
            timeout,
            0.05,
        )
        if self.error is not None:
            raise CheckFailed(f"pushing updates failed: {self.error!r}")

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            chat = self.first_chat + len(self.chats)
            try:
                self.telegram.push_message(chat, "/start")
            except OSError as exc:
                self.error = exc  # reported by wait_pushed and deliver
                return
            self.chats.append(chat)
            self._stop.wait(started + len(self.chats) * self.interval - time.monotonic())


@dataclass
class Verdict:
    """Per update (one chat each): answered not at all, or more than once."""

    updates: int
    missing: list[int] = field(default_factory=list)
    repeated: dict[int, int] = field(default_factory=dict)
    strays: dict[int, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.updates > 0 and not (self.missing or self.repeated or self.strays)

    def __str__(self) -> str:
        if self.ok:
            return f"all {self.updates} updates answered exactly once"
        return (
            f"of {self.updates} updates, {len(self.missing)} never answered "
            f"(chats {self.missing[:20]}), {len(self.repeated)} answered more than once "
            f"(chat: messages {dict(list(self.repeated.items())[:20])}); "
            f"messages to chats that wrote nothing: {self.strays}"
        )


def judge(
    sent: list[dict[str, Any]], chats: list[int], per_update: int, known: set[int]
) -> Verdict:
    """Count the messages to each chat: `per_update` each, none to a chat that is unknown."""
    counts = Counter(int(message["chat_id"]) for message in sent)
    wrote = set(chats) | known
    return Verdict(
        updates=len(chats),
        # Fewer messages than one /start brings: its reply, or part of it, never came.
        missing=[chat for chat in chats if counts[chat] < per_update],
        repeated={chat: counts[chat] for chat in chats if counts[chat] > per_update},
        strays={chat: n for chat, n in counts.items() if chat not in wrote},
    )


def deliver(
    telegram: Telegram,
    redis: Redis,
    per_update: int,
    disrupt: Callable[[], None],
    per_second: float = 5,
    timeout: float = 300,
    known: set[int] | None = None,
) -> Verdict:
    """Updates keep coming before, during and after disrupt(); count their answers."""
    with Load(telegram, per_second, FIRST_LOAD_CHAT) as load:
        load.wait_pushed(max(1, int(per_second * 2)))  # updates already flow
        disrupt()
        load.wait_pushed(len(load.chats) + max(1, int(per_second * 2)))  # and still do
    if load.error is not None:
        raise CheckFailed(f"pushing updates failed: {load.error!r}")
    wait_for(
        f"the bot to take and handle all {len(load.chats)} updates",
        lambda: settled(telegram, redis),
        timeout,
    )
    return judge(telegram.sent(), load.chats, per_update, known or {PROBE_CHAT})


# --- driving the kind cluster ----------------------------------------------------------


@dataclass
class Kubectl:
    """kubectl in the bot's namespace."""

    namespace: str = "newsbot"
    executable: str = "kubectl"
    kubeconfig: str | None = None  # None: kubectl's own (KUBECONFIG, ~/.kube/config)

    def _base(self) -> list[str]:
        config = [] if self.kubeconfig is None else ["--kubeconfig", self.kubeconfig]
        return [self.executable, *config, "--namespace", self.namespace]

    def __call__(self, *args: str, timeout: float = 600) -> str:
        command = [*self._base(), *args]
        print("$", " ".join(command), flush=True)
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise CheckFailed(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    @contextmanager
    def port_forward(self, target: str, port: int) -> Iterator[int]:
        """Forward a free loopback port to target's port; yield the local port."""
        command = [
            *self._base(),
            "port-forward",
            "--address",
            "127.0.0.1",
            target,
            f":{port}",
        ]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            assert process.stdout is not None
            # "Forwarding from 127.0.0.1:40123 -> 8081"
            line = process.stdout.readline()
            if not line.startswith("Forwarding from 127.0.0.1:"):
                raise CheckFailed(f"kubectl port-forward {target} said {line!r}")
            local = int(line.split("127.0.0.1:", 1)[1].split()[0])
            # Keep reading its output ("Handling connection for ..."), or it blocks on a full pipe.
            threading.Thread(target=process.stdout.read, daemon=True).start()
            yield local
        finally:
            process.terminate()
            process.wait(10)

    def scale(self, deployment: str, replicas: int) -> None:
        # kind has no metrics-server, so the autoscaler (3-10 replicas) cannot act on CPU
        # and leaves a count within its range as it is.
        self("scale", f"deployment/{deployment}", f"--replicas={replicas}")

    def set_image(self, deployment: str, container: str, image: str) -> None:
        self("set", "image", f"deployment/{deployment}", f"{container}={image}")

    def rollout_status(self, deployment: str, timeout: float) -> None:
        """Wait until the Deployment's newest pods are all ready and the old ones gone."""
        self(
            "rollout",
            "status",
            f"deployment/{deployment}",
            f"--timeout={timeout:.0f}s",
            timeout=timeout + 30,
        )

    def connects(self, workload: str, host: str, port: int) -> bool:
        """Whether a connection from workload's pod to host:port gets through."""
        probe = f"import socket; socket.create_connection(({host!r}, {port}), 5).close()"
        command = [*self._base(), "exec", workload, "--", "python", "-c", probe]
        print("$", " ".join(command), flush=True)
        return subprocess.run(command, capture_output=True, timeout=60).returncode == 0

    def ready_replicas(self, deployment: str) -> int:
        return int(
            self("get", f"deployment/{deployment}", "-o", "jsonpath={.status.readyReplicas}") or 0
        )

    def pod_images(self, selector: str) -> list[str]:
        pods = json.loads(self("get", "pods", "--selector", selector, "--output", "json"))["items"]
        return [
            pod["spec"]["containers"][0]["image"]
            for pod in pods
            if pod["metadata"].get("deletionTimestamp") is None
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roll-image", required=True, help="the image to roll the bot to")
    parser.add_argument("--namespace", default="newsbot")
    parser.add_argument("--deployment", default="newsbot")
    parser.add_argument("--container", default="newsbot")
    parser.add_argument(
        "--selector", default="app.kubernetes.io/name=newsbot,app.kubernetes.io/instance=newsbot"
    )
    parser.add_argument("--replicas", type=int, default=5)
    parser.add_argument(
        "--per-second", type=float, default=5, help="updates a second during the roll"
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds for each wait")
    parser.add_argument("--kubectl", default="kubectl")
    args = parser.parse_args(argv)
    kubectl = Kubectl(args.namespace, args.kubectl)

    def roll() -> None:
        kubectl.set_image(args.deployment, args.container, args.roll_image)
        kubectl.rollout_status(args.deployment, args.timeout)

    try:
        with (
            kubectl.port_forward("service/telegram-api", 8081) as telegram_port,
            kubectl.port_forward("service/redis", 6379) as redis_port,
        ):
            telegram = Telegram(f"http://127.0.0.1:{telegram_port}")
            redis = Redis("127.0.0.1", redis_port)
            per_start = answer_start(telegram, redis, PROBE_CHAT, args.timeout)
            print(f"/start answered ({per_start} message(s))", flush=True)
            # The bot reached the fake through the opening deploy/kind/ adds. That the
            # policies hold at all: the fake may open no connection, not even to Redis
            # (by address: its DNS is closed too), which no policy admits it to.
            redis_ip = kubectl("get", "service/redis", "-o", "jsonpath={.spec.clusterIP}")
            if kubectl.connects("deployment/telegram-api", redis_ip, 6379):
                raise CheckFailed("NetworkPolicies are not enforced: the fake reached Redis")
            print("NetworkPolicies are enforced", flush=True)

            kubectl.scale(args.deployment, args.replicas)
            kubectl.rollout_status(args.deployment, args.timeout)
            ready = kubectl.ready_replicas(args.deployment)
            if ready != args.replicas:
                raise CheckFailed(f"{ready} replicas ready, not {args.replicas}")
            print(f"scaled to {ready} ready replicas", flush=True)

            verdict = deliver(telegram, redis, per_start, roll, args.per_second, args.timeout)
            print(verdict, flush=True)
            images = kubectl.pod_images(args.selector)
            if images != [args.roll_image] * args.replicas:
                raise CheckFailed(f"after the roll the pods run {images}")
            print(f"{len(images)} pods run {args.roll_image}", flush=True)
            return 0 if verdict.ok else 1
    except CheckFailed as failure:
        print(f"FAILED: {failure}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
