#!/usr/bin/env bash
# Prerequisites of the test suite. Installs Debian packages when running as root; under CI=true a
# missing service is a failure with a clear message, never a silent skip.
set -uo pipefail

need_pkgs=()
command -v prometheus >/dev/null 2>&1 || need_pkgs+=(prometheus)
command -v alertmanager >/dev/null 2>&1 || command -v prometheus-alertmanager >/dev/null 2>&1 || need_pkgs+=(prometheus-alertmanager)
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_pkgs+=(chromium-driver)
command -v initdb >/dev/null 2>&1 || [ -x "$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1)/initdb" ] || need_pkgs+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)

if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing missing Debian packages: ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null \
      || { echo "error: apt-get install ${need_pkgs[*]} failed"; [ "${CI:-}" = "true" ] && exit 1; }
  else
    echo "note: missing ${need_pkgs[*]} (install them with apt-get as root); tests needing them will skip outside CI"
    [ "${CI:-}" = "true" ] && { echo "error: CI=true and prerequisites are missing: ${need_pkgs[*]}"; exit 1; }
  fi
fi

status=0
pg_port=${AEGIS_TEST_PG_PORT:-5432}
redis_port=${AEGIS_TEST_REDIS_PORT:-6379}
if ! (exec 3<>"/dev/tcp/127.0.0.1/$pg_port") 2>/dev/null; then
  echo "PostgreSQL is not reachable at 127.0.0.1:$pg_port"
  [ "${CI:-}" = "true" ] && { echo "error: CI=true requires PostgreSQL at 127.0.0.1:$pg_port"; status=1; }
fi
if ! (exec 3<>"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null; then
  echo "Redis is not reachable at 127.0.0.1:$redis_port"
  [ "${CI:-}" = "true" ] && { echo "error: CI=true requires Redis at 127.0.0.1:$redis_port"; status=1; }
fi
exit $status
