"""A feature-extractor equivalent for users with transformers-style inputs.

`prepare_inputs` turns a list of 1-D (mono) or [2, T] / [T, 2] (stereo) arrays into a padded batch
`audio [B, C, T]` plus true `lengths [B]`, which is what `EncodecModel.encode` takes. With
`align_to_chunks=True` the batch length is rounded like transformers' feature extractor does
(`(ceil(T / stride) - 1) * stride + chunk_length`); it is never needed for our encode, which uses
the true lengths instead.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .config import EncodecConfig


def prepare_inputs(raw_audio, config: EncodecConfig, sampling_rate: int | None = None,
                   max_length: int | None = None, truncation: bool = False,
                   align_to_chunks: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    if sampling_rate is not None and sampling_rate != config.sampling_rate:
        raise ValueError(f"audio sampled at {sampling_rate} Hz; this model expects {config.sampling_rate} Hz")
    items = [raw_audio] if isinstance(raw_audio, np.ndarray) and raw_audio.ndim == 1 else list(raw_audio)
    if isinstance(raw_audio, np.ndarray) and raw_audio.ndim == 2 and config.audio_channels == 2:
        items = [raw_audio]
    arrays = []
    for i, item in enumerate(items):
        x = np.asarray(item, dtype=np.float32)
        if x.ndim == 1:
            x = x[None]
        elif x.ndim == 2 and x.shape[0] != config.audio_channels and x.shape[1] == config.audio_channels:
            x = x.T
        if x.ndim != 2 or x.shape[0] != config.audio_channels:
            raise ValueError(f"item {i}: expected {config.audio_channels} channel(s), got shape {np.shape(item)}")
        if x.shape[1] == 0:
            raise ValueError(f"item {i} is empty")
        arrays.append(x)
    lengths = [x.shape[1] for x in arrays]
    if truncation:
        if max_length is None:
            raise ValueError("truncation=True needs max_length")
        lengths = [min(n, max_length) for n in lengths]
    total = max(lengths) if max_length is None or truncation else max(max(lengths), max_length)
    if align_to_chunks and config.chunk_length is not None:
        total = (math.ceil(total / config.chunk_stride) - 1) * config.chunk_stride + config.chunk_length
    batch = np.zeros((len(arrays), config.audio_channels, total), dtype=np.float32)
    for b, (x, n) in enumerate(zip(arrays, lengths)):
        batch[b, :, :n] = x[:, :n]
    return torch.from_numpy(batch), torch.tensor(lengths, dtype=torch.long)
