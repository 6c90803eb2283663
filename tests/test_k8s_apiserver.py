"""Apply k8s/ (and every setup under deploy/) to a real Kubernetes API server.

The schema and policy tests (test_deploy.py) cannot see what only an API server sees:
admission (the namespace enforces Pod Security "restricted"), defaulting, fields the server
stores differently from how they were written, server-side apply conflicts, and whether
applying twice changes anything. Here each setup goes to a fresh control plane
(k8s_support: etcd, kube-apiserver, kube-controller-manager and kube-scheduler on loopback)
with the real kubectl: the applies, the diff and the server-side apply run once when the
control plane starts, and each test checks one of their outcomes; then the controllers'
work (ReplicaSets, pods, claims, the autoscaler's and the budget's view) and a rolling
update with its undo. There is no kubelet: pods are created and stay Pending.

A setup is k8s/ or a directory of manifests under deploy/ (deploy/kind-cluster.yaml is a
kind configuration, not one), applied by itself with `kubectl apply -f DIR`.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import math
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from checktools import import_yaml, missing
from k8s_support import ControlPlane, remove, report, start_control_plane, wait_for

yaml: Any = import_yaml()

ROOT = Path(__file__).resolve().parent.parent
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# kubectl's client-side apply always sends a PodDisruptionBudget's selector again (the field's
# patch strategy is "replace", so the computed patch is never empty) and says "configured";
# the server finds nothing to change. The generation check below still holds for it.
ALWAYS_CONFIGURED = {"PodDisruptionBudget"}


def setups() -> list[Path]:
    """k8s/ and every directory of manifests under deploy/."""
    deploy = ROOT / "deploy"
    extra = (
        sorted(d for d in deploy.iterdir() if d.is_dir() and any(d.glob("*.yaml")))
        if deploy.is_dir()
        else []
    )
    return [ROOT / "k8s", *extra]


def manifests(setup: Path) -> list[dict[str, Any]]:
    """The objects `kubectl apply -f DIR` applies, in its (file-name) order."""
    found: list[dict[str, Any]] = []
    for path in sorted(p for p in setup.iterdir() if p.suffix in {".yaml", ".yml", ".json"}):
        with path.open(encoding="utf-8") as stream:
            found.extend(doc for doc in yaml.safe_load_all(stream) if doc is not None)
    return found


def resource(obj: dict[str, Any]) -> str:
    """How kubectl names an object in its output: kind.group/name."""
    group = obj["apiVersion"].rpartition("/")[0]
    kind = obj["kind"].lower()
    return (
        f"{kind}.{group}/{obj['metadata']['name']}"
        if group
        else f"{kind}/{obj['metadata']['name']}"
    )


def key(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']} {meta.get('namespace', '')}/{meta['name']}".replace(" /", " ")


# -- what the server holds -----------------------------------------------------


def fetch(plane: ControlPlane, setup: Path) -> tuple[dict[str, dict[str, Any]], str]:
    """Every object of a setup as the server holds it, by kind and name; or what failed."""
    result = plane.kubectl("get", "-f", str(setup), "-o", "json")
    if result.returncode != 0:
        return {}, report(result)
    found = json.loads(result.stdout)
    items = found["items"] if found.get("kind") == "List" else [found]
    return {key(item): item for item in items}, ""


def state(obj: dict[str, Any]) -> dict[str, Any]:
    """What an apply may not change: the generation (the spec's version) where the kind has
    one, the content (spec, data, ...) and the labels. Not the annotations: controllers
    write their own (deployment.kubernetes.io/revision) whenever they get to it."""
    meta = obj["metadata"]
    return {
        "generation": meta.get("generation"),
        "content": {k: v for k, v in obj.items() if k not in {"metadata", "status"}},
        "labels": meta.get("labels", {}),
    }


def snapshot(plane: ControlPlane, setup: Path) -> dict[str, Any]:
    """The state of every object, taken between two steps (which may fail: the tests say)."""
    objects, failure = fetch(plane, setup)
    if failure:
        return {"kubectl get failed": failure}
    return {name: state(obj) for name, obj in objects.items()}


def changes(
    before: dict[str, Any],
    after: dict[str, Any],
    parts: tuple[str, ...] = ("generation", "content", "labels"),
) -> dict[str, Any]:
    """The objects whose state differs between two snapshots, in the parts named."""
    assert "kubectl get failed" not in before, before
    return {
        name: {
            part: (was[part], after.get(name, {}).get(part))
            for part in parts
            if after.get(name, {}).get(part) != was[part]
        }
        for name, was in before.items()
        if any(after.get(name, {}).get(part) != was[part] for part in parts)
    }


_ABSENT = "<absent>"


def differences(written: Any, stored: Any, path: str = "") -> list[str]:
    """Where the server does not hold what the manifest says (it may add defaults)."""
    if isinstance(written, dict):
        if not isinstance(stored, dict):
            return [f"{path}: written {written!r}, stored {stored!r}"]
        return [
            d
            for k, v in written.items()
            for d in differences(v, stored.get(k, _ABSENT), f"{path}.{k}")
        ]
    if isinstance(written, list):
        if not isinstance(stored, list) or len(stored) != len(written):
            return [f"{path}: written {written!r}, stored {stored!r}"]
        return [
            d
            for i, (w, s) in enumerate(zip(written, stored))
            for d in differences(w, s, f"{path}[{i}]")
        ]
    return [] if written == stored else [f"{path}: written {written!r}, stored {stored!r}"]


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# -- one fresh control plane per setup ----------------------------------------


@dataclass
class Applied:
    """A setup applied to a fresh control plane, with what each step printed."""

    plane: ControlPlane
    setup: Path
    objects: list[dict[str, Any]]
    dry_run_fresh: subprocess.CompletedProcess[str]
    first: subprocess.CompletedProcess[str]
    held: dict[str, dict[str, Any]]
    after_first: dict[str, Any]
    second: subprocess.CompletedProcess[str]
    after_second: dict[str, Any]
    diff: subprocess.CompletedProcess[str]
    server_side: subprocess.CompletedProcess[str]
    after_server_side: dict[str, Any]
    server_side_again: subprocess.CompletedProcess[str]
    after_server_side_again: dict[str, Any]
    dry_run_applied: subprocess.CompletedProcess[str]

    def get(self, *args: str) -> Any:
        return self.plane.get(*args)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]


SETUPS = setups()


@pytest.fixture(scope="module", params=SETUPS, ids=lambda p: str(p.relative_to(ROOT)))
def applied(request: pytest.FixtureRequest) -> Iterator[Applied]:
    """Start a control plane, then: a server dry run on the fresh cluster, `kubectl apply`
    twice, `kubectl diff`, `kubectl apply --server-side` twice, a server dry run again."""
    setup: Path = request.param
    plane = start_control_plane()
    try:
        d = str(setup)
        dry_run_fresh = plane.kubectl("apply", "--dry-run=server", "-f", d)
        first = plane.kubectl("apply", "-f", d)
        held, _ = fetch(plane, setup)
        after_first = snapshot(plane, setup)
        second = plane.kubectl("apply", "-f", d)
        after_second = snapshot(plane, setup)
        diff = plane.kubectl("diff", "-f", d)
        server_side = plane.kubectl("apply", "--server-side", "-f", d)
        after_server_side = snapshot(plane, setup)
        server_side_again = plane.kubectl("apply", "--server-side", "-f", d)
        after_server_side_again = snapshot(plane, setup)
        dry_run_applied = plane.kubectl("apply", "--dry-run=server", "-f", d)
        yield Applied(
            plane,
            setup,
            manifests(setup),
            dry_run_fresh,
            first,
            held,
            after_first,
            second,
            after_second,
            diff,
            server_side,
            after_server_side,
            server_side_again,
            after_server_side_again,
            dry_run_applied,
        )
    finally:
        remove(plane)


# -- applying ------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_apply_on_a_fresh_cluster_creates_everything_without_a_warning(applied: Applied) -> None:
    # stderr carries kubectl's "Warning:" lines, Pod Security's "would violate" among them.
    expected = [f"{resource(o)} created" for o in applied.objects]
    assert (applied.first.returncode, lines(applied.first.stdout), applied.first.stderr) == (
        0,
        expected,
        "",
    ), report(applied.first)


@pytest.mark.timeout(300)
def test_applying_again_changes_nothing(applied: Applied) -> None:
    result = applied.second
    expected = [
        f"{resource(o)} {'configured' if o['kind'] in ALWAYS_CONFIGURED else 'unchanged'}"
        for o in applied.objects
    ]
    assert (result.returncode, lines(result.stdout), result.stderr) == (0, expected, ""), report(
        result
    )
    changed = changes(applied.after_first, applied.after_second)
    assert not changed, f"a second `kubectl apply` changed: {changed}"


@pytest.mark.timeout(300)
def test_diff_against_the_applied_cluster_is_empty(applied: Applied) -> None:
    assert (applied.diff.returncode, applied.diff.stdout, applied.diff.stderr) == (0, "", ""), (
        report(applied.diff)
    )


@pytest.mark.timeout(300)
def test_server_side_apply_takes_over_without_a_conflict(applied: Applied) -> None:
    result = applied.server_side
    expected = [f"{resource(o)} serverside-applied" for o in applied.objects]
    assert (result.returncode, lines(result.stdout), result.stderr) == (0, expected, ""), report(
        result
    )
    # The switch rewrites kubectl's last-applied annotation once, which a Deployment counts
    # as a new generation (it copies its annotations to its ReplicaSets); no content moves.
    changed = changes(applied.after_second, applied.after_server_side, ("content", "labels"))
    assert not changed, f"`kubectl apply --server-side` changed: {changed}"
    again = applied.server_side_again
    assert (again.returncode, lines(again.stdout), again.stderr) == (0, expected, ""), report(
        again
    )
    changed = changes(applied.after_server_side, applied.after_server_side_again)
    assert not changed, f"a second `kubectl apply --server-side` changed: {changed}"


@pytest.mark.timeout(300)
def test_server_holds_every_field_as_written(applied: Applied) -> None:
    # As the first `kubectl apply` left them. A field stored otherwise than written (an
    # empty list dropped, a default filled into an atomic list) is one every later apply
    # sends again.
    for obj in applied.objects:
        written = {k: v for k, v in obj.items() if k not in {"apiVersion", "kind"}}
        assert key(obj) in applied.held, f"{key(obj)} is not on the server"
        assert differences(written, applied.held[key(obj)]) == [], key(obj)


@pytest.mark.timeout(300)
def test_server_dry_run_needs_the_namespace_first(applied: Applied) -> None:
    namespaces = {o["metadata"]["name"] for o in applied.of_kind("Namespace")}
    namespaced = [o for o in applied.objects if o["metadata"].get("namespace") in namespaces]
    if not namespaced:
        pytest.skip(f"{applied.setup.name} creates no namespace of its own")
    # On a fresh cluster a dry run creates no namespace, so what goes into it is refused:
    # the README says to apply the namespace first.
    fresh = applied.dry_run_fresh
    assert fresh.returncode == 1, report(fresh)
    refused = [line for line in lines(fresh.stderr) if "not found" in line]
    assert len(refused) == len(namespaced), report(fresh)
    for name in namespaces:
        assert f'namespaces "{name}" not found' in fresh.stderr, report(fresh)
    # With the namespace there, the dry run passes, warnings and all checked.
    again = applied.dry_run_applied
    assert (again.returncode, again.stderr) == (0, ""), report(again)
    assert all(line.endswith("(server dry run)") for line in lines(again.stdout)), report(again)


# -- what the controllers make of it --------------------------------------------


def selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def owned_replica_sets(applied: Applied, deployment: dict[str, Any]) -> list[dict[str, Any]]:
    meta = deployment["metadata"]
    found = applied.get(
        "replicasets",
        "-n",
        meta["namespace"],
        "-l",
        selector(deployment["spec"]["selector"]["matchLabels"]),
    )["items"]
    return [
        rs
        for rs in found
        if any(
            ref["kind"] == "Deployment" and ref["name"] == meta["name"]
            for ref in rs["metadata"].get("ownerReferences", [])
        )
    ]


def pods_of(applied: Applied, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
    return list(applied.get("pods", "-n", namespace, "-l", selector(labels))["items"])


def settled_replica_set(applied: Applied, deployment: dict[str, Any]) -> dict[str, Any]:
    """The Deployment's one ReplicaSet once it has made all its pods."""
    replicas = deployment["spec"].get("replicas", 1)

    def probe() -> dict[str, Any] | None:
        sets = owned_replica_sets(applied, deployment)
        if len(sets) == 1 and sets[0].get("status", {}).get("replicas") == replicas:
            return sets[0]
        return None

    def detail() -> str:
        # The ReplicaSet's ReplicaFailure condition says why a pod was refused (admission).
        return json.dumps(
            {
                rs["metadata"]["name"]: rs.get("status")
                for rs in owned_replica_sets(applied, deployment)
            },
            indent=1,
        )

    return wait_for(
        f"{key(deployment)} to make a ReplicaSet of {replicas} pods", probe, detail=detail
    )


@pytest.mark.timeout(300)
def test_deployments_make_a_replica_set_of_their_pods(applied: Applied) -> None:
    applied.plane.require_controllers()
    for deployment in applied.of_kind("Deployment"):
        rs = settled_replica_set(applied, deployment)
        replicas = deployment["spec"].get("replicas", 1)
        assert rs["spec"]["replicas"] == replicas
        labels = rs["spec"]["selector"]["matchLabels"]
        assert "pod-template-hash" in labels
        pods = pods_of(applied, deployment["metadata"]["namespace"], labels)
        assert len(pods) == replicas, key(deployment)
        # No kubelet: admitted, created, never run.
        assert {p["status"]["phase"] for p in pods} == {"Pending"}


@pytest.mark.timeout(300)
def test_stateful_sets_make_their_pod_and_claims(applied: Applied) -> None:
    applied.plane.require_controllers()
    for sts in applied.of_kind("StatefulSet"):
        meta, spec = sts["metadata"], sts["spec"]
        # OrderedReady (the default) makes pod N+1 only once pod N is ready: no kubelet,
        # so only the first.
        parallel = spec.get("podManagementPolicy") == "Parallel"
        ordinals = range(spec.get("replicas", 1) if parallel else 1)
        pods = [f"{meta['name']}-{i}" for i in ordinals]

        def probe() -> list[str] | None:
            names = sorted(
                p["metadata"]["name"]
                for p in pods_of(applied, meta["namespace"], spec["selector"]["matchLabels"])
            )
            return names if names == pods else None

        wait_for(f"{key(sts)} to make {pods}", probe)
        found = {
            c["metadata"]["name"]: c
            for c in applied.get("persistentvolumeclaims", "-n", meta["namespace"])["items"]
        }
        for template in spec.get("volumeClaimTemplates", []):
            for pod in pods:
                name = f"{template['metadata']['name']}-{pod}"
                assert name in found, f"{key(sts)} made no claim {name}: {sorted(found)}"
                claim = found[name]
                assert claim["spec"]["resources"] == template["spec"]["resources"], name
                assert claim["spec"]["accessModes"] == template["spec"]["accessModes"], name


@pytest.mark.timeout(300)
def test_autoscalers_find_their_target(applied: Applied) -> None:
    applied.plane.require_controllers()
    for hpa in applied.of_kind("HorizontalPodAutoscaler"):
        meta = hpa["metadata"]

        def probe() -> dict[str, Any] | None:
            found = applied.get("hpa", "-n", meta["namespace"], meta["name"])
            conditions = {c["type"]: c for c in found.get("status", {}).get("conditions", [])}
            return conditions if "AbleToScale" in conditions else None

        conditions = wait_for(f"{key(hpa)} to look at its target", probe)
        # It reads its target's scale; no metrics-server here, so it cannot act on CPU.
        assert conditions["AbleToScale"]["status"] == "True", conditions
        assert conditions["AbleToScale"]["reason"] == "SucceededGetScale", conditions


@pytest.mark.timeout(300)
def test_disruption_budgets_count_the_pods_they_guard(applied: Applied) -> None:
    applied.plane.require_controllers()
    workloads = [*applied.of_kind("Deployment"), *applied.of_kind("StatefulSet")]
    for pdb in applied.of_kind("PodDisruptionBudget"):
        meta = pdb["metadata"]
        labels = pdb["spec"]["selector"]["matchLabels"]
        guarded = [
            d
            for d in workloads
            if all(
                d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in labels.items()
            )
        ]
        expected = sum(d["spec"].get("replicas", 1) for d in guarded)

        def probe() -> dict[str, Any] | None:
            status = applied.get("pdb", "-n", meta["namespace"], meta["name"]).get("status", {})
            return status if status.get("expectedPods") == expected else None

        status = wait_for(f"{key(pdb)} to count {expected} pods", probe)
        # None of them is ready (no kubelet), so none may be evicted.
        assert status["disruptionsAllowed"] == 0, status


def check_pod_runs_unprivileged(pod: dict[str, Any]) -> None:
    """test_deploy.py's policy, on a pod as the server made it (after defaulting)."""
    name = pod["metadata"]["name"]
    spec = pod["spec"]
    context = spec.get("securityContext", {})
    assert spec.get("automountServiceAccountToken") is False, name
    assert context.get("runAsNonRoot") is True, name
    for field in ("runAsUser", "runAsGroup", "fsGroup"):
        assert isinstance(context.get(field), int) and context[field] > 0, (name, field)
    assert context.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(field), (name, field)
    for volume in spec.get("volumes", []):
        assert "hostPath" not in volume, name
        # No service account token was mounted behind our back.
        assert "projected" not in volume, (name, volume)
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        own = container.get("securityContext", {})
        where = (name, container["name"])
        assert own.get("allowPrivilegeEscalation") is False, where
        assert own.get("readOnlyRootFilesystem") is True, where
        assert own.get("capabilities", {}).get("drop") == ["ALL"], where
        assert not own.get("capabilities", {}).get("add"), where
        assert not own.get("privileged"), where
        assert own.get("runAsUser", 1) != 0, where
        mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
        assert "/var/run/secrets/kubernetes.io/serviceaccount" not in mounts, where


@pytest.mark.timeout(300)
def test_pods_pass_restricted_and_keep_the_policy_after_defaulting(applied: Applied) -> None:
    applied.plane.require_controllers()
    namespaces = {o["metadata"]["name"]: o for o in applied.of_kind("Namespace")}
    for name in namespaces:
        labels = applied.get("namespace", name)["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted", labels
    workloads = [*applied.of_kind("Deployment"), *applied.of_kind("StatefulSet")]
    assert workloads
    for workload in workloads:
        meta = workload["metadata"]
        if workload["kind"] == "Deployment":
            settled_replica_set(applied, workload)
        pods = wait_for(
            f"pods of {key(workload)}",
            lambda: (
                pods_of(applied, meta["namespace"], workload["spec"]["selector"]["matchLabels"])
                or None
            ),
        )
        for pod in pods:
            check_pod_runs_unprivileged(pod)


# -- a rolling update and its undo ---------------------------------------------


def bumped(image: str) -> str:
    """Another tag of the same image, as a release would name it."""
    return f"{image}-next"


def surge_of(spec: dict[str, Any]) -> int:
    """maxSurge as a pod count: a number, or a percentage of the replicas rounded up."""
    value = spec["strategy"].get("rollingUpdate", {}).get("maxSurge", "25%")
    if isinstance(value, int):
        return value
    return math.ceil(int(value.rstrip("%")) * spec.get("replicas", 1) / 100)


def template_hash(rs: dict[str, Any]) -> str:
    return str(rs["metadata"]["labels"]["pod-template-hash"])


@pytest.mark.timeout(300)
def test_image_bump_rolls_a_new_replica_set_and_undo_returns(applied: Applied) -> None:
    applied.plane.require_controllers()
    for deployment in applied.of_kind("Deployment"):
        meta, spec = deployment["metadata"], deployment["spec"]
        namespace, name = meta["namespace"], meta["name"]
        replicas = spec.get("replicas", 1)
        surge = surge_of(spec)
        assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        container = spec["template"]["spec"]["containers"][0]
        old = settled_replica_set(applied, deployment)

        result = applied.plane.kubectl(
            "-n",
            namespace,
            "set",
            "image",
            f"deployment/{name}",
            f"{container['name']}={bumped(container['image'])}",
        )
        assert result.returncode == 0, report(result)

        def rolled() -> tuple[dict[str, Any], dict[str, Any]] | None:
            current = applied.get("deployment", "-n", namespace, name)
            status = current.get("status", {})
            sets = {template_hash(rs): rs for rs in owned_replica_sets(applied, deployment)}
            new = [rs for h, rs in sets.items() if h != template_hash(old)]
            if (
                status.get("observedGeneration") != current["metadata"]["generation"]
                or status.get("updatedReplicas", 0) < 1
                or len(new) != 1
                or new[0].get("status", {}).get("replicas") != new[0]["spec"]["replicas"]
            ):
                return None
            return current, new[0]

        current, new = wait_for(f"{key(deployment)} to start its rollout", rolled)
        assert new["spec"]["template"]["spec"]["containers"][0]["image"] == bumped(
            container["image"]
        )
        # maxUnavailable 0: a new pod is started (maxSurge), no old one is stopped, since
        # no new pod becomes available (no kubelet).
        by_hash = {template_hash(rs): rs for rs in owned_replica_sets(applied, deployment)}
        assert by_hash[template_hash(old)]["spec"]["replicas"] == replicas, (
            "an old pod was stopped before a new one was available"
        )
        assert new["spec"]["replicas"] == surge
        assert current["status"]["replicas"] == replicas + surge, current["status"]
        assert current["status"]["updatedReplicas"] == surge, current["status"]

        result = applied.plane.kubectl("-n", namespace, "rollout", "undo", f"deployment/{name}")
        assert result.returncode == 0, report(result)

        def undone() -> dict[str, Any] | None:
            current = applied.get("deployment", "-n", namespace, name)
            status = current.get("status", {})
            image = current["spec"]["template"]["spec"]["containers"][0]["image"]
            if (
                status.get("observedGeneration") != current["metadata"]["generation"]
                or image != container["image"]
                or status.get("updatedReplicas") != replicas
            ):
                return None
            return current

        current = wait_for(f"{key(deployment)} to go back to {container['image']}", undone)
        by_hash = {template_hash(rs): rs for rs in owned_replica_sets(applied, deployment)}
        assert set(by_hash) == {template_hash(old), template_hash(new)}
        back = by_hash[template_hash(old)]
        # The old ReplicaSet is the Deployment's own again, as its third revision.
        assert back["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
        assert back["spec"]["replicas"] == replicas
        # The bumped one keeps its pod until the old pods are ready, which takes a kubelet:
        # maxUnavailable 0 holds on the way back too.
        assert by_hash[template_hash(new)]["spec"]["replicas"] == surge


# -- how CI gets the binaries ------------------------------------------------------


def fake_shared(root: Path, corrupt: str = "") -> Path:
    """A stand-in for ../shared/k8s: tiny xz-compressed 'binaries' and their SHA256SUMS."""
    shared = root / "shared"
    (shared / "bin").mkdir(parents=True)
    sums = []
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"):
        content = f"#!/bin/sh\necho {name}\n".encode()
        (shared / "bin" / f"{name}.xz").write_bytes(
            lzma.compress(content + (b"tampered" if name == corrupt else b""))
        )
        sums.append(f"{hashlib.sha256(content).hexdigest()}  {name}\n")
    (shared / "SHA256SUMS").write_text("".join(sums))
    return shared


def run_k8s_script(shared: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NEWSBOT_K8S_SHARED": str(shared), "NEWSBOT_K8S_CACHE": str(cache)}
    return subprocess.run(
        ["bash", str(ROOT / ".ci" / "k8s.sh")], capture_output=True, text=True, timeout=60, env=env
    )


def test_k8s_script_unpacks_verified_binaries_into_the_cache(tmp_path: Path) -> None:
    if shutil.which("etcd") is None:
        missing("etcd is not installed: apt-get install etcd-server")
    cache = tmp_path / "cache"
    result = run_k8s_script(fake_shared(tmp_path), cache)
    assert (result.returncode, result.stdout) == (0, f"{cache}\n"), report(result)
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"):
        assert os.access(cache / name, os.X_OK)
        assert (cache / name).read_text() == f"#!/bin/sh\necho {name}\n"
    # Nothing was written into the repository.
    assert not list((ROOT / ".ci").glob("kube*"))


def test_k8s_script_refuses_a_binary_that_does_not_match_its_sum(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    result = run_k8s_script(fake_shared(tmp_path, corrupt="kube-scheduler"), cache)
    assert result.returncode == 1, report(result)
    assert "kube-scheduler does not match its SHA-256" in result.stderr, report(result)
    assert not (cache / "kube-scheduler").exists()
    assert not list(cache.glob("*.partial"))


def test_ci_provides_the_control_plane() -> None:
    ci_run = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "etcd-server" in ci_run
    assert 'KUBEBUILDER_ASSETS="$(bash .ci/k8s.sh)"\nexport KUBEBUILDER_ASSETS\n' in ci_run
    flow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    commands = [
        line.strip()
        for step in flow["jobs"]["test"]["steps"]
        if "run" in step
        for line in step["run"].splitlines()
    ]
    assert any("apt-get install" in c and "etcd-server" in c for c in commands)
    assert any("bash .ci/k8s.sh" in c for c in commands)
