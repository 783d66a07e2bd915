"""Action sources: per-message value extraction and per-tick 7-D deltas.

Every source yields, per control tick t with period dt, (dx, dy, dz, droll, dpitch, dyaw):

* ``ee``    -- our EndEffectorAction: the latest message at or before t. Its deltas span the
  message's ``control_period``; they are rescaled to dt (a 30 Hz teleop command of 1/30 s
  becomes a 0.1 s delta at 10 Hz). The gripper comes from the message.
* ``twist`` -- TwistStamped velocities, zero-order hold of the latest command, integrated over
  [t, t+dt). Angular velocity integrates to roll/pitch/yaw deltas component-wise (exact for
  rotation about one axis, a small-angle approximation otherwise).
* ``pose``  -- PoseStamped EE poses: position p(t+dt) - p(t) in the pose frame; rotation as
  roll/pitch/yaw (ZYX) of R(t)^T R(t+dt), i.e. in the end-effector frame at t.
"""

from __future__ import annotations

import numpy as np

EE_TYPES = ("actdistill_ros/msg/EndEffectorAction",)
TWIST_TYPES = ("geometry_msgs/msg/TwistStamped", "geometry_msgs/msg/Twist")
POSE_TYPES = ("geometry_msgs/msg/PoseStamped", "geometry_msgs/msg/Pose")
GRIPPER_TYPES = ("std_msgs/msg/Float64", "std_msgs/msg/Float32", "sensor_msgs/msg/JointState")
SOURCE_TYPES = {"ee": EE_TYPES, "twist": TWIST_TYPES, "pose": POSE_TYPES}


def action_values(source: str, msg: object) -> np.ndarray:
    """One message as a float64 row: ee [lin3, ang3, gripper, control_period]; twist [lin3, ang3];
    pose [position3, quaternion xyzw]."""
    if source == "ee":
        lin, ang = msg.linear, msg.angular  # type: ignore[attr-defined]
        return np.array(
            [lin.x, lin.y, lin.z, ang.x, ang.y, ang.z, msg.gripper, msg.control_period],  # type: ignore[attr-defined]
            dtype=np.float64,
        )
    if source == "twist":
        twist = getattr(msg, "twist", msg)
        lin, ang = twist.linear, twist.angular
        return np.array([lin.x, lin.y, lin.z, ang.x, ang.y, ang.z], dtype=np.float64)
    pose = getattr(msg, "pose", msg)
    p, q = pose.position, pose.orientation
    return np.array([p.x, p.y, p.z, q.x, q.y, q.z, q.w], dtype=np.float64)


def gripper_value(msg: object, joint: str | None) -> float | None:
    """Raw gripper value from Float64/Float32 (data) or JointState (named or first position)."""
    if hasattr(msg, "position"):
        names = list(msg.name)  # type: ignore[attr-defined]
        positions = np.asarray(msg.position, dtype=np.float64)  # type: ignore[attr-defined]
        if joint is not None:
            if joint not in names:
                return None
            idx = names.index(joint)
            return float(positions[idx]) if idx < positions.size else None
        return float(positions[0]) if positions.size else None
    return float(msg.data)  # type: ignore[attr-defined]


def invalid_reason(source: str, values: np.ndarray) -> str | None:
    """Why a message must be dropped, or None."""
    if not np.isfinite(values).all():
        return "non_finite"
    if source == "pose":
        norm = float(np.linalg.norm(values[3:7]))
        if not 0.5 < norm < 1.5:
            return "bad_quaternion"
    return None


def latest_index(stamps: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Index of the latest stamp at or before each time (-1 when none)."""
    return np.searchsorted(stamps, times, side="right") - 1


def ee_deltas(stamps: np.ndarray, values: np.ndarray, ticks: np.ndarray, dt_s: float) -> np.ndarray:
    """[T,7] from the latest EndEffectorAction at or before each tick, rescaled to dt."""
    idx = latest_index(stamps, ticks)
    rows = values[idx]
    period = rows[:, 7]
    scale = np.where(period > 0, dt_s / np.where(period > 0, period, 1.0), 1.0)
    out = np.empty((len(ticks), 7), dtype=np.float64)
    out[:, :6] = rows[:, :6] * scale[:, None]
    out[:, 6] = rows[:, 6]
    return out


def twist_deltas(stamps: np.ndarray, values: np.ndarray, ticks: np.ndarray, dt_ns: int) -> np.ndarray:
    """[T,6]: integral of the zero-order-held twist over [t, t+dt), exact for piecewise-constant."""
    seconds = (stamps - stamps[0]).astype(np.float64) * 1e-9
    # cumulative integral at each stamp: C[i] = sum_{j<i} v_j (s_{j+1} - s_j)
    cum = np.zeros_like(values)
    if len(stamps) > 1:
        cum[1:] = np.cumsum(values[:-1] * np.diff(seconds)[:, None], axis=0)

    def integral(times: np.ndarray) -> np.ndarray:
        k = np.clip(latest_index(stamps, times), 0, None)
        tau = (times - stamps[0]).astype(np.float64) * 1e-9
        return cum[k] + values[k] * (tau - seconds[k])[:, None]

    return integral(ticks + dt_ns) - integral(ticks)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """[N,4] xyzw (normalized here) -> [N,3,3]."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    x, y, z, w = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], axis=-1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], axis=-1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], axis=-1),
        ],
        axis=1,
    )


def matrix_to_rpy(r: np.ndarray) -> np.ndarray:
    """[N,3,3] -> [N,3] roll, pitch, yaw with R = Rz(yaw) Ry(pitch) Rx(roll)."""
    roll = np.arctan2(r[:, 2, 1], r[:, 2, 2])
    pitch = np.arcsin(np.clip(-r[:, 2, 0], -1.0, 1.0))
    yaw = np.arctan2(r[:, 1, 0], r[:, 0, 0])
    return np.stack([roll, pitch, yaw], axis=-1)


def pose_deltas(stamps: np.ndarray, values: np.ndarray, ticks: np.ndarray, dt_ns: int) -> np.ndarray:
    """[T,6]: pose(t+dt) - pose(t), each the latest pose at or before its time."""
    a = values[np.clip(latest_index(stamps, ticks), 0, None)]
    b = values[np.clip(latest_index(stamps, ticks + dt_ns), 0, None)]
    out = np.empty((len(ticks), 6), dtype=np.float64)
    out[:, :3] = b[:, :3] - a[:, :3]
    rel = np.einsum("nji,njk->nik", quat_to_matrix(a[:, 3:7]), quat_to_matrix(b[:, 3:7]))
    out[:, 3:] = matrix_to_rpy(rel)
    return out
