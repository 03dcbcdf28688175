"""Mimi's split residual vector quantizer: 1 semantic codebook + N acoustic ones, Euclidean lookups.

Two residual quantizers read the same latents [B, 512, T]: the semantic one (its first
`num_semantic_quantizers` codebooks: codes 0..S-1) and the acoustic one (codes S..): each projects the
latents to 256 dims (kernel-1 convolution, no bias), then codebook k picks the entry nearest in
Euclidean distance to the residual the codebooks before it in the same quantizer leave. Decoding sums
the two quantizers' projections back to 512 dims. Fewer codebooks are a prefix of more.

A codebook's entries are `embed_sum / max(cluster_usage, 1e-5)` (the EMA statistics transformers and
kyutai store); the lookup is transformers' `torch.cdist(...).argmin`, op for op, so near-ties break the
same way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import MimiConfig


class EuclideanCodebook(nn.Module):
    def __init__(self, config: MimiConfig):
        super().__init__()
        self.register_buffer("cluster_usage", torch.ones(config.codebook_size))
        self.register_buffer("embed_sum", torch.zeros(config.codebook_size, config.codebook_dim))

    @property
    def embed(self) -> torch.Tensor:
        return self.embed_sum / self.cluster_usage.clamp(min=1e-5)[:, None]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, D, T] -> codes int64 [B, T]."""
        batch, dim, steps = x.shape
        flat = x.permute(0, 2, 1).reshape(-1, dim)
        return torch.cdist(flat[None].float(), self.embed[None].float(), p=2)[0].argmin(dim=-1).view(batch, steps)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, T] -> entries [B, D, T]."""
        return F.embedding(codes, self.embed).permute(0, 2, 1)


class VectorQuantization(nn.Module):
    """transformers' `MimiVectorQuantization`: a holder for the codebook (keeps the checkpoint's key names)."""

    def __init__(self, config: MimiConfig):
        super().__init__()
        self.codebook = EuclideanCodebook(config)


class ResidualVectorQuantizer(nn.Module):
    def __init__(self, config: MimiConfig, num_quantizers: int):
        super().__init__()
        dim, hidden = config.vector_quantization_hidden_dimension, config.hidden_size
        self.layers = nn.ModuleList(VectorQuantization(config) for _ in range(num_quantizers))
        self.input_proj = nn.Conv1d(hidden, dim, 1, bias=False)
        self.output_proj = nn.Conv1d(dim, hidden, 1, bias=False)

    def encode(self, latents: torch.Tensor, n_q: int) -> torch.Tensor:
        """latents [B, 512, T] -> codes [B, n_q, T]."""
        residual, codes = self.input_proj(latents), []
        for layer in self.layers[:n_q]:
            k = layer.codebook.encode(residual)
            residual = residual - layer.codebook.decode(k)
            codes.append(k)
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, n_q, T] -> [B, 512, T]."""
        total = torch.full((), 0.0, device=codes.device)
        for k in range(codes.shape[1]):
            total = total + self.layers[k].codebook.decode(codes[:, k])
        return self.output_proj(total)


class SplitResidualVectorQuantizer(nn.Module):
    def __init__(self, config: MimiConfig):
        super().__init__()
        self.semantic = config.num_semantic_quantizers
        self.semantic_residual_vector_quantizer = ResidualVectorQuantizer(config, self.semantic)
        self.acoustic_residual_vector_quantizer = ResidualVectorQuantizer(config, config.num_quantizers - self.semantic)

    def encode(self, latents: torch.Tensor, n_q: int) -> torch.Tensor:
        """latents [B, 512, T] -> codes int64 [B, n_q, T]; n_q >= the semantic codebooks."""
        codes = self.semantic_residual_vector_quantizer.encode(latents, self.semantic)
        if n_q > self.semantic:
            acoustic = self.acoustic_residual_vector_quantizer.encode(latents, n_q - self.semantic)
            codes = torch.cat([codes, acoustic], dim=1)
        return codes

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, n_q, T] -> latents [B, 512, T]."""
        out = self.semantic_residual_vector_quantizer.decode(codes[:, : self.semantic])
        if codes.shape[1] > self.semantic:
            out = out + self.acoustic_residual_vector_quantizer.decode(codes[:, self.semantic:])
        return out
