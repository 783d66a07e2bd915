"""The simulated tabletop: a mocap-driven parallel gripper commanded by 7-DoF end-effector deltas.

The gripper is a MuJoCo mocap body (kinematic, so contacts can never destabilise it), the
fingers are position-controlled slide joints, the cubes are free bodies. One :meth:`step` is
one control period: the command is validated (NaN/inf or out-of-range commands are rejected,
counted and replaced by "hold still"), applied as a delta to the mocap pose (off by
``actuation_noise_m`` when set: imperfect tracking), then physics runs ``substeps`` MuJoCo
steps. Everything is a pure function of the seed and the commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np

from .config import SimConfig
from .gl_backend import explain, select_backend
from .tasks import COLOURS, TASKS, TaskSpec, task_names

WORKSPACE_LOW = np.array([0.25, -0.25, 0.02])  # gripper (mocap) position limits [m]
WORKSPACE_HIGH = np.array([0.75, 0.25, 0.35])
# Cubes stand in three slots across the table, colours shuffled, each jittered by up to 3 cm:
# which slot holds "the red cube" is only known from the image and the instruction together.
# (Fully random positions were tried first: the patch-stem TinyVLA of then memorised the layouts
# of its demonstrations; the CNN-stem teacher learns them, the "anywhere" suite: 98% in docs/results/README.md.)
CUBE_SLOTS = np.array([[0.5, -0.13], [0.5, 0.0], [0.5, 0.13]])
CUBE_JITTER_M = 0.03
# the "anywhere" layout (tasks.py): each cube uniform in this area, redrawn until all are this far apart
CUBE_AREA_LOW, CUBE_AREA_HIGH = np.array([0.42, -0.16]), np.array([0.58, 0.16])
MIN_CUBE_GAP_M = 0.07
START_X, START_Y, START_Z = (0.38, 0.62), (-0.18, 0.18), (0.18, 0.28)  # gripper start area [m]
CUBE_HALF_M = 0.025
GOAL_ABOVE_CUBE_M = 0.055  # reach goal: this far above the cube centre (fingers clear the cube)
MAX_TILT_RAD = 0.5  # accumulated roll/pitch limit (yaw is free)
FINGER_TRAVEL_M = 0.03


@dataclass(frozen=True)
class EpisodeInfo:
    seed: int
    task: str
    instruction: str


@dataclass(frozen=True)
class StepResult:
    step: int  # control steps taken in this episode
    done: bool
    success: bool
    distance_m: float  # grip point to goal
    rejected: str | None  # why this command was rejected (None: applied)


def asset_path() -> str:
    return str(resources.files("actdistill_ros.sim") / "assets" / "tabletop.xml")


def _quat_from_rpy(rpy: np.ndarray) -> np.ndarray:
    """(roll, pitch, yaw) extrinsic XYZ -> quaternion (w, x, y, z), MuJoCo's convention."""
    cr, cp, cy = np.cos(rpy / 2)
    sr, sp, sy = np.sin(rpy / 2)
    return np.array([
        cr * cp * cy + sr * sp * sy,
        sr * cp * cy - cr * sp * sy,
        cr * sp * cy + sr * cp * sy,
        cr * cp * sy - sr * sp * cy,
    ])


