#!/usr/bin/env bash
# Build the base image `toolfleet-base:bookworm` (Debian bookworm minbase with python3, pip,
# venv and CA certificates) from the Debian archive with mmdebstrap, for machines that cannot
# pull from an image registry. The host's extra CA certificates
# (/usr/local/share/ca-certificates/*.crt, e.g. an egress proxy's) are trusted inside, so pip
# works during `docker build`. Idempotent: does nothing when the image exists (FORCE=1
# rebuilds). Needs root and a running Docker engine (see install-docker.sh).
#
#   deploy/docker/base-image.sh
#   MIRROR=http://deb.debian.org/debian SUITE=bookworm IMAGE=toolfleet-base:bookworm ...
set -euo pipefail

IMAGE=${IMAGE:-toolfleet-base:bookworm}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
PACKAGES=${PACKAGES:-python3,python3-pip,python3-venv,ca-certificates,libseccomp2}

log() { echo "base-image: $*" >&2; }

if [ -z "${FORCE:-}" ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE exists; nothing to do (FORCE=1 to rebuild)"
    exit 0
fi

if ! command -v mmdebstrap >/dev/null; then
    log "installing mmdebstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
fi

log "building $IMAGE from $MIRROR ($SUITE)"
# The sources are given explicitly: without them mmdebstrap would read them from stdin.
# shellcheck disable=SC2016  # $1 is expanded by mmdebstrap's hook shell, not here
mmdebstrap --variant=minbase --quiet \
    --include="$PACKAGES" \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='mkdir -p "$1/usr/local/share/ca-certificates"; for crt in /usr/local/share/ca-certificates/*.crt; do if [ -e "$crt" ]; then cp "$crt" "$1/usr/local/share/ca-certificates/"; fi; done' \
    --customize-hook='chroot "$1" update-ca-certificates' \
    "$SUITE" - \
    "deb $MIRROR $SUITE main" \
    "deb $MIRROR $SUITE-updates main" \
    "deb $SECURITY_MIRROR $SUITE-security main" \
    </dev/null |
    docker import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' \
        - "$IMAGE" >/dev/null
log "built $IMAGE ($(docker image inspect --format '{{.Size}}' "$IMAGE" | numfmt --to=iec))"
