"""The typed configs (core/typed_config.py, pydantic dataclasses): values take the field's type, text stays
text, every problem is one line naming the key, and the dataclass API (replace, asdict) still works."""

from __future__ import annotations

import dataclasses

import pytest

from actdistill_ros.core.config import DistillConfig, OptimConfig, TeacherTrainConfig, TinyVLAConfig
from actdistill_ros.core.typed_config import ConfigError, from_dict, load_config, to_dict
from actdistill_ros.distill_job import load_distill_job_config
from actdistill_ros.sim.config import SimConfig


def test_set_values_take_the_field_type():
    cfg = load_config(DistillConfig, None, ["student.epochs=3", "loss.keep_ratio=0.5", "router.fixed_layers=[1, 2]",
                                            "loss.budget_control=false", "memory.lora_targets=[q_proj]",
                                            "graph.top_k=4.0", "router_lr=1"])
    assert cfg.student.epochs == 3 and type(cfg.student.epochs) is int
    assert cfg.loss.keep_ratio == 0.5 and type(cfg.loss.keep_ratio) is float
    assert cfg.router.fixed_layers == [1, 2] and all(type(i) is int for i in cfg.router.fixed_layers)
    assert cfg.loss.budget_control is False and cfg.memory.lora_targets == ["q_proj"]
    assert type(cfg.graph.top_k) is int and type(cfg.router_lr) is float


def test_text_keys_keep_the_text_as_typed(tmp_path):
    base = ["bags=/b", f"output_dir={tmp_path}"]
    for text in ("true", "1e3", "0x10", "null cube", "pick the cube # the red one", "[red] cube first", "3"):
        cfg = load_distill_job_config(None, [*base, f"instruction={text}"])
        assert cfg.instruction == text
    cfg = load_distill_job_config(None, [*base, "instruction=x", "distill.loss.gamma=3", "distill.student.lr=1e-4"])
    assert (cfg.distill_config().loss.gamma, cfg.distill_config().student.lr) == (3.0, 1e-4)


@pytest.mark.parametrize(("data", "message"), [
    ({"student": {"epochs": True}}, "student.epochs: must be an integer, got True"),
    ({"student": {"epochs": 2.5}}, "student.epochs: must be an integer, got 2.5"),
    ({"loss": {"keep_ratio": "half"}}, "loss.keep_ratio: must be a number, got 'half'"),
    ({"loss": {"budget_control": "maybe"}}, "loss.budget_control: must be true or false, got 'maybe'"),
    ({"router": {"fixed_layers": [1, "x"]}}, "router.fixed_layers[1]: must be an integer, got 'x'"),
    ({"router": {"fixed_layers": "1, 2"}}, "router.fixed_layers: must be a list, got '1, 2'"),
    ({"probe": 5}, "probe: must be a mapping, got 5"),
    ({"device": ["cpu"]}, "device: must be text, got ['cpu']"),
])
def test_a_bad_value_is_one_line_naming_the_key(data, message):
    with pytest.raises(ConfigError) as info:
        from_dict(DistillConfig, data)
    assert str(info.value) == message


def test_a_union_field_is_named_without_pydantic_s_member_tags():
    with pytest.raises(ConfigError) as info:
        from_dict(TeacherTrainConfig, {"model": {"action_head": {"kind": "flow", "flow_noise_seed": "x"}}})
    assert str(info.value) == "model.action_head.flow_noise_seed: must be an integer, got 'x'"
    assert from_dict(TeacherTrainConfig, {"model": {"action_head": {"flow_noise_seed": None}}}).model.action_head \
        .flow_noise_seed is None


def test_unknown_keys_are_one_problem_listing_the_valid_ones():
    with pytest.raises(ConfigError) as info:
        from_dict(OptimConfig, {"epoch": 3, "lr_max": 1.0}, prefix="distill.student.")
    text = str(info.value)
    assert text.startswith("unknown config key(s) distill.student.epoch, distill.student.lr_max; valid keys: ")
    assert "distill.student.epochs" in text and "\n" not in text


def test_several_problems_in_one_line():
    with pytest.raises(ConfigError) as info:
        from_dict(OptimConfig, {"epochs": "x", "lr": "y"})
    assert str(info.value) == "epochs: must be an integer, got 'x'; lr: must be a number, got 'y'"


def test_the_dataclass_api_and_round_trip_stay():
    cfg = from_dict(DistillConfig, {"loss": {"gamma": 3}, "router": {"kind": "fixed", "fixed_layers": [0]}})
    assert dataclasses.is_dataclass(cfg) and dataclasses.asdict(cfg)["loss"]["gamma"] == 3.0
    assert dataclasses.replace(cfg.loss, keep_ratio=0.3).keep_ratio == 0.3
    assert from_dict(DistillConfig, to_dict(cfg)) == cfg  # what checkpoints and run records store
    assert OptimConfig().epochs == 10


@pytest.mark.parametrize(("make", "message"), [
    (lambda: OptimConfig(epochs=0), "epochs: must be > 0, got 0"),
    (lambda: dataclasses.replace(DistillConfig().loss, keep_ratio=1.5), "keep_ratio: must be <= 1, got 1.5"),
    (lambda: SimConfig(control_rate_hz=float("inf")), "control_rate_hz: must be finite, got inf"),
    (lambda: TinyVLAConfig(action_head={"bins": 1}), "action_head.bins: must be >= 2, got 1"),
])
def test_bounds_hold_for_direct_construction_too(make, message):
    """Field bounds are checked however a config is made, as the same one-line ConfigError."""
    with pytest.raises(ConfigError) as info:
        make()
    assert str(info.value) == message
