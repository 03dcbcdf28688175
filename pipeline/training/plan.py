"""One epoch's batches for every rank: crops, length buckets, token-budget batches, rank balance.

Pure functions of (row lengths, config, epoch, world size): every rank and every DataLoader worker
computes the same plan on its own, so no process has to tell another which rows it takes.

    rows --crop to max_frames--> lengths --bucket by length--> shuffled rows per bucket
         --greedy, B x F_max x n_q <= max_tokens--> batches --shuffle--> batches
         --split (or drop) to a multiple of world_size--> per rank: equal counts, balanced frames

Every row whose length is >= min_frames is in exactly one batch of exactly one rank, unless the
batches cannot be made a multiple of `world_size` by splitting (only single-row batches left): then
the remainder is dropped and listed in `EpochPlan.dropped_rows`.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BatchConfig:
    """max_tokens: most padded codes per batch, B x F_max x n_q. max_frames: random crop (a seeded window
    per row and epoch) of longer rows; None keeps whole rows. min_frames: shorter rows are skipped
    (counted in the plan). num_buckets: length buckets (quantiles of the cropped lengths)."""

    max_tokens: int
    max_frames: int | None = None
    min_frames: int = 1
    num_buckets: int = 8
    seed: int = 0

    def __post_init__(self):
        if self.max_tokens < 1 or self.num_buckets < 1 or self.min_frames < 1:
            raise ValueError(f"max_tokens, num_buckets and min_frames must be >= 1: {self}")
        if self.max_frames is not None and self.max_frames < self.min_frames:
            raise ValueError(f"max_frames ({self.max_frames}) is below min_frames ({self.min_frames})")


@dataclass(frozen=True)
class Crop:
    """Frames start..start+frames-1 of indexed row `row`."""

    row: int
    start: int
    frames: int


@dataclass
class EpochPlan:
    """ranks[r]: rank r's batches in order (each a tuple of Crops). Counts are over all ranks."""

    epoch: int
    world_size: int
    ranks: list[list[tuple[Crop, ...]]]
    n_q: int
    dropped_rows: list[int]
    skipped_short: int
    split_batches: int

    @property
    def batches_per_rank(self) -> int:
        return len(self.ranks[0]) if self.ranks else 0

    def frames_per_rank(self) -> list[int]:
        return [sum(c.frames for b in batches for c in b) for batches in self.ranks]

    def padding_waste(self) -> float:
        """Padded codes that hold no code, as a fraction of all padded codes of the epoch."""
        real = sum(self.frames_per_rank())
        padded = sum(len(b) * max(c.frames for c in b) for batches in self.ranks for b in batches)
        return 1.0 - real / padded if padded else 0.0

    def report(self) -> str:
        frames = self.frames_per_rank()
        return (f"epoch {self.epoch}: {self.world_size} rank(s) x {self.batches_per_rank} batches, "
                f"{sum(len(b) for r in self.ranks for b in r)} rows, frames per rank {min(frames, default=0)}"
                f"..{max(frames, default=0)}, padding waste {self.padding_waste():.1%}, "
                f"{self.split_batches} batch(es) split, {len(self.dropped_rows)} row(s) dropped as remainder, "
                f"{self.skipped_short} row(s) shorter than min_frames skipped")


def length_buckets(lengths: np.ndarray, num_buckets: int) -> np.ndarray:
    """Upper-exclusive bucket boundaries: the (1/n .. (n-1)/n) quantiles of `lengths`, deduplicated.
    A length L goes to bucket `searchsorted(boundaries, L, side="right")`."""
    if len(lengths) == 0 or num_buckets == 1:
        return np.zeros(0, dtype=np.int64)
    qs = np.quantile(lengths, np.linspace(0, 1, num_buckets + 1)[1:-1], method="higher")
    return np.unique(qs.astype(np.int64))


