"""Mini-batch k-means over feature rows that need not fit in memory, reproducible from a seed.

    rows(index [B]) -> float [B, D]      any random-access store (a memory-mapped feature file)
    init: k-means++ on `init_size` seeded rows; then `steps` mini-batches of `batch_size` seeded rows:
        each row goes to its nearest center (`codewords.nearest`, the project's one search), and each
        center moves to the running mean of every row it has been given (learning rate 1 / its count)

Reproducibility: every random choice comes from one CPU generator seeded with `seed`, and the per-center
sums are a one-hot matrix product (deterministic on CUDA, unlike `index_add_`), so the same seed, rows
and device give the same centroid bytes; a CPU and a GPU fit agree only to float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .codewords import nearest


@dataclass
class KMeansResult:
    centers: torch.Tensor  # float32 [k, D] on the CPU
    counts: torch.Tensor  # int64 [k]: rows each center was given over all mini-batches
    inertia: list[float]  # mean squared distance of each mini-batch to its nearest center, before its update


def squared_distance(x: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    return (x - center).pow(2).sum(1)


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """x [N, D] (N >= k) -> k rows of x chosen by greedy k-means++: each next center is, of 2 + ln(k)
    candidate rows drawn with probability proportional to their squared distance to the nearest center so
    far, the one that lowers the total squared distance most (draws from `generator`)."""
    n = x.shape[0]
    if n < k:
        raise ValueError(f"k-means++ needs at least k={k} rows; got {n}")
    trials = 2 + int(math.log(k))
    first = int(torch.randint(n, (1,), generator=generator))
    chosen = [first]
    d2 = squared_distance(x, x[first])
    for _ in range(1, k):
        cumulative = d2.double().cumsum(0).cpu()
        total = float(cumulative[-1])
        if total == 0.0:  # every row coincides with a center: take unused rows in order
            chosen.append(next(i for i in range(n) if i not in set(chosen)))
            continue
        u = torch.rand(trials, generator=generator, dtype=torch.float64) * total
        candidates = torch.searchsorted(cumulative, u, right=True).clamp(max=n - 1)
        options = torch.minimum(d2[None], torch.cdist(x[candidates.to(x.device)], x).pow(2))
        best = int(options.double().sum(1).argmin())
        chosen.append(int(candidates[best]))
        d2 = options[best]
    return x[torch.tensor(chosen, device=x.device)].clone()


def minibatch_kmeans(rows: Callable[[torch.Tensor], torch.Tensor], num_rows: int, k: int, *, seed: int = 0,
                     batch_size: int = 10000, steps: int = 300, init_size: int | None = None,
                     device: str | torch.device = "cpu",
                     progress: Callable[[int, float], None] | None = None) -> KMeansResult:
    """Centers [k, D] of the `num_rows` rows that `rows(sorted int64 index)` returns (float, CPU or device).

    init_size: rows for k-means++ (default max(3 k, batch_size), at most num_rows); progress(step,
    inertia) is called after each mini-batch. ValueError when there are fewer rows than k."""
    if k < 1 or num_rows < k:
        raise ValueError(f"k-means needs 1 <= k <= the number of feature rows; got k={k}, {num_rows} rows")
    gen = torch.Generator().manual_seed(seed)
    device = torch.device(device)
    init_size = min(num_rows, init_size or max(3 * k, batch_size))
    init_index = torch.randperm(num_rows, generator=gen)[:init_size].sort().values
    centers = kmeans_plus_plus(rows(init_index).to(device).float(), k, gen)
    counts = torch.zeros(k, device=device, dtype=torch.float64)
    inertia = []
    for step in range(steps):
        index = torch.randint(num_rows, (min(batch_size, num_rows),), generator=gen).sort().values
        x = rows(index).to(device).float()
        nearest_index = nearest(x, centers)
        inertia.append(float(squared_distance(x, centers[nearest_index]).mean()))
        onehot = F.one_hot(nearest_index, k).to(x.dtype)
        sums, given = onehot.t() @ x, onehot.sum(0).double()
        counts += given
        filled = given > 0
        rate = (1.0 / counts[filled]).to(x.dtype)[:, None]
        centers[filled] += (sums[filled] - given[filled].to(x.dtype)[:, None] * centers[filled]) * rate
        if progress is not None:
            progress(step, inertia[-1])
    return KMeansResult(centers.float().cpu(), counts.round().long().cpu(), inertia)
