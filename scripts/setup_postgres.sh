#!/usr/bin/env bash
# Make sure PostgreSQL's server binaries (initdb, pg_ctl) are there for the shared-study tests
# (tests/search/test_workers_pg.py starts a throw-away cluster of its own in a temp dir).
#
# Found on PATH or under /usr/lib/postgresql/*/bin: nothing to do. Otherwise Debian's `postgresql`
# is installed with apt (root, or sudo). The package's own cluster service is not needed; the tests
# never touch it. Prints the binaries' directory as the last line of stdout.
set -euo pipefail
find_bin() {
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(readlink -f "$(command -v initdb)")"
    return 0
  fi
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  return 1
}
if bin="$(find_bin)"; then
  echo "$bin"
  exit 0
fi
sudo_=""
[ "$(id -u)" -eq 0 ] || sudo_="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo_ apt-get update -qq
$sudo_ apt-get install -y -qq --no-install-recommends postgresql >/dev/null
bin="$(find_bin)" || { echo "error: postgresql installed but initdb/pg_ctl not found" >&2; exit 1; }
echo "$bin"
