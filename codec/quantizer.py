"""Residual vector quantizer: codebook k quantizes what codebooks 0..k-1 left over.

So the codes at a lower bandwidth are exactly the first rows of the codes at a higher one.
"""

from __future__ import annotations

import torch
from torch import nn

from .codewords import nearest


class Codebook(nn.Module):
    def __init__(self, codebook_size: int, dim: int):
        super().__init__()
        self.embed = nn.Parameter(torch.zeros(codebook_size, dim), requires_grad=False)

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, D] -> index [N] of the nearest codeword (Euclidean; `codewords.nearest`)."""
        return nearest(x, self.embed)


class ResidualVectorQuantizer(nn.Module):
    def __init__(self, num_quantizers: int, codebook_size: int, dim: int):
        super().__init__()
        self.layers = nn.ModuleList([_Layer(codebook_size, dim) for _ in range(num_quantizers)])

    def encode(self, latents: torch.Tensor, num_quantizers: int) -> torch.Tensor:
        """latents [B, D, F] -> codes [B, n_q, F] (int64)."""
        batch, dim, frames = latents.shape
        residual = latents.permute(0, 2, 1).reshape(-1, dim)
        codes = []
        for layer in self.layers[:num_quantizers]:
            index = layer.codebook.nearest(residual)
            residual = residual - layer.codebook.embed[index]
            codes.append(index)
        return torch.stack(codes).view(num_quantizers, batch, frames).transpose(0, 1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, n_q, F] -> latents [B, D, F]."""
        out = None
        for k in range(codes.shape[1]):
            q = nn.functional.embedding(codes[:, k], self.layers[k].codebook.embed)
            out = q if out is None else out + q
        return out.permute(0, 2, 1)


class _Layer(nn.Module):
    """Holds one codebook under the name transformers uses (`layers.<k>.codebook.embed`)."""

    def __init__(self, codebook_size: int, dim: int):
        super().__init__()
        self.codebook = Codebook(codebook_size, dim)
