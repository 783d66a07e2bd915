"""Multi-process distillation: 2 CPU processes on gloo give the weights of one process with
the same global batch (DDP and FSDP2), a resumed FSDP run ends where an uninterrupted one
ends, the torchrun launcher works, and a process group that never forms fails fast."""

import dataclasses
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from actdistill_ros.core.config import (
    DistillConfig,
    DistributedConfig,
    GraphConfig,
    LossConfig,
    OptimConfig,
    RouterConfig,
)
from actdistill_ros.core.data.synthetic import make_dataset
from actdistill_ros.core.model.graph import LayerProbes
from actdistill_ros.core.model.student import RoutedStudent
from actdistill_ros.core.model.tiny_vla import TinyVLA
from actdistill_ros.core.training.parallel import World, init_world
from actdistill_ros.core.training.stages import (
    TensorData,
    build_tensor_data,
    distill_student,
    record_teacher,
    train_probes,
)
from actdistill_ros.core.typed_config import ConfigError

from core_helpers import TINY

JOIN_TIMEOUT_S = 240  # the whole 2-process run; a hang fails the test instead of blocking CI
PG_TIMEOUT_S = 60.0  # a collective waiting longer than this raises inside the workers
GRAPH = GraphConfig(graph_dim=16, semantic_dim=16, top_k=4)
STUDENT = OptimConfig(epochs=2, batch_size=8, lr=2e-3, checkpoint_every=2, seed=3)
PROBE = OptimConfig(epochs=1, batch_size=8, lr=2e-3, checkpoint_every=100, seed=1)
# measured layer credit on every sample of the global batch of 8: each rank measures its shard of 4
MEASURED = RouterConfig(router_dim=8, credit="measured", credit_samples=8)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _distill_cfg(strategy: str) -> DistillConfig:
    return DistillConfig(
        graph=GRAPH,
        router=RouterConfig(router_dim=8),
        loss=LossConfig(keep_ratio=0.5),
        probe=PROBE,
        student=STUDENT,
        device="cpu",
        distributed=DistributedConfig(strategy=strategy, timeout_s=PG_TIMEOUT_S),
    )


def _build(problem: dict):
    """Teacher, probes, data and records exactly as the parent made them."""
    teacher = TinyVLA(TINY)
    teacher.load_state_dict(problem["teacher"])
    probes = LayerProbes(TINY.num_layers, TINY.hidden_size, TINY.chunk_size, GRAPH)
    probes.load_state_dict(problem["probes"])
    data = TensorData(problem["inputs"], problem["targets"], problem["sample_ids"])
    return teacher.eval(), probes, data


def _student_run(problem: dict, world: World, strategy: str, run_dir: Path, stop_after=None,
                 router: RouterConfig | None = None):
    teacher, probes, data = _build(problem)
    records = record_teacher(teacher, probes, data, world=world)
    student = RoutedStudent.from_teacher(teacher, router or RouterConfig(router_dim=8))
    student.router.load_state_dict(problem["router"])
    return distill_student(
        student, probes, records, data, _distill_cfg(strategy), run_dir, stop_after=stop_after, world=world
    )


def _worker(rank: int, world_size: int, port: int, tmp: str) -> None:
    """One rank: DDP stage 1 + stage 2, FSDP stage 2 (with a kill and resume); rank 0 saves."""
    os.environ.update(
        {
            "RANK": str(rank),
            "WORLD_SIZE": str(world_size),
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
        }
    )
    torch.set_num_threads(1)
    tmp = Path(tmp)
    problem = torch.load(tmp / "problem.pt", weights_only=True)
    out = {}
    world = init_world(DistributedConfig(strategy="ddp", timeout_s=PG_TIMEOUT_S))
    teacher, probes, data = _build(problem)
    probe_result = train_probes(teacher, probes, data, PROBE, tmp / "ddp_probe", world=world)
    out["probes"] = probes.state_dict()
    out["probe_history"] = probe_result.history
    ddp = _student_run(problem, world, "ddp", tmp / "ddp")
    out["ddp"] = ddp.model.state_dict()
    out["ddp_history"] = ddp.history
    out["ddp_measured"] = _student_run(problem, world, "ddp", tmp / "ddp_measured", router=MEASURED).model.state_dict()
    fsdp_world = dataclasses.replace(world, strategy="fsdp")
    _student_run(problem, fsdp_world, "fsdp", tmp / "fsdp", stop_after=3)  # "killed" after step 3
    fsdp = _student_run(problem, fsdp_world, "fsdp", tmp / "fsdp")  # resumes from the step-2 checkpoint
    out["fsdp_resumed_from"] = fsdp.resumed_from
    if rank == 0:
        out["fsdp"] = fsdp.model.state_dict()
        torch.save(out, tmp / "distributed.pt")
    else:
        assert fsdp.model is None
    torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    torch.manual_seed(0)
    teacher = TinyVLA(TINY).eval()
    data = build_tensor_data(make_dataset(3, steps=6, image_size=TINY.image_size, seed=2), teacher)
    assert len(data) == 18  # 2 full batches of 8 + a tail of 2 (one sample per rank) per epoch
    probes = LayerProbes(TINY.num_layers, TINY.hidden_size, TINY.chunk_size, GRAPH)
    router = RoutedStudent(teacher, RouterConfig(router_dim=8)).router
    teacher.normalizer.fit(data.targets)
    problem = {
        "teacher": teacher.state_dict(),
        "probes": probes.state_dict(),
        "router": router.state_dict(),
        "inputs": data.inputs,
        "targets": data.targets,
        "sample_ids": data.sample_ids,
    }
    torch.save(problem, tmp / "problem.pt")
    return tmp, problem


