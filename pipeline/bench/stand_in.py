"""A stand-in for the codec: `EncodecModel.encode`'s signature and output, seeded random codes, no compute.

`StandInModel(model)` wraps a loaded `codec.EncodecModel` (its config, batch plan, provenance and
layout helpers are the model's) and replaces `encode`: each item gets codes of the shape the model
would give ([n_q, frames_for(length)], int64, values in [0, codebook_size)) and, for chunked models,
one scale per chunk, sliced from a pool of seeded random values drawn once. Random codes, not
zeros: zeros would make the Parquet dictionary and compression cost vanish. The codes of a call
depend only on the seed and the frames handed out before it, so a run is reproducible.
"""

from __future__ import annotations

import numpy as np
import torch

from codec.model import EncodecModel, EncodedItem

POOL_FRAMES = 1 << 16  # frames of random codes drawn once; items longer than this wrap around


class StandInModel:
    def __init__(self, model: EncodecModel, seed: int = 0):
        self._model = model
        cfg = model.config
        rng = np.random.default_rng(seed)
        self._codes = torch.from_numpy(rng.integers(0, cfg.codebook_size, (cfg.num_quantizers, POOL_FRAMES),
                                                    dtype=np.int64))
        self._scales = rng.uniform(0.01, 0.5, POOL_FRAMES).astype(np.float32).tolist()
        self._next = 0  # the pool offset the next item starts at
        self.calls = 0
        self.items = 0

    def __getattr__(self, name):  # config, plan, padded_length, pad_samples_for, device, provenance, ...
        return getattr(self._model, name)

    def encode(self, audio: torch.Tensor, lengths=None, bandwidth: float | None = None,
               sample_rate: int | None = None, max_batch: int | None = None) -> list[EncodedItem]:
        """As `EncodecModel.encode`: audio [B, C, T] float, lengths [B] -> one EncodedItem each; no compute."""
        cfg = self._model.config
        if audio.ndim != 3 or audio.shape[1] != cfg.audio_channels or not audio.is_floating_point():
            raise ValueError(f"audio must be float [B, {cfg.audio_channels}, T]; "
                             f"got {audio.dtype} {tuple(audio.shape)}")
        if sample_rate is not None and sample_rate != cfg.sampling_rate:
            raise ValueError(f"audio declared at {sample_rate} Hz; this model expects {cfg.sampling_rate} Hz")
        lengths = [audio.shape[-1]] * audio.shape[0] if lengths is None else [int(n) for n in lengths]
        n_q = cfg.num_quantizers_for(cfg.target_bandwidths[-1] if bandwidth is None else bandwidth)
        out = []
        for n in lengths:
            frames = self._model.frames_for(n)
            chunks = len(self._model.chunk_spans(n)) if cfg.chunk_length is not None else 0
            out.append(EncodedItem(self._take(frames)[:n_q], self._take_scales(chunks) if chunks else None, n))
        self.calls += 1
        self.items += len(lengths)
        return out

    def _take(self, frames: int) -> torch.Tensor:
        start = self._next % POOL_FRAMES
        self._next += frames
        if start + frames <= POOL_FRAMES:
            return self._codes[:, start : start + frames]
        index = torch.arange(start, start + frames) % POOL_FRAMES
        return self._codes[:, index]

    def _take_scales(self, chunks: int) -> list[float]:
        start = self._next % POOL_FRAMES
        return [self._scales[(start + c) % POOL_FRAMES] for c in range(chunks)]
