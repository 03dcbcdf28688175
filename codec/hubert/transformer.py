"""HuBERT's transformer: a convolutional position embedding, then bidirectional self-attention layers.

    h [B, F, D] -> padding frames set to 0 -> h + GELU(conv_k128_g16(h)) -> (base: LayerNorm) -> layers

Layers (module names are transformers'): base ("post-LN") x = LN(x + attn(x)); x = LN2(x + FFN(x));
large ("stable", pre-LN) x = x + attn(LN(x)); x = x + FFN(LN2(x)), and a final LayerNorm that
transformers >= 5 applies to `last_hidden_state` only, not to `hidden_states[L]`.

Why right padding is invisible: the position convolution reads neighbouring frames, so padding frames
are zeroed before it (an item alone sees the convolution's own zero padding there); attention gets a
key mask so no valid frame attends to a padding frame; everything else acts on each frame alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import HubertConfig


class PositionalConvEmbedding(nn.Module):
    """Conv1d(D, D, kernel K, padding K // 2, groups G) with weight norm folded; an even K drops the last
    output frame (transformers' `HubertSamePadLayer`); then GELU."""

    def __init__(self, config: HubertConfig):
        super().__init__()
        kernel = config.num_conv_pos_embeddings
        self.conv = nn.Conv1d(config.hidden_size, config.hidden_size, kernel, padding=kernel // 2,
                              groups=config.num_conv_pos_embedding_groups)
        self.remove = 1 if kernel % 2 == 0 else 0

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.conv(h.transpose(1, 2))
        if self.remove:
            out = out[:, :, : -self.remove]
        return F.gelu(out).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, config: HubertConfig):
        super().__init__()
        width = config.hidden_size
        self.heads = config.num_attention_heads
        self.head_dim = width // self.heads
        self.q_proj, self.k_proj = nn.Linear(width, width), nn.Linear(width, width)
        self.v_proj, self.out_proj = nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x [B, F, D]; mask bool [B, 1, 1, F] (True: a valid key) or None when every frame is valid."""
        batch, steps, _ = x.shape
        q, k, v = (proj(x).view(batch, steps, self.heads, self.head_dim).transpose(1, 2)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.head_dim**-0.5)
        return self.out_proj(out.transpose(1, 2).reshape(batch, steps, -1))


class FeedForward(nn.Module):
    def __init__(self, config: HubertConfig):
        super().__init__()
        self.intermediate_dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output_dense = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_dense(F.gelu(self.intermediate_dense(x)))


class EncoderLayer(nn.Module):
    def __init__(self, config: HubertConfig):
        super().__init__()
        self.attention = Attention(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pre_norm = config.do_stable_layer_norm

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.attention(self.layer_norm(x), mask)
            return x + self.feed_forward(self.final_layer_norm(x))
        x = self.layer_norm(x + self.attention(x, mask))
        return self.final_layer_norm(x + self.feed_forward(x))


class Encoder(nn.Module):
    def __init__(self, config: HubertConfig):
        super().__init__()
        self.config = config
        self.pos_conv_embed = PositionalConvEmbedding(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, h: torch.Tensor, frames: list[int], layer: int) -> torch.Tensor:
        """h [B, F, D] projected features, item b valid for `frames[b]` frames -> `hidden_states[layer]`
        [B, F, D] (padding frames hold garbage); layers after `layer` are not run."""
        steps = h.shape[1]
        mask = None
        if any(n != steps for n in frames):
            valid = torch.arange(steps, device=h.device)[None, :] < torch.tensor(frames, device=h.device)[:, None]
            h = h.masked_fill(~valid[:, :, None], 0.0)
            mask = valid[:, None, None, :]
        h = h + self.pos_conv_embed(h)
        if not self.config.do_stable_layer_norm:
            h = self.layer_norm(h)
        for block in self.layers[:layer]:
            h = block(h, mask)
        return h
