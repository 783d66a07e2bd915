"""Action-chunk execution: step through, re-plan, ACT temporal ensembling."""

import math

import numpy as np
import pytest

from actdistill_ros.control.chunking import ChunkExecutor


def chunk(values):
    """A chunk whose row i has every dimension equal to values[i]."""
    values = np.asarray(values, dtype=np.float64)
    return np.repeat(values[:, None], 7, axis=1)


def test_empty_executor_returns_none_and_counts_steps():
    ex = ChunkExecutor()
    assert ex.next() is None
    assert ex.next() is None
    assert ex.step == 2


def test_steps_through_chunk_then_runs_out():
    ex = ChunkExecutor()
    ex.add(chunk([1, 2, 3]), stamp="img0")
    out = [ex.next() for _ in range(4)]
    assert [o.action[0] for o in out[:3]] == [1, 2, 3]
    assert out[3] is None  # used up: the caller must stop
    assert [o.row for o in out[:3]] == [0, 1, 2]
    assert out[0].stamp == "img0"
    np.testing.assert_array_equal(out[0].remaining, chunk([2, 3]))
    assert out[2].remaining.shape == (0, 7)


def test_new_prediction_replans_from_next_step():
    ex = ChunkExecutor()
    ex.add(chunk([1, 2, 3, 4]), stamp="a")
    assert ex.next().action[0] == 1
    assert ex.next().action[0] == 2
    ex.add(chunk([10, 20]), stamp="b")
    s = ex.next()
    assert s.action[0] == 10 and s.stamp == "b" and s.row == 0
    assert ex.next().action[0] == 20
    # the old chunk is superseded: after the new one runs out there is nothing
    assert ex.next() is None


def test_peek_does_not_advance():
    ex = ChunkExecutor()
    ex.add(chunk([5, 6]))
    assert ex.peek().action[0] == 5
    assert ex.peek().action[0] == 5
    assert ex.next().action[0] == 5
    assert ex.next().action[0] == 6


def test_explicit_start_step_accounts_for_latency():
    ex = ChunkExecutor()
    for _ in range(3):
        ex.next()  # steps 0..2 executed
    ex.add(chunk([1, 2, 3, 4]), start_step=1)  # predicted from an observation at step 1
    s = ex.next()  # step 3 -> row 2
    assert s.step == 3 and s.row == 2 and s.action[0] == 3
    assert ex.next().action[0] == 4
    assert ex.next() is None


def test_future_start_keeps_old_chunk_until_then():
    ex = ChunkExecutor()
    ex.add(chunk([1, 2, 3, 4]))
    ex.add(chunk([10, 20]), start_step=2)
    assert [ex.next().action[0] for _ in range(4)] == [1, 2, 10, 20]
    assert ex.next() is None


def test_temporal_ensemble_weights_hand_computed():
    k = 0.5
    ex = ChunkExecutor(temporal_ensemble=True, ensemble_k=k)
    ex.add(chunk([1, 2, 3]))  # covers steps 0,1,2
    assert ex.next().action[0] == 1  # only one prediction at step 0
    ex.add(chunk([10, 20, 30]))  # covers steps 1,2,3
    s = ex.next()  # step 1: oldest row 2 (weight 1), newest row 10 (weight e^-0.5)
    w0, w1 = 1.0, math.exp(-k)
    assert s.n_predictions == 2
    assert math.isclose(s.action[0], (w0 * 2 + w1 * 10) / (w0 + w1))
    ex.add(chunk([100, 200, 300]))  # covers steps 2,3,4
    s = ex.next()  # step 2: rows 3, 20, 100 with weights 1, e^-k, e^-2k
    w = np.exp(-k * np.arange(3))
    assert s.n_predictions == 3
    assert math.isclose(s.action[0], float(np.dot(w, [3, 20, 100]) / w.sum()))
    assert s.stamp is None and s.row == 0  # newest chunk: row 0
    np.testing.assert_array_equal(s.remaining, chunk([200, 300]))
    s = ex.next()  # step 3: rows 30, 200
    assert math.isclose(s.action[0], (30 + math.exp(-k) * 200) / (1 + math.exp(-k)))
    assert ex.next().action[0] == 300  # step 4: only the newest
    assert ex.next() is None


def test_ensemble_k_zero_is_plain_mean_and_all_dims_averaged():
    ex = ChunkExecutor(temporal_ensemble=True, ensemble_k=0.0)
    a = np.arange(14, dtype=float).reshape(2, 7)
    b = np.ones((2, 7))
    ex.add(a)
    ex.add(b)  # both start at step 0
    np.testing.assert_allclose(ex.next().action, (a[0] + b[0]) / 2)


def test_negative_k_favours_newest():
    ex = ChunkExecutor(temporal_ensemble=True, ensemble_k=-50.0)
    ex.add(chunk([0.0, 0.0]))
    ex.add(chunk([1.0, 1.0]))
    assert ex.next().action[0] > 0.999


def test_ensemble_drops_used_up_chunks():
    ex = ChunkExecutor(temporal_ensemble=True, ensemble_k=0.01)
    for i in range(20):
        ex.add(chunk([float(i)] * 3))
        ex.next()
    assert ex.n_chunks <= 3


def test_single_action_is_a_chunk_of_one():
    ex = ChunkExecutor()
    ex.add(np.full(7, 0.5))
    assert ex.next().action[6] == 0.5
    assert ex.next() is None


def test_reset_forgets_chunks():
    ex = ChunkExecutor()
    ex.add(chunk([1, 2, 3]))
    ex.reset()
    assert ex.next() is None


@pytest.mark.parametrize("bad", [np.zeros((3, 6)), np.zeros((0, 7)), np.zeros((2, 3, 7))])
def test_bad_chunk_shapes(bad):
    with pytest.raises(ValueError, match="chunk must be"):
        ChunkExecutor().add(bad)


def test_bad_k():
    with pytest.raises(ValueError):
        ChunkExecutor(ensemble_k=math.nan)


def test_input_chunk_is_copied():
    ex = ChunkExecutor()
    c = chunk([1, 2])
    ex.add(c)
    c[:] = 99
    assert ex.next().action[0] == 1
