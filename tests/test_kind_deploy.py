"""deploy/kind/: the fake Telegram the kind job runs beside k8s/, checked offline.

The kind job applies k8s/ as it is, then this directory: the fake Bot API
(tests/fakes/telegram_api.py from a ConfigMap, run by the bot's own image), its Service
and the NetworkPolicies that let the bot reach it. Here: strict schemas, k8s/'s pod
policy, and that the pieces fit (ports, labels, image). tests/test_k8s_apiserver.py
applies the directory to a real API server; tests/test_deploy.py lints its YAML.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from checktools import find_tool, import_yaml
from test_deploy import KUBERNETES_VERSIONS
from test_k8s_apiserver import check_pod_runs_unprivileged

yaml: Any = import_yaml()

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / "deploy" / "kind"
FAKE = ROOT / "tests" / "fakes" / "telegram_api.py"


def _objects(directory: Path) -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(directory.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if doc
    ]


def _one(kind: str, name: str, directory: Path = SETUP) -> dict[str, Any]:
    [found] = [
        o for o in _objects(directory) if o["kind"] == kind and o["metadata"]["name"] == name
    ]
    return found


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_kind_setup_validates_strictly(version: str) -> None:
    tool = find_tool("kubernetes-validate", "kubernetes-validate")
    files = [str(path.relative_to(ROOT)) for path in sorted(SETUP.glob("*.yaml"))]
    result = subprocess.run(
        [tool, "--strict", "--kubernetes-version", version, *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0 and result.stderr == "", result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(_objects(SETUP)), result.stdout
    assert all(" passed for resource " in line for line in lines), result.stdout


def test_the_fake_runs_as_k8s_runs_the_bot() -> None:
    fake = _one("Deployment", "telegram-api")
    template = fake["spec"]["template"]
    check_pod_runs_unprivileged({**template, "metadata": {"name": "telegram-api"}})
    [container] = template["spec"]["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/_fake/stats"
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}
    # The image kind already holds: the bot's, as k8s/ names it.
    bot = _one("Deployment", "newsbot", ROOT / "k8s")
    assert container["image"] == bot["spec"]["template"]["spec"]["containers"][0]["image"]
    assert container["imagePullPolicy"] == "IfNotPresent"
    # The fake is a state in memory: one pod.
    assert fake["spec"]["replicas"] == 1
    # The bot's Deployment and policies must not take the fake's pods for its own.
    bot_selector = bot["spec"]["selector"]["matchLabels"]
    assert not _selects(bot_selector, template["metadata"]["labels"])


def test_the_fake_is_the_repositorys_file_with_the_bots_token() -> None:
    [container] = _one("Deployment", "telegram-api")["spec"]["template"]["spec"]["containers"]
    [volume] = _one("Deployment", "telegram-api")["spec"]["template"]["spec"]["volumes"]
    [mount] = container["volumeMounts"]
    assert container["command"] == ["python", f"{mount['mountPath']}/{FAKE.name}"]
    assert mount["readOnly"] is True
    assert volume["configMap"]["name"] == "telegram-api-code"
    assert "--token=$(TELEGRAM_TOKEN)" in container["args"]
    [token] = container["env"]
    bot = _one("Deployment", "newsbot", ROOT / "k8s")
    [bot_token] = bot["spec"]["template"]["spec"]["containers"][0]["env"]
    assert token == bot_token  # the same Secret and key: the two tokens agree
    # The options the fake's command line takes, and the route its probes ask.
    text = FAKE.read_text(encoding="utf-8")
    for option in ("--host", "--port", "--token"):
        assert f'"{option}"' in text
    assert '("GET", "/_fake/stats")' in text


def test_the_bot_may_reach_the_fake_and_nothing_more() -> None:
    fake = _one("Deployment", "telegram-api")
    [container] = fake["spec"]["template"]["spec"]["containers"]
    [port] = container["ports"]
    assert f"--port={port['containerPort']}" in container["args"]
    service = _one("Service", "telegram-api")
    [service_port] = service["spec"]["ports"]
    assert service_port["targetPort"] == port["name"]
    assert _selects(service["spec"]["selector"], fake["spec"]["template"]["metadata"]["labels"])

    bot = _one("Deployment", "newsbot", ROOT / "k8s")
    bot_labels = bot["spec"]["template"]["metadata"]["labels"]
    opening = _one("NetworkPolicy", "newsbot-to-telegram-api")
    assert _selects(opening["spec"]["podSelector"]["matchLabels"], bot_labels)
    assert opening["spec"]["policyTypes"] == ["Egress"]
    [rule] = opening["spec"]["egress"]
    [peer] = rule["to"]
    assert _selects(
        peer["podSelector"]["matchLabels"], fake["spec"]["template"]["metadata"]["labels"]
    )
    assert rule["ports"] == [{"protocol": "TCP", "port": port["containerPort"]}]

    fence = _one("NetworkPolicy", "telegram-api")
    assert _selects(
        fence["spec"]["podSelector"]["matchLabels"], fake["spec"]["template"]["metadata"]["labels"]
    )
    assert fence["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "egress" not in fence["spec"]  # it opens no connection
    assert fence["spec"]["ingress"] == [
        {"ports": [{"protocol": "TCP", "port": port["containerPort"]}]}
    ]
