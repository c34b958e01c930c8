#!/usr/bin/env bash
# Install everything the tests need, then run them all (unit + slow integration).
# Used by the README and by .ci/run. Idempotent: caches live under .cache/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
python3 -m pip install -q -e '.[test]'
for setup in scripts/setup_dynamo.sh scripts/setup_kube.sh scripts/setup_postgres.sh; do
  if [ -f "$setup" ]; then bash "$setup"; fi
done
ruff check .
ruff format --check .
python3 -m mypy
set +e
python3 -m pytest -q "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "no tests collected"; exit 0; fi
exit "$rc"
