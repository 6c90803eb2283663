"""A real Kubernetes control plane on loopback, for tests that apply manifests to it.

etcd, kube-apiserver (RBAC, the default admission plugins, PodSecurity among them),
kube-controller-manager and kube-scheduler run as child processes on free loopback ports
with a throw-away PKI made by openssl, as ../shared/k8s/up.sh does. The binaries come from
the envtest convention's ``KUBEBUILDER_ASSETS`` directory (kube-apiserver, kubectl and
optionally the controller-manager, the scheduler and etcd; etcd is otherwise taken from
PATH), or from the cache ``bash .ci/k8s.sh`` fills. A missing binary skips, naming the
command, unless NEWSBOT_REQUIRE_TOOLS=1 (CI) makes it a failure.

There is no kubelet and no node: pods are created and stay Pending.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from checktools import missing
from harness import free_port, stop_process

VERSION = "1.36.2"
# Where .ci/k8s.sh puts the binaries, by the same rule.
DEFAULT_CACHE = Path(
    os.environ.get("NEWSBOT_K8S_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "newsbot"
    / f"k8s-{VERSION}"
)
INSTALL = "bash .ci/k8s.sh (it prints the directory for KUBEBUILDER_ASSETS)"
SERVICE_RANGE = "10.96.0.0/16"
T = TypeVar("T")


# -- the binaries --------------------------------------------------------------


@dataclass(frozen=True)
class Assets:
    """Where the control plane's binaries are; the controllers may be absent (envtest)."""

    apiserver: Path
    kubectl: Path
    etcd: Path
    controller_manager: Path | None
    scheduler: Path | None


def _executable(path: Path) -> Path | None:
    return path if path.is_file() and os.access(path, os.X_OK) else None


def find_assets() -> Assets:
    """The binaries in KUBEBUILDER_ASSETS (or .ci/k8s.sh's cache); skip or fail without them."""
    configured = os.environ.get("KUBEBUILDER_ASSETS")
    folder = Path(configured) if configured else DEFAULT_CACHE
    where = f"KUBEBUILDER_ASSETS={configured}" if configured else f"{DEFAULT_CACHE}"
    found = {
        name: _executable(folder / name)
        for name in (
            "kube-apiserver",
            "kubectl",
            "kube-controller-manager",
            "kube-scheduler",
            "etcd",
        )
    }
    for name in ("kube-apiserver", "kubectl"):
        if found[name] is None:
            missing(f"{name} is not in {where}: {INSTALL}")
    etcd = found["etcd"] or (Path(p) if (p := shutil.which("etcd")) else None)
    if etcd is None:
        missing(f"etcd is neither in {where} nor on PATH: apt-get install etcd-server")
    assert found["kube-apiserver"] and found["kubectl"] and etcd  # for the type checker
    return Assets(
        found["kube-apiserver"],
        found["kubectl"],
        etcd,
        found["kube-controller-manager"],
        found["kube-scheduler"],
    )


# -- a throw-away PKI ----------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _key(pki: Path, name: str) -> None:
    """An ECDSA P-256 key: what gen-pki.sh does with RSA 2048, in a twentieth of the time."""
    _openssl(
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        f"{name}.key",
        cwd=pki,
    )


def _sign(pki: Path, name: str, subject: str, usage: str, san: str = "") -> None:
    """A key and a certificate for it signed by the test CA, like gen-pki.sh's sign()."""
    _key(pki, name)
    _openssl(
        "req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=pki
    )
    lines = [
        "basicConstraints=CA:FALSE",
        "keyUsage=critical,digitalSignature",
        f"extendedKeyUsage={usage}",
    ]
    if san:
        lines.append(f"subjectAltName={san}")
    (pki / f"{name}.ext").write_text("\n".join(lines) + "\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-sha256",
        "-extfile",
        f"{name}.ext",
        "-out",
        f"{name}.crt",
        cwd=pki,
    )


