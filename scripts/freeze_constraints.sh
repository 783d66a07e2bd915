#!/usr/bin/env bash
# Write constraints.txt: the exact versions of the PyPI packages in .venv that the test suite last
# passed with (the "tested set"). scripts/setup_env.sh installs with `-c constraints.txt` when the
# interpreter's version matches the one recorded here; setup.py keeps the floors (the oldest
# versions known to work), so other interpreters still get a working, unpinned install.
# Leaves out: this package (editable), wheels installed from files (the ros2-cli bundle) and torch
# (pinned by TORCH_PIN in setup_env.sh, a local CPU build).
# Usage: bash scripts/freeze_constraints.sh   (after `make test` passed)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
[[ -x "$PY" ]] || { echo "freeze_constraints.sh: no $PY (run make setup first)" >&2; exit 1; }
{
  echo "# The tested set: written by scripts/freeze_constraints.sh; used by scripts/setup_env.sh."
  echo "# python $("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
  "$PY" -m pip --disable-pip-version-check freeze --exclude-editable \
    | grep -v ' @ file://' | grep -v -i '^torch==' | LC_ALL=C sort -f
} >"$ROOT/constraints.txt"
echo "freeze_constraints.sh: wrote $(grep -vc '^#' "$ROOT/constraints.txt") pins to constraints.txt"
