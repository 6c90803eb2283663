"""deploy/kind/: the fake Telegram the kind job runs beside k8s/, checked offline.

The kind job applies k8s/ as it is, then this directory: the fake Bot API
(tests/fakes/telegram_api.py from a ConfigMap, run by the bot's own image), its Service
and the NetworkPolicies that let the bot reach it. Here: strict schemas, k8s/'s pod
policy, and that the pieces fit (ports, labels, image). Then the kind job's deploy step,
as the workflow writes it, and deploy/kind/e2e.py's kubectl steps (scale, roll) run
against a real control plane (k8s_support), which has no kubelet: what the API server
and the controllers make of them is checked, not pods running.
tests/test_k8s_apiserver.py applies the directory by itself; tests/test_deploy.py lints
its YAML.
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from checktools import find_tool, import_yaml
from k8s_support import ControlPlane, remove, report, start_control_plane, wait_for
from test_deploy import KUBERNETES_VERSIONS
from test_k8s_apiserver import check_pod_runs_unprivileged
from test_kind_e2e import e2e

yaml: Any = import_yaml()

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / "deploy" / "kind"
FAKE = ROOT / "tests" / "fakes" / "telegram_api.py"
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
DEPLOY_STEP = "Deploy k8s/ with the fake Telegram"
BOT_SELECTOR = "app.kubernetes.io/name=newsbot,app.kubernetes.io/instance=newsbot"
FAKE_SELECTOR = "app.kubernetes.io/name=telegram-api,app.kubernetes.io/instance=newsbot-e2e"


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


# -- the kind job's kubectl steps on a real control plane -------------------------------


def kind_job() -> dict[str, Any]:
    job: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))["jobs"]["kind"]
    return job


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    control_plane = start_control_plane()
    try:
        control_plane.require_controllers()
        yield control_plane
    finally:
        remove(control_plane)


def run_deploy_step(plane: ControlPlane, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The workflow's deploy step, verbatim but for `rollout status` (no kubelet here, so
    no pod ever gets ready), with the control plane's kubectl first on PATH."""
    [step] = [s for s in kind_job()["steps"] if s.get("name") == DEPLOY_STEP]
    script = "\n".join(line for line in step["run"].splitlines() if "rollout status" not in line)
    assert "kubectl apply -f k8s/" in script
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").symlink_to(plane.assets.kubectl)
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(plane.root),
            "KUBECONFIG": str(plane.kubeconfig),
            "E2E_TOKEN": kind_job()["env"]["E2E_TOKEN"],
        },
    )


def pods(plane: ControlPlane, selector: str, count: int | None = None) -> list[Any] | None:
    """The pods a selector finds (that many of them, if count); None for none (yet)."""
    found: list[Any] = plane.get("pods", "-n", "newsbot", "-l", selector)["items"]
    return found if found and (count is None or len(found) == count) else None


@pytest.mark.timeout(300)
def test_the_kind_jobs_deploy_step_and_the_scripts_kubectl_steps(
    plane: ControlPlane, tmp_path: Path
) -> None:
    result = run_deploy_step(plane, tmp_path)
    # No warning either: nothing was applied over an object kubectl apply did not make.
    assert (result.returncode, result.stderr) == (0, ""), report(result)

    # The bot's settings name the fake; the fake's code is the repository's file; the
    # token is the one the job gives both.
    config = plane.get("configmap", "-n", "newsbot", "newsbot-config")["data"]
    assert config["TELEGRAM_API_URL"] == "http://telegram-api:8081"
    assert config["REDIS_URL"] == "redis://redis:6379/0"  # the rest of k8s/'s, kept
    code = plane.get("configmap", "-n", "newsbot", "telegram-api-code")["data"]
    assert code == {"telegram_api.py": FAKE.read_text(encoding="utf-8")}
    secret = plane.get("secret", "-n", "newsbot", "newsbot-telegram")["data"]
    token = base64.b64decode(secret["TELEGRAM_TOKEN"]).decode()
    assert token == kind_job()["env"]["E2E_TOKEN"]

    # Pod Security "restricted" admits the fake's pod and the bot's.
    [fake_pod] = wait_for("the fake's pod", lambda: pods(plane, FAKE_SELECTOR))
    check_pod_runs_unprivileged(fake_pod)
    wait_for("the bot's 3 pods", lambda: pods(plane, BOT_SELECTOR, 3))

    kubectl = e2e.Kubectl("newsbot", str(plane.assets.kubectl), str(plane.kubeconfig))
    # Scaled to 5, and it stays 5 once the autoscaler has looked: without metrics-server
    # (kind has none) it cannot act on CPU, and 5 is within its 3-10.
    kubectl.scale("newsbot", 5)

    def seen_by_autoscaler() -> dict[str, Any] | None:
        hpa: dict[str, Any] = plane.get("hpa", "-n", "newsbot", "newsbot")
        return hpa if hpa.get("status", {}).get("currentReplicas") == 5 else None

    wait_for("the autoscaler to see 5 replicas", seen_by_autoscaler)
    assert plane.get("deployment", "-n", "newsbot", "newsbot")["spec"]["replicas"] == 5
    wait_for("the bot's 5 pods", lambda: pods(plane, BOT_SELECTOR, 5))

    # The roll: a new ReplicaSet on the other image. No pod gets ready here, so the old
    # pods stay (maxUnavailable 0) and the script's last check would refuse the result.
    template = plane.get("deployment", "-n", "newsbot", "newsbot")["spec"]["template"]
    old_image = template["spec"]["containers"][0]["image"]
    rolled = f"{old_image.rsplit(':', 1)[0]}:e2e-rolled"
    kubectl.set_image("newsbot", "newsbot", rolled)

    def rolling() -> list[str] | None:
        images: list[str] = kubectl.pod_images(BOT_SELECTOR)
        return images if rolled in images else None

    images = wait_for("a pod of the rolled image", rolling)
    assert sorted(images) == sorted([old_image] * 5 + [rolled]), images
    assert kubectl.ready_replicas("newsbot") == 0
    # The fake is not rolled with the bot.
    [fake_pod] = pods(plane, FAKE_SELECTOR) or []
    assert fake_pod["spec"]["containers"][0]["image"] == old_image
