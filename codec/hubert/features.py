"""HuBERT's convolutional front end (waveform -> 50 frames/s), exact for right-padded batches.

    audio [B, T] --conv 10/5--> norm, GELU --conv 3/2--> ... --conv 2/2--> [B, 512, F]

Each convolution is unpadded, so the valid outputs of an item (`HubertConfig.frames_after`) read only its
valid inputs; padding can reach them only through a normalisation over time. The base model's GroupNorm
(one group per channel, after the first convolution) normalises each channel over the whole time axis,
so transformers' batched output depends on the padding; here its mean and variance are taken over each
item's valid frames only, which gives every item the statistics it has alone. The large model's
LayerNorm acts on each frame alone and needs nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import HubertConfig


def masked_group_norm(x: torch.Tensor, frames: list[int], norm: nn.GroupNorm) -> torch.Tensor:
    """x [B, C, T], one group per channel -> each item normalised over its first `frames[b]` steps (biased
    variance, `norm.eps`), like `norm` applied to that item alone; steps past them are left as they are
    (the next convolutions' valid outputs never read them)."""
    if all(n == x.shape[-1] for n in frames):
        return norm(x)
    out = x.clone()
    for b, n in enumerate(frames):
        out[b : b + 1, :, :n] = norm(x[b : b + 1, :, :n])
    return out


class ConvLayer(nn.Module):
    """Conv1d, then a GroupNorm ("group", first layer only), a LayerNorm over channels ("layer") or nothing,
    then GELU; module names are transformers' (`conv`, `layer_norm`)."""

    def __init__(self, config: HubertConfig, index: int):
        super().__init__()
        channels_in = config.conv_dim[index - 1] if index > 0 else 1
        channels = config.conv_dim[index]
        self.conv = nn.Conv1d(channels_in, channels, config.conv_kernel[index], config.conv_stride[index],
                              bias=config.conv_bias)
        self.kind = "layer" if config.feat_extract_norm == "layer" else ("group" if index == 0 else None)
        if self.kind == "group":
            self.layer_norm = nn.GroupNorm(channels, channels, affine=True)
        elif self.kind == "layer":
            self.layer_norm = nn.LayerNorm(channels, elementwise_affine=True)

    def forward(self, x: torch.Tensor, frames: list[int]) -> torch.Tensor:
        x = self.conv(x)
        if self.kind == "group":
            x = masked_group_norm(x, frames, self.layer_norm)
        elif self.kind == "layer":
            x = self.layer_norm(x.transpose(1, 2)).transpose(1, 2)
        return F.gelu(x)


class FeatureEncoder(nn.Module):
    def __init__(self, config: HubertConfig):
        super().__init__()
        self.config = config
        self.conv_layers = nn.ModuleList(ConvLayer(config, i) for i in range(len(config.conv_dim)))

    def forward(self, audio: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        """audio [B, T], item b valid for `lengths[b]` samples -> [B, C, F] (item b valid for its frame count)."""
        per_layer = [self.config.frames_after(n) for n in lengths]
        x = audio[:, None]
        for i, layer in enumerate(self.conv_layers):
            x = layer(x, [frames[i] for frames in per_layer])
        return x


def normalize_items(audio: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """audio [B, T] -> each item's first `lengths[b]` samples at zero mean and unit variance
    ((x - mean) / sqrt(var + 1e-7), biased variance: transformers' `Wav2Vec2FeatureExtractor`
    do_normalize), the padding after them 0. Statistics in float64, the result in audio's dtype."""
    out = torch.zeros_like(audio)
    for b, n in enumerate(lengths):
        item = audio[b, :n].double()
        out[b, :n] = ((item - item.mean()) / torch.sqrt(item.var(unbiased=False) + 1e-7)).to(audio.dtype)
    return out