def make_pki(pki: Path) -> None:
    """A CA, the API server's serving certificate, client certificates, the SA key pair."""
    if shutil.which("openssl") is None:
        missing("openssl is not installed: apt-get install openssl")
    pki.mkdir(parents=True)
    _key(pki, "ca")
    _openssl(
        "req",
        "-x509",
        "-new",
        "-nodes",
        "-key",
        "ca.key",
        "-sha256",
        "-days",
        "2",
        "-subj",
        "/CN=newsbot-test-ca",
        "-out",
        "ca.crt",
        cwd=pki,
    )
    _sign(
        pki,
        "apiserver",
        "/CN=kube-apiserver",
        "serverAuth",
        "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
        "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local",
    )
    _sign(pki, "admin", "/O=system:masters/CN=kubernetes-admin", "clientAuth")
    _sign(pki, "kube-controller-manager", "/CN=system:kube-controller-manager", "clientAuth")
    _sign(pki, "kube-scheduler", "/CN=system:kube-scheduler", "clientAuth")
    _key(pki, "sa")  # service account tokens are signed ES256
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def write_kubeconfig(path: Path, server: str, pki: Path, user: str, cert: str) -> None:
    """A kubeconfig with the certificates embedded (JSON is YAML)."""

    def data(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "test",
        "clusters": [
            {
                "name": "test",
                "cluster": {"server": server, "certificate-authority-data": data("ca.crt")},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": data(f"{cert}.crt"),
                    "client-key-data": data(f"{cert}.key"),
                },
            }
        ],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": user}}],
    }
    path.write_text(json.dumps(config, indent=1))
    path.chmod(0o600)


# -- the processes -------------------------------------------------------------


class NotReady(RuntimeError):
    """A component did not come up; the message carries the end of its log."""


@dataclass
class ControlPlane:
    """A running control plane: its kubeconfig, a kubectl runner, its processes."""

    assets: Assets
    root: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    api_port: int = 0
    started_in: float = 0.0

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.pki / "admin.kubeconfig"

    @property
    def has_controllers(self) -> bool:
        """Whether Deployments make ReplicaSets and pods here (no kube-controller-manager
        in envtest's assets)."""
        return "kube-controller-manager" in self.processes

    def require_controllers(self) -> None:
        """Skip (fail in CI) a test that needs the controller-manager and scheduler."""
        if not self.has_controllers:
            missing(
                f"kube-controller-manager and kube-scheduler are not beside "
                f"{self.assets.apiserver}: {INSTALL}"
            )

    # -- kubectl and the API -------------------------------------------------

    def kubectl(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this control plane and capture what it prints."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "KUBECONFIG": str(self.kubeconfig),
            "KUBECTL_EXTERNAL_DIFF": "diff -u -N",
            "NO_COLOR": "1",
        }
        return subprocess.run(
            [str(self.assets.kubectl), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=self.root,
        )

    def get(self, *args: str) -> Any:
        """`kubectl get ... -o json`, parsed."""
        result = self.kubectl("get", *args, "-o", "json")
        assert result.returncode == 0, report(result)
        return json.loads(result.stdout)

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(self.pki / "admin.crt", self.pki / "admin.key")
        return context

    def _api_ok(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{self.api_port}{path}", context=self._context(), timeout=5
            ) as answer:
                return bool(answer.status == 200)
        except (OSError, urllib.error.URLError):
            return False  # not listening or not ready yet

    # -- starting and stopping -----------------------------------------------

    def _start(self, name: str, *args: str) -> None:
        log = (self.root / "logs" / f"{name}.log").open("wb")
        with log:
            self.processes[name] = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            )

    def _wait(self, name: str, seconds: float, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + seconds
        process = self.processes.get(name)
        while time.monotonic() < deadline:
            if ready():
                return
            if process is not None and process.poll() is not None:
                break
            time.sleep(0.1)
        log = self.root / "logs" / f"{name}.log"
        tail = (
            "\n".join(log.read_text(errors="replace").splitlines()[-15:]) if log.exists() else ""
        )
        raise NotReady(f"{name} not ready after {seconds:.0f} s:\n{tail}")

    def start(self) -> None:
        """etcd, then the API server, then the controllers; return when all answer."""
        begun = time.monotonic()
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        if not self.pki.exists():
            make_pki(self.pki)
        client, peer, self.api_port = free_port(), free_port(), free_port()
        server = f"https://127.0.0.1:{self.api_port}"
        for user, cert, name in (
            ("admin", "admin", "admin"),
            ("system:kube-controller-manager", "kube-controller-manager", "controller-manager"),
            ("system:kube-scheduler", "kube-scheduler", "scheduler"),
        ):
            write_kubeconfig(self.pki / f"{name}.kubeconfig", server, self.pki, user, cert)

        self._start(
            "etcd",
            str(self.assets.etcd),
            "--name",
            "test",
            "--data-dir",
            str(self.root / "etcd"),
            "--listen-client-urls",
            f"http://127.0.0.1:{client}",
            "--advertise-client-urls",
            f"http://127.0.0.1:{client}",
            "--listen-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--initial-cluster",
            f"test=http://127.0.0.1:{peer}",
            "--listen-metrics-urls",
            f"http://127.0.0.1:{free_port()}",
        )
        self._wait("etcd", 30, lambda: _http_ok(f"http://127.0.0.1:{client}/health"))

        p = self.pki
        self._start(
            "kube-apiserver",
            str(self.assets.apiserver),
            "--bind-address=127.0.0.1",
            f"--secure-port={self.api_port}",
            "--advertise-address=127.0.0.1",
            f"--etcd-servers=http://127.0.0.1:{client}",
            f"--tls-cert-file={p / 'apiserver.crt'}",
            f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--client-ca-file={p / 'ca.crt'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_RANGE}",
            "--authorization-mode=Node,RBAC",
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        )
        self._wait("kube-apiserver", 120, lambda: self._api_ok("/readyz"))

        if self.assets.controller_manager and self.assets.scheduler:
            common = ("--bind-address=127.0.0.1", "--leader-elect=false", "--profiling=false")
            manager, scheduler = free_port(), free_port()
            kubeconfig = p / "controller-manager.kubeconfig"
            self._start(
                "kube-controller-manager",
                str(self.assets.controller_manager),
                *common,
                f"--secure-port={manager}",
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--service-account-private-key-file={p / 'sa.key'}",
                f"--root-ca-file={p / 'ca.crt'}",
                "--use-service-account-credentials=true",
                f"--service-cluster-ip-range={SERVICE_RANGE}",
                # The autoscaler's first look at its target after 1 s, not 15 s.
                "--horizontal-pod-autoscaler-sync-period=1s",
            )
            kubeconfig = p / "scheduler.kubeconfig"
            self._start(
                "kube-scheduler",
                str(self.assets.scheduler),
                *common,
                f"--secure-port={scheduler}",
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
            )
            self._wait(
                "kube-controller-manager",
                60,
                lambda: _http_ok(f"https://127.0.0.1:{manager}/healthz", insecure=True),
            )
            self._wait(
                "kube-scheduler",
                60,
                lambda: _http_ok(f"https://127.0.0.1:{scheduler}/healthz", insecure=True),
            )
            # The service account controller's first work: proof the controllers run.
            self._wait(
                "kube-controller-manager",
                60,
                lambda: self._api_ok("/api/v1/namespaces/default/serviceaccounts/default"),
            )
        self.started_in = time.monotonic() - begun

    def stop(self) -> None:
        """Stop what start() started, by PID, newest first."""
        for name in reversed(list(self.processes)):
            stop_process(self.processes.pop(name), 15)


def _http_ok(url: str, insecure: bool = False) -> bool:
    """Whether a health endpoint answers 200. The controllers' own serving certificates are
    self-signed, so those are not verified (loopback only)."""
    context = None
    if url.startswith("https:"):
        context = ssl.create_default_context()
        if insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, context=context, timeout=5) as answer:
            return bool(answer.status == 200)
    except (OSError, urllib.error.URLError):
        return False  # not listening or not healthy yet


