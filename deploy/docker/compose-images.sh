#!/usr/bin/env bash
# Build every image of docker-compose.yml, tagged as the compose file names them, so that
# `docker compose up` builds nothing:
#
#   toolfleet-sandbox:latest   services/sandbox/Dockerfile (build-images.sh: the docker
#                              backend's kernel image, the same image is the sandbox worker)
#   toolfleet-gateway:latest   deploy/docker/Dockerfile, target gateway
#   toolfleet-<service>:latest deploy/docker/Dockerfile, target worker, for every other
#                              service deploy/docker/services.py lists (search, sql, vision)
#   toolfleet-mcp:latest       services/mcp/Dockerfile (Node.js and the MCP servers)
#   toolfleet-redis:latest     deploy/docker/redis.Dockerfile
#   toolfleet-lb:latest        deploy/docker/lb.Dockerfile (HAProxy before the gateways)
#
# Idempotent and quick when nothing changed (Docker's layer cache: dependencies are a layer of
# their own, rebuilt only when the pinned set changes). First makes sure the Docker engine
# (install-docker.sh) and Compose v2 (install-compose.sh) are there, unless NO_INSTALL=1.
# Builds use the host's network (no bridge or NAT). Superseded builds of these images (untagged,
# labelled toolfleet.image) are pruned at the end. Needs root.
#
#   deploy/docker/compose-images.sh
#   BASE_IMAGE=python:3.12-slim deploy/docker/compose-images.sh    (with an image registry)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BASE_IMAGE=${BASE_IMAGE:-toolfleet-base:bookworm}
export BASE_IMAGE

log() { echo "compose-images: $*" >&2; }

if [ -z "${NO_INSTALL:-}" ]; then
    bash "$ROOT/deploy/docker/install-docker.sh"
    bash "$ROOT/deploy/docker/install-compose.sh"
fi

start=$SECONDS
# The base image (when it is ours) and the sandbox's image.
SANDBOX_IMAGE=toolfleet-sandbox:latest bash "$ROOT/deploy/docker/build-images.sh"

build() {  # build IMAGE DOCKERFILE [docker build options]
    local image=$1 dockerfile=$2 t0=$SECONDS
    shift 2
    log "building $image FROM $BASE_IMAGE"
    docker build --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" "$@" \
        -f "$ROOT/$dockerfile" -t "$image" "$ROOT"
    log "built $image in $((SECONDS - t0))s"
}

build toolfleet-redis:latest deploy/docker/redis.Dockerfile
build toolfleet-lb:latest deploy/docker/lb.Dockerfile
# The gateway, then every service (the sandbox's image was built by build-images.sh): by the
# shared Dockerfile, or by the service's own when it has one (mcp: Node.js and its servers).
for name in $(python3 "$ROOT/deploy/docker/services.py"); do
    [ "$name" = sandbox ] && continue
    dockerfile=$(python3 "$ROOT/deploy/docker/services.py" --dockerfile "$name")
    if [ "$dockerfile" = deploy/docker/Dockerfile ]; then
        target=worker
        [ "$name" = gateway ] && target=gateway
        build "toolfleet-$name:latest" "$dockerfile" --build-arg "SERVICE=$name" --target "$target"
    else
        build "toolfleet-$name:latest" "$dockerfile"
    fi
done
log "all compose images built in $((SECONDS - start))s"

# Earlier builds of these images that no tag names any more (each source edit leaves one):
# only images with our label and no tag, so the current images and their layer cache stay.
docker image prune --force --filter label=toolfleet.image >/dev/null
