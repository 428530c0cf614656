#!/usr/bin/env bash
# The distributed tests need a Redis on 127.0.0.1:6379 and the redis-server binary (the chaos
# test runs a private one it can restart). Installs and starts them if missing; idempotent.
set -euo pipefail

log() { echo "ensure-redis: $*" >&2; }

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    log "installing redis-server (Debian package)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    log "starting redis-server on 127.0.0.1:6379"
    redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save '' --appendonly no \
        --logfile /tmp/toolfleet-redis.log
    for _ in $(seq 50); do
        redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break
        sleep 0.1
    done
fi
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null
log "Redis answers on 127.0.0.1:6379"