def start_control_plane(attempts: int = 3) -> ControlPlane:
    """Start a fresh control plane in a new temp dir; retry when a free port was taken."""
    assets = find_assets()
    for attempt in range(1, attempts + 1):
        plane = ControlPlane(assets, Path(tempfile.mkdtemp(prefix="newsbot-k8s-")))
        try:
            plane.start()
            return plane
        except NotReady:
            plane.stop()
            shutil.rmtree(plane.root, ignore_errors=True)
            if attempt == attempts:
                raise
        except BaseException:
            plane.stop()
            shutil.rmtree(plane.root, ignore_errors=True)
            raise
    raise AssertionError("unreachable")


def remove(plane: ControlPlane) -> None:
    """Stop the control plane and delete its directory (etcd's data, the PKI, the logs)."""
    try:
        plane.stop()
    finally:
        shutil.rmtree(plane.root, ignore_errors=True)


def report(result: subprocess.CompletedProcess[str]) -> str:
    """Everything kubectl printed, for an assertion message."""
    return (
        f"$ {' '.join(str(a) for a in result.args)}\nexit {result.returncode}\n"
        f"--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
    )


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    seconds: float = 60,
    detail: Callable[[], str] = lambda: "",
) -> T:
    """Poll until probe() returns something other than None (the controllers work
    asynchronously); fail naming what did not happen, with detail() on what there is."""
    deadline = time.monotonic() + seconds
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{detail()}")
        time.sleep(0.2)
