#!/usr/bin/env bash
# Put a real Kubernetes control plane's binaries (kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl) into a cache directory for
# tests/test_k8s_apiserver.py, and print that directory: the envtest
# convention's KUBEBUILDER_ASSETS. etcd comes from the system (Debian and
# Ubuntu: apt-get install etcd-server). Safe to run again: verified binaries
# already in the cache are left as they are.
#
#   export KUBEBUILDER_ASSETS="$(bash .ci/k8s.sh)"
#
# Where the binaries come from:
#   - ../shared/k8s/bin/*.xz beside the clone (NEWSBOT_K8S_SHARED names another
#     directory), checked against that directory's SHA256SUMS;
#   - otherwise the Kubernetes release itself from dl.k8s.io (GitHub's runners),
#     checked against the .sha256 file published beside each binary.
# The cache is NEWSBOT_K8S_CACHE, by default ~/.cache/newsbot/k8s-$VERSION;
# nothing is written into the repository.
set -euo pipefail

cd "$(dirname "$0")/.."

VERSION=1.36.2  # the Kubernetes release; ../shared/k8s/README.md says which one it holds
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
SHARED="${NEWSBOT_K8S_SHARED:-../shared/k8s}"
CACHE="${NEWSBOT_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/newsbot/k8s-$VERSION}"

say() { echo "k8s.sh: $*" >&2; }

# The expected SHA-256 of one binary, from the shared SHA256SUMS or dl.k8s.io.
expected_sum() {
    local name=$1
    if [ -d "$SHARED/bin" ]; then
        awk -v n="$name" '$2 == n || $2 == "*" n { print $1 }' "$SHARED/SHA256SUMS"
    else
        curl -fsSL --retry 3 "https://dl.k8s.io/release/v$VERSION/bin/linux/amd64/$name.sha256" \
            | awk '{ print $1 }'
    fi
}

verified() {  # verified FILE SUM: the file exists and has that SHA-256
    [ -x "$1" ] && [ "$(sha256sum "$1" | awk '{ print $1 }')" = "$2" ]
}

mkdir -p "$CACHE"
for name in "${BINARIES[@]}"; do
    sum=$(expected_sum "$name") || sum=
    [ -n "$sum" ] || { say "no SHA-256 for $name (no $SHARED/bin, and dl.k8s.io did not answer)"; exit 1; }
    target="$CACHE/$name"
    verified "$target" "$sum" && continue
    partial="$target.partial"
    if [ -d "$SHARED/bin" ]; then
        say "unpacking $SHARED/bin/$name.xz"
        xz -dc "$SHARED/bin/$name.xz" > "$partial"
    else
        say "downloading $name v$VERSION from dl.k8s.io"
        curl -fsSL --retry 3 -o "$partial" \
            "https://dl.k8s.io/release/v$VERSION/bin/linux/amd64/$name"
    fi
    chmod 755 "$partial"
    if ! verified "$partial" "$sum"; then
        rm -f "$partial"
        say "$name does not match its SHA-256 $sum"
        exit 1
    fi
    mv "$partial" "$target"
done

# The control plane needs etcd; the tests look for it here first, then on PATH.
if ! command -v etcd >/dev/null && [ ! -x "$CACHE/etcd" ]; then
    say "etcd is not installed (apt-get install etcd-server)"
    exit 1
fi
echo "$CACHE"
