"""Choose MuJoCo's offscreen OpenGL backend before mujoco is imported, and explain failures.

MuJoCo reads ``MUJOCO_GL`` once, at import time; a missing system library shows up only when
the first renderer is created, as an obscure ctypes/EGL error. We turn that into a message
that names the package to install.
"""

from __future__ import annotations

import os
import sys

_IMPORTED_EARLY: list[bool] = []

SYSTEM_PACKAGES = {
    "egl": "libegl1 and libgl1-mesa-dri (Debian/Ubuntu: sudo apt-get install libegl1 libgl1-mesa-dri)",
    "osmesa": "libosmesa6 (Debian/Ubuntu: sudo apt-get install libosmesa6)",
    "glfw": "libglfw3 and a display (DISPLAY set, e.g. under xvfb-run)",
}


class RenderBackendError(RuntimeError):
    """Offscreen rendering is unavailable; the message says which system package to install."""


def select_backend(backend: str) -> None:
    """Set MUJOCO_GL unless the user already chose one (their choice wins)."""
    if backend not in SYSTEM_PACKAGES:
        raise RenderBackendError(f"unknown render backend {backend!r}; choose one of {', '.join(SYSTEM_PACKAGES)}")
    if "mujoco" in sys.modules and "MUJOCO_GL" not in os.environ:
        _IMPORTED_EARLY.append(True)  # mujoco already chose its default (glfw); explain() says so
    os.environ.setdefault("MUJOCO_GL", backend)


def explain(error: BaseException) -> RenderBackendError:
    backend = os.environ.get("MUJOCO_GL", "egl")
    need = SYSTEM_PACKAGES.get(backend, "an OpenGL implementation")
    others = "; ".join(f"MUJOCO_GL={name} needs {pkg}" for name, pkg in SYSTEM_PACKAGES.items() if name != backend)
    early = (" Note: mujoco was imported before MUJOCO_GL was set, so it chose its default (glfw); set "
             "MUJOCO_GL=egl in the environment, or import actdistill_ros.sim first." if _IMPORTED_EARLY else "")
    return RenderBackendError(
        f"MuJoCo cannot render offscreen with MUJOCO_GL={backend} ({type(error).__name__}: {error}). "
        f"Install {need}, or pick another backend ({others}).{early}"
    )
