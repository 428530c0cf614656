#!/usr/bin/env bash
# Make Docker Compose v2 (`docker compose`) available, from Debian's packages. Idempotent: does
# nothing when `docker compose version` answers.
#
# Debian 13 (trixie) and later package Compose v2 as `docker-compose`: apt-get installs it.
# Debian 12 (bookworm) has only Compose v1 (1.29, Python); there the trixie package's plugin
# (a Go binary that needs only libc 2.34+) is downloaded with apt-get, through a private apt
# configuration that leaves the system's sources and package database untouched, checked
# against Debian's archive keys, and its binary installed as the CLI plugin
# /usr/local/lib/docker/cli-plugins/docker-compose.
#
#   deploy/docker/install-compose.sh      (root)
#   COMPOSE_SUITE=trixie MIRROR=http://deb.debian.org/debian deploy/docker/install-compose.sh
set -euo pipefail

COMPOSE_SUITE=${COMPOSE_SUITE:-trixie}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
PLUGIN_DIR=${PLUGIN_DIR:-/usr/local/lib/docker/cli-plugins}

log() { echo "install-compose: $*" >&2; }

if docker compose version >/dev/null 2>&1; then
    log "$(docker compose version) already installed"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    log "must run as root (try: sudo $0)"
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive

# The candidate of the system's own sources: v2 from Debian 13 on.
candidate=$(apt-cache policy docker-compose 2>/dev/null | awk '/Candidate:/ {print $2}')
if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
    apt-get update -qq
    candidate=$(apt-cache policy docker-compose 2>/dev/null | awk '/Candidate:/ {print $2}')
fi
case "$candidate" in
    [2-9].*)
        log "installing docker-compose $candidate"
        apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
        ;;
    *)
        log "system candidate is ${candidate:-none} (Compose v1); taking the plugin of" \
            "Debian $COMPOSE_SUITE's docker-compose"
        work=$(mktemp -d)
        trap 'rm -rf "$work"' EXIT
        mkdir -p "$work/lists/partial" "$work/archives/partial"
        echo "deb $MIRROR $COMPOSE_SUITE main" >"$work/sources.list"
        apt_private=(
            -o "Dir::Etc::SourceList=$work/sources.list"
            -o "Dir::Etc::SourceParts=-"
            -o "Dir::State::Lists=$work/lists"
            -o "Dir::Cache=$work"
            -o "Dir::Cache::Archives=$work/archives"
            -o "APT::Sandbox::User=root"
        )
        apt-get "${apt_private[@]}" update -qq
        (cd "$work" && apt-get "${apt_private[@]}" download -qq docker-compose)
        dpkg-deb -x "$work"/docker-compose_*.deb "$work/root"
        mkdir -p "$PLUGIN_DIR"
        install -m 0755 "$work/root/usr/libexec/docker/cli-plugins/docker-compose" \
            "$PLUGIN_DIR/docker-compose"
        ;;
esac

if ! docker compose version >/dev/null 2>&1; then
    log "docker compose still does not answer"
    exit 1
fi
log "ready: $(docker compose version)"
