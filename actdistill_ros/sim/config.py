"""Typed configuration of the simulated tabletop."""

from __future__ import annotations

import math

from actdistill_ros.core.config import ConfigError, Float, Int, config_dataclass


@config_dataclass
class SimConfig:
    image_size: Int = 64  # square camera image published to the policy [px]
    control_rate_hz: Float = 10.0  # one action per control period of simulated time [Hz]
    physics_timestep_s: Float = 0.002  # MuJoCo step [s]
    max_episode_steps: Int = 40  # an episode fails when the task is not done by then [steps]
    success_radius_m: Float = 0.03  # reach: grip point within this distance of the goal [m]
    # Largest accepted command per control step; larger ones are rejected (not clipped), counted,
    # and the gripper holds still for that step.
    max_linear_step_m: Float = 0.05
    max_angular_step_rad: Float = 0.3
    render_backend: str = "egl"  # MUJOCO_GL: egl | osmesa | glfw
    # Imperfect tracking: every applied linear step is off by Gaussian noise of this standard
    # deviation per axis [m] (drawn from the episode seed). Recording demonstrations with it
    # (the teleop command, i.e. the label, stays what the human sent) shows the policy the
    # expert's corrections from states a perfect arm never visits, as DART does (Laskey et al.
    # 2017); evaluation runs without it unless asked.
    actuation_noise_m: Float = 0.0

    @property
    def control_period_s(self) -> float:
        return 1.0 / self.control_rate_hz

    @property
    def substeps(self) -> int:
        return max(1, round(self.control_period_s / self.physics_timestep_s))

    def validate(self) -> None:
        for name in ("image_size", "max_episode_steps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("control_rate_hz", "physics_timestep_s", "success_radius_m", "max_linear_step_m",
                     "max_angular_step_rad"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a finite number > 0, got {value}")
        if not (math.isfinite(self.actuation_noise_m) and self.actuation_noise_m >= 0):
            raise ConfigError(f"actuation_noise_m must be a finite number >= 0, got {self.actuation_noise_m}")
        if self.physics_timestep_s > self.control_period_s:
            raise ConfigError(f"physics_timestep_s {self.physics_timestep_s} is longer than the control period "
                              f"{self.control_period_s:.4f} s")
        if self.render_backend not in ("egl", "osmesa", "glfw"):
            raise ConfigError(f"render_backend must be egl, osmesa or glfw, got {self.render_backend!r}")
