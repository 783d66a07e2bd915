"""Typed configuration of the simulated tabletop."""

from __future__ import annotations

from pydantic import Field

from actdistill_ros.core.typed_config import ConfigError, Float, Int, config_dataclass


@config_dataclass
class SimConfig:
    image_size: Int = Field(64, gt=0, description="Square camera image published to the policy [px].")
    control_rate_hz: Float = Field(10.0, gt=0, allow_inf_nan=False,
                                   description="One action per control period of simulated time [Hz].")
    physics_timestep_s: Float = Field(0.002, gt=0, allow_inf_nan=False, description="MuJoCo step [s].")
    max_episode_steps: Int = Field(40, gt=0, description="An episode fails when the task is not done by then [steps].")
    success_radius_m: Float = Field(0.03, gt=0, allow_inf_nan=False,
                                    description="Reach: the grip point within this distance of the goal [m].")
    # larger commands are rejected (not clipped), counted, and the gripper holds still for that step
    max_linear_step_m: Float = Field(0.05, gt=0, allow_inf_nan=False,
                                     description="Largest accepted linear command per control step [m]; larger "
                                                 "ones are rejected and counted.")
    max_angular_step_rad: Float = Field(0.3, gt=0, allow_inf_nan=False,
                                        description="Largest accepted angular command per control step [rad].")
    render_backend: str = Field("egl", description="MUJOCO_GL: egl | osmesa | glfw.")
    # Imperfect tracking: every applied linear step is off by Gaussian noise of this standard
    # deviation per axis [m] (drawn from the episode seed). Recording demonstrations with it
    # (the teleop command, i.e. the label, stays what the human sent) shows the policy the
    # expert's corrections from states a perfect arm never visits, as DART does (Laskey et al.
    # 2017); evaluation runs without it unless asked.
    actuation_noise_m: Float = Field(0.0, ge=0, allow_inf_nan=False,
                                     description="Gaussian error per axis of every applied linear step [m] "
                                                 "(DART-style recording; 0 = a perfect arm).")

    @property
    def control_period_s(self) -> float:
        return 1.0 / self.control_rate_hz

    @property
    def substeps(self) -> int:
        return max(1, round(self.control_period_s / self.physics_timestep_s))

    def validate(self) -> None:
        if self.physics_timestep_s > self.control_period_s:
            raise ConfigError(f"physics_timestep_s {self.physics_timestep_s} is longer than the control period "
                              f"{self.control_period_s:.4f} s")
        if self.render_backend not in ("egl", "osmesa", "glfw"):
            raise ConfigError(f"render_backend must be egl, osmesa or glfw, got {self.render_backend!r}")
