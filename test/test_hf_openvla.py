"""OpenVLA's action path on a tiny LLaVA-style model: action tokens (the last 256 vocabulary ids, 7 per
action, 256 bins over [-1, 1]), de-normalisation with the checkpoint's q01/q99 statistics chosen by
``unnorm_key`` (gripper passed through by the mask), greedy decoding through a routed student."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from actdistill_ros.core.config import RouterConfig
from actdistill_ros.core.model.student import RoutedStudent
from actdistill_ros.core.policy import RoutedPolicy
from actdistill_ros.teachers import HFTeacherError, HFTeacherOptions, load_hf_teacher
from actdistill_ros.teachers.openvla import (
    ActionTokenizer,
    load_norm_stats,
    normalizer_from_stats,
    select_action_stats,
)

from hf_tiny_models import add_openvla_stats, random_images, tiny_model_dir

PROMPT = "{image}In: What action should the robot take to {instruction}?\nOut:"
STATS = {
    "q01": [-0.02, -0.03, -0.01, -0.1, -0.2, -0.3, 0.0],
    "q99": [0.02, 0.05, 0.03, 0.1, 0.2, 0.3, 1.0],
    "mask": [True] * 6 + [False],
}


def _reference_tokens(actions: np.ndarray, vocab: int) -> np.ndarray:
    """OpenVLA's discretisation, written out with numpy."""
    bins = np.linspace(-1, 1, 256)
    return vocab - np.digitize(np.clip(actions, -1, 1), bins)


def _reference_decode(ids: np.ndarray, vocab: int) -> np.ndarray:
    bins = np.linspace(-1, 1, 256)
    centers = (bins[:-1] + bins[1:]) / 2
    return centers[np.clip(vocab - ids - 1, 0, centers.shape[0] - 1)]


def test_action_tokens_are_the_last_256_ids_of_the_vocabulary():
    tokenizer = ActionTokenizer(32000)
    actions = np.concatenate([np.linspace(-1.2, 1.2, 97), [-1.0, 1.0, 0.0]]).reshape(-1, 1)
    ids = tokenizer.encode(torch.from_numpy(actions)).numpy()
    np.testing.assert_array_equal(ids, _reference_tokens(actions, 32000))
    assert ids.min() == 32000 - 256 and ids.max() == 31999 and tokenizer.first_id == 31744
    decoded = tokenizer.decode(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(decoded, _reference_decode(ids, 32000), atol=1e-6)
    inside = np.abs(actions) <= 1
    assert np.abs(decoded - actions)[inside].max() <= 2 / 255 + 1e-6  # within one bin
    # ids below the action range (a word instead of an action) clip to the top bin, as OpenVLA's decode
    assert tokenizer.decode(torch.tensor([5])).item() == pytest.approx(_reference_decode(np.array([5]), 32000)[0])


def test_statistics_denormalise_like_openvla_and_pass_the_gripper_through():
    normalizer = normalizer_from_stats(STATS)
    normalized = np.random.default_rng(0).uniform(-1, 1, (5, 7))
    q01, q99, mask = (np.array(STATS[k]) for k in ("q01", "q99", "mask"))
    expected = np.where(mask, 0.5 * (normalized + 1) * (q99 - q01) + q01, normalized)
    ours = normalizer.denormalize(torch.from_numpy(normalized).float()).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-6)
    np.testing.assert_allclose(normalizer.normalize(torch.tensor(q99).float()).numpy()[:6], 1.0, atol=1e-5)


def test_unnorm_key_selects_the_dataset_statistics(tmp_path):
    with pytest.raises(HFTeacherError, match="set hf_teacher.unnorm_key to one of: a, b"):
        select_action_stats({"a": {"action": STATS}, "b": {"action": STATS}}, "", "ckpt")
    with pytest.raises(HFTeacherError, match="'c' not in .* available: a, b"):
        select_action_stats({"a": {"action": STATS}, "b": {"action": STATS}}, "c", "ckpt")
    assert select_action_stats({"a": {"action": STATS}}, "", "ckpt")[0] == "a"
    with pytest.raises(HFTeacherError, match="no dataset statistics"):
        select_action_stats({}, "", "ckpt")
    with pytest.raises(HFTeacherError, match="no action q01/q99"):
        select_action_stats({"a": {"action": {"mean": [0] * 7}}}, "", "ckpt")
    # fine-tuned checkpoints ship dataset_statistics.json next to config.json
    (tmp_path / "config.json").write_text(json.dumps({"norm_stats": {"bridge": {"action": STATS}}}))
    (tmp_path / "dataset_statistics.json").write_text(json.dumps({"libero_spatial": {"action": STATS}}))
    assert sorted(load_norm_stats(tmp_path)) == ["bridge", "libero_spatial"]
    with pytest.raises(HFTeacherError, match="dimensions"):
        normalizer_from_stats({"q01": [0.0] * 6, "q99": [1.0] * 6})


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    options = HFTeacherOptions(head="action_tokens", unnorm_key="tiny_robot", chunk_size=1, prompt=PROMPT)
    return load_hf_teacher(tiny_model_dir("llava", openvla_stats=True), options)


def test_action_token_head_decodes_7_tokens_with_the_models_lm_head(teacher):
    head = teacher.action_head
    assert head.tokenizer.vocab_size == teacher.processor.tokenizer.vocab_size == 320
    assert teacher.normalizer.std.tolist()[6] == 1.0  # gripper: mask false, not de-normalised
    inputs = teacher.prepare(random_images(2, seed=5), ["move to the red cube", "touch the blue one"])
    actions = teacher(inputs)
    tokens = teacher.decode_tokens(inputs, steps=7)
    assert actions.shape == (2, 1, 7)
    torch.testing.assert_close(actions, head.tokenizer.decode(tokens).view(2, 1, 7))


