# Redis for distributed mode (docker-compose.yml): the streams that carry calls from the
# gateway to the workers. Built from Debian's redis-server on the project's base image, so it
# needs no image registry (only the Debian archive, with `--network host`).
# Nothing is persisted: calls and replies are short-lived, and a restarted Redis starts empty.
#
#   docker build --network host -f deploy/docker/redis.Dockerfile -t toolfleet-redis:latest .
#   deploy/docker/compose-images.sh
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}

RUN set -eu; \
    export DEBIAN_FRONTEND=noninteractive; \
    apt-get update -qq; \
    apt-get install -y -qq --no-install-recommends redis-server >/dev/null; \
    rm -rf /var/lib/apt/lists/*; \
    redis-server --version

# Superseded builds of the image are pruned by this label (compose-images.sh).
LABEL toolfleet.image=redis
USER redis
WORKDIR /var/lib/redis
EXPOSE 6379
# No RDB snapshots, no AOF. Listens on every address of its network namespace (compose's
# network); the host-network override (deploy/compose/host-network.yml) binds it to 127.0.0.1.
CMD ["redis-server", "--bind", "0.0.0.0", "--port", "6379", "--protected-mode", "no", \
     "--save", "", "--appendonly", "no"]
