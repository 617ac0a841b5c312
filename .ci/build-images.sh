#!/usr/bin/env bash
# Build Referee's container images locally, with no image registry at all.
#
#   1. local/debian-python:bookworm  a Debian 12 root filesystem made by debootstrap from Debian's
#                                    mirror and `docker import`ed (skipped when the tag exists).
#   2. referee-sandbox:dev           containers/sandbox.Dockerfile: python3, g++, nodejs; runs as 65534.
#   3. referee:dev                   ./Dockerfile: the service (roles api / sandbox-worker / grpo-worker).
#   4. referee-redis:dev             containers/redis.Dockerfile: Debian's redis-server, for compose.yaml.
#
# Every image is built FROM the local base tag (`--build-arg BASE=...`), so nothing is pulled.
# Idempotent; docker's layer cache makes a second run take seconds.
#
#   .ci/build-images.sh                  # all four
#   .ci/build-images.sh base             # only the base image
#   .ci/build-images.sh base sandbox     # any subset, in order
#   REBUILD_BASE=1 .ci/build-images.sh   # debootstrap again even though the base tag exists
#
# Environment:
#   BASE_IMAGE      tag of the base image            (default local/debian-python:bookworm)
#   SANDBOX_IMAGE   tag of the sandbox image         (default referee-sandbox:dev)
#   APP_IMAGE       tag of the service image         (default referee:dev)
#   REDIS_IMAGE     tag of the redis image           (default referee-redis:dev)
#   APP_EXTRAS      pip extras in the service image  (default docker,langdetect; add ",grpo" for torch==2.13.0)
#   DEBIAN_MIRROR   debootstrap mirror               (default http://deb.debian.org/debian)
#   BASE_TAR_CACHE  optional path of a rootfs tarball: reused when present, written after debootstrap
#   EXTRA_CA_DIR    *.crt files the base image should trust besides Debian's bundle, e.g. a TLS-
#                   inspecting egress proxy's CA (default /usr/local/share/ca-certificates; "" = none)
set -euo pipefail

cd "$(dirname "$0")/.."
BASE_IMAGE="${BASE_IMAGE:-local/debian-python:bookworm}"
SANDBOX_IMAGE="${SANDBOX_IMAGE:-referee-sandbox:dev}"
APP_IMAGE="${APP_IMAGE:-referee:dev}"
REDIS_IMAGE="${REDIS_IMAGE:-referee-redis:dev}"
APP_EXTRAS="${APP_EXTRAS:-docker,langdetect}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BASE_TAR_CACHE="${BASE_TAR_CACHE:-}"
EXTRA_CA_DIR="${EXTRA_CA_DIR-/usr/local/share/ca-certificates}"
# python3-venv: the service image installs into /opt/referee with pip from the venv's ensurepip.
# ca-certificates: pip reaches PyPI over https during `docker build`.
BASE_PACKAGES="python3,python3-venv,ca-certificates"

t0=$(date +%s)
log() { printf '[build-images +%ss] %s\n' "$(($(date +%s) - t0))" "$*"; }

if ! docker info >/dev/null 2>&1; then
    echo "build-images: dockerd does not answer; run .ci/docker-setup.sh first" >&2
    exit 1
fi

build_base() {
    if [[ -z "${REBUILD_BASE:-}" ]] && docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        log "base $BASE_IMAGE exists, skipping debootstrap"
        return
    fi
    if [[ -n "$BASE_TAR_CACHE" && -s "$BASE_TAR_CACHE" && -z "${REBUILD_BASE:-}" ]]; then
        log "importing cached rootfs $BASE_TAR_CACHE"
        docker import --change 'CMD ["python3"]' "$BASE_TAR_CACHE" "$BASE_IMAGE" >/dev/null
        return
    fi
    command -v debootstrap >/dev/null || { echo "build-images: debootstrap missing (.ci/docker-setup.sh installs it)" >&2; exit 1; }
    # Global, not local: the EXIT trap runs after this function has returned.
    rootfs=$(mktemp -d /tmp/referee-rootfs.XXXXXX)
    # The trap removes the rootfs even when debootstrap fails halfway and the script exits.
    trap 'rm -rf "$rootfs"' EXIT
    log "debootstrap --variant=minbase --include=$BASE_PACKAGES bookworm (takes minutes)"
    debootstrap --variant=minbase --include="$BASE_PACKAGES" bookworm "$rootfs" "$DEBIAN_MIRROR" \
        >/tmp/referee-debootstrap.log 2>&1 || {
        tail -n 30 /tmp/referee-debootstrap.log >&2
        exit 1
    }
    log "debootstrap done"
    if [[ -n "$EXTRA_CA_DIR" ]] && compgen -G "$EXTRA_CA_DIR/*.crt" >/dev/null; then
        cp "$EXTRA_CA_DIR"/*.crt "$rootfs/usr/local/share/ca-certificates/"
        chroot "$rootfs" update-ca-certificates >/dev/null
        log "trusting extra CAs from $EXTRA_CA_DIR"
    fi
    # Slim the image: apt lists and caches come back with the first `apt-get update` of a build.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
        "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
    if [[ -n "$BASE_TAR_CACHE" ]]; then
        mkdir -p "$(dirname "$BASE_TAR_CACHE")"
        tar -C "$rootfs" --numeric-owner -cf "$BASE_TAR_CACHE" .
        docker import --change 'CMD ["python3"]' "$BASE_TAR_CACHE" "$BASE_IMAGE" >/dev/null
    else
        tar -C "$rootfs" --numeric-owner -c . | docker import --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
    fi
    log "imported $BASE_IMAGE ($(docker image inspect -f '{{.Size}}' "$BASE_IMAGE" | numfmt --to=iec))"
}

build_sandbox() {
    log "building $SANDBOX_IMAGE"
    docker build -q --build-arg BASE="$BASE_IMAGE" -f containers/sandbox.Dockerfile -t "$SANDBOX_IMAGE" containers >/dev/null
    log "built $SANDBOX_IMAGE ($(docker image inspect -f '{{.Size}}' "$SANDBOX_IMAGE" | numfmt --to=iec))"
}

build_app() {
    log "building $APP_IMAGE (extras: $APP_EXTRAS)"
    docker build -q --build-arg BASE="$BASE_IMAGE" --build-arg EXTRAS="$APP_EXTRAS" -t "$APP_IMAGE" . >/dev/null
    log "built $APP_IMAGE ($(docker image inspect -f '{{.Size}}' "$APP_IMAGE" | numfmt --to=iec))"
}

build_redis() {
    log "building $REDIS_IMAGE"
    docker build -q --build-arg BASE="$BASE_IMAGE" -f containers/redis.Dockerfile -t "$REDIS_IMAGE" containers >/dev/null
    log "built $REDIS_IMAGE ($(docker image inspect -f '{{.Size}}' "$REDIS_IMAGE" | numfmt --to=iec))"
}

steps=("$@")
((${#steps[@]})) || steps=(base sandbox app redis)
for step in "${steps[@]}"; do
    case "$step" in
    base) build_base ;;
    sandbox) build_sandbox ;;
    app) build_app ;;
    redis) build_redis ;;
    *)
        echo "build-images: unknown step '$step' (base, sandbox, app, redis)" >&2
        exit 2
        ;;
    esac
done
log "done"
