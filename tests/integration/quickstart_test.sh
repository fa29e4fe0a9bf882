#!/usr/bin/env bash
# The README's first command, run as a new user would: it must end with a delivered welcome
# email on screen, and `herald dev down` must leave no process behind.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
state=$(mktemp -d /tmp/herald-quickstart-XXXXXX)
trap '"$root/build/herald" dev down --state-dir "$state" >/dev/null 2>&1 || true; rm -rf "$state"' EXIT
out=$(bash "$root/scripts/quickstart.sh" --state-dir "$state" 2>&1)
echo "$out" | tail -n 40
echo "$out" | grep -q "delivered email" || { echo "FAIL: no delivered email shown"; exit 1; }
echo "$out" | grep -q "Subject: " || { echo "FAIL: the email's subject is not shown"; exit 1; }
echo "$out" | grep -q "2 welcome email(s) delivered end to end" || { echo "FAIL: demo did not complete"; exit 1; }
# The manager console and the API documentation are served by the running system.
admin_url=$(grep '^export HERALD_ADMIN_URL=' "$state/dev.env" | cut -d"'" -f2)
# (Each page is read whole before grep looks at it: grep -q stopping early would break curl's
# pipe, and pipefail would count that as a failure.)
page=$(curl -sf "$admin_url/console/") && grep -q '<title>' <<<"$page" || { echo "FAIL: the console is not served at $admin_url/console/"; exit 1; }
curl -sf "$admin_url/console/app.js" >/dev/null || { echo "FAIL: the console's script is not served"; exit 1; }
page=$(curl -sf "$admin_url/openapi.json") && grep -q '"openapi"' <<<"$page" || { echo "FAIL: /openapi.json is not served"; exit 1; }
pids=$(cat "$state"/pids/*.pid)
"$root/build/herald" dev down --state-dir "$state"
for p in $pids; do
  for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$p" 2>/dev/null; then echo "FAIL: process $p is still running after dev down"; exit 1; fi
done
echo "quickstart: OK"
