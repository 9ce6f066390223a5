#!/usr/bin/env bash
# Game-day exercise 1: post a test alert to Alertmanager and show where it is routed.
#
#   scripts/trigger_test_alert.sh [--url URL] [--severity SEVERITY] [--category CATEGORY]
#                                 [--minutes N] [--config FILE]
#
#   --url       Alertmanager base URL (default: $ALERTMANAGER_URL or http://127.0.0.1:9093)
#   --severity  the alert's severity label (default: warning; critical pages the SRE on-call)
#   --category  optional category label (safety routes to #aegis-safety and the Safety on-call)
#   --minutes   how long the alert stays active before it resolves by itself (default: 5)
#   --config    the Alertmanager config for `amtool config routes test`
#               (default: $ALERTMANAGER_CONFIG or observability/alertmanager/alertmanager.yml)
#
# It POSTs alertname=AegisTestAlert to /api/v2/alerts with curl, reads the alert back to print
# the receivers the running Alertmanager chose, then prints the routing of the config file with
# amtool. Playbook: docs/operations/alerts.md#aegistestalert.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
url="${ALERTMANAGER_URL:-http://127.0.0.1:9093}"
config="${ALERTMANAGER_CONFIG:-$repo_root/observability/alertmanager/alertmanager.yml}"
severity="warning"
category=""
minutes="5"

usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "error: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --url) url="${2:?--url needs a value}"; shift 2 ;;
    --severity) severity="${2:?--severity needs a value}"; shift 2 ;;
    --category) category="${2:?--category needs a value}"; shift 2 ;;
    --minutes) minutes="${2:?--minutes needs a value}"; shift 2 ;;
    --config) config="${2:?--config needs a value}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

# Values go into JSON and label matchers: accept only plain words and a plain URL.
[[ "$severity" =~ ^[a-z][a-z0-9_]*$ ]] || die "--severity must be a lower-case word, got '$severity'"
[[ -z "$category" || "$category" =~ ^[a-z][a-z0-9_]*$ ]] || die "--category must be a lower-case word"
[[ "$minutes" =~ ^[1-9][0-9]{0,3}$ ]] || die "--minutes must be a whole number of minutes (1-9999)"
url_re='^https?://[][A-Za-z0-9.:_-]+(/[A-Za-z0-9._~/-]*)?$'
[[ "$url" =~ $url_re ]] || die "--url must be an http(s) URL, got '$url'"
url="${url%/}"
command -v curl >/dev/null 2>&1 || die "curl is not installed"

starts_at="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
ends_at="$(date -u -d "+${minutes} minutes" +%Y-%m-%dT%H:%M:%SZ)"
sender="$(id -un 2>/dev/null | tr -cd 'A-Za-z0-9._-')"
host="$(hostname 2>/dev/null | tr -cd 'A-Za-z0-9._-')"
category_label=""
[ -n "$category" ] && category_label=", \"category\": \"$category\""
payload=$(cat <<EOF
[{
  "labels": {"alertname": "AegisTestAlert", "severity": "$severity", "team": "ops",
             "component": "gameday"$category_label},
  "annotations": {
    "summary": "Test alert from scripts/trigger_test_alert.sh (game-day exercise 1)",
    "description": "Sent by ${sender:-someone} on ${host:-this host} to check alert routing; it resolves by itself at $ends_at.",
    "owners": "whoever runs the game day",
    "runbook_url": "docs/operations/alerts.md#aegistestalert"
  },
  "startsAt": "$starts_at",
  "endsAt": "$ends_at",
  "generatorURL": "https://localhost/aegis/scripts/trigger_test_alert.sh"
}]
EOF
)

echo "Posting AegisTestAlert (severity=$severity${category:+, category=$category}) to $url/api/v2/alerts"
response_file="$(mktemp)"
trap 'rm -f "$response_file"' EXIT
status="$(curl -sS --max-time 10 -o "$response_file" -w '%{http_code}' \
  -H 'Content-Type: application/json' -X POST --data "$payload" "$url/api/v2/alerts")" \
  || die "could not reach Alertmanager at $url"
if [ "$status" != "200" ]; then
  cat "$response_file" >&2; echo >&2
  die "Alertmanager answered HTTP $status"
fi
echo "Alertmanager accepted the alert (HTTP 200); active until $ends_at."

# What the running Alertmanager did with it (its receivers, from its own config).
if command -v python3 >/dev/null 2>&1; then
  filter='alertname="AegisTestAlert"'
  receivers=""
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    receivers="$(curl -sS --max-time 5 -G "$url/api/v2/alerts" --data-urlencode "filter=$filter" \
      | python3 -c 'import json,sys
names = {r["name"] for a in json.load(sys.stdin) for r in a.get("receivers", [])}
print(",".join(sorted(names)))' 2>/dev/null || true)"
    [ -n "$receivers" ] && break
    sleep 0.5
  done
  echo "Receivers chosen by the running Alertmanager: ${receivers:-(alert not found yet)}"
fi

# The routing of the config file in the repository (or --config).
if command -v amtool >/dev/null 2>&1; then
  if [ -f "$config" ]; then
    labels=(alertname=AegisTestAlert "severity=$severity" team=ops component=gameday)
    [ -n "$category" ] && labels+=("category=$category")
    echo "Routing in $config (amtool config routes test):"
    amtool config routes test --config.file="$config" --tree "${labels[@]}" 2>/dev/null \
      || die "amtool could not read $config (run: amtool check-config $config)"
  else
    echo "note: $config not found; skipped amtool's routing test" >&2
  fi
else
  echo "note: amtool is not installed (Debian: prometheus-alertmanager); skipped the routing test" >&2
fi
echo "Now check that the notification reached its receivers (Slack, PagerDuty), then resolve it."
