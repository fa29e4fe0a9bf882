#!/usr/bin/env bash
# Checks the Helm chart in helm/herald.
#
#   scripts/helm-check.sh [path/to/herald]      (default: $HERALD_BINARY, else build/herald)
#
# With `helm` on PATH: `helm lint` and `helm template` with the default values and with every
# values file in helm/herald/ci/ (all options on: KEDA, HPA, Strimzi, ServiceMonitor, Grafana
# dashboard, static membership, TLS mounts, ingress), for a current cluster and for one older
# than 1.30 (the preStop exec fallback). Any error fails the script.
# Without helm (it is not available from this project's package sources) those checks are
# skipped, and the script says so.
# Always: tests/helm/chart_test.py, which checks the chart against the binary and topics.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

chart=helm/herald
binary="${1:-${HERALD_BINARY:-build/herald}}"
status=0

ci_values=()
for f in "$chart"/ci/*.yaml; do
  [ -e "$f" ] && ci_values+=("$f")
done

if command -v helm >/dev/null 2>&1; then
  echo "== helm $(helm version --short 2>/dev/null || echo '(version unknown)')"
  run() {
    echo "-- $*"
    if ! "$@" >/tmp/helm-check.$$ 2>&1; then
      cat /tmp/helm-check.$$
      status=1
    fi
    rm -f /tmp/helm-check.$$
  }
  run helm lint "$chart"
  run helm template herald "$chart" --namespace notify
  run helm template herald "$chart" --namespace notify --kube-version 1.28.0
  for f in "${ci_values[@]}"; do
    run helm lint "$chart" -f "$f"
    run helm template herald "$chart" --namespace notify -f "$f" --kube-version 1.30.0
    run helm template herald "$chart" --namespace notify -f "$f" --kube-version 1.28.0
  done
  if [ "$status" -ne 0 ]; then
    echo "helm checks FAILED"
  else
    echo "helm checks passed"
  fi
else
  cat <<EOF
== helm is not installed (it is not available from this project's package sources).
   Skipped:
     - helm lint $chart
     - helm template with the default values (Kubernetes 1.30 and 1.28)
$(for f in "${ci_values[@]}"; do echo "     - helm lint and helm template with $f"; done)
   Install Helm 3 (https://helm.sh/docs/intro/install/) to run them.
   Still run: the chart test below (topics copy, stages, topics, settings, comments,
   dashboard metrics, template syntax).
EOF
fi

echo
echo "== tests/helm/chart_test.py $binary"
if [ ! -x "$binary" ]; then
  echo "the herald binary $binary does not exist; build it first (scripts/build.sh) or pass its path"
  exit 1
fi
python3 tests/helm/chart_test.py "$binary" || status=1
exit "$status"
