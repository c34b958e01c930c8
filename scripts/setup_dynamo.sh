#!/usr/bin/env bash
# Install NVIDIA Dynamo 1.6.1 (frontend, KV router, mocker) into its own venv for the
# `dynamo-local` backend and the live tests. Idempotent: a complete venv is left alone.
#
# Why a separate venv and two pip steps: plain `pip install ai-dynamo==1.6.1` fails offline
# (its `aisimulate` dependency is an sdist stub that downloads a wheel from NVIDIA's index, and it
# pins a certifi release not on PyPI). The runtime wheel plus the pure-Python package without its
# declared dependencies is all the frontend and mocker need (shared/reference/dynamo.md §6).
# `tokenizers` is installed too (autotune builds the tiny model's tokenizer with this venv's python), and
# `numpy`, which the mocker needs to read timing tables (--planner-profile-data).
#
# Usage: scripts/setup_dynamo.sh [VENV_DIR]   (default: .cache/dynamo-venv; or $AUTOTUNE_DYNAMO_VENV)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-${AUTOTUNE_DYNAMO_VENV:-$root/.cache/dynamo-venv}}"
py="${PYTHON:-python3}"

if [ -x "$venv/bin/python" ] && "$venv/bin/python" - <<'PY' 2>/dev/null
import importlib.metadata as m, sys
ok = m.version("ai-dynamo") == "1.6.1" and m.version("ai-dynamo-runtime") == "1.6.1"
import dynamo.frontend, dynamo.mocker, tokenizers, numpy  # noqa: F401
sys.exit(0 if ok else 1)
PY
then
  echo "dynamo venv ready: $venv"
  exit 0
fi

"$py" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  "ai-dynamo-runtime==1.6.1" pyyaml msgspec packaging "tokenizers>=0.15" numpy
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps "ai-dynamo==1.6.1"
"$venv/bin/python" -c "import dynamo.frontend, dynamo.mocker, tokenizers; print('dynamo 1.6.1 installed')"
echo "dynamo venv ready: $venv"
