"""Base images for the container tests: the official ones, or local stand-ins for them.

The Dockerfile starts from ``python:3.12-slim`` and the compose file runs
``redis:7.4-alpine``. Where a registry answers (GitHub's runners) the tests use those.
Where none does (this project's own CI machine), they build stand-ins that look the same
to the Dockerfile and the compose file:

- a Debian bookworm root filesystem made by ``debootstrap --variant=minbase`` and
  brought in with ``docker import`` (the tarball is cached);
- the Python stand-in: Debian's ``python3`` and ``python3-venv`` on it, ``python`` and
  ``python3`` on PATH like the official image, plus the host's CA bundle and package
  index settings so that pip inside ``docker build`` reaches the same index as the host;
- the Redis stand-in: Debian's ``redis-server``, working in ``/data`` as the user
  ``redis``, with protected mode off by default as in the official image.

Every image is tagged with a hash of its recipe and built only when that tag is missing,
so a second run costs nothing. Nothing here is used by the project itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

OFFICIAL_PYTHON = "python:3.12-slim"
OFFICIAL_REDIS = "redis:7.4-alpine"

SUITE = "bookworm"
MIRROR = os.environ.get("NEWSBOT_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
CACHE_DIR = Path(os.environ.get("NEWSBOT_TEST_CACHE", "/var/cache/newsbot-test"))
HOST_CA_BUNDLE = Path(
    os.environ.get("NEWSBOT_TEST_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
)
# Where the stand-ins keep the host's CA bundle; pip and requests are pointed at it.
STANDIN_CA_PATH = "/usr/local/share/newsbot-test/ca-certificates.crt"

# Bump when the recipe changes in a way the hashed text below does not show.
RECIPE_VERSION = "1"

PYTHON_STANDIN = """\
FROM {base}
# Debian's Python in place of the official build; `python` on PATH as there.
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
        python3 python3-venv \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \\
 && ln -s /usr/bin/python3 /usr/local/bin/python
# The test environment's CA bundle and index: pip inside `docker build` must reach
# the package index the way the host does.
COPY ca-certificates.crt {ca}
COPY pip.conf /etc/pip.conf
ENV LANG=C.UTF-8 \\
    PIP_CERT={ca} \\
    REQUESTS_CA_BUNDLE={ca} \\
    SSL_CERT_FILE={ca}
CMD ["python3"]
"""

REDIS_STANDIN = """\
FROM {base}
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
        redis-server \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \\
 && mkdir /data && chown redis:redis /data
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
VOLUME /data
USER redis
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
"""

# The official image builds Redis with protected mode off, so other containers may
# connect without a password; Debian's build has it on, so the stand-in turns it off.
REDIS_ENTRYPOINT = """\
#!/bin/sh
set -e
if [ "$1" = redis-server ]; then
    set -- "$@" --protected-mode no
