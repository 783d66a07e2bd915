"""What the launch files share: checking launch arguments, and ending a launch when a node exits.

The checks are plain functions (no ``launch`` import): each returns the value in its type or
raises :class:`LaunchArgumentError` with one line naming the argument, the value and what is
accepted. Raised inside a launch file's ``OpaqueFunction``, ``ros2 launch`` prints that line
("Caught exception in launch (see debug for traceback): launch argument 'log_level': ...") and
exits 1, before any node starts.

:func:`end_launch_on_exit` is the other half: a node that ends ends the launch (its other nodes
are stopped, e.g. the simulator does not run on alone when the policy node fails). Exit status 0
ends it normally; any other status ends it with exit status 1 and a line naming the node and
its status, also during a Ctrl-C shutdown (a node that does not exit 0 on SIGINT is a bug),
except for the codes a node documents as "interrupted" (the distillation job's 130).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
MODES = ("teleop", "shadow", "autonomy")
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_TOKEN = r"[A-Za-z_][A-Za-z0-9_]*"
_NAMESPACE = re.compile(rf"^/?({_TOKEN}(/{_TOKEN})*)?/?$")
_TOPIC = re.compile(rf"^~?/?{_TOKEN}(/{_TOKEN})*$")


class LaunchArgumentError(ValueError):
    """A launch argument has a value the launch file does not accept (the message says which)."""


def _fail(name: str, value: str, accepted: str) -> LaunchArgumentError:
    return LaunchArgumentError(f"launch argument '{name}': {value!r} is not {accepted}")


def choice(name: str, value: str, choices: Iterable[str], allow_empty: bool = False) -> str:
    options = tuple(choices)
    v = value.strip().lower()
    if (allow_empty and v == "") or v in options:
        return v
    empty = " or '' (the params file's value)" if allow_empty else ""
    raise _fail(name, value, f"one of {', '.join(options)}{empty}")


def boolean(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise _fail(name, value, "a boolean (true or false)")


def integer(name: str, value: str, minimum: int | None = None) -> int:
    accepted = "an integer" + ("" if minimum is None else f" >= {minimum}")
    try:
        number = int(value.strip())
    except ValueError:
        raise _fail(name, value, accepted) from None
    if minimum is not None and number < minimum:
        raise _fail(name, value, accepted)
    return number


def positive_number(name: str, value: str) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        number = float("nan")
    if not number > 0 or number == float("inf"):
        raise _fail(name, value, "a finite number > 0")
    return number


def device(name: str, value: str, allow_empty: bool = False) -> str:
    v = value.strip().lower()
    if (allow_empty and v == "") or _DEVICE.match(v):
        return v
    empty = " or '' (the params file's value)" if allow_empty else ""
    raise _fail(name, value, f"a device: auto, cpu, cuda or cuda:N{empty}")


def namespace(name: str, value: str) -> str:
    v = value.strip()
    if _NAMESPACE.match(v):
        return v.rstrip("/") if v != "/" else v
    raise _fail(name, value, "a ROS namespace (e.g. arm1 or /robot/arm1; '' for none)")


def topic(name: str, value: str) -> str:
    v = value.strip()
    if _TOPIC.match(v):
        return v
    raise _fail(name, value, "a ROS topic name (e.g. image or /camera/color/image_raw)")


def existing_file(name: str, value: str, allow_empty: bool = False) -> str:
    v = value.strip()
    if (allow_empty and v == "") or os.path.isfile(v):
        return v
    raise _fail(name, value, "an existing file")


def existing_directory(name: str, value: str, allow_empty: bool = False) -> str:
    v = value.strip()
    if (allow_empty and v == "") or os.path.isdir(v):
        return v
    empty = " (or '' for the default)" if allow_empty else ""
    raise _fail(name, value, f"an existing directory{empty}")


DDS_PROFILES = {"large_images": "fastdds_large_images.xml"}  # name -> file in the package's config/


def dds_profile(name: str, value: str, config_dir: str) -> dict[str, str]:
    """The environment that makes a node use a Fast DDS XML profile: {} for '', the package's
    profile for a name in :data:`DDS_PROFILES`, or the given file (both Fast DDS 3 and 2 variables)."""
    v = value.strip()
    if not v:
        return {}
    path = os.path.join(config_dir, DDS_PROFILES[v]) if v in DDS_PROFILES else v
    if not os.path.isfile(path):
        names = ", ".join(DDS_PROFILES)
        raise _fail(name, value, f"'' (the environment's), {names} or an existing Fast DDS XML profile file")
    return {"FASTDDS_DEFAULT_PROFILES_FILE": path, "FASTRTPS_DEFAULT_PROFILES_FILE": path}


class NodeExitError(RuntimeError):
    """A node of the launch exited with a non-zero status."""


def end_launch_on_exit(node_action: Any, interrupted_codes: tuple[int, ...] = (),
                       interrupted_note: str = "") -> Any:
    """A ``RegisterEventHandler``: when ``node_action``'s process exits, end the launch.

    Status 0: a normal end (the other nodes get SIGINT; ``ros2 launch`` exits 0). During a
    shutdown (e.g. Ctrl-C), a status in ``interrupted_codes`` is logged with ``interrupted_note``
    and is not an error. Any other status raises :class:`NodeExitError`: ``ros2 launch`` prints
    one line naming the node and the status, stops the other nodes and exits 1.
    """
    from launch.actions import EmitEvent, LogInfo, RegisterEventHandler
    from launch.event_handlers import OnProcessExit
    from launch.events import Shutdown

    def on_exit(event: Any, context: Any) -> list:
        name, code = event.action.name, event.returncode
        if code == 0:
            return [EmitEvent(event=Shutdown(reason=f"{name} ended"))]
        if getattr(context, "is_shutdown", False) and code in interrupted_codes:
            return [LogInfo(msg=f"{name} interrupted (exit status {code}){': ' if interrupted_note else ''}"
                                f"{interrupted_note}")]
        raise NodeExitError(f"{name} exited with status {code}: see its output above; the launch ends")

    return RegisterEventHandler(OnProcessExit(target_action=node_action, on_exit=on_exit))
