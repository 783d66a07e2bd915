"""The scripted "teleoperator": what a careful human with a spacemouse would do.

It sees privileged state (where the gripper and the goal are), moves toward the goal at a
bounded speed, and keeps the gripper open. Small seeded noise (DART-style) makes the
demonstrations show recoveries from slightly-off states, which the student needs in closed loop.
"""

from __future__ import annotations

import numpy as np


class ScriptedExpert:
    def __init__(self, max_step_m: float = 0.015, noise_m: float = 0.0, seed: int = 0) -> None:
        self.max_step_m = max_step_m
        self.noise_m = noise_m
        self._rng = np.random.default_rng(seed)

    def act(self, grip_position: np.ndarray, goal_position: np.ndarray) -> np.ndarray:
        """7-D delta command (dx, dy, dz, droll, dpitch, dyaw, gripper) for one control step."""
        delta = np.asarray(goal_position, np.float64) - np.asarray(grip_position, np.float64)
        if self.noise_m > 0:
            delta = delta + self._rng.normal(0.0, self.noise_m, 3)
        norm = float(np.linalg.norm(delta))
        if norm > self.max_step_m:
            delta = delta / norm * self.max_step_m
        return np.array([*delta, 0.0, 0.0, 0.0, 0.0])