class TabletopSim:
    """One tabletop world. Not thread-safe: one owner steps and renders it."""

    def __init__(self, cfg: SimConfig | None = None) -> None:
        self.cfg = cfg or SimConfig()
        self.cfg.validate()
        select_backend(self.cfg.render_backend)
        try:
            import mujoco  # after MUJOCO_GL is set; some backends fail at import already
        except ImportError as exc:
            if getattr(exc, "name", None) == "mujoco":
                raise ImportError("the simulator needs the `mujoco` Python package: pip install mujoco") from exc
            raise explain(exc) from exc
        except Exception as exc:  # PyOpenGL raises AttributeError etc. when the GL library is missing
            raise explain(exc) from exc

        self._mj = mujoco
        self.model = mujoco.MjModel.from_xml_path(asset_path())
        self.model.opt.timestep = self.cfg.physics_timestep_s
        self.data = mujoco.MjData(self.model)
        self._renderer = None
        self._mocap = self.model.body("gripper").mocapid[0]
        self._grip_site = self.model.site("grip_point").id
        self._cube_qpos = {c: self.model.joint(f"cube_{c}").qposadr[0] for c in COLOURS}
        self._cube_body = {c: self.model.body(f"cube_{c}").id for c in COLOURS}
        self.rejected_total = 0  # commands rejected since construction
        self.episode: EpisodeInfo | None = None
        self.task: TaskSpec | None = None
        self.steps = 0
        self.done = True
        self.success = False
        self.rejected_in_episode = 0
        self._rpy = np.zeros(3)
        self._noise = np.random.default_rng(0)

    # -- episode ------------------------------------------------------------------------------
    def reset(self, seed: int, task: str | None = None) -> EpisodeInfo:
        """Start an episode: cube layout, start pose, task and phrasing all drawn from ``seed``."""
        rng = np.random.default_rng(seed)
        if task is None:  # from the default suite (what the shipped checkpoints know)
            default = task_names()
            task = default[int(rng.integers(len(default)))]
        elif task not in TASKS:
            raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
        spec = TASKS[task]
        instruction = spec.instruction(int(rng.integers(len(spec.templates))))
        cubes = self._sample_cubes(rng) if spec.layout == "slots" else self._scatter_cubes(rng)
        mj = self._mj
        mj.mj_resetData(self.model, self.data)
        for colour, xy in cubes.items():
            adr = self._cube_qpos[colour]
            yaw = rng.uniform(-np.pi / 4, np.pi / 4)
            self.data.qpos[adr: adr + 7] = [xy[0], xy[1], CUBE_HALF_M, np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
        self._rpy = np.zeros(3)
        self.data.mocap_pos[self._mocap] = [rng.uniform(*START_X), rng.uniform(*START_Y), rng.uniform(*START_Z)]
        self.data.mocap_quat[self._mocap] = _quat_from_rpy(self._rpy)
        self.data.ctrl[:] = 0.0
        mj.mj_forward(self.model, self.data)
        for _ in range(20):  # let the cubes settle on the table
            mj.mj_step(self.model, self.data)
        self._noise = np.random.default_rng([seed, 1])  # actuation noise: a function of the seed too
        self.episode = EpisodeInfo(seed, task, instruction)
        self.task = spec
        self.steps, self.done, self.success, self.rejected_in_episode = 0, False, False, 0
        return self.episode

    @staticmethod
    def _sample_cubes(rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Colours shuffled over the slots, each cube jittered (at least 7 cm apart: never ambiguous)."""
        order = rng.permutation(len(COLOURS))
        jitter = rng.uniform(-CUBE_JITTER_M, CUBE_JITTER_M, (len(COLOURS), 2))
        slots = zip(COLOURS, order, strict=True)
        return {colour: CUBE_SLOTS[slot] + jitter[i] for i, (colour, slot) in enumerate(slots)}

    @staticmethod
    def _scatter_cubes(rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Each cube anywhere in the area, at least MIN_CUBE_GAP_M from the others (redrawn until
        so: a pure function of the seed like everything else)."""
        while True:
            xy = rng.uniform(CUBE_AREA_LOW, CUBE_AREA_HIGH, (len(COLOURS), 2))
            gaps = np.linalg.norm(xy[:, None] - xy[None], axis=-1)[np.triu_indices(len(COLOURS), 1)]
            if gaps.min() >= MIN_CUBE_GAP_M:
                return dict(zip(COLOURS, xy, strict=True))

    # -- commands -----------------------------------------------------------------------------
    def check_command(self, action: np.ndarray) -> str | None:
        """Why ``action`` must be rejected, or None. Rejected, never clipped: a command outside
        the limits means something upstream is wrong, and a clipped version of it is a guess."""
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (7,):
            return f"expected 7 values (dx,dy,dz,droll,dpitch,dyaw,gripper), got shape {list(a.shape)}"
        if not np.isfinite(a).all():
            return f"non-finite values at {np.flatnonzero(~np.isfinite(a)).tolist()}"
        lin, ang = float(np.linalg.norm(a[:3])), float(np.linalg.norm(a[3:6]))
        if lin > self.cfg.max_linear_step_m:
            return f"linear step {lin:.4f} m > limit {self.cfg.max_linear_step_m} m"
        if ang > self.cfg.max_angular_step_rad:
            return f"angular step {ang:.4f} rad > limit {self.cfg.max_angular_step_rad} rad"
        if not 0.0 <= a[6] <= 1.0:
            return f"gripper {a[6]:.4f} outside [0, 1]"
        return None

    def count_rejection(self) -> None:
        """Count a command rejected before it reached :meth:`step` (e.g. by a ROS front end)."""
        self.rejected_total += 1
        self.rejected_in_episode += 1

    def step(self, action: np.ndarray) -> StepResult:
        """Apply one command for one control period. After ``done`` the world holds still."""
        if self.episode is None:
            raise RuntimeError("reset() must be called before step()")
        rejected = self.check_command(action)
        if rejected is not None:
            self.count_rejection()
        elif not self.done:
            self._apply(np.asarray(action, dtype=np.float64))
        mj = self._mj
        for _ in range(self.cfg.substeps):
            mj.mj_step(self.model, self.data)
        distance = self.distance_to_goal()
        if not self.done:
            self.steps += 1
            if distance < self.cfg.success_radius_m:
                self.done, self.success = True, True
            elif self.steps >= self.cfg.max_episode_steps:
                self.done = True
        return StepResult(self.steps, self.done, self.success, distance, rejected)

    def _apply(self, a: np.ndarray) -> None:
        pos = self.data.mocap_pos[self._mocap] + a[:3]
        if self.cfg.actuation_noise_m > 0:
            pos = pos + self._noise.normal(0.0, self.cfg.actuation_noise_m, 3)
        self.data.mocap_pos[self._mocap] = np.clip(pos, WORKSPACE_LOW, WORKSPACE_HIGH)
        rpy = self._rpy + a[3:6]
        rpy[:2] = np.clip(rpy[:2], -MAX_TILT_RAD, MAX_TILT_RAD)
        rpy[2] = (rpy[2] + np.pi) % (2 * np.pi) - np.pi
        self._rpy = rpy
        self.data.mocap_quat[self._mocap] = _quat_from_rpy(rpy)
        self.data.ctrl[:] = a[6] * FINGER_TRAVEL_M

    # -- state --------------------------------------------------------------------------------
    @property
    def sim_time_s(self) -> float:
        return float(self.data.time)

    def grip_position(self) -> np.ndarray:
        return self.data.site_xpos[self._grip_site].copy()

    def cube_position(self, colour: str) -> np.ndarray:
        return self.data.xpos[self._cube_body[colour]].copy()

    def goal_position(self) -> np.ndarray:
        if self.task is None:
            raise RuntimeError("no episode: call reset()")
        centre = np.mean([self.cube_position(c) for c in self.task.colours], axis=0)
        return centre + np.array([0.0, 0.0, GOAL_ABOVE_CUBE_M])

    def distance_to_goal(self) -> float:
        return float(np.linalg.norm(self.grip_position() - self.goal_position()))

    def gripper_command(self) -> float:
        return float(self.data.ctrl[0] / FINGER_TRAVEL_M)

    def is_stable(self) -> bool:
        """Finite state and every cube still near the table (physics did not blow up)."""
        if not (np.isfinite(self.data.qpos).all() and np.isfinite(self.data.qvel).all()):
            return False
        return all(abs(self.cube_position(c)[2]) < 0.5 for c in COLOURS)

    # -- camera -------------------------------------------------------------------------------
    def render(self) -> np.ndarray:
        """The fixed front camera, uint8 RGB [image_size, image_size, 3]."""
        if self._renderer is None:
            try:
                self._renderer = self._mj.Renderer(self.model, self.cfg.image_size, self.cfg.image_size)
            except Exception as exc:  # ctypes/EGL/GLFW errors of many kinds: all mean "no backend"
                raise explain(exc) from exc
        self._renderer.update_scene(self.data, camera="front")
        return self._renderer.render().copy()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> TabletopSim:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
