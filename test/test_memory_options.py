"""Memory-aware training: frozen vision encoder, LoRA (peft) merged on export, activation
checkpointing, bf16 autocast refused on CPU, stage 2 from cached teacher outputs without the
teacher, and out-of-memory errors that say what to change."""

import pytest
import torch

from actdistill_ros.core.config import DistillConfig, GraphConfig, LossConfig, MemoryConfig, OptimConfig, RouterConfig
from actdistill_ros.core.data.synthetic import make_dataset
from actdistill_ros.core.model.checkpoint import load_teacher, save_teacher
from actdistill_ros.core.model.graph import LayerProbes
from actdistill_ros.core.model.student import RoutedStudent
from actdistill_ros.core.training.loop import run_loop
from actdistill_ros.core.training.memory import (
    TrainingOutOfMemoryError,
    add_lora,
    apply_memory_options,
    has_lora,
    merge_lora,
    out_of_memory_advice,
)
from actdistill_ros.core.training.runs import run_distillation
from actdistill_ros.core.training.stages import (
    TeacherRecords,
    build_tensor_data,
    distill_student,
    record_teacher,
    restore_student,
)
from actdistill_ros.core.typed_config import ConfigError, from_dict

from core_helpers import TINY, tiny_inputs, tiny_teacher

GRAPH = GraphConfig(graph_dim=8, semantic_dim=8, top_k=4)
QUICK = OptimConfig(epochs=1, batch_size=6, lr=3e-3, checkpoint_every=1000)


@pytest.fixture(scope="module")
def setup():
    teacher = tiny_teacher(seed=1)
    data = build_tensor_data(make_dataset(2, steps=6, image_size=TINY.image_size, seed=7), teacher)
    teacher.normalizer.fit(data.targets)
    torch.manual_seed(0)
    probes = LayerProbes(TINY.num_layers, TINY.hidden_size, TINY.chunk_size, GRAPH)
    return teacher, probes, data, record_teacher(teacher, probes, data)


def _cfg(**memory) -> DistillConfig:
    return DistillConfig(
        graph=GRAPH, router=RouterConfig(router_dim=8), student=QUICK, device="cpu", memory=MemoryConfig(**memory)
    )


def _distill(setup, tmp_path, **memory):
    teacher, probes, data, records = setup
    torch.manual_seed(0)
    student = RoutedStudent.from_teacher(teacher, RouterConfig(router_dim=8))
    result = distill_student(student, probes, records, data, _cfg(**memory), tmp_path)
    return teacher, result.model


def _changed(before: torch.nn.Module, after: torch.nn.Module, prefix: str) -> dict[str, bool]:
    a, b = before.state_dict(), after.state_dict()
    return {k: not torch.equal(a[k], b["backbone." + k]) for k in a if k.startswith(prefix)}


def test_freeze_vision_leaves_the_encoder_untouched_and_trains_the_rest(setup, tmp_path):
    teacher, student = _distill(setup, tmp_path, freeze_vision=True)
    frozen = _changed(teacher, student, "vision.patch") | _changed(teacher, student, "vision.position")
    assert frozen and not any(frozen.values())
    assert all(_changed(teacher, student, "vision.projector").values())
    assert any(_changed(teacher, student, "layers.").values())


def test_lora_trains_adapters_only_in_the_layers_and_merges_into_plain_weights(setup, tmp_path):
    teacher, student = _distill(setup, tmp_path, lora_rank=2, lora_targets=["q_proj", "v_proj"])
    assert not has_lora(student)
    assert set(student.state_dict()) == set(
        RoutedStudent.from_teacher(teacher, RouterConfig(router_dim=8)).state_dict()
    ), "merged: the keys of a model trained without LoRA"
    changed = _changed(teacher, student, "layers.")
    assert changed["layers.0.self_attn.q_proj.weight"] and changed["layers.3.self_attn.v_proj.weight"]
    assert not changed["layers.0.self_attn.k_proj.weight"] and not changed["layers.2.mlp.up_proj.weight"]
    assert all(_changed(teacher, student, "action_head").values()), "the head keeps training"
    # the finished stage restores through the resume file (adapters re-made, then merged)
    restored = restore_student(RoutedStudent.from_teacher(teacher, RouterConfig(router_dim=8)), tmp_path, _cfg())
    for k, v in student.state_dict().items():
        assert torch.equal(v, restored.state_dict()[k]), k


def test_merged_lora_computes_what_the_adapters_computed():
    model = tiny_teacher(seed=2)
    add_lora(model, MemoryConfig(lora_rank=4))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or not n.startswith("layers.") for n in trainable)
    assert "text_embedding.weight" in trainable and "action_head.mlp.0.weight" in trainable
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)  # B starts at zero; give the adapters an effect
        inputs = tiny_inputs(model)
        adapted = model(inputs)
        assert merge_lora(model) == 7 * TINY.num_layers
        assert not has_lora(model)
        assert torch.allclose(model(inputs), adapted, atol=1e-5)
        assert not torch.allclose(tiny_teacher(seed=2)(inputs), adapted, atol=1e-3)


