#!/usr/bin/env bash
# Make a Docker engine available for the sandbox's docker backend, with gVisor registered as
# the `runsc` runtime. Idempotent: installs only what is missing (Debian/Ubuntu packages
# docker.io and runsc), starts dockerd only when it is not answering, and touches
# /etc/docker/daemon.json only when the runsc entry is missing or different.
#
# runsc gets --host-uds=create: the zygote's socket is created inside the sandbox in the
# bind-mounted /run/toolfleet, and only with this flag is it a host socket the service can
# connect to (descriptors then pass from the host into the sandbox with SCM_RIGHTS).
# --network=none: the sandbox has no network stack at all.
#
#   sudo deploy/docker/install-docker.sh          # CI and developers (needs root)
#   NO_RUNSC=1 deploy/docker/install-docker.sh    # skip gVisor
set -euo pipefail

DAEMON_JSON=${DAEMON_JSON:-/etc/docker/daemon.json}
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
WAIT_S=${WAIT_S:-60}
RUNSC_ARGS='["--network=none", "--host-uds=create"]'

log() { echo "install-docker: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
    log "must run as root (try: sudo $0)"
    exit 1
fi

systemd() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }

engine_up() { timeout 10 docker info >/dev/null 2>&1; }

wait_engine() {
    local deadline=$((SECONDS + WAIT_S))
    until engine_up; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "dockerd did not answer within ${WAIT_S}s; last lines of $DOCKERD_LOG:"
            tail -n 30 "$DOCKERD_LOG" >&2 || true
            return 1
        fi
        sleep 0.5
    done
}

start_dockerd() {
    if systemd; then
        systemctl start docker
    else
        # No init system (containers, CI VMs): run it in the background, detached from us.
        log "starting dockerd (log: $DOCKERD_LOG)"
        nohup setsid dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
    fi
    wait_engine
}

# Does the engine know runsc with our arguments?
runsc_registered() {
    docker info --format '{{json .Runtimes}}' 2>/dev/null | python3 -c '
import json, sys
runsc = json.load(sys.stdin).get("runsc") or {}
sys.exit(runsc.get("runtimeArgs") != json.loads(sys.argv[1]))' "$RUNSC_ARGS"
}

# dockerd re-reads daemon.json on SIGHUP, and `runtimes` is one of the options it reloads:
# running containers are not disturbed. Restart only if the reload did not take.
reload_dockerd() {
    if systemd; then
        systemctl reload docker || systemctl restart docker
    elif [ -s /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
        kill -HUP "$(cat /var/run/docker.pid)"
    fi
    local deadline=$((SECONDS + 10))
    until runsc_registered; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "reload did not register runsc; restarting dockerd"
            restart_dockerd
            return
        fi
        sleep 0.5
    done
}

restart_dockerd() {
    if systemd; then
        systemctl restart docker
        wait_engine
        return
    fi
    local pid
    pid=$(cat /var/run/docker.pid 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        local deadline=$((SECONDS + 30))
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    fi
    start_dockerd
}

# ---------------------------------------------------------------------------- packages
missing=()
{ command -v dockerd && command -v docker; } >/dev/null || missing+=(docker.io)
if [ -z "${NO_RUNSC:-}" ] && ! command -v runsc >/dev/null; then missing+=(runsc); fi
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---------------------------------------------------------------------------- engine
if engine_up; then
    log "docker engine already running"
else
    start_dockerd
fi

# ---------------------------------------------------------------------------- gVisor
if [ -z "${NO_RUNSC:-}" ]; then
    RUNSC=$(command -v runsc)
    mkdir -p "$(dirname "$DAEMON_JSON")"
    changed=$(python3 - "$DAEMON_JSON" "$RUNSC" "$RUNSC_ARGS" <<'EOF'
import json, os, sys

path, runsc, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
config = {}
if os.path.exists(path) and os.path.getsize(path) > 0:
    with open(path) as f:
        config = json.load(f)
wanted = {"path": runsc, "runtimeArgs": args}
runtimes = config.setdefault("runtimes", {})
if runtimes.get("runsc") == wanted:
    print("no")
else:
    runtimes["runsc"] = wanted
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    print("yes")
EOF
    )
    if [ "$changed" = yes ]; then
        log "registered runsc in $DAEMON_JSON; reloading dockerd"
        reload_dockerd
    elif ! runsc_registered; then
        reload_dockerd
    fi
    log "runtimes: $(docker info --format '{{range $k, $v := .Runtimes}}{{$k}} {{end}}')"
fi
log "ready: $(docker version --format 'engine {{.Server.Version}}, API {{.Server.APIVersion}}')"
