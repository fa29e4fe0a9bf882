#!/usr/bin/env bash
# Quick start: installs what is missing, builds Herald, starts the whole local system on the
# embedded defaults (broker, PostgreSQL, Redis, SMTP sink, fake upstreams, every stage) in
# the background, and sends welcome events that arrive as emails on screen.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

state_dir=.herald
while [ $# -gt 0 ]; do
  case "$1" in
    --state-dir) state_dir=$2; shift 2 ;;
    *) echo "usage: $0 [--state-dir DIR]" >&2; exit 2 ;;
  esac
done

bash scripts/bootstrap.sh
bash scripts/build.sh herald

herald=build/herald
if [ -f "$state_dir/supervisor.pid" ]; then
  "$herald" dev down --state-dir "$state_dir" >/dev/null 2>&1 || true
fi
"$herald" dev up --detach --state-dir "$state_dir"
echo
"$herald" demo --state-dir "$state_dir" --count 2
cat <<MSG

The system keeps running in the background. Try:
  . $state_dir/dev.env                                    # addresses and tokens
  curl -s -H "Authorization: Bearer \$HERALD_INGEST_TOKEN" -d @- \$HERALD_INGEST_URL/v1/events <<'JSON'
  {"event_type": "user.registered", "created_dt": "2026-11-21T10:00:00Z", "payload": {"user": ["u-42"]}}
JSON
  ls $state_dir/mail/                                     # one .eml per delivered email
  kcat -b \$HERALD_BROKERS -C -t notify.status.v1 -e       # every status change
  echo \$HERALD_ADMIN_URL/console/                          # the manager console (log in with the write: token
                                                          # of \$HERALD_ADMIN_TOKEN); API docs at /docs
Stop everything with: $herald dev down --state-dir $state_dir
MSG
