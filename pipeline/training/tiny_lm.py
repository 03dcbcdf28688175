"""A small decoder-only transformer over interleaved codebooks (MusicGen's layout, in miniature).

Each step's input is the sum of one embedding per codebook (the code, or `special_id` for the start
token, pattern holes and padding); a causal transformer runs over the steps; one linear head per
codebook gives the logits of that codebook's code at the step.

    forward(inputs int64 [B, K, S]) -> logits float [B, K, S, V]
"""

from __future__ import annotations

import torch
from torch import nn


class TinyCodebookLM(nn.Module):
    def __init__(self, n_q: int, card: int, dim: int = 96, layers: int = 3, heads: int = 4, max_steps: int = 1024,
                 dropout: float = 0.0):
        super().__init__()
        self.n_q, self.card, self.special_id = n_q, card, card
        self.embed = nn.ModuleList(nn.Embedding(card + 1, dim) for _ in range(n_q))
        self.position = nn.Embedding(max_steps, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout, batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.heads = nn.ModuleList(nn.Linear(dim, card) for _ in range(n_q))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        _, n_q, steps = inputs.shape
        if n_q != self.n_q or steps > self.position.num_embeddings:
            raise ValueError(f"inputs [B, {n_q}, {steps}] do not fit a model of {self.n_q} codebooks and "
                             f"{self.position.num_embeddings} steps")
        x = sum(self.embed[q](inputs[:, q]) for q in range(n_q)) + self.position.weight[:steps]
        causal = nn.Transformer.generate_square_subsequent_mask(steps, device=inputs.device)
        x = self.norm(self.transformer(x, mask=causal, is_causal=True))
        return torch.stack([head(x) for head in self.heads], dim=1)