fi
exec "$@"
"""


@dataclass(frozen=True)
class BaseImages:
    """The images the tests build on: PYTHON_IMAGE for the Dockerfile, REDIS_IMAGE."""

    python: str
    redis: str
    standins: bool
    # Seconds spent making them: debootstrap, import, stand-in builds (0 when cached).
    seconds: dict[str, float]


class ImageError(RuntimeError):
    """A base image could not be made or fetched; the message says which step failed."""


def run(args: list[str], timeout: float = 600, **kwargs: object) -> str:
    """Run a command, return its stdout; raise ImageError with its output if it fails."""
    try:
        result = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
        )  # type: ignore[call-overload]
    except subprocess.TimeoutExpired as exc:
        raise ImageError(f"{' '.join(args[:4])} ... timed out after {timeout}s") from exc
    if result.returncode != 0:
        raise ImageError(
            f"{' '.join(args[:4])} ... exited {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return str(result.stdout)


def image_exists(tag: str) -> bool:
    """Tell whether the Docker engine has an image by that name."""
    result = subprocess.run(
        ["docker", "image", "inspect", tag], capture_output=True, check=False, timeout=60
    )
    return result.returncode == 0


def wanted_kind() -> str:
    """Return "standin" or "official": NEWSBOT_TEST_IMAGES, else what this host can do.

    Stand-ins need root (debootstrap); a host without both is assumed to reach the
    registry, as GitHub's runners do.
    """
    kind = os.environ.get("NEWSBOT_TEST_IMAGES", "").strip().lower()
    if kind in ("standin", "official"):
        return kind
    if kind:
        raise ImageError(f"NEWSBOT_TEST_IMAGES={kind!r}: expected 'standin' or 'official'")
    can_standin = os.geteuid() == 0 and shutil.which("debootstrap") is not None
    return "standin" if can_standin else "official"


def base_images() -> BaseImages:
    """Return the base images to test with, building or pulling what is missing."""
    if wanted_kind() == "official":
        seconds: dict[str, float] = {}
        for image in (OFFICIAL_PYTHON, OFFICIAL_REDIS):
            if not image_exists(image):
                started = time.monotonic()
                run(["docker", "pull", image])
                seconds[f"pull {image}"] = time.monotonic() - started
        return BaseImages(OFFICIAL_PYTHON, OFFICIAL_REDIS, False, seconds)
    return standin_images()


def standin_images() -> BaseImages:
    """Build (or find cached) the Debian stand-ins for the official Python and Redis."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    with _locked(CACHE_DIR / "build.lock"):
        base = _ensure_base(seconds)
        context = _python_context()
        python = _ensure_built(
            "newsbot-standin-python",
            PYTHON_STANDIN.format(base=base, ca=STANDIN_CA_PATH),
            context,
            seconds,
        )
        redis = _ensure_built(
            "newsbot-standin-redis",
            REDIS_STANDIN.format(base=base),
            {"docker-entrypoint.sh": REDIS_ENTRYPOINT},
            seconds,
        )
    return BaseImages(python, redis, True, seconds)


