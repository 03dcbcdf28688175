"""Length buckets: group items so each padded batch stays under a sample budget.

Pure functions on lengths in samples; the job pads every item of a batch to the batch's longest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def estimate_boundaries(lengths: Sequence[int], num_buckets: int) -> list[int]:
    """Bucket upper bounds (samples) at evenly spaced quantiles of `lengths`; the last is the maximum."""
    if not lengths:
        return []
    qs = np.quantile(np.asarray(lengths, dtype=np.float64), np.linspace(0, 1, max(1, num_buckets) + 1)[1:])
    return sorted({int(math.ceil(q)) for q in qs} | {int(max(lengths))})


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def plan_batches(lengths: Sequence[int], boundaries: Sequence[int] | None, budget_samples: int,
                 max_items: int, multiple: int = 1) -> list[list[int]]:
    """Indices of `lengths` grouped into batches; every index appears exactly once.

    An item goes to the smallest bucket whose bound is >= its length (the last bucket takes the
    rest). Within a bucket items are taken shortest first; a batch closes when adding an item
    would make items x longest (rounded up to `multiple`) exceed `budget_samples`, or at
    `max_items`. An item longer than the budget forms a batch of its own.
    """
    bounds = sorted(boundaries or [])
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        slot = next((b for b, bound in enumerate(bounds) if n <= bound), len(bounds))
        groups.setdefault(slot, []).append(i)
    batches: list[list[int]] = []
    for slot in sorted(groups):
        batch: list[int] = []
        for i in sorted(groups[slot], key=lambda i: (lengths[i], i)):
            longest = _round_up(max([lengths[j] for j in batch] + [lengths[i]]), multiple)
            if batch and (longest * (len(batch) + 1) > budget_samples or len(batch) >= max_items):
                batches.append(batch)
                batch = []
            batch.append(i)
        if batch:
            batches.append(batch)
    return batches


def padding_waste(lengths: Sequence[int], batches: list[list[int]], multiple: int = 1) -> tuple[int, int]:
    """(padded samples, true samples) over all batches."""
    padded = sum(_round_up(max(lengths[i] for i in b), multiple) * len(b) for b in batches)
    return padded, int(sum(lengths))
