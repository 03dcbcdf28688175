"""Length buckets: group items so each padded batch stays under a sample budget.

Pure functions on lengths in samples (per channel); the job pads every item of a batch to the
batch's longest item, rounded up to a multiple (the codec hop), so a batch costs
`len(batch) * round_up(longest, multiple)` samples.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _lengths(lengths: Sequence[int]) -> np.ndarray:
    arr = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if arr.size and arr.min() < 0:
        raise ValueError(f"lengths must be >= 0 samples; got {int(arr.min())}")
    return arr


def estimate_boundaries(lengths: Sequence[int], num_buckets: int) -> list[int]:
    """Bucket upper bounds in samples: the k/num_buckets quantiles of `lengths`, k = 1..num_buckets.

    A quantile is the smallest observed length whose empirical CDF reaches k/num_buckets, so every
    bound is a real length and bucket k holds at least k/num_buckets of the items. Bounds are
    deduplicated and sorted; the last is max(lengths). No lengths give [].

    >>> estimate_boundaries([1, 2, 3, 4, 5, 6, 7, 8], 4)
    [2, 4, 6, 8]
    """
    if num_buckets < 1:
        raise ValueError(f"num_buckets must be >= 1; got {num_buckets}")
    arr = _lengths(lengths)
    if arr.size == 0:
        return []
    qs = np.quantile(arr, np.arange(1, num_buckets + 1) / num_buckets, method="inverted_cdf")
    return sorted({int(q) for q in qs} | {int(arr.max())})


def plan_batches(lengths: Sequence[int], boundaries: Sequence[int] | None, budget_samples: int,
                 max_items: int, multiple: int = 1) -> list[list[int]]:
    """Indices into `lengths` grouped into batches; every index appears in exactly one batch.

    An item goes to the smallest bucket whose bound is >= its length; items longer than every
    bound (or all items, when `boundaries` is None or empty) form one overflow bucket. Buckets are
    visited in increasing bound order; within a bucket items are taken shortest first (ties by
    index), and a batch is closed before adding an item that would make
    `(len(batch) + 1) * round_up(length, multiple)` exceed `budget_samples` or the batch exceed
    `max_items`. An item whose rounded length alone exceeds the budget still forms a batch of its
    own (it is never dropped; a warning gives the count). Deterministic: depends only on the inputs.
    """
    if budget_samples <= 0 or max_items < 1 or multiple < 1:
        raise ValueError(f"need budget_samples > 0, max_items >= 1, multiple >= 1; "
                         f"got {budget_samples}, {max_items}, {multiple}")
    arr = _lengths(lengths)
    bounds = np.unique(np.asarray(boundaries if boundaries is not None else [], dtype=np.int64))
    slots = np.searchsorted(bounds, arr, side="left")
    order = np.lexsort((np.arange(arr.size), arr, slots))
    batches: list[list[int]] = []
    batch: list[int] = []
    slot = -1
    oversized = 0
    for i in order.tolist():
        padded = _round_up(int(arr[i]), multiple)
        oversized += padded > budget_samples
        if batch and (slots[i] != slot or (len(batch) + 1) * padded > budget_samples
                      or len(batch) >= max_items):
            batches.append(batch)
            batch = []
        batch.append(i)
        slot = slots[i]
    if batch:
        batches.append(batch)
    if oversized:
        log.warning("%d item(s) longer than the batch budget of %d samples each form their own batch",
                    oversized, budget_samples)
    return batches


def padding_waste(lengths: Sequence[int], batches: list[list[int]], multiple: int = 1,
                  padded_length: Callable[[int], int] | None = None) -> tuple[int, int]:
    """(padded samples, true samples) summed over `batches` (lengths in samples per channel); a batch
    is padded to its longest item rounded up to `multiple`, or to `padded_length(longest)` when given."""
    arr = _lengths(lengths)
    pad = padded_length or (lambda n: _round_up(n, multiple))
    padded = 0
    for b in batches:
        if not b:
            raise ValueError("padding_waste: empty batch")
        padded += len(b) * pad(int(arr[b].max()))
    true = int(sum(int(arr[b].sum()) for b in batches))
    return padded, true
