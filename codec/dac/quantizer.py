"""DAC's residual vector quantizer: factorized codes, looked up by cosine similarity.

Each codebook k projects the residual [B, D, T] (D = hidden_size, 1024) to codebook_dim (8) with a
kernel-1 convolution (`in_proj`), L2-normalises both the projection and the codebook entries, and
picks the entry of highest cosine similarity (the arg max of -(|e|^2 - 2 e.c) + |c|^2, the reference's
formula, kept op for op so that near-ties resolve the same way). The chosen entry, projected back to D
(`out_proj`), is subtracted from the residual. Codebook k depends only on codebooks 0..k-1: fewer
codebooks are a prefix of more.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import DacConfig


class VectorQuantize(nn.Module):
    def __init__(self, config: DacConfig):
        super().__init__()
        self.in_proj = nn.Conv1d(config.hidden_size, config.codebook_dim, kernel_size=1)
        self.out_proj = nn.Conv1d(config.codebook_dim, config.hidden_size, kernel_size=1)
        self.codebook = nn.Embedding(config.codebook_size, config.codebook_dim)

    def nearest(self, projected: torch.Tensor) -> torch.Tensor:
        """projected [B, codebook_dim, T] -> codes int64 [B, T]."""
        batch, dim, steps = projected.shape
        e = F.normalize(projected.permute(0, 2, 1).reshape(batch * steps, dim))
        c = F.normalize(self.codebook.weight)
        score = -(e.pow(2).sum(1, keepdim=True) - 2 * e @ c.t()) + c.pow(2).sum(1, keepdim=True).t()
        return score.max(1)[1].reshape(batch, steps)

    def quantize(self, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """residual [B, D, T] -> (codes [B, T], the quantized contribution [B, D, T])."""
        projected = self.in_proj(residual)
        codes = self.nearest(projected)
        chosen = self.codebook(codes).transpose(1, 2)
        # the reference's straight-through sum, which is not bit-equal to `chosen` in floating point
        return codes, self.out_proj(projected + (chosen - projected))

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, T] -> contribution [B, D, T]."""
        return self.out_proj(self.codebook(codes).transpose(1, 2))


class ResidualVectorQuantizer(nn.Module):
    def __init__(self, config: DacConfig):
        super().__init__()
        self.quantizers = nn.ModuleList(VectorQuantize(config) for _ in range(config.n_codebooks))

    def encode(self, latents: torch.Tensor, n_q: int) -> torch.Tensor:
        """latents [B, D, T] -> codes int64 [B, n_q, T]."""
        residual, codes = latents, []
        for quantizer in self.quantizers[:n_q]:
            k, contribution = quantizer.quantize(residual)
            codes.append(k)
            residual = residual - contribution
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, n_q, T] -> latents [B, D, T] (the sum of the codebooks' contributions)."""
        latents = 0.0
        for k in range(codes.shape[1]):
            latents = latents + self.quantizers[k].embed(codes[:, k])
        return latents
