"""Checks every codec runs on its inputs before any work: audio batches to encode, codes to decode.

A bad input is a ValueError naming the item, never a device-side assert or a silent wrong answer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .batch_plan import valid_mask


def check_audio(audio, lengths, sample_rate: int | None, expected_rate: int, channels: int) -> list[int]:
    """audio float [B, C, T] and lengths [B] (or None: all T) -> lengths as ints; ValueError otherwise."""
    if sample_rate is not None and sample_rate != expected_rate:
        raise ValueError(f"audio declared at {sample_rate} Hz; this model expects {expected_rate} Hz")
    if not isinstance(audio, torch.Tensor) or not audio.is_floating_point():
        got = audio.dtype if isinstance(audio, torch.Tensor) else type(audio).__name__
        raise ValueError(f"audio must be a floating-point torch.Tensor [B, C, T], got {got}")
    if audio.ndim != 3:
        raise ValueError(f"audio must have shape [B, C, T], got {tuple(audio.shape)}")
    batch, got_channels, total = audio.shape
    if got_channels != channels:
        raise ValueError(f"audio has {got_channels} channels; this model expects {channels}")
    if batch == 0 or total == 0:
        raise ValueError(f"audio is empty (shape {tuple(audio.shape)}); need B >= 1 and T >= 1")
    if lengths is None:
        lengths = [total] * batch
    else:
        lengths = [int(n) for n in (lengths.tolist() if isinstance(lengths, torch.Tensor) else lengths)]
        if len(lengths) != batch:
            raise ValueError(f"lengths has {len(lengths)} entries for a batch of {batch}")
        bad = [n for n in lengths if not 1 <= n <= total]
        if bad:
            raise ValueError(f"lengths must lie in [1, T={total}]; got {bad[:5]}")
    valid = valid_mask(lengths, total, audio.device)
    bad = (~torch.isfinite(audio).all(dim=1) & valid).any(dim=-1)
    if bad.any():  # the one host sync of the check
        raise ValueError(f"audio item {int(bad.nonzero()[0, 0])} contains NaN or Inf samples")
    return lengths


def check_codes(items, frames_for: Callable[[int], int], max_codebooks: int, size: int) -> None:
    """EncodedItems to decode: codes [n_q, frames_for(num_samples)], 1 <= n_q <= max_codebooks, one n_q
    for the call, values in [0, size). Checked on the host: an out-of-range code reaching an embedding on
    CUDA is a device-side assert that breaks every later call of the process."""
    for i, item in enumerate(items):
        expected = frames_for(item.num_samples)
        if item.codes.ndim != 2 or item.codes.shape[1] != expected:
            raise ValueError(
                f"item {i}: codes must be [n_q, {expected}] for {item.num_samples} samples, "
                f"got {tuple(item.codes.shape)}"
            )
        if not 1 <= item.codes.shape[0] <= max_codebooks:
            raise ValueError(f"item {i}: n_q must be in [1, {max_codebooks}]")
    if len({item.codes.shape[0] for item in items}) != 1:
        raise ValueError("all items in one decode call must have the same number of codebooks")
    low, high = torch.aminmax(torch.cat([item.codes.reshape(-1) for item in items]).cpu())
    if int(low) < 0 or int(high) >= size:  # one check for the call; the message names the first bad item
        i = next(i for i, item in enumerate(items) if ((item.codes < 0) | (item.codes >= size)).any())
        raise ValueError(f"item {i}: codes must lie in [0, {size}); got values in "
                         f"[{int(items[i].codes.min())}, {int(items[i].codes.max())}]")