def test_routed_student_decodes_every_action_token_without_the_skipped_layers(teacher):
    student = RoutedStudent.from_teacher(teacher, RouterConfig(router_dim=8)).eval()
    student.set_budget(max_layers=2)
    inputs = teacher.prepare(random_images(3, seed=6), ["move to the red cube", "touch the blue one", "go"])
    out = student.forward_routed(inputs)
    assert out.executed.sum(1).tolist() == [2, 2, 2]
    cached = student.backbone.decode_tokens(inputs, out.executed, steps=7, use_cache=True)
    recomputed = student.backbone.decode_tokens(inputs, out.executed, steps=7, use_cache=False)
    assert torch.equal(cached, recomputed)
    torch.testing.assert_close(out.actions, teacher.action_head.tokenizer.decode(cached).view(3, 1, 7))


def test_constrained_decoding_only_emits_action_ids(teacher):
    lo, hi = teacher.action_head.tokenizer.first_id, teacher.action_head.tokenizer.vocab_size
    inputs = teacher.prepare(random_images(2, seed=7), ["move to the red cube", "go"])
    tokens = teacher.decode_tokens(inputs, steps=7, allowed=(lo, hi))
    assert ((tokens >= lo) & (tokens < hi)).all()


def test_teacher_forced_action_token_loss_reaches_the_decoder_stack(teacher):
    student = RoutedStudent.from_teacher(teacher, RouterConfig(router_dim=8)).train()
    inputs = teacher.prepare(random_images(2, seed=8), ["move to the red cube", "go"])
    target = torch.rand(2, 1, 7) * 2 - 1
    out = student.forward_train(inputs, decode_actions=False, target=target)
    assert torch.isfinite(out.task_loss) and out.task_loss.item() > 0
    out.task_loss.backward()
    backbone = student.backbone
    assert backbone.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0
    assert backbone.lm_head.weight.grad.abs().sum() > 0


def test_policy_returns_openvla_denormalised_actions(teacher, tmp_path):
    from actdistill_ros.core.model.checkpoint import load_student, save_student

    student = RoutedStudent.from_teacher(teacher, RouterConfig(router_dim=8)).eval()
    save_student(student, tmp_path / "student")
    loaded = load_student(tmp_path / "student")
    assert loaded.backbone.cfg.unnorm_key == "tiny_robot"
    policy = RoutedPolicy(loaded, torch.device("cpu"), torch.float32)
    out = policy.act(random_images(1, seed=9)[0], "move to the red cube")
    q01, q99 = np.array(STATS["q01"]), np.array(STATS["q99"])
    assert (out.actions[0, :6] >= q01[:6] - 1e-6).all() and (out.actions[0, :6] <= q99[:6] + 1e-6).all()
    assert -1 <= out.actions[0, 6] <= 1  # the gripper is the model's raw value


def test_statistics_are_required_for_the_action_token_head(tmp_path):
    model_dir = shutil.copytree(tiny_model_dir("llava"), tmp_path / "no_stats")
    with pytest.raises(HFTeacherError, match="no dataset statistics"):
        load_hf_teacher(model_dir, HFTeacherOptions(head="action_tokens"))
    add_openvla_stats(model_dir)
    with pytest.raises(HFTeacherError, match="unnorm_key to one of: other_robot, tiny_robot"):
        load_hf_teacher(model_dir, HFTeacherOptions(head="action_tokens"))


def test_openvla_style_remote_code_model_patches_after_bos(tmp_path):
    """OpenVLA checkpoints are Prismatic remote code: no image token, patches inserted after BOS by the
    model. A tiny model of that layout, loaded with trust_remote_code, exported and loaded back."""
    from actdistill_ros.core.model.checkpoint import load_student, save_student

    from hf_tiny_models import save_tiny_prismatic

    model_dir = save_tiny_prismatic(tmp_path / "tiny_openvla")
    options = HFTeacherOptions(head="action_tokens", trust_remote_code=True, unnorm_key="tiny_robot", chunk_size=1)
    teacher = load_hf_teacher(model_dir, options)
    assert teacher.family.name == "openvla" and type(teacher.model).__name__ == "TinyPrismaticForActionPrediction"
    assert (
        teacher.prompt("Move to the Red cube") == "In: What action should the robot take to move to the red cube?\nOut:"
    )
    inputs = teacher.prepare(random_images(2, seed=10), ["move to the red cube", "go"])
    actions, per_layer, batch = teacher(inputs, return_hidden=True)
    patches = torch.zeros_like(batch.vision_mask)
    patches[:, 1:17] = True  # 16 patches right after BOS
    assert torch.equal(batch.vision_mask, patches)
    model_inputs, _ = teacher._model_inputs(inputs)
    with torch.no_grad():
        reference = teacher.model(**model_inputs).logits
    ours = teacher.next_token_logits(per_layer[-1])
    torch.testing.assert_close(ours[batch.attention_mask], reference[batch.attention_mask], rtol=0, atol=1e-5)
    routes = torch.tensor([[0, 1, 1, 0], [1, 1, 0, 1]], dtype=torch.bool)
    assert torch.equal(
        teacher.decode_tokens(inputs, routes, steps=7), teacher.decode_tokens(inputs, routes, steps=7, use_cache=False)
    )
    student = RoutedStudent.from_teacher(teacher, RouterConfig(router_dim=8)).eval()
    save_student(student, tmp_path / "student")
    assert (tmp_path / "student" / "hf" / "modeling_tinyprismatic.py").is_file()  # the model code travels along
    loaded = load_student(tmp_path / "student")
    with torch.no_grad():
        torch.testing.assert_close(loaded.forward_routed(inputs).actions, student.forward_routed(inputs).actions)