def test_lora_targets_that_match_nothing_name_the_layer_projections():
    with pytest.raises(ConfigError, match=r"match no linear projection.*q_proj"):
        add_lora(tiny_teacher(), MemoryConfig(lora_rank=2, lora_targets=["query"]))
    with pytest.raises(ConfigError, match="needs train_backbone"):
        from_dict(DistillConfig, {"train_backbone": False, "memory": {"lora_rank": 4}})


def test_gradient_checkpointing_recomputes_layers_and_keeps_the_gradients():
    grads, calls = [], []
    for on in (False, True):
        model = tiny_teacher(seed=3).train()
        apply_memory_options(model, MemoryConfig(gradient_checkpointing=on))
        count = [0]

        def counter(*_, count=count):
            count[0] += 1

        # a pre-hook: a recomputation stops as soon as it has what backward needs (no post-hook)
        model.layers[1].register_forward_pre_hook(counter)
        model.forward_loss(
            tiny_inputs(model, batch=3), torch.randn(3, TINY.chunk_size, 7, generator=torch.Generator().manual_seed(0))
        ).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        calls.append(count[0])
    assert calls == [1, 2], "with checkpointing a layer's forward runs again during backward"
    assert grads[0].keys() == grads[1].keys()
    for name, g in grads[0].items():
        assert torch.allclose(g, grads[1][name], atol=1e-6), name


@pytest.mark.skipif(torch.cuda.is_available(), reason="on CUDA bf16 autocast is allowed")
def test_bf16_autocast_is_refused_clearly_on_cpu(setup, tmp_path):
    with pytest.raises(ConfigError, match="autocast_bf16 needs a CUDA device.*cpu"):
        _distill(setup, tmp_path, autocast_bf16=True)
    assert not (tmp_path / "student_state.pt").exists(), "refused before any step"


def test_stage2_runs_from_cached_records_without_the_teacher(setup, tmp_path):
    """Records from disk and a student whose backbone *is* the loaded teacher checkpoint (no
    second copy, no teacher object): the same weights as a run that held the teacher and its
    in-memory records."""
    teacher, probes, data, records = setup
    _, reference = _distill(setup, tmp_path / "with_teacher")
    records.save(tmp_path / "records.safetensors")
    save_teacher(teacher, tmp_path / "teacher")

    backbone = load_teacher(tmp_path / "teacher")
    torch.manual_seed(0)  # the router's initialisation, as in the reference run
    student = RoutedStudent(backbone, RouterConfig(router_dim=8))
    del backbone
    result = distill_student(
        student, probes, TeacherRecords.load(tmp_path / "records.safetensors"), data, _cfg(), tmp_path / "cached"
    )
    assert result.model is student, "trained in place: the checkpoint's weights became the student"
    for k, v in reference.state_dict().items():
        assert torch.equal(v, result.model.state_dict()[k]), k


def test_release_teacher_pipeline_matches_keeping_the_teacher(tmp_path):
    make_dataset(6, steps=5, image_size=TINY.image_size, seed=8).save(tmp_path / "data")
    save_teacher(tiny_teacher(seed=4), tmp_path / "teacher")
    metrics = []
    for release in (False, True):
        cfg = DistillConfig(
            graph=GRAPH,
            router=RouterConfig(router_dim=8),
            loss=LossConfig(keep_ratio=0.5),
            probe=OptimConfig(epochs=1, batch_size=8),
            student=OptimConfig(epochs=2, batch_size=8),
            device="cpu",
            memory=MemoryConfig(release_teacher=release),
        )
        result = run_distillation(tmp_path / "data", tmp_path / "teacher", tmp_path / f"out_{release}", cfg)
        metrics.append(result.metrics)
    assert metrics[0] == metrics[1]
    assert metrics[1]["student_vs_teacher_mse"] > 0


def test_out_of_memory_is_reraised_with_advice(tmp_path):
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    cfg = OptimConfig(epochs=1, batch_size=4)

    def cpu_oom(rows):  # a real allocation failure, not a stand-in
        torch.empty(1 << 62, dtype=torch.uint8)

    advice = out_of_memory_advice(MemoryConfig(lora_rank=8), batch_size=4)
    with pytest.raises(TrainingOutOfMemoryError, match=r"out of memory at step 0 \(global batch 4") as info:
        run_loop("oom", tmp_path, {"m": model}, optimizer, cfg, 8, cpu_oom, oom_advice=advice)
    assert isinstance(info.value, torch.OutOfMemoryError)
    message = str(info.value)
    assert "smaller batch" in message and "autocast_bf16" in message and "gradient_checkpointing" in message
    assert "lora_rank" not in message, "options already on are not suggested"

    def device_oom(rows):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(TrainingOutOfMemoryError, match="LoRA adapters"):
        run_loop("oom2", tmp_path, {"m": model}, optimizer, cfg, 8, device_oom)
