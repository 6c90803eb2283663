"""Check the Kubernetes manifests in k8s/ with real tools and by policy.

kubernetes-validate (strict schemas of several Kubernetes releases) and yamllint
run as subprocesses; the policy and consistency tests read the manifests with
PyYAML. Zero findings is the bar. A missing tool skips its test, naming the
install command, unless NEWSBOT_REQUIRE_TOOLS=1 (CI sets it) makes that a
failure. `bash .ci/tools.sh` installs every tool.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from checktools import find_tool, import_yaml

yaml: Any = import_yaml()

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
NAMESPACE = "newsbot"
IMAGE = "docker.io/newsbot/newsbot"
HTTP_PORT = 8080

# Kubernetes releases whose schemas the manifests must satisfy; each must be
# bundled with the installed kubernetes-validate.
KUBERNETES_VERSIONS = ["1.31.0", "1.33.0", "1.35.0", "1.37.0"]

# Every setting of DESIGN.md's configuration table.
SETTINGS = {
    "TELEGRAM_TOKEN",
    "TELEGRAM_API_URL",
    "REDIS_URL",
    "REDDIT_URL",
    "REDDIT_CLIENT_ID",
    "REDDIT_CLIENT_SECRET",
    "NEWSBOT_ITEMS_PER_SOURCE",
    "NEWSBOT_MAX_SOURCES",
    "NEWSBOT_CACHE_TTL",
    "NEWSBOT_MIN_INTERVAL",
    "NEWSBOT_ALLOW_PRIVATE_URLS",
    "NEWSBOT_ALLOWED_CHATS",
    "NEWSBOT_HTTP_PORT",
    "NEWSBOT_LOG_LEVEL",
    "NEWSBOT_LOG_FORMAT",
}

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
LONG_RUNNING_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}
REQUIRED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
)
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|PRIVATE_?KEY", re.I)


# -- tools --------------------------------------------------------------------


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a tool and capture what it prints."""
    return subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "NO_COLOR": "1"},
    )


def report(result: subprocess.CompletedProcess[str]) -> str:
    """Everything a tool printed, for an assertion message."""
    return (
        f"$ {' '.join(result.args)}\nexit {result.returncode}\n"
        f"--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
    )


# -- manifests ----------------------------------------------------------------


def manifest_files() -> list[Path]:
    """Every file `kubectl apply -f k8s/` applies, in the order it applies them."""
    return sorted(path for path in K8S.iterdir() if path.is_file())


def load(path: Path) -> list[dict[str, Any]]:
    """The objects of one manifest file."""
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def objects() -> list[dict[str, Any]]:
    """Every object in k8s/."""
    return [doc for path in manifest_files() for doc in load(path)]


def find(kind: str, name: str) -> dict[str, Any]:
    """The one object of a kind and name."""
    matches = [o for o in objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name!r} in k8s/, found {len(matches)}"
    return matches[0]


def workloads() -> list[dict[str, Any]]:
    """Deployments, StatefulSets and the other kinds that make pods."""
    return [o for o in objects() if o["kind"] in WORKLOAD_KINDS]


def pod_template(workload: dict[str, Any]) -> dict[str, Any]:
    """The pod template of a workload."""
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]
    return workload["spec"]["template"]


