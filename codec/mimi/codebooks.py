"""Filling Mimi's Euclidean codebooks from latents, level by level, in the space the lookup uses.

A random Mimi's codebooks are all zero (`embed_sum` = 0), so every code would be 0. Each level here gets
entries drawn from the projected residuals that the levels before it leave (the encoder's own recursion,
separately in the semantic and the acoustic quantizer), refined by a few Lloyd (k-means) steps;
`cluster_usage` is set to 1 so that an entry is its `embed_sum`. Fitting data is short next to 2048
entries per level (12.5 frames/s), so see `_fit_level` for how the rest are filled.
"""

from __future__ import annotations

import torch

from .quantizer import ResidualVectorQuantizer, SplitResidualVectorQuantizer


def _fit_level(residual: torch.Tensor, size: int, iters: int, generator: torch.Generator | None) -> torch.Tensor:
    """residual [N, D] -> entries [size, D]: k-means on min(size, N / 4) clusters (so that a level never
    quantizes its residual to zero and leaves nothing for the next), the other entries copies of the
    centres moved by 5% of the residual's spread."""
    n = residual.shape[0]
    k = max(1, min(size, n // 4))
    centers = residual[torch.randperm(n, generator=generator)[:k]].clone()
    for _ in range(iters):  # empty clusters keep their entry
        assign = torch.cdist(residual, centers).argmin(1)
        sums = torch.zeros_like(centers).index_add_(0, assign, residual)
        counts = torch.bincount(assign, minlength=k)
        filled = counts > 0
        centers[filled] = sums[filled] / counts[filled, None]
    if k < size:
        extra = centers[torch.randint(k, (size - k,), generator=generator)]
        extra = extra + 0.05 * residual.std() * torch.randn(extra.shape, generator=generator)
        centers = torch.cat([centers, extra])
    return centers


def _fit_rvq(rvq: ResidualVectorQuantizer, latents: torch.Tensor, iters: int, generator) -> None:
    projected = rvq.input_proj(latents.float())
    residual = projected.permute(0, 2, 1).reshape(-1, projected.shape[1])
    for layer in rvq.layers:
        book = layer.codebook
        book.embed_sum.copy_(_fit_level(residual, book.embed_sum.shape[0], iters, generator))
        book.cluster_usage.fill_(1.0)
        residual = residual - book.embed[torch.cdist(residual[None], book.embed[None])[0].argmin(1)]


@torch.no_grad()
def fit_codebooks(quantizer: SplitResidualVectorQuantizer, latents: torch.Tensor, iters: int = 3,
                  generator: torch.Generator | None = None) -> None:
    """latents [B, 512, T] (the encoder's output, before quantization) -> every codebook set as above."""
    _fit_rvq(quantizer.semantic_residual_vector_quantizer, latents, iters, generator)
    _fit_rvq(quantizer.acoustic_residual_vector_quantizer, latents, iters, generator)
