"""Nearest-codeword search and Lloyd (k-means) steps: the one copy used by the quantizer, the codebook
fitting of random models and the training initialisation.

Import-free of the model modules (`quantizer`, `codebook_fitting` and `trainer.ema` all import it), so it
closes no cycle.
"""

from __future__ import annotations

import torch


def nearest(x: torch.Tensor, codewords: torch.Tensor) -> torch.Tensor:
    """x [N, D], codewords [K, D] -> index [N] (int64) of the nearest codeword (Euclidean).

    The distance is computed as the reference EnCodec does, -(|x|^2 - 2 x.e + |e|^2), so that float
    rounding, and therefore ties, resolve identically; a tie goes to the lowest index.
    """
    embed = codewords.t()
    dist = -(x.pow(2).sum(1, keepdim=True) - 2 * x @ embed + embed.pow(2).sum(0, keepdim=True))
    return dist.max(dim=-1).indices


def lloyd(x: torch.Tensor, centers: torch.Tensor, iters: int) -> torch.Tensor:
    """x [N, D], centers [K, D] -> centers after `iters` Lloyd steps (updated in place and returned).

    Each step assigns every vector to its `nearest` center and moves each center to the mean of its
    vectors; a center with no vector keeps its value.
    """
    size = centers.shape[0]
    for _ in range(iters):
        index = nearest(x, centers)
        counts = torch.bincount(index, minlength=size).float()
        sums = torch.zeros_like(centers).index_add_(0, index, x)
        filled = counts > 0
        centers[filled] = sums[filled] / counts[filled, None]
    return centers