def crops(frames: np.ndarray, cfg: BatchConfig, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, length) per row for this epoch: a seeded random window of max_frames in longer rows."""
    lengths = frames if cfg.max_frames is None else np.minimum(frames, cfg.max_frames)
    slack = frames - lengths
    rng = np.random.default_rng([cfg.seed, epoch, 1])
    starts = (rng.random(len(frames)) * (slack + 1)).astype(np.int64)
    return np.minimum(starts, slack), lengths


def plan_epoch(frames: np.ndarray, n_q: int, cfg: BatchConfig, epoch: int, world_size: int = 1) -> EpochPlan:
    """The plan of `epoch` for rows of `frames` [N] lengths, read with `n_q` codebooks."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    frames = np.asarray(frames, dtype=np.int64)
    starts, lengths = crops(frames, cfg, epoch)
    keep = np.flatnonzero(lengths >= cfg.min_frames)
    too_long = lengths[keep] * n_q > cfg.max_tokens
    if too_long.any():
        longest = int(lengths[keep].max())
        raise ValueError(f"{int(too_long.sum())} row(s) of up to {longest} frames x {n_q} codebooks do not fit "
                         f"max_tokens={cfg.max_tokens}; crop them (max_frames) or raise max_tokens")
    rng = np.random.default_rng([cfg.seed, epoch, 0])
    bounds = length_buckets(lengths[keep], cfg.num_buckets)
    bucket = np.searchsorted(bounds, lengths[keep], side="right")
    batches: list[list[int]] = []
    for b in range(len(bounds) + 1):
        rows = keep[bucket == b]
        current: list[int] = []
        longest = 0
        for row in rows[rng.permutation(len(rows))].tolist():
            if current and (len(current) + 1) * max(longest, lengths[row]) * n_q > cfg.max_tokens:
                batches.append(current)
                current, longest = [], 0
            current.append(row)
            longest = max(longest, int(lengths[row]))
        if current:
            batches.append(current)
    batches = [batches[i] for i in rng.permutation(len(batches))]
    batches, split, dropped = _to_multiple(batches, world_size)
    ranks = _balance(batches, lengths, world_size)
    plan = [[tuple(Crop(r, int(starts[r]), int(lengths[r])) for r in batches[i]) for i in rank] for rank in ranks]
    return EpochPlan(epoch, world_size, plan, n_q, dropped, len(frames) - len(keep), split)


def _to_multiple(batches: list[list[int]], world_size: int) -> tuple[list[list[int]], int, list[int]]:
    """Split the largest batches in two until the count is a multiple of world_size; when only
    single-row batches are left, drop the last batches instead. Returns (batches, splits, dropped rows)."""
    need = -len(batches) % world_size
    heap = [(-len(b), i) for i, b in enumerate(batches) if len(b) > 1]
    heapq.heapify(heap)
    splits = 0
    while need and heap:
        _, i = heapq.heappop(heap)
        half = len(batches[i]) // 2
        batches.append(batches[i][half:])
        batches[i] = batches[i][:half]
        for j in (i, len(batches) - 1):
            if len(batches[j]) > 1:
                heapq.heappush(heap, (-len(batches[j]), j))
        need -= 1
        splits += 1
    dropped: list[int] = []
    extra = len(batches) % world_size
    if extra:
        dropped = [r for b in batches[-extra:] for r in b]
        batches = batches[:-extra]
    return batches, splits, dropped


def _balance(batches: list[list[int]], lengths: np.ndarray, world_size: int) -> list[list[int]]:
    """Batch numbers per rank: equal counts, greedy by frames (largest batch to the lightest rank with
    room), each rank's batches kept in the shuffled order."""
    per_rank = len(batches) // world_size
    load = [0] * world_size
    owned: list[list[int]] = [[] for _ in range(world_size)]
    sizes = [int(lengths[b].sum()) for b in batches]
    for i in sorted(range(len(batches)), key=lambda i: (-sizes[i], i)):
        rank = min((r for r in range(world_size) if len(owned[r]) < per_rank), key=lambda r: (load[r], r))
        owned[rank].append(i)
        load[rank] += sizes[i]
    return [sorted(o) for o in owned]
