"""The HTK mel scale and its triangular filterbank: one copy for the training loss and verify's metrics."""

from __future__ import annotations

import numpy as np


def hz_to_mel(hz):
    """HTK mel scale: 2595 log10(1 + hz / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel):
    """The inverse of `hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0,
                   f_max: float | None = None) -> np.ndarray:
    """Triangular filters float64 [n_mels, n_fft // 2 + 1] on the HTK mel scale, each peaking at 1.

    Band m rises linearly from centre m-1 to centre m and falls to centre m+1 (n_mels + 2 points
    equally spaced in mel between f_min and f_max, default sample_rate / 2), evaluated at the FFT
    bin frequencies k * sample_rate / n_fft. Raises ValueError when a band covers no FFT bin.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    bins = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rise = (bins[None] - lo) / (mid - lo)
    fall = (hi - bins[None]) / (hi - mid)
    bank = np.clip(np.minimum(rise, fall), 0.0, None)
    empty = np.flatnonzero(bank.max(axis=1) <= 0)
    if empty.size:
        raise ValueError(f"{empty.size} of {n_mels} mel bands cover no FFT bin (n_fft={n_fft} at {sample_rate} Hz); "
                         "use fewer bands or a larger n_fft")
    return bank
