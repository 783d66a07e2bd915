# Sourced by scripts/setup_env.sh and scripts/setup_launch_system.sh (not run on its own).
#
# cmake_into_venv SRC BUILD_DIR VENV [CMAKE_ARGS...]
#   Configure, build and install the ament_cmake package in SRC (e.g. msg/srv interfaces built
#   with rosidl) into the virtualenv prefix VENV, against the ROS 2 wheels installed there.
#   The logs go to BUILD_DIR/cmake.{configure,build,install}.log; on a failure the end of the
#   log is printed and the function returns non-zero.
# The install prefix must be the venv: with a venv inside the source tree, CMake refuses to
# export include paths under the source dir (numpy's, here) unless they are under the prefix.
cmake_into_venv() {
  local src="$1" build_dir="$2" venv="$3"
  shift 3
  if [[ -f "$build_dir/CMakeCache.txt" ]] && ! grep -qs "CMAKE_INSTALL_PREFIX:PATH=$venv\$" "$build_dir/CMakeCache.txt"; then
    rm -rf "$build_dir"  # configured for another prefix
  fi
  mkdir -p "$build_dir"
  local log="$build_dir/cmake" step
  AMENT_PREFIX_PATH="$venv" cmake -S "$src" -B "$build_dir" \
    -DCMAKE_PREFIX_PATH="$venv" -DCMAKE_INSTALL_PREFIX="$venv" \
    -DPython3_EXECUTABLE="$venv/bin/python" -DPython3_FIND_VIRTUALENV=ONLY \
    -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release "$@" >"$log.configure.log" 2>&1 \
    || { tail -n 40 "$log.configure.log" >&2; echo "cmake configure of $src failed (log: $log.configure.log)" >&2; return 1; }
  AMENT_PREFIX_PATH="$venv" cmake --build "$build_dir" -j "$(nproc 2>/dev/null || echo 2)" >"$log.build.log" 2>&1 \
    || { tail -n 40 "$log.build.log" >&2; echo "cmake build of $src failed (log: $log.build.log)" >&2; return 1; }
  cmake --install "$build_dir" >"$log.install.log" 2>&1 \
    || { tail -n 40 "$log.install.log" >&2; echo "cmake install of $src failed (log: $log.install.log)" >&2; return 1; }
}
