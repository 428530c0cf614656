#!/usr/bin/env bash
# Render every kustomization of deploy/k8s (base, overlays/*) with `kubectl kustomize` and
# validate the output offline: Kubernetes kinds with kubernetes-validate --strict, KEDA's
# ScaledObject against schemas/. Installs kubectl first if need be (install-kubectl.sh).
#
#   deploy/k8s/validate.sh [KUSTOMIZATION ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
UV=$(command -v uv || echo .tools/bin/uv)
exec "$UV" run --frozen python deploy/k8s/validate.py "$@"
