#!/usr/bin/env bash
# Build the sandbox's kernel image (toolfleet-sandbox:latest) from the repository.
# Without an image registry the base is toolfleet-base:bookworm, made here by base-image.sh
# (mmdebstrap); with one, BASE_IMAGE=python:3.12-slim deploy/docker/build-images.sh.
#
#   deploy/docker/build-images.sh
#   BASE_IMAGE=... SANDBOX_IMAGE=... deploy/docker/build-images.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BASE_IMAGE=${BASE_IMAGE:-toolfleet-base:bookworm}
SANDBOX_IMAGE=${SANDBOX_IMAGE:-toolfleet-sandbox:latest}

log() { echo "build-images: $*" >&2; }

if [ "$BASE_IMAGE" = toolfleet-base:bookworm ]; then
    "$ROOT/deploy/docker/base-image.sh"
fi

log "building $SANDBOX_IMAGE FROM $BASE_IMAGE"
# Host network for the build's downloads (pip): no bridge or NAT involved.
docker build --network host \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    -f "$ROOT/services/sandbox/Dockerfile" \
    -t "$SANDBOX_IMAGE" \
    "$ROOT"
log "built $SANDBOX_IMAGE ($(docker image inspect --format '{{.Size}}' "$SANDBOX_IMAGE" | numfmt --to=iec))"
