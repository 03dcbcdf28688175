"""Mimi's causal SEANet encoder and decoder, and the strided convolutions around the transformers.

Module names are transformers' (`MimiEncoder.layers.N`, `MimiConv1d.conv`), so `save_pretrained` keys
load as they are; the parameter-free ELUs keep their places in `layers`.

Why right padding cannot reach an item's frames
-----------------------------------------------
Every convolution is causal: its input is padded on the left only (kernel - stride samples: zeros, or
copies of the first sample for the `replicate` downsampling convolution), so output j reads inputs up
to j * stride + stride - 1 and never further. An item of n valid inputs has ceil(n / stride) valid
outputs; only the last one may read past n - 1. Alone, transformers pads the input of every
convolution on the right with just enough to complete that last window (`_get_extra_padding_for_conv1d`):
zeros (`constant` mode, all SEANet convolutions) or copies of the last valid sample (the `replicate`
downsampling convolution). In a batch padded to a longer item, those positions hold whatever the
padding region carries (biases make it non-zero after the first layer), so the convolutions here take
each item's valid length at their resolution and, before every strided convolution, write into every
position from n on what transformers' own padding would have put there (a valid output reads only the
first ceil(n / stride) * stride - n of them):

    item b alone:    [ left pad | x_b (n_b) | extra (0 or x_b[n_b - 1]) ]
    item b in batch: [ left pad | x_b (n_b) | extra (same values, written) | other items' padding ... ]

Stride-1 convolutions need nothing: their valid outputs read only valid inputs. The values are written
into the convolution's own input (after the ELU before it), which is where transformers pads. Lengths
per layer: n -> ceil(n / s), so an item of L samples gives ceil(L / 960) SEANet frames and
ceil(L / 1920) code frames, whatever the batch. The decoder is causal too (transposed convolutions
trim kernel - stride samples on the right): an item's first F * hop output samples depend only on its
own F frames, and no mask is needed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..batch_plan import valid_mask
from .config import MimiConfig


def complete_last_window(x: torch.Tensor, lengths: list[int] | None, stride: int, replicate: bool) -> torch.Tensor:
    """x [B, C, T] with every position from n_b on of each item set to what transformers' right padding of the
    item alone holds there (0, or x[b, :, n_b - 1] when `replicate`): the first ceil(n_b / stride) * stride - n_b
    of them are what its last valid output reads; no valid output reads the others. x itself when lengths is
    None or the stride is 1."""
    if lengths is None or stride == 1:
        return x
    total = x.shape[-1]
    inside = valid_mask(lengths, total, x.device)[:, None, :]
    if replicate:
        last = torch.stack([x[b, :, max(n, 1) - 1] for b, n in enumerate(lengths)])[:, :, None]
        fill = last.expand_as(x)
    else:
        fill = torch.zeros((), dtype=x.dtype, device=x.device)
    return torch.where(inside, x, fill)


class CausalConv1d(nn.Module):
    """transformers' `MimiConv1d` with use_causal_conv: left pad kernel - stride, right pad to complete the last
    window; forward(x, lengths) -> (y, lengths at the output rate)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1,
                 bias: bool = True, replicate: bool = False):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride, dilation=dilation, bias=bias)
        self.stride = stride
        self.effective_kernel = (kernel_size - 1) * dilation + 1
        self.left = self.effective_kernel - stride
        self.mode = "replicate" if replicate else "constant"

    def output_length(self, n: int) -> int:
        return math.ceil(n / self.stride)

    def forward(self, x: torch.Tensor, lengths: list[int] | None = None):
        length = x.shape[-1]
        frames = math.ceil((length - self.effective_kernel + self.left) / self.stride + 1) - 1
        extra = frames * self.stride + self.effective_kernel - self.left - length
        x = complete_last_window(x, lengths, self.stride, self.mode == "replicate")
        x = F.pad(x, (self.left, extra), mode=self.mode)
        out_lengths = None if lengths is None else [self.output_length(n) for n in lengths]
        return self.conv(x), out_lengths


class CausalConvTranspose1d(nn.Module):
    """transformers' `MimiConvTranspose1d` (trim_right_ratio 1): all kernel - stride extra samples trimmed on the
    right, so T frames give T * stride samples, each depending on frames up to its own."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int = 1,
                 bias: bool = True):
        super().__init__()
        self.conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride, groups=groups, bias=bias)
        self.trim = kernel_size - stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y[..., : y.shape[-1] - self.trim]


class ResnetBlock(nn.Module):
    """x + conv1x1(ELU(conv_k(ELU(x)))), both causal; `block` holds ELU, conv, ELU, conv (transformers' indices)."""

    def __init__(self, config: MimiConfig, dim: int, dilation: int):
        super().__init__()
        hidden = dim // config.compress
        self.block = nn.ModuleList([
            nn.ELU(), CausalConv1d(dim, hidden, config.residual_kernel_size, dilation=dilation),
            nn.ELU(), CausalConv1d(hidden, dim, 1),
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for layer in self.block:
            y = layer(y)[0] if isinstance(layer, CausalConv1d) else layer(y)
        return x + y


class Encoder(nn.Module):
    """forward(audio [B, 1, T], lengths or None) -> (SEANet latents [B, hidden, ceil(T / 960)], lengths)."""

    def __init__(self, config: MimiConfig):
        super().__init__()
        layers: list[nn.Module] = [CausalConv1d(config.audio_channels, config.num_filters, config.kernel_size)]
        width = config.num_filters
        for ratio in reversed(config.upsampling_ratios):
            for j in range(config.num_residual_layers):
                layers.append(ResnetBlock(config, width, config.dilation_growth_rate**j))
            layers += [nn.ELU(), CausalConv1d(width, width * 2, kernel_size=2 * ratio, stride=ratio)]
            width *= 2
        layers += [nn.ELU(), CausalConv1d(width, config.hidden_size, config.last_kernel_size)]
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, lengths: list[int] | None = None):
        for layer in self.layers:
            if isinstance(layer, CausalConv1d):
                x, lengths = layer(x, lengths)
            else:
                x = layer(x)
        return x, lengths


class Decoder(nn.Module):
    """forward(latents [B, hidden, T]) -> audio [B, 1, T * 960]; causal, so no lengths are needed."""

    def __init__(self, config: MimiConfig):
        super().__init__()
        width = config.num_filters * 2 ** len(config.upsampling_ratios)
        layers: list[nn.Module] = [CausalConv1d(config.hidden_size, width, config.kernel_size)]
        for ratio in config.upsampling_ratios:
            layers += [nn.ELU(), CausalConvTranspose1d(width, width // 2, kernel_size=2 * ratio, stride=ratio)]
            for j in range(config.num_residual_layers):
                layers.append(ResnetBlock(config, width // 2, config.dilation_growth_rate**j))
            width //= 2
        layers += [nn.ELU(), CausalConv1d(config.num_filters, config.audio_channels, config.last_kernel_size)]
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)[0] if isinstance(layer, CausalConv1d) else layer(x)
        return x
