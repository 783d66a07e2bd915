"""transformers VLMs as layer-by-layer teachers: each family (LLaVA, Idefics3, PaliGemma, Qwen2-VL) as a
tiny random-weight model with its real processor, saved and loaded back like a downloaded model.

The adapter's layer-by-layer pass must be the model's own forward (same final hidden states), its
spans must come from the processor's image tokens, and routed greedy decoding with a KV cache must
equal decoding that re-runs the whole sequence, with layers skipped per sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from actdistill_ros.core.config import RouterConfig
from actdistill_ros.core.model.student import RoutedStudent
from actdistill_ros.teachers import HFTeacherOptions, load_hf_teacher
from actdistill_ros.teachers.decoder_stack import RoutedKVCache

from hf_tiny_models import FAMILIES, INSTRUCTIONS, random_images, tiny_model_dir

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy 2 copy= note from PaliGemma's processor

# per-sample routes for 3 samples x 4 layers: one skips layer 0 (the cache must not size masks by it)
ROUTES = torch.tensor([[0, 1, 1, 0], [1, 0, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)


@pytest.fixture(scope="module", params=FAMILIES)
def teacher(request):
    torch.manual_seed(0)
    return load_hf_teacher(tiny_model_dir(request.param), HFTeacherOptions(chunk_size=2))


def _inputs(teacher, batch=3):
    # different instruction lengths: right padding inside the batch
    return teacher.prepare(random_images(batch, seed=1), [INSTRUCTIONS[i % 3] for i in range(batch)])


def test_layer_by_layer_pass_is_the_models_own_forward(teacher):
    inputs = _inputs(teacher)
    actions, per_layer, batch = teacher(inputs, return_hidden=True)
    model_inputs, valid = teacher._model_inputs(inputs)
    with torch.no_grad():
        reference = teacher.model(**model_inputs, output_hidden_states=True, use_cache=False).hidden_states[-1]
    ours = teacher.final_norm(per_layer[-1])
    assert ours.shape == reference.shape
    torch.testing.assert_close(ours[batch.attention_mask], reference[batch.attention_mask], rtol=0, atol=1e-5)
    assert actions.shape == (3, 2, 7) and torch.isfinite(actions).all()
    assert teacher.num_layers == 4 and len(per_layer) == 4


def test_spans_come_from_the_processors_image_tokens(teacher):
    inputs = _inputs(teacher)
    batch = teacher.embed(inputs)
    ids = teacher._model_inputs(inputs)[0]["input_ids"]
    assert torch.equal(batch.vision_mask, (ids == teacher.image_token_id) & batch.attention_mask)
    assert (batch.vision_mask.sum(1) > 0).all()  # every sample has its image
    assert not (batch.vision_mask & batch.text_mask).any()
    assert torch.equal(batch.vision_mask | batch.text_mask, batch.attention_mask)
    assert len(set(batch.text_mask.sum(1).tolist())) > 1  # instructions of different lengths
    # padding of the prepared inputs is trimmed; the processor's per-token fields ride along
    assert inputs["input_ids"].shape[1] == len(teacher.token_fields) and teacher.token_fields[:2] == [
        "input_ids",
        "attention_mask",
    ]
    assert inputs["pixels"].dtype == torch.uint8


def test_routed_greedy_decoding_with_cache_equals_recomputing_the_sequence(teacher):
    inputs = _inputs(teacher)
    cached, cached_logits = teacher.decode_tokens(inputs, ROUTES, steps=4, use_cache=True, return_logits=True)
    full, full_logits = teacher.decode_tokens(inputs, ROUTES, steps=4, use_cache=False, return_logits=True)
    assert torch.equal(cached, full)
    torch.testing.assert_close(cached_logits, full_logits, rtol=1e-4, atol=1e-4)
    # the routes matter: the same prompt with every layer gives other logits
    every = teacher.decode_tokens(inputs, None, steps=4, use_cache=True, return_logits=True)[1]
    assert not torch.allclose(every[0], cached_logits[0], atol=1e-3)


def test_decoding_with_every_layer_is_the_models_own_generate(teacher):
    inputs = _inputs(teacher, batch=2)
    ours = teacher.decode_tokens(inputs, None, steps=3, use_cache=True)
    for row in range(2):
        model_inputs, _ = teacher._model_inputs({k: v[row : row + 1] for k, v in inputs.items()})
        generated = teacher.model.generate(**model_inputs, max_new_tokens=3, do_sample=False)
        assert ours[row].tolist() == generated[0, -3:].tolist()


def test_a_skipped_layer_keeps_no_cache_and_masks_size_from_tokens_seen():
    cache = RoutedKVCache()
    k = torch.zeros(1, 2, 5, 8)
    cache.update(k, k, layer_idx=2)  # layers 0 and 1 never ran
    cache.tokens_seen = 5
    assert cache.get_seq_length(0) == 5 and cache.get_mask_sizes(1, 0) == (6, 0)
    assert cache.layers[0].get_seq_length() == 0 and cache.layers[2].get_seq_length() == 5


def test_routed_student_skips_layers_and_equals_the_teacher_when_every_gate_is_open(teacher):
    inputs = _inputs(teacher)
    student = RoutedStudent.from_teacher(teacher, RouterConfig(router_dim=8)).eval()
    with torch.no_grad():
        student.router.gate_head.weight.zero_()
        student.router.gate_head.bias.fill_(10.0)
        expected = teacher(inputs)
        out = student.forward_routed(inputs)
    assert out.executed.all()
    torch.testing.assert_close(out.actions, expected, rtol=0, atol=1e-6)
    student.set_budget(max_layers=2)
    with torch.no_grad():
        capped = student.forward_routed(inputs)
    assert capped.executed.sum(1).tolist() == [2, 2, 2]
    assert not torch.allclose(capped.actions, expected)


def test_prepare_rejects_bad_input(teacher):
    with pytest.raises(ValueError, match="empty"):
        teacher.prepare(random_images(1), ["  "])
    with pytest.raises(ValueError, match="at most"):
        teacher.prepare(random_images(1), [" ".join(["red"] * 200)])
    with pytest.raises(ValueError, match="2 images but 1 instructions"):
        teacher.prepare(random_images(2), ["go"])
    with pytest.raises(ValueError, match="uint8"):
        teacher.prepare(np.zeros((32, 32, 3), np.float32), ["go"])
    # other image sizes are resized to the processor's size
    assert teacher.prepare(random_images(1, size=50), ["go"])["pixels"].shape == (1, 32, 32, 3)


def test_lora_and_frozen_vision_touch_only_the_language_models_layers():
    from actdistill_ros.core.config import MemoryConfig
    from actdistill_ros.core.training.memory import apply_memory_options, merge_lora

    teacher = load_hf_teacher(tiny_model_dir("llava"))
    keys = set(teacher.state_dict())
    apply_memory_options(teacher, MemoryConfig(lora_rank=4, freeze_vision=True))
    trainable = [name for name, p in teacher.named_parameters() if p.requires_grad]
    lora = [name for name in trainable if "lora_" in name]
    # the vision tower has same-named projections (encoder.layers.N.self_attn.q_proj): no adapters there
    assert len(lora) == 2 * 7 * teacher.num_layers and all(".language_model.layers." in n for n in lora)
    assert not [name for name in trainable if "vision_tower" in name]
    assert merge_lora(teacher) == 7 * teacher.num_layers and set(teacher.state_dict()) == keys
