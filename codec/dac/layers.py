"""DAC's encoder and decoder (Snake activations, plain convolutions: weight norm is folded at load time),
batched over items of different true lengths.

Module names are transformers' (`DacEncoder`, `DacDecoder`), so its `save_pretrained` keys load as they are.

Why a batch cannot change a code
--------------------------------
Every convolution of DAC pads both sides of its input with zeros and is not causal: an output near an
item's end reads up to (kernel - 1) * dilation / 2 samples past it. Alone, an item (zero-padded to a
multiple of the hop, as `DacFeatureExtractor` does) sees the convolution's own zeros there. In a batch
padded to a longer item it would see whatever sits in its padding region instead — and that region
is not zero after the first layer: the biases make it non-zero and Snake (x + sin^2(a x) / a) carries
it on through the residual stream. So every convolution here takes the items' valid lengths at its
resolution and zeroes each item's padding region of its input first:

    item b alone:    [ 0 (conv pad) | x_b (n_b)      | 0 (conv pad) ]
    item b in batch: [ 0 (conv pad) | x_b (n_b)      | 0 ... 0 (masked) ... | 0 (conv pad) ]

Each valid output then reads exactly the values it reads alone (up to the rounding of the kernels
the batch's shape selects: `model.py`). Valid lengths per layer are exact
because the job pads every item to a multiple of the hop: a stride-s convolution (kernel 2s, padding
ceil(s/2)) maps n (a multiple of s) to n / s; a transposed one maps n to (n - 1) s - 2 ceil(s/2) + 2s
(n s for even s, n s - 1 for s = 5). The quantizer and the kernel-1 convolutions act on each time step
alone and need no mask.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..batch_plan import valid_mask
from .config import DacConfig


def zero_padding(x: torch.Tensor, lengths: list[int] | None) -> torch.Tensor:
    """x [B, C, T] with x[b, :, lengths[b]:] set to 0; x itself when lengths is None (a uniform batch)."""
    if lengths is None:
        return x
    return x.masked_fill(~valid_mask(lengths, x.shape[-1], x.device)[:, None, :], 0.0)


class Snake1d(nn.Module):
    """x + sin^2(alpha x) / (alpha + 1e-9), alpha per channel [1, C, 1]."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * x).pow(2)


class ResidualUnit(nn.Module):
    """x + conv1x1(snake(conv7_dilated(snake(x)))); the length is kept."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.snake1 = Snake1d(channels)
        self.conv1 = nn.Conv1d(channels, channels, kernel_size=7, dilation=dilation, padding=3 * dilation)
        self.snake2 = Snake1d(channels)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor, lengths: list[int] | None) -> torch.Tensor:
        y = self.conv1(zero_padding(self.snake1(x), lengths))
        return x + self.conv2(self.snake2(y))


def _res_units(channels: int) -> tuple[ResidualUnit, ResidualUnit, ResidualUnit]:
    return ResidualUnit(channels, 1), ResidualUnit(channels, 3), ResidualUnit(channels, 9)


def strided_length(n: int, stride: int) -> int:
    """Outputs of the stride-s convolution (kernel 2s, padding ceil(s/2)) for n inputs."""
    return (n + 2 * math.ceil(stride / 2) - 2 * stride) // stride + 1


def transposed_length(n: int, stride: int) -> int:
    """Outputs of the transposed stride-s convolution (kernel 2s, padding ceil(s/2)) for n inputs."""
    return (n - 1) * stride - 2 * math.ceil(stride / 2) + 2 * stride


class EncoderBlock(nn.Module):
    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.res_unit1, self.res_unit2, self.res_unit3 = _res_units(channels // 2)
        self.snake1 = Snake1d(channels // 2)
        self.conv1 = nn.Conv1d(channels // 2, channels, kernel_size=2 * stride, stride=stride,
                               padding=math.ceil(stride / 2))
        self.stride = stride

    def forward(self, x, lengths):
        for unit in (self.res_unit1, self.res_unit2, self.res_unit3):
            x = unit(x, lengths)
        x = self.conv1(zero_padding(self.snake1(x), lengths))
        return x, None if lengths is None else [strided_length(n, self.stride) for n in lengths]


class DecoderBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.snake1 = Snake1d(in_channels)
        self.conv_t1 = nn.ConvTranspose1d(in_channels, out_channels, kernel_size=2 * stride, stride=stride,
                                          padding=math.ceil(stride / 2))
        self.res_unit1, self.res_unit2, self.res_unit3 = _res_units(out_channels)
        self.stride = stride

    def forward(self, x, lengths):
        x = self.conv_t1(zero_padding(self.snake1(x), lengths))
        lengths = None if lengths is None else [transposed_length(n, self.stride) for n in lengths]
        for unit in (self.res_unit1, self.res_unit2, self.res_unit3):
            x = unit(x, lengths)
        return x, lengths


class Encoder(nn.Module):
    """forward(audio [B, 1, T], lengths [B] or None) -> latents [B, hidden_size, T / hop]; T and every
    length a multiple of the hop."""

    def __init__(self, config: DacConfig):
        super().__init__()
        width = config.encoder_hidden_size
        self.conv1 = nn.Conv1d(1, width, kernel_size=7, padding=3)
        self.block = nn.ModuleList(
            EncoderBlock(width * 2 ** (i + 1), stride) for i, stride in enumerate(config.downsampling_ratios)
        )
        self.snake1 = Snake1d(config.hidden_size)
        self.conv2 = nn.Conv1d(config.hidden_size, config.hidden_size, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, lengths: list[int] | None = None) -> torch.Tensor:
        x = self.conv1(zero_padding(x, lengths))
        for block in self.block:
            x, lengths = block(x, lengths)
        return self.conv2(zero_padding(self.snake1(x), lengths))


class Decoder(nn.Module):
    """forward(latents [B, hidden_size, F], frames [B] or None) -> audio [B, 1, T'] with T' = F * hop for
    even rates (F * hop - 8 for the rates 8, 5, 4, 2 of the 16/24 kHz models: `decoded_length`)."""

    def __init__(self, config: DacConfig):
        super().__init__()
        width = config.decoder_hidden_size
        self.conv1 = nn.Conv1d(config.hidden_size, width, kernel_size=7, padding=3)
        self.block = nn.ModuleList(
            DecoderBlock(width // 2**i, width // 2 ** (i + 1), stride)
            for i, stride in enumerate(config.upsampling_ratios)
        )
        out = width // 2 ** len(config.upsampling_ratios)
        self.snake1 = Snake1d(out)
        self.conv2 = nn.Conv1d(out, 1, kernel_size=7, padding=3)

    def forward(self, x: torch.Tensor, frames: list[int] | None = None) -> torch.Tensor:
        lengths = frames
        x = self.conv1(zero_padding(x, lengths))
        for block in self.block:
            x, lengths = block(x, lengths)
        return torch.tanh(self.conv2(zero_padding(self.snake1(x), lengths)))


def decoded_length(frames: int, config: DacConfig) -> int:
    """Samples the decoder gives for `frames` code frames."""
    n = frames
    for stride in config.upsampling_ratios:
        n = transposed_length(n, stride)
    return n
