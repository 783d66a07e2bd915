"""The simulated tabletop without ROS: determinism, the expert, bad commands, resets, rendering."""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

if importlib.util.find_spec("mujoco") is None:  # not importorskip: mujoco must not be imported before MUJOCO_GL is set
    pytest.skip("mujoco is not installed", allow_module_level=True)

from actdistill_ros.core.typed_config import ConfigError  # noqa: E402
from actdistill_ros.sim.config import SimConfig  # noqa: E402
from actdistill_ros.sim.expert import ScriptedExpert  # noqa: E402
from actdistill_ros.sim.tabletop import TabletopSim  # noqa: E402
from actdistill_ros.sim.tasks import SUITES, TASKS, task_names  # noqa: E402


@pytest.fixture
def sim():
    with TabletopSim(SimConfig(image_size=48)) as s:
        yield s


def _rollout(sim: TabletopSim, seed: int, actions: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    sim.reset(seed, "reach_green")
    images = [sim.render()]
    for a in actions:
        sim.step(a)
        images.append(sim.render())
    return images, sim.data.qpos.copy()


def test_same_seed_same_world_bit_for_bit(sim):
    actions = np.random.default_rng(3).uniform(-0.01, 0.01, (6, 7))
    actions[:, 3:6] *= 0.1
    actions[:, 6] = np.linspace(0, 1, 6)
    images_a, qpos_a = _rollout(sim, 42, actions)
    with TabletopSim(SimConfig(image_size=48)) as other:
        images_b, qpos_b = _rollout(other, 42, actions)
    assert all(np.array_equal(a, b) for a, b in zip(images_a, images_b, strict=True))
    np.testing.assert_array_equal(qpos_a, qpos_b)
    images_c, _ = _rollout(sim, 43, actions)
    assert not np.array_equal(images_a[0], images_c[0]), "another seed must give another layout"


def test_seed_draws_task_and_instruction(sim):
    drawn = {sim.reset(seed).task for seed in range(30)}
    assert drawn == {"reach_red", "reach_green", "reach_blue"}, "a seed-drawn task comes from the default suite"
    info = sim.reset(7, "reach_blue")
    assert info.task == "reach_blue" and "blue" in info.instruction


def test_scripted_expert_succeeds_on_20_seeded_episodes(sim):
    successes, steps = 0, []
    for seed in range(20):
        sim.reset(seed)
        expert = ScriptedExpert(noise_m=0.003, seed=seed)
        while not sim.done:
            result = sim.step(expert.act(sim.grip_position(), sim.goal_position()))
            assert result.rejected is None
        successes += sim.success
        steps.append(sim.steps)
    assert successes / 20 >= 0.95
    assert max(steps) < sim.cfg.max_episode_steps


def test_between_task_goal_is_midway_and_the_expert_reaches_it(sim):
    info = sim.reset(4, "between_red_blue")
    assert "red" in info.instruction and "blue" in info.instruction
    midway = (sim.cube_position("red") + sim.cube_position("blue")) / 2
    np.testing.assert_allclose(sim.goal_position()[:2], midway[:2], atol=1e-9)
    assert sim.goal_position()[2] > midway[2], "the goal is above the cubes, as for reach"
    successes = 0
    for seed in range(12):
        sim.reset(seed, task_names("between")[seed % 3])
        expert = ScriptedExpert(noise_m=0.003, seed=seed)
        while not sim.done:
            sim.step(expert.act(sim.grip_position(), sim.goal_position()))
        successes += sim.success
    assert successes == 12


def test_anywhere_layout_scatters_the_cubes_and_the_expert_reaches_them(sim):
    """The ``anywhere`` suite: cubes inside the area, never closer than the minimum gap, a new layout
    per seed (not the three slots), the same seed the same layout; the scripted expert succeeds."""
    from actdistill_ros.sim.tabletop import CUBE_AREA_HIGH, CUBE_AREA_LOW, CUBE_SLOTS, MIN_CUBE_GAP_M

    layouts = []
    for seed in range(12):
        info = sim.reset(seed, task_names("anywhere")[seed % 3])
        assert info.instruction.split()[-2] in ("red", "green", "blue")
        xy = np.array([sim.cube_position(c)[:2] for c in ("red", "green", "blue")])
        assert ((xy >= CUBE_AREA_LOW - 0.005) & (xy <= CUBE_AREA_HIGH + 0.005)).all(), xy
        gaps = np.linalg.norm(xy[:, None] - xy[None], axis=-1)[np.triu_indices(3, 1)]
        assert gaps.min() >= MIN_CUBE_GAP_M - 0.005
        layouts.append(xy)
        expert = ScriptedExpert(noise_m=0.003, seed=seed)
        while not sim.done:
            sim.step(expert.act(sim.grip_position(), sim.goal_position()))
        assert sim.success, f"seed {seed}"
    off_slot = [np.abs(xy[:, None] - CUBE_SLOTS[None]).max(-1).min(1).max() for xy in layouts]
    assert max(off_slot) > 0.05, "cubes are still in the slots"
    sim.reset(3, "anywhere_red")
    again = np.array([sim.cube_position(c)[:2] for c in ("red", "green", "blue")])
    np.testing.assert_allclose(again, layouts[3], atol=1e-9)


def test_task_selections():
    assert task_names() == ["reach_red", "reach_green", "reach_blue"]
    assert task_names("between") == ["between_red_green", "between_red_blue", "between_green_blue"]
    assert task_names("all") == list(TASKS) and len(TASKS) == sum(len(s) for s in SUITES.values())
    assert task_names("reach_blue, between,reach_blue") == ["reach_blue", *task_names("between")]
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['push'\].*suites: all, reach, between, anywhere"):
        task_names("reach,push")


def test_doing_nothing_fails_by_timeout(sim):
    sim.reset(5)
    while not sim.done:
        sim.step(np.zeros(7))
    assert not sim.success and sim.steps == sim.cfg.max_episode_steps


@pytest.mark.parametrize(
    "bad, reason",
    [
        ([np.nan, 0, 0, 0, 0, 0, 0], "non-finite"),
        ([0, 0, np.inf, 0, 0, 0, 0], "non-finite"),
        ([0.2, 0, 0, 0, 0, 0, 0], "linear step"),
        ([0, 0, 0, 0, 0, 2.0, 0], "angular step"),
        ([0, 0, 0, 0, 0, 0, 1.5], "gripper"),
        ([0, 0, 0], "expected 7 values"),
    ],
)
def test_bad_commands_are_rejected_counted_and_never_applied(sim, bad, reason):
    sim.reset(1)
    grip_before = sim.grip_position()
    result = sim.step(np.array(bad, dtype=np.float64))
    assert result.rejected is not None and reason in result.rejected
    assert sim.rejected_in_episode == 1 and sim.rejected_total == 1
    np.testing.assert_allclose(sim.grip_position(), grip_before, atol=1e-9)
    assert sim.is_stable()


def test_physics_stays_stable_under_a_storm_of_bad_and_extreme_commands(sim):
    sim.reset(2)
    rng = np.random.default_rng(0)
    for i in range(60):
        if i % 3 == 0:
            command = rng.normal(0, 1e6, 7)  # rejected
        else:  # the largest accepted step, driving into the table and the workspace walls
            direction = rng.normal(size=3)
            command = np.array([*(direction / np.linalg.norm(direction) * 0.0499), 0, 0, 0.29, rng.uniform()])
            command[2] = -abs(command[2])
        sim.step(command)
        assert sim.is_stable()
    assert sim.rejected_in_episode == 20
    assert np.isfinite(sim.render()).all()


def test_reset_mid_episode_is_clean(sim):
    sim.reset(11, "reach_red")
    for _ in range(5):
        sim.step(np.array([0.02, 0.01, -0.02, 0, 0, 0.1, 1.0]))
    sim.step(np.full(7, np.nan))
    info = sim.reset(12, "reach_blue")
    assert (sim.steps, sim.done, sim.success, sim.rejected_in_episode) == (0, False, False, 0)
    assert sim.rejected_total == 1  # the lifetime counter survives resets
    with TabletopSim(SimConfig(image_size=48)) as fresh:
        assert fresh.reset(12, "reach_blue") == info
        np.testing.assert_array_equal(fresh.render(), sim.render())
        np.testing.assert_allclose(fresh.data.qpos, sim.data.qpos, atol=1e-12)


def test_unknown_task_and_bad_config_are_clear_errors(sim):
    with pytest.raises(ValueError, match="unknown task 'stack'.*reach_red"):
        sim.reset(0, "stack")
    with pytest.raises(ValueError, match="unknown task"):
        task_names(["reach_red", "wave"])
    with pytest.raises(ConfigError, match="control_rate_hz"):
        TabletopSim(SimConfig(control_rate_hz=0.0))
    with pytest.raises(ConfigError, match="render_backend"):
        TabletopSim(SimConfig(render_backend="vulkan"))
    with pytest.raises(RuntimeError, match="reset"):
        TabletopSim(SimConfig(image_size=48)).step(np.zeros(7))


@pytest.mark.skipif(ctypes.util.find_library("OSMesa") is not None, reason="OSMesa is installed here")
def test_missing_render_backend_names_the_package_to_install():
    code = ("from actdistill_ros.sim.tabletop import TabletopSim\n"
            "from actdistill_ros.sim.config import SimConfig\n"
            "TabletopSim(SimConfig(render_backend='osmesa')).render()\n")
    env = {**os.environ, "MUJOCO_GL": "osmesa"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "RenderBackendError" in proc.stderr
    assert "libosmesa6" in proc.stderr and "MUJOCO_GL=egl" in proc.stderr
