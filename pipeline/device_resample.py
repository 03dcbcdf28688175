"""Resampling in torch (polyphase windowed sinc), so it can run on the GPU next to the model.

With the rates reduced to up:down by their gcd, output sample j lies at input time j * down / up.
Its value is the input around that time weighted by a Kaiser-windowed sinc low-pass with cutoff
`rolloff` x the lower Nyquist frequency, `zeros` zero crossings each side. Output j only depends on
j mod up (the phase) through the fractional offset, so the whole thing is one strided conv1d with
`up` output channels (one filter per phase), whose outputs are interleaved:

    x [B, C, T] -zero pad-> conv1d(stride=down, up filters of K taps) -> [B*C, up, M] -> [B, C, round(T*up/down)]

Outside the signal the input is taken as zero, so an item padded with zeros in a batch resamples
exactly as it does alone. This differs from soxr (another filter design, other edge handling) by
a small error concentrated near the cutoff and the two ends; see tests/pipeline/test_device_resample.py.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from codec.batch_plan import to_device

from . import host_memory
from .records import Segment

ZEROS = 24
ROLLOFF = 0.945
KAISER_BETA = 14.77  # about 150 dB of side-lobe suppression of the window


def output_length(num_samples: int, rate_in: int, rate_out: int) -> int:
    """round(num_samples * rate_out / rate_in), halves up: the length soxr gives."""
    return (2 * num_samples * rate_out + rate_in) // (2 * rate_in)


@lru_cache(maxsize=32)
def _filters(rate_in: int, rate_out: int, zeros: int, rolloff: float,
             beta: float) -> tuple[torch.Tensor, int, int, int]:
    """(filters [up, 1, K] float64, up, down, half width in input samples)."""
    g = math.gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    cutoff = rolloff * min(1.0, up / down)  # in cycles per input sample x 2 (1 = input Nyquist)
    width = math.ceil(zeros / cutoff)
    taps = 2 * width + down + 1
    k = torch.arange(taps, dtype=torch.float64)
    phase = torch.arange(up, dtype=torch.float64)[:, None] * down / up
    d = k[None, :] - width - phase  # input index minus output time, [up, K]
    inside = d.abs() <= width
    window = torch.special.i0(beta * torch.sqrt((1 - (d / width) ** 2).clamp_min(0))) / torch.special.i0(
        torch.tensor(beta, dtype=torch.float64))
    h = cutoff * torch.sinc(cutoff * d) * window * inside
    return h[:, None, :], up, down, width


@lru_cache(maxsize=32)
def _filters_on(rate_in: int, rate_out: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The filters of `_filters`, copied to `device` in `dtype` once and kept there."""
    h, _, _, _ = _filters(rate_in, rate_out, ZEROS, ROLLOFF, KAISER_BETA)
    return h.to(device=device, dtype=dtype)


def resample(x: torch.Tensor, rate_in: int, rate_out: int) -> torch.Tensor:
    """x [B, C, T] float at rate_in -> [B, C, output_length(T)] at rate_out, on x's device."""
    if rate_in == rate_out:
        return x
    _, up, down, width = _filters(rate_in, rate_out, ZEROS, ROLLOFF, KAISER_BETA)
    h = _filters_on(rate_in, rate_out, x.device, x.dtype)
    batch, channels, total = x.shape
    n_out = output_length(total, rate_in, rate_out)
    per_phase = math.ceil(n_out / up)
    padded = (per_phase - 1) * down + h.shape[-1]
    flat = F.pad(x.reshape(batch * channels, 1, total), (width, max(0, padded - total - width)))
    y = F.conv1d(flat, h, stride=down)  # [B*C, up, per_phase]
    y = y.transpose(1, 2).reshape(batch, channels, per_phase * up)
    return y[..., :n_out]


def model_length(segment: Segment, model_rate: int) -> int:
    """Samples of `segment` at the model's rate (after resampling, if it is still to be resampled)."""
    if segment.rate is None or segment.rate == model_rate:
        return segment.num_samples
    return output_length(segment.num_samples, segment.rate, model_rate)


def batch_at_model_rate(segments: list[Segment], model_rate: int, device: torch.device | str,
                        padded: int | None = None) -> tuple[torch.Tensor, list[int]]:
    """Segments -> (x float32 [B, C, padded or longest] on `device`, zero-padded; lengths at the model rate).

    The batch is assembled on the host and copied to the device once per source rate, from pinned
    memory without blocking (`codec.batch_plan.to_device`). Audio already at the model rate is
    copied as it is; the rest is resampled on the device, one padded batch per source rate (zero
    padding leaves each item's samples as if resampled alone).
    """
    device = torch.device(device)
    lengths = [model_length(s, model_rate) for s in segments]
    channels = segments[0].audio.shape[0]
    total = max(max(lengths), padded or 0)
    by_rate: dict[int, list[int]] = {}
    for j, s in enumerate(segments):
        by_rate.setdefault(s.rate or model_rate, []).append(j)
    x = None
    for rate, index in by_rate.items():
        width = total if rate == model_rate else max(segments[j].num_samples for j in index)
        native = host_memory.empty((len(index), channels, width), np.float32)  # recycled: no page faults
        for i, j in enumerate(index):
            n = segments[j].num_samples
            native[i, :, :n] = segments[j].audio
            native[i, :, n:] = 0
        y = resample(to_device(torch.from_numpy(native), device), rate, model_rate)
        if len(by_rate) == 1 and rate == model_rate:
            return y, lengths  # one rate, the model's: the host batch is the batch
        if x is None:
            x = torch.zeros(len(segments), channels, total, device=device)
        for i, j in enumerate(index):
            x[j, :, : lengths[j]] = y[i, :, : lengths[j]]
    return x, lengths


def encoder_batch(segments: list[Segment], model) -> tuple[torch.Tensor, list[int]]:
    """`batch_at_model_rate` for `model` (a codec.Codec) as the job encodes a batch: on its device,
    padded as its batch plan pads whole items (chunked models cut chunks out of the items instead)."""
    rate = model.sample_rate
    padded = None
    if model.chunk_length is None:
        padded = model.padded_length(max(model_length(s, rate) for s in segments))
    return batch_at_model_rate(segments, rate, model.device, padded=padded)
