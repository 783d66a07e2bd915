"""The demo presets' distillation settings: what `actdistill demo --preset P` will train."""

import pytest
import torch

from actdistill_ros.core.demo import DEMO_PRESETS, distill_config
from actdistill_ros.core.model.flops import component_flops, routed_flops_ratio
from actdistill_ros.core.model.student import RoutedStudent
from actdistill_ros.core.model.tiny_vla import TinyVLA

from core_helpers import tiny_inputs

# issue 10's offline bar for the default size: FLOPs <= 0.45 of the teacher's
DEFAULT_FLOPS_BUDGET = 0.45


@pytest.mark.parametrize("name", sorted(DEMO_PRESETS))
def test_distill_config_carries_the_presets_budget_and_routing(name):
    preset = DEMO_PRESETS[name]
    cfg = distill_config(preset, device="cpu")
    assert cfg.loss.keep_ratio == preset.keep_ratio
    assert cfg.router.min_layers == preset.min_layers
    assert cfg.router.credit == preset.credit
    assert cfg.max_train_episodes == preset.max_distill_episodes
    if preset.min_layers > 1:  # top-k: the budget is exactly k layers, no threshold left to decide depth
        assert preset.keep_ratio * preset.model.num_layers == pytest.approx(preset.min_layers)


def test_default_preset_runs_any_three_layers_under_the_flops_budget():
    """Counted on the model itself (torch.utils.flop_counter), router included, for the most
    expensive route the top-k rule can pick: every set of ``min_layers`` layers costs the same."""
    preset = DEMO_PRESETS["default"]
    torch.manual_seed(0)
    teacher = TinyVLA(preset.model).eval()
    student = RoutedStudent.from_teacher(teacher, distill_config(preset).router).eval()
    components = component_flops(teacher, tiny_inputs(teacher, batch=1), student)
    worst = sorted(range(teacher.num_layers), key=lambda i: -components["layers"][i])[:preset.min_layers]
    executed = [i in worst for i in range(teacher.num_layers)]
    ratio = routed_flops_ratio(components, executed)
    assert preset.min_layers / teacher.num_layers < ratio <= DEFAULT_FLOPS_BUDGET
