"""Resumable training: a run stopped after a checkpoint and restarted ends where an
uninterrupted run ends (same total steps, same weights), without duplicated metrics."""

import json

import pytest
import torch

from actdistill_ros.core.config import OptimConfig
from actdistill_ros.core.training.loop import batches_per_epoch, epoch_order, run_loop


def _problem(seed=0, device="cpu"):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 1)
    x = torch.randn(40, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    return model.to(device), x.to(device), y.to(device)


def _run(run_dir, stop_after=None, device="cpu"):
    model, x, y = _problem(device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05)
    cfg = OptimConfig(epochs=3, batch_size=8, lr=0.05, checkpoint_every=4, seed=1)

    def step(rows):
        noise = torch.randn(len(rows), 1, device=device) * 0.01  # consumes the RNG: resume must restore it
        loss = ((model(x[rows]) + noise - y[rows]) ** 2).mean()
        return loss, {"mse": loss.item()}

    return model, run_loop("toy", run_dir, {"model": model}, optimizer, cfg, len(x), step, stop_after=stop_after)


def test_epoch_order_is_a_pure_function_of_seed_and_epoch():
    assert torch.equal(epoch_order(10, 3, 2), epoch_order(10, 3, 2))
    assert not torch.equal(epoch_order(10, 3, 2), epoch_order(10, 3, 1))
    assert batches_per_epoch(17, 8) == 2 and batches_per_epoch(18, 8) == 3  # a batch of 1 is dropped


# on CUDA the noise comes from the GPU's generator: resume restores that one too
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))])
def test_kill_and_resume_matches_uninterrupted_run(tmp_path, device):
    reference, ref_result = _run(tmp_path / "ref", device=device)
    assert ref_result.finished and ref_result.steps == 15

    # "killed" after step 10; last checkpoint at 8
    _, partial = _run(tmp_path / "resumed", stop_after=10, device=device)
    assert not partial.finished
    resumed, result = _run(tmp_path / "resumed", device=device)
    assert result.resumed_from == 8, "resumes from the last checkpoint, losing only steps 9-10"
    assert result.steps == ref_result.steps
    for a, b in zip(reference.parameters(), resumed.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "toy_metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 16)), "metrics of lost steps are dropped, not duplicated"