def _digest(*parts: str | bytes) -> str:
    """Return a short hash of the parts: the cache key of a recipe."""
    hasher = hashlib.sha256(RECIPE_VERSION.encode())
    for part in parts:
        hasher.update(part.encode() if isinstance(part, str) else part)
        hasher.update(b"\0")
    return hasher.hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on path: two test runs must not build the same image."""
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _debootstrap_args(target: str) -> list[str]:
    return ["debootstrap", "--variant=minbase", SUITE, target, MIRROR]


def _ensure_base(seconds: dict[str, float]) -> str:
    """Import the cached debootstrap tarball as an image, making the tarball if needed."""
    key = _digest(" ".join(_debootstrap_args("ROOT")))
    tag = f"newsbot-standin-base:{key}"
    if image_exists(tag):
        return tag
    tarball = CACHE_DIR / f"rootfs-{SUITE}-{key}.tar"
    if not tarball.exists():
        started = time.monotonic()
        _make_rootfs_tarball(tarball)
        seconds["debootstrap"] = time.monotonic() - started
    started = time.monotonic()
    run(["docker", "import", "--change", 'CMD ["bash"]', str(tarball), tag])
    seconds["docker import"] = time.monotonic() - started
    return tag


def _make_rootfs_tarball(tarball: Path) -> None:
    """Debootstrap a minimal bookworm and pack it, leaving out apt's downloads."""
    for stale in CACHE_DIR.glob("debootstrap-*/"):
        # Left by a run that was killed (we hold the lock: nobody else works there).
        _unmount_below(stale)
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=CACHE_DIR, prefix="debootstrap-") as work:
        root = Path(work) / "root"
        try:
            run(_debootstrap_args(str(root)), timeout=900)
        finally:
            # A debootstrap that failed or timed out may leave the host's /proc and /sys
            # mounted inside; deleting the directory must not walk into them.
            _unmount_below(root)
        # Downloaded .debs and package lists are dead weight in a base image: the
        # official slim images ship without them as well.
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (root / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        partial = tarball.with_suffix(".partial")
        run(
            ["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-cf", str(partial), "."],
            timeout=300,
        )
        partial.rename(tarball)  # only a complete tarball ever carries the final name


def _unmount_below(root: Path) -> None:
    """Unmount everything mounted at or below root, deepest first."""
    prefix = str(root.resolve())
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    for point in sorted(
        (p for p in points if p == prefix or p.startswith(prefix + "/")), key=len, reverse=True
    ):
        subprocess.run(["umount", "--lazy", point], capture_output=True, check=False, timeout=60)


def _python_context() -> dict[str, str]:
    """Return the files the Python stand-in copies in: the CA bundle and a pip.conf."""
    if not HOST_CA_BUNDLE.is_file():
        raise ImageError(f"no CA bundle at {HOST_CA_BUNDLE} (set NEWSBOT_TEST_CA_BUNDLE)")
    return {"ca-certificates.crt": HOST_CA_BUNDLE.read_text(), "pip.conf": host_pip_conf()}


def host_pip_conf() -> str:
    """Return a pip.conf with the host's package index settings that work in a container.

    Local file:// indexes and find-links do not exist inside the build, so only http(s)
    ones are kept; the certificate is the copied bundle.
    """
    settings = _host_pip_settings()
    lines = [
        "# Copied from the test host's pip settings by tests/container_images.py.",
        "[global]",
        f"cert = {STANDIN_CA_PATH}",
    ]
    for name in (
        "index-url",
        "extra-index-url",
        "trusted-host",
        "timeout",
        "default-timeout",
        "retries",
    ):
        value = settings.get(name, "")
        if name.endswith("index-url"):
            value = " ".join(
                url for url in value.split() if url.startswith(("http://", "https://"))
            )
        if value:
            lines.append(f"{name} = {value}")
    return "\n".join(lines) + "\n"


def _host_pip_settings() -> dict[str, str]:
    """Return the host's effective pip settings: config files, then PIP_* variables."""
    settings: dict[str, str] = {}
    result = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    for line in result.stdout.splitlines():
        name, _, value = line.partition("=")
        if not value:
            continue
        key = name.rsplit(".", 1)[-1]
        settings[key] = value.strip().strip("'\"")
    for key, value in os.environ.items():
        if key.startswith("PIP_"):
            settings[key[4:].lower().replace("_", "-")] = value
    return settings


def _ensure_built(
    name: str, dockerfile: str, files: dict[str, str], seconds: dict[str, float]
) -> str:
    """Build a stand-in from a Dockerfile text and files, unless its tag exists."""
    tag = f"{name}:{_digest(dockerfile, *sorted(f'{k}={v}' for k, v in files.items()))}"
    if image_exists(tag):
        return tag
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="newsbot-standin-") as context:
        (Path(context) / "Dockerfile").write_text(dockerfile)
        for filename, text in files.items():
            path = Path(context) / filename
            path.write_text(text)
            path.chmod(0o755 if text.startswith("#!") else 0o644)
        run(
            ["docker", "build", "--quiet", "--tag", tag, context],
            timeout=900,
            env=docker_build_env(),
        )
    seconds[f"build {name}"] = time.monotonic() - started
    return tag


def docker_build_env() -> dict[str, str]:
    """Return the environment for `docker build`.

    A Docker CLI without the buildx plugin can only use the classic builder; saying so
    explicitly keeps newer CLIs from refusing to build.
    """
    env = dict(os.environ)
    if not _has_buildx():
        env["DOCKER_BUILDKIT"] = "0"
    return env


def _has_buildx() -> bool:
    result = subprocess.run(
        ["docker", "buildx", "version"], capture_output=True, check=False, timeout=60
    )
    return result.returncode == 0
