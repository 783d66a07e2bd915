#!/usr/bin/env bash
# Add the ROS 2 launch system, the `ros2` command and colcon to the development venv (.venv), for
# machines without a ROS distro (a distro has all of this already). CI runs it (.ci/run); the
# package itself never needs it at run time, and the tests that do skip, saying so, without it.
#
#   bash scripts/setup_launch_system.sh [BUNDLE]
#
# BUNDLE is a directory with wheels/ (launch, launch_ros, ros2cli, ros2launch, ros2lifecycle, ...,
# built unchanged from upstream) and interfaces/composition_interfaces/ (sources launch_ros imports);
# default: $ACTDISTILL_ROS2_CLI_DIR, else ros2-cli/ in a shared/ directory next to the checkout
# (../shared/ros2-cli). Steps:
#   1. the wheels into .venv (--no-deps) plus their pure-Python dependencies from PyPI;
#   2. composition_interfaces built with CMake + rosidl into .venv (like our msg/ and srv/);
#   3. colcon-common-extensions (PyPI) in a tool venv of its own, build/colcon-venv (colcon pulls
#      pytest plugins and build tools the project venv does not need); `build/colcon-venv/bin/colcon`.
# Idempotent (a stamp of the inputs in .venv); ACTDISTILL_SETUP_FORCE=1 redoes every step.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
COLCON_VENV="$ROOT/build/colcon-venv"
STAMP_FILE="$VENV/.actdistill_launch_system.stamp"

log() { printf '==> setup_launch_system [%3ss]: %s\n' "$SECONDS" "$*"; }
die() { printf 'setup_launch_system.sh: ERROR: %s\n' "$*" >&2; exit 1; }

cd "$ROOT"
# shellcheck source=scripts/cmake_into_venv.sh
source "$ROOT/scripts/cmake_into_venv.sh"

BUNDLE="${1:-${ACTDISTILL_ROS2_CLI_DIR:-$ROOT/../shared/ros2-cli}}"
[[ -d "$BUNDLE/wheels" ]] || die "no launch-system bundle at $BUNDLE (expected wheels/ and interfaces/ there; pass its path or set ACTDISTILL_ROS2_CLI_DIR)"
BUNDLE="$(cd "$BUNDLE" && pwd)"
[[ -x "$PY" ]] || die "$PY is missing: run 'make setup' (bash scripts/setup_env.sh) first"

mkdir -p "$ROOT/build"
exec 9>"$ROOT/build/.setup_launch_system.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9 || die "cannot lock $ROOT/build/.setup_launch_system.lock"
fi

verify() {
  (cd / && AMENT_PREFIX_PATH="$VENV" "$VENV/bin/ros2" pkg prefix actdistill_ros >/dev/null \
    && "$PY" -c 'import launch, launch_ros.actions, ros2launch, composition_interfaces.srv' \
    && "$COLCON_VENV/bin/colcon" --help >/dev/null)
}

STAMP="$({
  printf 'root=%s\n' "$ROOT"
  sha256sum "$0" "$ROOT/scripts/cmake_into_venv.sh" | cut -d' ' -f1
  (cd "$BUNDLE" && find wheels interfaces -type f | LC_ALL=C sort | xargs sha256sum)
} | sha256sum | cut -d' ' -f1)"
if [[ "${ACTDISTILL_SETUP_FORCE:-0}" != 1 && -f "$STAMP_FILE" && "$(cat "$STAMP_FILE")" == "$STAMP" ]] && verify; then
  log "up to date ($BUNDLE)"
  exit 0
fi
rm -f "$STAMP_FILE"
export VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH"
PIP=("$PY" -m pip --disable-pip-version-check)

# --- 1. the wheels and their dependencies ---------------------------------------------------
log "installing the launch system and ros2 CLI wheels from $BUNDLE/wheels"
"${PIP[@]}" install -q --no-deps "$BUNDLE"/wheels/*.whl || die "pip install of the wheels failed"
# (lark: rosidl's lark-parser already provides the module; PyPI's `launch` is an unrelated
# package and is never installed)
DEPS=(osrf-pycommon pyyaml packaging)
"$PY" -c 'import lark' 2>/dev/null || DEPS+=(lark)
"${PIP[@]}" install -q "${DEPS[@]}" || die "pip install ${DEPS[*]} failed"

# --- 2. composition_interfaces (launch_ros imports it) ---------------------------------------
log "building composition_interfaces into the venv"
cmake_into_venv "$BUNDLE/interfaces/composition_interfaces" "$ROOT/build/composition_interfaces" "$VENV" \
  || die "building composition_interfaces failed"

# --- 3. colcon in a tool venv of its own ------------------------------------------------------
if [[ ! -x "$COLCON_VENV/bin/colcon" ]]; then
  log "installing colcon-common-extensions into ${COLCON_VENV#"$ROOT"/}"
  "$PY" -c 'import sys; print(sys.base_prefix)' >/dev/null
  BASE_PY="$("$PY" -c 'import sys, os; print(os.path.join(sys.base_prefix, "bin", "python3"))')"
  "$BASE_PY" -m venv "$COLCON_VENV" || die "creating $COLCON_VENV failed"
  "$COLCON_VENV/bin/python" -m pip install -q --disable-pip-version-check colcon-common-extensions \
    || die "pip install colcon-common-extensions failed"
fi

verify || die "the check failed: ros2 pkg prefix actdistill_ros / import launch_ros / colcon --help"
echo "$STAMP" >"$STAMP_FILE"
log "OK: ros2 CLI + launch $("$PY" -c 'import importlib.metadata as m; print(m.version("launch"))') + launch_ros $("$PY" -c 'import importlib.metadata as m; print(m.version("launch_ros"))') in .venv, colcon in ${COLCON_VENV#"$ROOT"/}/bin"
