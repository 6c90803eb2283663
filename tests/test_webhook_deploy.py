"""deploy/webhook/: the Kubernetes objects of webhook mode, checked offline.

`kubectl apply -f k8s/ && kubectl apply -f deploy/webhook/` puts the bot in webhook mode:
the same Deployment but for the webhook's two variables, a Service for the replicas'
HTTP port, an Ingress for the webhook's path only (TLS from a Secret) and the
NetworkPolicy opened for the ingress controller. tests/test_k8s_apiserver.py applies the
directory to a real API server; tests/test_deploy.py lints its YAML.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from checktools import find_tool, import_yaml
from newsbot.webhook import webhook_path

yaml: Any = import_yaml()

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / "deploy" / "webhook"
# As tests/test_deploy.py checks k8s/.
KUBERNETES_VERSIONS = ["1.31.0", "1.33.0", "1.37.0"]


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


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_webhook_setup_validates_strictly(version: str) -> None:
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
    assert len(result.stdout.splitlines()) == len(_objects())


def test_the_deployment_is_k8s_s_with_the_webhook_variables_only() -> None:
    mine = _one("Deployment", "newsbot")
    base = yaml.safe_load((ROOT / "k8s" / "30-newsbot-deployment.yaml").read_text())
    container = mine["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [
        {"configMapRef": {"name": "newsbot-config"}},
        {"configMapRef": {"name": "newsbot-webhook"}},
    ]
    assert container["env"][1:] == [
        {
            "name": "NEWSBOT_WEBHOOK_SECRET",
            "valueFrom": {
                "secretKeyRef": {"name": "newsbot-webhook", "key": "NEWSBOT_WEBHOOK_SECRET"}
            },
        }
    ]
    base_container = base["spec"]["template"]["spec"]["containers"][0]
    container["envFrom"], container["env"] = base_container["envFrom"], base_container["env"]
    assert mine == base


def test_the_ingress_takes_the_webhook_path_only_over_tls() -> None:
    url = _one("ConfigMap", "newsbot-webhook")["data"]["NEWSBOT_WEBHOOK_URL"]
    assert url.startswith("https://")
    ingress = _one("Ingress", "newsbot-webhook")["spec"]
    [rule] = ingress["rules"]
    assert rule["host"] == urlsplit(url).hostname
    assert ingress["tls"] == [{"hosts": [rule["host"]], "secretName": "newsbot-webhook-tls"}]
    assert rule["http"]["paths"] == [
        {
            "path": webhook_path(url),
            "pathType": "Exact",
            "backend": {"service": {"name": "newsbot-webhook", "port": {"name": "http"}}},
        }
    ]
    service = _one("Service", "newsbot-webhook")["spec"]
    pod_labels = _one("Deployment", "newsbot")["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= pod_labels.items()
    assert service["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]


def test_the_ingress_controller_may_reach_the_bot_s_port() -> None:
    policy = _one("NetworkPolicy", "newsbot-webhook")["spec"]
    pod_labels = _one("Deployment", "newsbot")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    [rule] = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]
    [source] = rule["from"]
    assert source["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress-nginx"
    }


def test_no_secret_is_committed() -> None:
    assert not [o for o in _objects() if o["kind"] == "Secret"]
    assert "NEWSBOT_WEBHOOK_SECRET" not in _one("ConfigMap", "newsbot-webhook")["data"]