def _spawn(world_size: int, tmp: Path) -> None:
    # forkserver: one fresh process imports torch/transformers once, the ranks fork from it
    # (no fork of this multi-threaded pytest process, no import per rank)
    mp.set_forkserver_preload(
        ["actdistill_ros.core.training.stages", "actdistill_ros.core.model.tiny_vla", "test_distributed"]
    )
    ctx = mp.start_processes(
        _worker, args=(world_size, free_port(), str(tmp)), nprocs=world_size, join=False, start_method="forkserver"
    )
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    try:
        while not ctx.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail(f"distributed workers did not finish within {JOIN_TIMEOUT_S} s")
    finally:
        for process in ctx.processes:
            if process.is_alive():
                process.kill()
                process.join(5)


@pytest.fixture(scope="module")
def two_ranks(problem):
    tmp, _ = problem
    _spawn(2, tmp)
    return torch.load(tmp / "distributed.pt", weights_only=False)


# Attention-pooling score biases (the action head's and the graph modules') shift every token's
# score equally, and a softmax ignores that: their true gradient is 0, the computed one float
# noise, which AdamW normalises into steps of ~lr. Their values depend on summation order, not
# on the method, so they are left out.
GRADIENT_FREE = ("action_head.score.bias", "pool_score.2.bias")


def _assert_same_weights(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    diffs = {k: (a[k].float() - b[k].float()).abs().max().item() for k in a if not k.endswith(GRADIENT_FREE)}
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] <= atol, f"largest weight difference {diffs[worst]:.3g} ({worst}) > {atol}"


def test_ddp_stage2_matches_one_process_with_the_same_global_batch(problem, two_ranks, tmp_path):
    _, prob = problem
    single = _student_run(prob, World(), "none", tmp_path / "single")
    assert single.steps == 6
    initial = RoutedStudent.from_teacher(_build(prob)[0], RouterConfig(router_dim=8))
    initial.router.load_state_dict(prob["router"])
    initial = initial.state_dict()
    moved = max((single.model.state_dict()[k] - v).abs().max().item() for k, v in initial.items())
    assert moved > 1e-3, "training must change the weights for the comparison to mean anything"
    _assert_same_weights(two_ranks["ddp"], single.model.state_dict(), atol=5e-6)
    # logged terms are means over ranks: the global-batch terms equal the one-process ones
    for one, two in zip(single.history, two_ranks["ddp_history"], strict=True):
        for key in ("total", "relational", "balance", "budget", "task"):
            assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-6), key


def test_ddp_stage2_with_measured_credit_matches_one_process(problem, two_ranks, tmp_path):
    """Each rank measures its own rows; the credit loss is standardised over the gathered global batch."""
    _, prob = problem
    single = _student_run(prob, World(), "none", tmp_path / "single", router=MEASURED)
    assert all("credit" in h for h in single.history)
    _assert_same_weights(two_ranks["ddp_measured"], single.model.state_dict(), atol=5e-6)


def test_ddp_stage1_probes_match_one_process(problem, two_ranks, tmp_path):
    _, prob = problem
    teacher, probes, data = _build(prob)
    train_probes(teacher, probes, data, PROBE, tmp_path / "probe")
    _assert_same_weights(two_ranks["probes"], probes.state_dict(), atol=5e-6)


def test_fsdp_stage2_resumed_matches_one_process(problem, two_ranks, tmp_path):
    _, prob = problem
    assert two_ranks["fsdp_resumed_from"] == 2
    single = _student_run(prob, World(), "none", tmp_path / "single")
    _assert_same_weights(two_ranks["fsdp"], single.model.state_dict(), atol=5e-6)


def test_global_batch_must_split_evenly_and_strategy_names_are_checked():
    with pytest.raises(ConfigError, match="divisible by the 3 processes"):
        World(rank=0, size=3, strategy="ddp").check_batch_size(8, "student")
    with pytest.raises(ConfigError, match="valid: none, ddp, fsdp"):
        DistributedConfig(strategy="horovod").validate()
    rows = torch.arange(7)
    shards = [World(rank=r, size=3).shard(rows) for r in range(3)]
    assert [s.tolist() for s in shards] == [[0, 1], [2, 3], [4, 5]]  # trimmed to equal shards


def test_torchrun_without_a_strategy_is_an_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="distributed.strategy is none"):
        init_world(DistributedConfig())


def test_a_process_group_that_never_forms_times_out_instead_of_hanging(tmp_path):
    """Rank 0 of 2 alone: joining must fail after distributed.timeout_s, not wait forever."""
    code = (
        "from actdistill_ros.core.config import DistributedConfig\n"
        "from actdistill_ros.core.training.parallel import init_world\n"
        "init_world(DistributedConfig(strategy='ddp', timeout_s=1))\n"
    )
    env = {
        **os.environ,
        "RANK": "0",
        "WORLD_SIZE": "2",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "OMP_NUM_THREADS": "1",
    }
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode != 0
    assert "1/2 clients joined" in proc.stderr or "timed out" in proc.stderr.lower(), proc.stderr[-2000:]
    assert time.monotonic() - start < 90
