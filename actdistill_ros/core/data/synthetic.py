"""Synthetic tabletop task where the instruction matters: "move to the <colour> cube".

A top-down image shows three cubes (red, green, blue) and the gripper (a white ring).
The expert moves the gripper toward the named cube, lowers, and closes the gripper when
it is there; yaw turns one way or the other depending on the colour. Without reading
the instruction a policy can not know which cube to go to.
"""

from __future__ import annotations

import cv2
import numpy as np

from .dataset import Episode, EpisodeDataset

COLOURS = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 235)}
TEMPLATES = ("move to the {} cube", "reach the {} cube", "go to the {} block", "touch the {} one")
WORKSPACE_M = 0.5  # the image spans 0.5 m
MAX_STEP_M = 0.03  # expert speed limit per control step
YAW_RATE = {"red": 0.05, "green": 0.0, "blue": -0.05}


def render(size: int, cubes: dict[str, np.ndarray], gripper: np.ndarray, closed: bool) -> np.ndarray:
    """RGB uint8 [size, size, 3]; positions are in metres within [0, WORKSPACE_M]."""
    image = np.full((size, size, 3), 90, np.uint8)
    scale = size / WORKSPACE_M
    half = max(2, int(0.02 * scale))
    for name, pos in cubes.items():
        cx, cy = (pos * scale).astype(int)
        cv2.rectangle(image, (cx - half, cy - half), (cx + half, cy + half), COLOURS[name], thickness=-1)
    gx, gy = (gripper * scale).astype(int)
    cv2.circle(image, (gx, gy), max(2, int(0.025 * scale)), (255, 255, 255), thickness=2 if not closed else -1)
    return image


def expert_action(gripper: np.ndarray, target: np.ndarray, colour: str) -> np.ndarray:
    delta = target - gripper
    dist = float(np.linalg.norm(delta))
    step = delta if dist <= MAX_STEP_M else delta / dist * MAX_STEP_M
    near = dist < 0.02
    dz = -0.01 if dist < 0.06 else 0.0
    return np.array([step[0], step[1], dz, 0.0, 0.0, YAW_RATE[colour], 1.0 if near else 0.0], np.float32)


def make_episode(rng: np.random.Generator, size: int, steps: int) -> Episode:
    margin = 0.05
    while True:  # cubes well apart so the task is unambiguous
        cubes = {c: rng.uniform(margin, WORKSPACE_M - margin, 2) for c in COLOURS}
        pts = list(cubes.values())
        if min(np.linalg.norm(a - b) for i, a in enumerate(pts) for b in pts[i + 1:]) > 0.12:
            break
    colour = str(rng.choice(list(COLOURS)))
    instruction = str(rng.choice(TEMPLATES)).format(colour)
    gripper = rng.uniform(margin, WORKSPACE_M - margin, 2)
    images, actions = [], []
    closed = False
    for _ in range(steps):
        images.append(render(size, cubes, gripper, closed))
        action = expert_action(gripper, cubes[colour], colour)
        actions.append(action)
        gripper = np.clip(gripper + action[:2], 0.0, WORKSPACE_M)
        closed = action[6] > 0.5
    return Episode(np.stack(images), np.stack(actions), instruction,
                   timestamps_ns=np.arange(steps, dtype=np.int64) * 100_000_000, source=f"synthetic:{colour}")


def make_dataset(episodes: int, steps: int = 16, image_size: int = 128, seed: int = 0) -> EpisodeDataset:
    rng = np.random.default_rng(seed)
    eps = [make_episode(rng, image_size, steps) for _ in range(episodes)]
    return EpisodeDataset(eps, meta={"source": "synthetic", "seed": seed, "task": "move to the named cube"})
