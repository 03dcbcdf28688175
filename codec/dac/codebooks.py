"""Filling DAC's codebooks from latents, level by level, in the space the lookup uses.

DAC picks codes by cosine similarity between the L2-normalised `in_proj` projection of the residual and
the L2-normalised codebook entries, so codebooks are fitted there: each level's entries are the
projections of randomly drawn latent frames (their norms kept, so decoding adds back a residual of the
right size), refined by `iters` steps of spherical k-means. Reference models start from random
codebooks; tests fit them to real audio so codes spread over many entries.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .quantizer import ResidualVectorQuantizer


def fit_codebooks(quantizer: ResidualVectorQuantizer, latents: torch.Tensor, iters: int = 2,
                  generator: torch.Generator | None = None) -> None:
    """latents [B, D, T] -> every codebook set as above; the residual passed to level k is what the fitted
    levels 0..k-1 leave (the encoder's own recursion)."""
    residual = latents.float()
    for vq in quantizer.quantizers:
        projected = vq.in_proj(residual).permute(0, 2, 1).reshape(-1, vq.codebook.weight.shape[1])
        size = vq.codebook.weight.shape[0]
        picks = torch.randint(projected.shape[0], (size,), generator=generator)
        centers = projected[picks] + 1e-3 * projected.std() * torch.randn(size, projected.shape[1], generator=generator)
        unit = F.normalize(projected)
        for _ in range(iters):  # spherical k-means; empty clusters keep their entry
            assign = (unit @ F.normalize(centers).t()).argmax(1)
            sums = torch.zeros_like(centers).index_add_(0, assign, projected)
            counts = torch.bincount(assign, minlength=size)
            filled = counts > 0
            centers[filled] = sums[filled] / counts[filled, None]
        vq.codebook.weight.data.copy_(centers)
        _, contribution = vq.quantize(residual)
        residual = residual - contribution