def containers(workload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every container of a workload, init containers included."""
    spec = pod_template(workload)["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def workload_id(workload: dict[str, Any]) -> str:
    return f"{workload['kind']}/{workload['metadata']['name']}"


def selects(selector: dict[str, str], workload: dict[str, Any]) -> bool:
    """Whether matchLabels select the pods of a workload."""
    labels = pod_template(workload)["metadata"]["labels"]
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def selected(selector: dict[str, str]) -> list[dict[str, Any]]:
    return [w for w in workloads() if selects(selector, w)]


def container_port(workload: dict[str, Any], port: int | str) -> int:
    """Resolve a port number or a named container port to its number."""
    if isinstance(port, int):
        return port
    for container in containers(workload):
        for declared in container.get("ports", []):
            if declared.get("name") == port:
                return int(declared["containerPort"])
    raise AssertionError(f"{workload_id(workload)} has no port named {port!r}")


def project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as stream:
        return str(tomllib.load(stream)["project"]["version"])


def source(relative: str, why: str) -> str:
    """The text of a file another part of the project writes; fail clearly if absent."""
    path = ROOT / relative
    if not path.is_file():
        pytest.fail(f"{relative} does not exist yet; {why}")
    return path.read_text(encoding="utf-8")


def collect_workloads() -> list[dict[str, Any]]:
    """The workloads to parametrize over; a broken file fails its own test instead."""
    try:
        return workloads()
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return []


WORKLOADS = collect_workloads()


@pytest.fixture(scope="module")
def newsbot() -> dict[str, Any]:
    return find("Deployment", "newsbot")


@pytest.fixture(scope="module")
def redis() -> dict[str, Any]:
    return find("StatefulSet", "redis")


# -- the tools ----------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_validate_strictly(version: str) -> None:
    tool = find_tool("kubernetes-validate", "kubernetes-validate")
    files = [str(path.relative_to(ROOT)) for path in manifest_files()]
    result = run(tool, "--strict", "--kubernetes-version", version, *files)
    minor = ".".join(version.split(".")[:2])
    # Unknown kinds only earn a WARN line and exit 0, so every line must be
    # the success line of one object, and there must be one for each object.
    expected = [
        f"INFO {name} passed for resource {doc['kind'].lower()}/{doc['metadata']['name']}"
        f" against version {minor}"
        for name in files
        for doc in load(ROOT / name)
    ]
    assert (result.returncode, result.stdout.splitlines(), result.stderr) == (0, expected, ""), (
        report(result)
    )


def test_strict_validation_rejects_an_unknown_field(tmp_path: Path) -> None:
    tool = find_tool("kubernetes-validate", "kubernetes-validate")
    text = (K8S / "30-newsbot-deployment.yaml").read_text(encoding="utf-8")
    broken = tmp_path / "deployment.yaml"
    broken.write_text(text.replace("readOnlyRootFilesystem", "readOnlyRootFileSystem"))
    result = run(tool, "--strict", "--kubernetes-version", KUBERNETES_VERSIONS[0], str(broken))
    assert result.returncode == 1, report(result)
    assert "'readOnlyRootFileSystem' was unexpected" in result.stdout, report(result)


def test_yaml_is_lint_free() -> None:
    tool = find_tool("yamllint", "yamllint")
    paths = ["k8s", "deploy", ".github", ".yamllint"]
    if (ROOT / "docker-compose.yml").exists():
        paths.append("docker-compose.yml")
    result = run(tool, "--strict", "--format", "parsable", "--config-file", ".yamllint", *paths)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), report(result)


# -- layout -------------------------------------------------------------------


def test_kubectl_apply_takes_the_files_in_order() -> None:
    names = [path.name for path in manifest_files()]
    assert names[0] == "00-namespace.yaml"
    for name in names:
        assert re.fullmatch(r"\d\d-[a-z0-9-]+\.yaml", name), (
            f"k8s/{name}: every file there is applied; name it NN-what.yaml"
        )
    for path in manifest_files():
        for doc in load(path):
            assert {"apiVersion", "kind", "metadata"} <= doc.keys(), path.name
            if doc["kind"] == "Namespace":
                assert path.name == "00-namespace.yaml"
                assert doc["metadata"]["name"] == NAMESPACE
            else:
                assert doc["metadata"].get("namespace") == NAMESPACE, (
                    f"{path.name}: {doc['kind']} {doc['metadata']['name']} outside {NAMESPACE}"
                )


def test_every_object_carries_the_recommended_labels() -> None:
    for doc in objects():
        labels = doc["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "newsbot", doc["metadata"]["name"]
        if doc["kind"] == "Namespace":
            continue
        for key in REQUIRED_LABELS:
            assert labels.get(key), f"{doc['kind']} {doc['metadata']['name']} lacks {key}"


@pytest.mark.parametrize("workload", WORKLOADS, ids=workload_id)
def test_workloads_and_their_pods_carry_all_labels(workload: dict[str, Any]) -> None:
    for labels in (workload["metadata"]["labels"], pod_template(workload)["metadata"]["labels"]):
        for key in (*REQUIRED_LABELS, "app.kubernetes.io/version"):
            assert labels.get(key), f"{workload_id(workload)} lacks {key}"
    selector = workload["spec"]["selector"]["matchLabels"]
    assert "app.kubernetes.io/version" not in selector, "a selector cannot change on upgrade"
    assert selects(selector, workload)


# -- policy -------------------------------------------------------------------


@pytest.mark.parametrize("workload", WORKLOADS, ids=workload_id)
def test_pods_run_unprivileged(workload: dict[str, Any]) -> None:
    spec = pod_template(workload)["spec"]
    context = spec.get("securityContext", {})
    assert spec.get("automountServiceAccountToken") is False
    assert context.get("runAsNonRoot") is True
    for key in ("runAsUser", "runAsGroup", "fsGroup"):
        assert isinstance(context.get(key), int) and context[key] > 0, key
    assert context.get("seccompProfile", {}).get("type") == "RuntimeDefault"
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key), key
    assert not any("hostPath" in volume for volume in spec.get("volumes", []))
    for container in containers(workload):
        own = container.get("securityContext", {})
        assert own.get("allowPrivilegeEscalation") is False, container["name"]
        assert own.get("readOnlyRootFilesystem") is True, container["name"]
        assert own.get("capabilities", {}).get("drop") == ["ALL"], container["name"]
        assert not own.get("capabilities", {}).get("add"), container["name"]
        assert not own.get("privileged"), container["name"]
        assert own.get("runAsUser", 1) != 0, container["name"]


@pytest.mark.parametrize("workload", WORKLOADS, ids=workload_id)
def test_containers_request_and_limit_resources(workload: dict[str, Any]) -> None:
    for container in containers(workload):
        resources = container.get("resources", {})
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                assert resources.get(kind, {}).get(resource), (
                    f"{container['name']}: no {kind}.{resource}"
                )


@pytest.mark.parametrize("workload", WORKLOADS, ids=workload_id)
def test_images_are_pinned(workload: dict[str, Any]) -> None:
    for container in containers(workload):
        image = container["image"]
        _, _, tag = image.rpartition("/")[2].partition(":")
        assert "@sha256:" in image or (tag and tag != "latest"), (
            f"{container['name']}: {image} names no version"
        )


@pytest.mark.parametrize(
    "workload", [w for w in WORKLOADS if w["kind"] in LONG_RUNNING_KINDS], ids=workload_id
)
def test_long_running_containers_have_probes(workload: dict[str, Any]) -> None:
    for container in pod_template(workload)["spec"]["containers"]:
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert probe in container, f"{container['name']} has no {probe}"


def test_no_secret_is_committed() -> None:
    for doc in objects():
        assert not (doc["kind"] == "Secret" and (doc.get("data") or doc.get("stringData"))), (
            f"Secret {doc['metadata']['name']} holds data: create it with kubectl instead"
        )
        if doc["kind"] == "ConfigMap":
            for key in doc.get("data", {}):
                assert not SECRET_NAME.search(key), f"ConfigMap key {key} looks secret"
    for workload in WORKLOADS:
        for container in containers(workload):
            for variable in container.get("env", []):
                if SECRET_NAME.search(variable["name"]):
                    assert "value" not in variable, (
                        f"{workload_id(workload)}: {variable['name']} has an inline value"
                    )


# -- the bot's Deployment -----------------------------------------------------


def test_newsbot_rolls_out_without_losing_capacity(newsbot: dict[str, Any]) -> None:
    spec = newsbot["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 30
    spread = pod["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in spread] == ["kubernetes.io/hostname"]
    assert selects(spread[0]["labelSelector"]["matchLabels"], newsbot)


def test_newsbot_probes_the_health_endpoints(newsbot: dict[str, Any]) -> None:
    container = newsbot["spec"]["template"]["spec"]["containers"][0]
    paths = {
        probe: (
            container[probe]["httpGet"]["path"],
            container_port(newsbot, container[probe]["httpGet"]["port"]),
        )
        for probe in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    assert paths == {
        "startupProbe": ("/healthz", HTTP_PORT),
        "readinessProbe": ("/readyz", HTTP_PORT),
        "livenessProbe": ("/healthz", HTTP_PORT),
    }
    assert container["ports"] == [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}]


def test_newsbot_pod_security_and_resources(newsbot: dict[str, Any]) -> None:
    pod = newsbot["spec"]["template"]["spec"]
    context = pod["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (
        10001,
        10001,
        10001,
    )
    container = pod["containers"][0]
    assert container["resources"]["requests"] == {"cpu": "50m", "memory": "64Mi"}
    assert container["resources"]["limits"]["memory"] == "128Mi"
    tmp = {m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/tmp"}
    assert [v for v in pod["volumes"] if v["name"] in tmp and "emptyDir" in v], (
        "the read-only container needs a writable /tmp"
    )


def test_newsbot_runs_the_released_image(newsbot: dict[str, Any]) -> None:
    version = project_version()
    container = newsbot["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"{IMAGE}:{version}"
    assert newsbot["metadata"]["labels"]["app.kubernetes.io/version"] == version
    assert pod_template(newsbot)["metadata"]["labels"]["app.kubernetes.io/version"] == version


def test_newsbot_reads_config_and_token(newsbot: dict[str, Any]) -> None:
    pod = newsbot["spec"]["template"]["spec"]
    container = pod["containers"][0]
    names = [source["configMapRef"]["name"] for source in container["envFrom"]]
    assert names == ["newsbot-config"]
    find("ConfigMap", "newsbot-config")
    assert container["env"] == [
        {
            "name": "TELEGRAM_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "newsbot-telegram", "key": "TELEGRAM_TOKEN"}},
        }
    ]
    account = find("ServiceAccount", pod["serviceAccountName"])
    assert account.get("automountServiceAccountToken") is False


def test_newsbot_scales_and_survives_disruption(newsbot: dict[str, Any]) -> None:
    hpa = find("HorizontalPodAutoscaler", "newsbot")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "newsbot",
    }
    assert hpa["spec"]["minReplicas"] == newsbot["spec"]["replicas"] == 3
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    budgets = [
        o
        for o in objects()
        if o["kind"] == "PodDisruptionBudget"
        and selects(o["spec"]["selector"]["matchLabels"], newsbot)
    ]
    assert len(budgets) == 1
    assert budgets[0]["spec"].get("maxUnavailable") == 1


def test_metrics_service_is_scraped(newsbot: dict[str, Any]) -> None:
    service = find("Service", "newsbot-metrics")
    assert selected(service["spec"]["selector"]) == [newsbot]
    annotations = service["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(HTTP_PORT),
        "prometheus.io/path": "/metrics",
    }
    [port] = service["spec"]["ports"]
    assert port["port"] == container_port(newsbot, port["targetPort"]) == HTTP_PORT


# -- Redis --------------------------------------------------------------------


def test_redis_persists_on_a_volume(redis: dict[str, Any]) -> None:
    spec = redis["spec"]
    [claim] = spec["volumeClaimTemplates"]
    [container] = spec["template"]["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/data"
    command = container.get("command", []) + container.get("args", [])
    assert command[0] == "redis-server"
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--dir") + 1] == "/data"
    assert container["image"].startswith("docker.io/library/redis:7.4")
    assert spec["template"]["spec"]["securityContext"]["runAsUser"] == 999


def test_redis_probes_ping(redis: dict[str, Any]) -> None:
    [container] = redis["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert "redis-cli ping" in " ".join(container[probe]["exec"]["command"]), probe


def test_redis_services(redis: dict[str, Any]) -> None:
    headless = find("Service", redis["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    client = find("Service", "redis")
    for service in (headless, client):
        assert selected(service["spec"]["selector"]) == [redis]
        [port] = service["spec"]["ports"]
        assert port["port"] == container_port(redis, port["targetPort"]) == 6379
    config = find("ConfigMap", "newsbot-config")["data"]
    assert config["REDIS_URL"] == "redis://redis:6379/0"


# -- network policies ---------------------------------------------------------


def policy_for(workload: dict[str, Any]) -> dict[str, Any]:
    policies = [
        o
        for o in objects()
        if o["kind"] == "NetworkPolicy"
        and selects(o["spec"]["podSelector"]["matchLabels"], workload)
    ]
    assert len(policies) == 1, f"{workload_id(workload)}: {len(policies)} NetworkPolicies"
    return policies[0]


def test_every_workload_is_fenced() -> None:
    for workload in WORKLOADS:
        assert sorted(policy_for(workload)["spec"]["policyTypes"]) == ["Egress", "Ingress"]


def test_newsbot_network_policy(newsbot: dict[str, Any], redis: dict[str, Any]) -> None:
    spec = policy_for(newsbot)["spec"]
    assert spec["ingress"] == [{"ports": [{"protocol": "TCP", "port": HTTP_PORT}]}]
    rules = spec["egress"]
    assert len(rules) == 3, "egress: DNS, Redis and HTTPS only"
    dns, to_redis, https = rules
    assert dns["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    assert sorted(p["protocol"] for p in dns["ports"]) == ["TCP", "UDP"]
    assert {p["port"] for p in dns["ports"]} == {53}
    [peer] = to_redis["to"]
    assert selected(peer["podSelector"]["matchLabels"]) == [redis]
    assert to_redis["ports"] == [{"protocol": "TCP", "port": 6379}]
    assert https == {"ports": [{"protocol": "TCP", "port": 443}]}


def test_redis_network_policy(newsbot: dict[str, Any], redis: dict[str, Any]) -> None:
    spec = policy_for(redis)["spec"]
    [rule] = spec["ingress"]
    [peer] = rule["from"]
    assert list(peer) == ["podSelector"]
    assert selected(peer["podSelector"]["matchLabels"]) == [newsbot]
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]
    assert spec.get("egress", []) == []


def test_every_selector_selects_a_workload() -> None:
    for doc in objects():
        if doc["kind"] == "Service":
            selector = doc["spec"]["selector"]
        elif doc["kind"] in {"PodDisruptionBudget"}:
            selector = doc["spec"]["selector"]["matchLabels"]
        elif doc["kind"] == "NetworkPolicy":
            selector = doc["spec"]["podSelector"]["matchLabels"]
        else:
            continue
        assert selected(selector), f"{doc['kind']} {doc['metadata']['name']} selects nothing"


# -- agreement with the code --------------------------------------------------


def test_configmap_holds_only_settings_the_bot_reads() -> None:
    data = find("ConfigMap", "newsbot-config")["data"]
    assert set(data) <= SETTINGS, f"not a Newsbot setting: {sorted(set(data) - SETTINGS)}"
    assert all(isinstance(value, str) for value in data.values())
    assert data["NEWSBOT_LOG_FORMAT"] == "json"
    assert data["NEWSBOT_HTTP_PORT"] == str(HTTP_PORT)
    config = source("newsbot/config.py", "it reads every setting the ConfigMap sets")
    unread = sorted(key for key in data if key not in config)
    assert not unread, f"newsbot/config.py does not read {unread}"


def test_probes_match_the_health_server() -> None:
    health = source("newsbot/health.py", "it serves the paths the probes ask for")
    for path in ("/healthz", "/readyz", "/metrics"):
        assert f'"{path}"' in health or f"'{path}'" in health, (
            f"newsbot/health.py does not serve {path}"
        )
    config = source("newsbot/config.py", "it sets the default HTTP port the probes use")
    assert str(HTTP_PORT) in config, f"newsbot/config.py has no default port {HTTP_PORT}"
