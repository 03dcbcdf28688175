"""Epoch plans: exact buckets, every row once across ranks, budgets, crops, balance, reported remainders."""

import numpy as np
import pytest

from pipeline.training.plan import BatchConfig, length_buckets, plan_epoch


def rows_of(plan):
    return [c.row for batches in plan.ranks for b in batches for c in b]


def test_length_buckets_exact_bins():
    assert length_buckets(np.arange(1, 101), 4).tolist() == [26, 51, 76]
    assert length_buckets(np.array([5, 5, 5, 9]), 4).tolist() == [5, 9]
    assert length_buckets(np.arange(10), 1).tolist() == []


@pytest.mark.parametrize("world_size", [1, 2, 3, 5, 8])
def test_every_row_once_equal_counts_balanced_and_bounded(world_size):
    frames = np.random.default_rng(0).integers(1, 400, 203)
    cfg = BatchConfig(max_tokens=4 * 1000, seed=7)
    orders = []
    for epoch in range(3):
        plan = plan_epoch(frames, 4, cfg, epoch, world_size)
        assert sorted(rows_of(plan)) == list(range(len(frames))) and not plan.dropped_rows
        assert {len(r) for r in plan.ranks} == {plan.batches_per_rank}
        for batches in plan.ranks:
            for b in batches:
                assert len(b) * max(c.frames for c in b) * 4 <= cfg.max_tokens
        loads = plan.frames_per_rank()
        biggest = max(sum(c.frames for c in b) for r in plan.ranks for b in r)
        assert max(loads) - min(loads) <= biggest  # greedy balance: within one batch
        orders.append(rows_of(plan))
        assert rows_of(plan_epoch(frames, 4, cfg, epoch, world_size)) == orders[-1]  # seeded
    assert orders[0] != orders[1] != orders[2]  # the order changes with the epoch
    assert rows_of(plan_epoch(frames, 4, BatchConfig(4000, seed=8), 0, world_size)) != orders[0]


def test_crops_are_seeded_windows_of_max_frames():
    frames = np.array([10, 500, 1000, 64])
    cfg = BatchConfig(max_tokens=10_000, max_frames=64, seed=1)
    seen = {}
    for epoch in range(4):
        for c in (c for r in plan_epoch(frames, 2, cfg, epoch).ranks for b in r for c in b):
            assert c.frames == min(frames[c.row], 64) and 0 <= c.start <= frames[c.row] - c.frames
            seen.setdefault(c.row, set()).add(c.start)
    assert seen[0] == {0} and seen[3] == {0} and len(seen[1]) > 1 and len(seen[2]) > 1


def test_buckets_cut_padding_and_waste_is_exact():
    frames = np.random.default_rng(1).integers(1, 1000, 300)
    one = plan_epoch(frames, 2, BatchConfig(max_tokens=40_000, num_buckets=1), 0)
    eight = plan_epoch(frames, 2, BatchConfig(max_tokens=40_000, num_buckets=8), 0)
    assert eight.padding_waste() < one.padding_waste() / 2
    padded = sum(len(b) * max(c.frames for c in b) for b in eight.ranks[0])
    assert eight.padding_waste() == pytest.approx(1 - frames.sum() / padded)
    assert "padding waste" in eight.report()


def test_remainder_dropped_only_when_no_batch_can_split():
    frames = np.full(5, 10)
    plan = plan_epoch(frames, 2, BatchConfig(max_tokens=20), 0, world_size=2)  # one row per batch
    assert plan.batches_per_rank == 2 and len(plan.dropped_rows) == 1
    assert sorted(rows_of(plan) + plan.dropped_rows) == list(range(5))
    assert "1 row(s) dropped" in plan.report()
    split = plan_epoch(frames, 2, BatchConfig(max_tokens=200), 0, world_size=4)  # 1 batch of 5 -> 4
    assert split.split_batches == 3 and not split.dropped_rows and sorted(rows_of(split)) == list(range(5))


def test_short_rows_skipped_and_long_rows_named():
    plan = plan_epoch(np.array([1, 2, 50, 60]), 2, BatchConfig(max_tokens=1000, min_frames=3), 0)
    assert sorted(rows_of(plan)) == [2, 3] and plan.skipped_short == 2
    with pytest.raises(ValueError, match="1 row.*900 frames x 2 codebooks.*max_frames"):
        plan_epoch(np.array([5, 900]), 2, BatchConfig(max_tokens=1000), 0)
    with pytest.raises(ValueError, match="below min_frames"):
        BatchConfig(100, max_frames=2, min_frames=5)
