#!/usr/bin/env bash
# The Kubernetes driver's live tests: the conformance column and an
# apply/scale/logs/exec run through the CLI, against the cluster KUBECONFIG
# points at (PORTWAY_KUBERNETES_CONTEXT picks a context other than the current
# one). The normal suite deselects them: no API server can run where CI runs.
#
#   KUBECONFIG=~/.kube/config scripts/test-kubernetes.sh [pytest args...]
#
# The cluster's nodes need the test image (portway never pulls):
#   scripts/build-images.sh && kind load docker-image portway/busybox:latest
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${KUBECONFIG:-}" ]]; then
    echo "test-kubernetes.sh: set KUBECONFIG to the kubeconfig of a cluster to test against" >&2
    echo "  (e.g. KUBECONFIG=~/.kube/config; PORTWAY_KUBERNETES_CONTEXT=kind-kind to pick a context)" >&2
    exit 2
fi
IFS=: read -r -a files <<<"$KUBECONFIG"
for file in "${files[@]}"; do
    if [[ -n "$file" && ! -f "$file" ]]; then
        echo "test-kubernetes.sh: KUBECONFIG names $file, which does not exist" >&2
        exit 2
    fi
done

PORTWAY_KUBERNETES_LIVE=1 PYTHONPATH=src exec .venv/bin/python -m pytest tests/live_kubernetes \
    -p no:cacheprovider -ra "$@"
