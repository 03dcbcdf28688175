import logging

import numpy as np
import pytest

from pipeline.buckets import estimate_boundaries, padding_waste, plan_batches

LENGTHS = [5, 1, 9, 3, 7, 2, 8, 4, 6, 10]


def test_estimate_boundaries_exact():
    assert estimate_boundaries(LENGTHS, 1) == [10]
    assert estimate_boundaries(LENGTHS, 2) == [5, 10]
    assert estimate_boundaries(LENGTHS, 4) == [3, 5, 8, 10]
    assert estimate_boundaries([4, 4, 4, 4, 9], 4) == [4, 9]
    assert estimate_boundaries(np.array([7]), 8) == [7]
    assert estimate_boundaries([], 4) == []


def test_estimate_boundaries_rejects_bad_input():
    with pytest.raises(ValueError, match="num_buckets"):
        estimate_boundaries(LENGTHS, 0)
    with pytest.raises(ValueError, match=">= 0"):
        estimate_boundaries([3, -1], 2)


def test_plan_batches_exact_bins():
    batches = plan_batches(LENGTHS, [5, 10], budget_samples=20, max_items=3)
    assert batches == [[1, 5, 3], [7, 0], [8, 4], [6, 2], [9]]
    assert padding_waste(LENGTHS, batches) == (9 + 10 + 14 + 18 + 10, 55)


def test_plan_batches_rounds_to_multiple():
    batches = plan_batches(LENGTHS, [5, 10], budget_samples=20, max_items=3, multiple=4)
    assert batches == [[1, 5, 3], [7, 0], [8, 4], [6], [2], [9]]
    assert padding_waste(LENGTHS, batches, multiple=4) == (12 + 16 + 16 + 8 + 12 + 12, 55)


def test_boundaries_are_normalised_and_overflow_gets_a_bucket():
    assert plan_batches(LENGTHS, [10, 5, 5], 20, 3) == plan_batches(LENGTHS, [5, 10], 20, 3)
    assert plan_batches([3, 12, 1], [5, 10], 100, 10) == [[2, 0], [1]]
    assert plan_batches([3, 12, 1], None, 100, 10) == plan_batches([3, 12, 1], [], 100, 10) == [[2, 0, 1]]


def test_ties_are_stable_by_index():
    assert plan_batches([2, 2, 2], None, 100, 2) == [[0, 1], [2]]


def test_oversized_items_are_kept_alone_and_reported(caplog):
    with caplog.at_level(logging.WARNING, logger="pipeline.buckets"):
        batches = plan_batches([30, 5, 40, 5], None, budget_samples=20, max_items=8)
    assert batches == [[1, 3], [0], [2]]
    assert "2 item(s) longer than the batch budget" in caplog.text


def test_plan_batches_invariants_on_random_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 5000, size=500).tolist()
    bounds = estimate_boundaries(lengths, 6)
    batches = plan_batches(lengths, bounds, budget_samples=20000, max_items=16, multiple=320)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        longest = -(-max(lengths[i] for i in b) // 320) * 320
        assert len(b) <= 16 and (len(b) * longest <= 20000 or len(b) == 1)
        assert [lengths[i] for i in b] == sorted(lengths[i] for i in b)
        assert len({int(np.searchsorted(bounds, lengths[i])) for i in b}) == 1
    assert plan_batches(lengths, bounds, 20000, 16, 320) == batches
    padded, true = padding_waste(lengths, batches, multiple=320)
    assert true == sum(lengths) and padded >= true


def test_plan_batches_rejects_bad_arguments():
    assert plan_batches([], None, 10, 1) == []
    for budget, items, multiple in [(0, 1, 1), (10, 0, 1), (10, 1, 0)]:
        with pytest.raises(ValueError, match="budget_samples"):
            plan_batches([1], None, budget, items, multiple)
    with pytest.raises(ValueError, match="empty batch"):
        padding_waste([1], [[0], []])
