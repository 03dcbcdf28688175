"""Filling residual codebooks from latents: k-means per level on what the previous levels left.

Used for seeded random models (reference implementations start with zero codebooks, which make
every code 0 and every comparison pass) and by the benchmark to fit codebooks to real audio.
"""

from __future__ import annotations

import torch

from .codewords import lloyd, nearest
from .quantizer import ResidualVectorQuantizer


def fit_codebooks(quantizer: ResidualVectorQuantizer, latents: torch.Tensor, iters: int = 0,
                  generator: torch.Generator | None = None) -> None:
    """latents [N, D] -> each codebook set from k-means (`iters` Lloyd steps) on the residual.

    Codewords start as Gaussian draws with the residual's per-dimension mean and spread (so every
    level gets distinct, non-zero codewords even from few latents); empty clusters keep theirs.
    """
    residual = latents.float()
    for layer in quantizer.layers:
        embed = layer.codebook.embed
        k = embed.shape[0]
        mean, std = residual.mean(0), residual.std(0)
        centers = mean + torch.randn(k, residual.shape[1], generator=generator) * std
        lloyd(residual, centers, iters)
        embed.data.copy_(centers.to(embed.dtype))
        residual = residual - centers[nearest(residual, centers)]

