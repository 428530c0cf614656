# The load balancer in front of the gateway replicas (docker-compose.yml): HAProxy from
# Debian's package on the project's base image, so it needs no image registry (only the Debian
# archive, with `--network host`). Round-robin per request: every gateway serves every session
# (their state is in Redis). Configurations: deploy/compose/haproxy/.
#
#   docker build --network host -f deploy/docker/lb.Dockerfile -t toolfleet-lb:latest .
#   deploy/docker/compose-images.sh
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}

RUN set -eu; \
    export DEBIAN_FRONTEND=noninteractive; \
    apt-get update -qq; \
    apt-get install -y -qq --no-install-recommends haproxy >/dev/null; \
    rm -rf /var/lib/apt/lists/*; \
    haproxy -v | head -1

COPY deploy/compose/haproxy/ /etc/toolfleet-lb/
ENV TOOLFLEET_LB_BIND=:8000 TOOLFLEET_LB_GATEWAY=gateway:8000
WORKDIR /etc/toolfleet-lb
RUN haproxy -c -f common.cfg -f bridge.cfg

# Superseded builds of the image are pruned by this label (compose-images.sh).
LABEL toolfleet.image=lb
USER haproxy
EXPOSE 8000
CMD ["haproxy", "-W", "-db", "-f", "common.cfg", "-f", "bridge.cfg"]
