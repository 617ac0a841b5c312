#!/usr/bin/env bash
# Install and start a Docker engine on a Debian 12 machine, as root, without any image registry.
#
# Idempotent: every step checks whether it is already done. Safe to call from CI before the
# `docker`-marked tests and from .ci/build-images.sh. Prints how long each step took.
#
#   .ci/docker-setup.sh            # install docker.io, docker-compose, debootstrap; start dockerd
#
# Environment:
#   DOCKERD_LOG   where dockerd writes its log (default /var/log/dockerd.log)
#   DOCKER_WAIT_S how long to wait for `docker info` after starting dockerd (default 60)
set -euo pipefail

DOCKERD_LOG="${DOCKERD_LOG:-/var/log/dockerd.log}"
DOCKER_WAIT_S="${DOCKER_WAIT_S:-60}"
t0=$(date +%s)

log() { printf '[docker-setup +%ss] %s\n' "$(($(date +%s) - t0))" "$*"; }

if [[ $(id -u) -ne 0 ]]; then
    echo "docker-setup: must run as root (installs packages and starts dockerd)" >&2
    exit 2
fi

# Debian's docker.io puts the engine in /usr/sbin and the client in /usr/bin. Another `docker` client
# earlier on PATH is fine as long as it speaks to this engine (the API version is negotiated).
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if ((${#need[@]})); then
    log "apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Another apt-get may hold the lock on a shared machine: wait for it instead of failing.
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    log "installed"
else
    log "docker.io, docker-compose and debootstrap already installed"
fi

if docker info >/dev/null 2>&1; then
    log "dockerd already answers"
else
    log "starting dockerd (log: $DOCKERD_LOG)"
    # setsid + nohup: the engine outlives this script and the CI step that called it.
    setsid nohup dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
    for ((i = 0; i < DOCKER_WAIT_S * 2; i++)); do
        if docker info >/dev/null 2>&1; then
            break
        fi
        sleep 0.5
    done
    if ! docker info >/dev/null 2>&1; then
        echo "docker-setup: dockerd did not answer within ${DOCKER_WAIT_S}s; last log lines:" >&2
        tail -n 30 "$DOCKERD_LOG" >&2 || true
        exit 1
    fi
    log "dockerd is up"
fi

docker version --format 'engine {{.Server.Version}} (API {{.Server.APIVersion}}), client {{.Client.Version}}'
log "done"
