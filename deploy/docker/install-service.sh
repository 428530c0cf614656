#!/bin/sh
# Install a service's packages into the image's venv and check the image (run by
# deploy/docker/Dockerfile with the repository's clients/ and services/ under /src):
#
#   sh install-service.sh SERVICE
#
# The third-party dependencies are installed already (requirements.txt), so the workspace's
# packages go in without theirs. The gateway gets every service's package too, for the HTTP
# routes they declare (which need only the gateway's libraries). Then the Python of the
# service's `[tool.toolfleet.image] check` runs (default: importing the service).
set -eu
service=$1
src=/src
packages="$src/clients/python $src/services/core $src/services/$service"
if [ "$service" = gateway ]; then
    for name in $(python "$src/deploy/docker/services.py" --workers); do
        packages="$packages $src/services/$name"
    done
fi
# shellcheck disable=SC2086  # one word per package
python -m pip install --quiet --no-deps --no-build-isolation $packages
check=$(python - "$src/services/$service/pyproject.toml" "$service" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    image = tomllib.load(f).get("tool", {}).get("toolfleet", {}).get("image", {})
print(image.get("check", f"import toolfleet.core, toolfleet.{sys.argv[2]}"))
PY
)
python -c "$check"
echo "image ok: $service"
