#!/usr/bin/env bash
# Install the MCP servers of servers.txt (or of the file given) for toolfleet's stdio
# upstreams: npm packages into $PREFIX/npm, PyPI packages into a virtualenv at $PREFIX/python
# made with the system's python3 (a path the jail shows). Idempotent: redone only when the
# list changes. PREFIX defaults to /opt/toolfleet/mcp (the [mcp] settings' npm_prefix and
# python_prefix).
set -euo pipefail

LIST="${1:-$(dirname "$0")/servers.txt}"
PREFIX="${TOOLFLEET_MCP_PREFIX:-/opt/toolfleet/mcp}"
log() { echo "install-servers: $*" >&2; }

stamp="$PREFIX/.installed"
want="$(sha256sum "$LIST" | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi
mkdir -p "$PREFIX"
npm_pkgs=$(awk '$1 == "npm" {print $2}' "$LIST")
pypi_pkgs=$(awk '$1 == "pypi" {print $2}' "$LIST")
if [[ -n "$npm_pkgs" ]]; then
    if ! command -v npm >/dev/null; then
        log "installing Node.js and npm (Debian packages)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm >/dev/null
    fi
    log "npm: $(echo $npm_pkgs)"
    # shellcheck disable=SC2086
    npm install --global --prefix "$PREFIX/npm" --no-fund --no-audit --loglevel=error $npm_pkgs
fi
if [[ -n "$pypi_pkgs" ]]; then
    log "pypi: $(echo $pypi_pkgs)"
    [[ -x "$PREFIX/python/bin/python" ]] || /usr/bin/python3 -m venv "$PREFIX/python"
    # shellcheck disable=SC2086
    "$PREFIX/python/bin/pip" install --quiet --disable-pip-version-check $pypi_pkgs
fi
chmod -R a+rX "$PREFIX"
echo "$want" > "$stamp"
log "installed in $PREFIX"
