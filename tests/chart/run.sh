#!/usr/bin/env bash
# Runs the Helm chart tests: renders and lints charts/keygate through helm-python-sdk,
# validates every object against the Kubernetes schemas and asserts the chart's properties.
# Needs only python3 (3.11+) with venv and pip. The venv lives at $KEYGATE_VENV
# (default: target/venv-chart in the repository) and is reused between runs.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${KEYGATE_VENV:-$repo/target/venv-chart}"
python="${PYTHON:-python3}"
requirements="$repo/tests/chart/requirements.txt"

if [[ ! -x "$venv/bin/python" ]]; then
  mkdir -p "$(dirname "$venv")"
  if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
    # Debian without python3-venv has no ensurepip: borrow the system pip instead.
    rm -rf "$venv"
    "$python" -m venv --without-pip --system-site-packages "$venv"
    if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
      echo "tests/chart/run.sh: $python has neither venv+ensurepip nor pip; install python3-venv or python3-pip" >&2
      exit 1
    fi
  fi
fi

# Reinstall only when requirements.txt changed since the last successful install.
stamp="$venv/.keygate-chart-requirements"
if ! cmp -s "$requirements" "$stamp" 2>/dev/null; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$stamp"
fi

cd "$repo"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/chart "$@"
