"""Padded 1-D convolutions of EnCodec, batched over items of different true lengths.

EnCodec pads every convolution so that a signal of L samples gives ceil(L / stride) outputs:

    causal:      [ left = k_eff - s | x (L samples) | extra ]         (all padding on the left)
    non-causal:  [ left = pt - pt//2 | x | pt//2 + extra ]            (pt = k_eff - s)

    extra = (ceil((L - k_eff + pt) / s)) * s + k_eff - pt - L   (0 when s = 1)

with reflect padding (zeros first when L is not longer than the padding). A batch padded to the
longest item T pads every item as if it had length T: the right padding of a shorter item then
holds its neighbour samples (padding or garbage) instead of the reflection of its own end, and only
the outputs that read that region differ (the last frame of a causal encoder). `PaddedConv1d`
takes the true lengths and rewrites, per item, the few padded samples the single-item path would
have used, so every valid output equals encoding the item alone:

    item b, length L_b < T:   [ left | x_b[:L_b] | refl(x_b) (extra_b) | ignored ... ]

The GroupNorm of the 48 kHz model normalises each item over its valid outputs only (`norm.py`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .batch_plan import to_device, valid_mask
from .norm import LengthGroupNorm


def extra_padding(length: int, kernel: int, stride: int, padding_total: int) -> int:
    """Right padding (samples) that makes the last window complete; see module docstring."""
    n_frames = math.ceil((length - kernel + padding_total) / stride + 1) - 1
    return n_frames * stride + kernel - padding_total - length


def pad1d(x: torch.Tensor, left: int, right: int, mode: str) -> torch.Tensor:
    """F.pad that also reflect-pads inputs shorter than the padding (zero-extends them first)."""
    if mode != "reflect":
        return F.pad(x, (left, right), mode="constant", value=0.0)
    length = x.shape[-1]
    max_pad = max(left, right)
    extra = 0
    if length <= max_pad:
        extra = max_pad - length + 1
        x = F.pad(x, (0, extra))
    padded = F.pad(x, (left, right), mode="reflect")
    return padded[..., : padded.shape[-1] - extra]


class PaddedConv1d(nn.Module):
    """EnCodec's `SConv1d`: padding as above, conv, then optional GroupNorm(1) over (C, T).

    forward(x [B, C_in, T], lengths [B] or None) -> (y [B, C_out, T'], lengths' [B] or None)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        causal: bool = True,
        pad_mode: str = "reflect",
        group_norm: bool = False,
    ):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride, dilation=dilation)
        self.norm = LengthGroupNorm(1, out_channels) if group_norm else None
        self.causal = causal
        self.pad_mode = pad_mode
        self.stride = stride
        self.kernel_eff = (kernel_size - 1) * dilation + 1
        self.padding_total = self.kernel_eff - stride
        self._index_cache: dict[tuple, torch.Tensor | None] = {}

    def paddings(self, length: int) -> tuple[int, int]:
        extra = extra_padding(length, self.kernel_eff, self.stride, self.padding_total)
        if self.causal:
            return self.padding_total, extra
        right = self.padding_total // 2
        return self.padding_total - right, right + extra

    def out_length(self, length: int) -> int:
        left, right = self.paddings(length)
        return (length + left + right - self.kernel_eff) // self.stride + 1

    def _pad_batch(self, x: torch.Tensor, lengths: list[int] | None) -> torch.Tensor:
        total = x.shape[-1]
        left, right = self.paddings(total)
        xp = pad1d(x, left, right, self.pad_mode)
        if lengths is None:
            return xp
        for b, length in enumerate(lengths):
            item_left, item_right = self.paddings(length)
            if length < total and length <= max(item_left, item_right):  # rare (very short items): alone
                xp[b, :, : item_left + length + item_right] = pad1d(
                    x[b, :, :length], item_left, item_right, self.pad_mode
                )
        index = self._tail_index(tuple(lengths), total, x.device)
        if index is not None:  # one gather + scatter for the whole batch (a kernel per item costs launches on CUDA)
            b, dst, src = index
            xp[b, :, dst] = x[b, :, src] if self.pad_mode == "reflect" else 0.0
        return xp

    def _tail_index(self, lengths: tuple[int, ...], total: int, device: torch.device) -> torch.Tensor | None:
        """(item, destination in the padded input, source in x) of every tail sample to rewrite, as an
        int64 [3, N] tensor on `device`, or None; cached per (lengths, total, device), so a batch met
        again (a retried pass, verify's re-encode) copies nothing to the device."""
        key = (lengths, total, device)
        if key not in self._index_cache:
            left, _ = self.paddings(total)
            tails = []  # reflect: x[n - 2 - j] after item b's last sample
            for b, length in enumerate(lengths):
                item_left, item_right = self.paddings(length)
                if length < total and length > max(item_left, item_right):
                    tails.extend((b, left + length + j, length - 2 - j) for j in range(item_right))
            if len(self._index_cache) >= 8:
                self._index_cache.pop(next(iter(self._index_cache)))
            self._index_cache[key] = to_device(torch.tensor(tails).t().contiguous(), device) if tails else None
        return self._index_cache[key]

    def forward(self, x: torch.Tensor, lengths: list[int] | None = None):
        y = self.conv(self._pad_batch(x, lengths))
        out_lengths = None if lengths is None else [self.out_length(n) for n in lengths]
        if self.norm is not None:
            y = self.norm(y, out_lengths)
        return y, out_lengths


class PaddedConvTranspose1d(nn.Module):
    """EnCodec's `SConvTranspose1d`: transposed conv, optional GroupNorm, then trim k - s samples.

    Causal: ceil((k - s) * trim_right_ratio) trimmed on the right, the rest on the left.
    In a batch of items of different frame counts, the frames past each item's end are zeroed
    first where they would reach its kept outputs or its GroupNorm (which, as for the item alone,
    covers its (F_b - 1) * stride + k untrimmed outputs).
    forward(x [B, C_in, F], lengths) -> (y [B, C_out, F * stride], lengths * stride)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        causal: bool = True,
        trim_right_ratio: float = 1.0,
        group_norm: bool = False,
    ):
        super().__init__()
        self.conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride)
        self.norm = LengthGroupNorm(1, out_channels) if group_norm else None
        self.stride = stride
        self.kernel_size = kernel_size
        padding_total = kernel_size - stride
        right = math.ceil(padding_total * trim_right_ratio) if causal else padding_total // 2
        self.trim = (padding_total - right, right)

    def forward(self, x: torch.Tensor, lengths: list[int] | None = None):
        mixed = lengths is not None and any(n != x.shape[-1] for n in lengths)
        if mixed and (self.norm is not None or self.trim[0] > 0):
            x = x.masked_fill(~valid_mask(lengths, x.shape[-1], x.device)[:, None], 0.0)
        y = self.conv(x)
        if self.norm is not None:
            y = self.norm(y, [(n - 1) * self.stride + self.kernel_size for n in lengths] if mixed else None)
        left, right = self.trim
        y = y[..., left : y.shape[-1] - right]
        out_lengths = None if lengths is None else [n * self.stride for n in lengths]
        return y, out_lengths
