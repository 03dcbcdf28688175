"""Reconstruction metrics between an original and a decoded signal (numpy + torch, float64).

All functions take `reference` (the original) and `estimate` (the decoded audio) as arrays of
the same shape, [T] or [C, T] samples at `sample_rate` Hz.

  si_snr_db         scale-invariant SNR in dB, higher is better; 100 dB at most (identical signals)
  mel_distance_db   multi-scale log-mel distance in dB, lower is better; 0 for identical signals
  lsd_db            log-spectral distance in dB, lower is better; 0 for identical signals
  all_metrics       the three above as one `Scores` record

Known answers (tested in tests/codec/test_metrics.py):
  * estimate = reference + white noise at S dB SNR  ->  si_snr_db ≈ S (exactly S when the noise is
    orthogonal to the reference).
  * estimate = g * reference: si_snr_db is unchanged (gain invariant, any g != 0); mel_distance_db and
    lsd_db equal |20 log10 g| (both compare absolute levels) as long as no bin hits the floor.
  * estimate = reference delayed by d samples: si_snr_db = 10 log10(rho^2 / (1 - rho^2)), rho the
    normalised autocorrelation of the reference at lag d (a 100 Hz tone at 24 kHz shifted by one
    sample: 31.6 dB; white noise shifted by one sample: about -10 log10(T) dB, i.e. very bad). So
    SI-SNR punishes any misalignment, while the spectral distances barely move for shifts much
    shorter than their windows (both work on STFT magnitudes).

Spectral floor: levels are clamped at (max level of the reference) - TOP_DB, so digital silence
on both sides compares equal and inaudibly quiet bins do not dominate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .mel import mel_filterbank

TOP_DB = 80.0  # dynamic range kept below the reference's loudest bin
MAX_SI_SNR_DB = 100.0
MEL_BASE_WINDOWS = (64, 128, 256, 512, 1024, 2048)  # STFT sizes at 24 kHz; scaled with the rate
LSD_WINDOW_S = 2048 / 24000  # ~85 ms


def _as_2d(x) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2:
        raise ValueError(f"signals must be [T] or [C, T]; got shape {a.shape}")
    return a


def _pair(reference, estimate) -> tuple[np.ndarray, np.ndarray]:
    ref, est = _as_2d(reference), _as_2d(estimate)
    if ref.shape != est.shape:
        raise ValueError(f"reference {ref.shape} and estimate {est.shape} must have the same shape")
    if ref.shape[-1] == 0:
        raise ValueError("signals are empty")
    return ref, est


def si_snr_db(reference, estimate) -> float:
    """Scale-invariant SNR in dB of `estimate` against `reference` ([T] or [C, T], channels flattened).

    Both are made zero-mean; target = (<est, ref> / <ref, ref>) ref; noise = est - target;
    SI-SNR = 10 log10(|target|^2 / |noise|^2), capped at MAX_SI_SNR_DB. NaN when the reference is
    constant (no signal to compare against).
    """
    ref, est = _pair(reference, estimate)
    ref = (ref - ref.mean(axis=-1, keepdims=True)).ravel()
    est = (est - est.mean(axis=-1, keepdims=True)).ravel()
    power = float(ref @ ref)
    if power <= 1e-20 * ref.size:
        return float("nan")
    target = (float(est @ ref) / power) * ref
    noise = est - target
    t, n = float(target @ target), float(noise @ noise)
    if t == 0.0:
        return -MAX_SI_SNR_DB
    return min(MAX_SI_SNR_DB, 10.0 * math.log10(t / max(n, t * 10 ** (-MAX_SI_SNR_DB / 10))))


def stft_magnitude(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """|STFT| [C, n_fft // 2 + 1, frames] with a periodic Hann window, zero-padded centred frames."""
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    spec = torch.stft(torch.from_numpy(np.ascontiguousarray(x)), n_fft, hop, window=window, center=True,
                      pad_mode="constant", return_complex=True)
    return spec.abs().numpy()


def _floored_db(ref_level: np.ndarray, est_level: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """scale * log10 of both (scale 20 for magnitudes, 10 for powers), clamped at ref max - TOP_DB."""
    tiny = 1e-30
    ref_db = scale * np.log10(np.maximum(ref_level, tiny))
    est_db = scale * np.log10(np.maximum(est_level, tiny))
    floor = ref_db.max() - TOP_DB
    return np.maximum(ref_db, floor), np.maximum(est_db, floor)


def mel_scales(sample_rate: int) -> list[tuple[int, int]]:
    """(n_fft, n_mels) per scale: MEL_BASE_WINDOWS times sample_rate / 24000 (rounded to a power of
    two, at least 1x), n_mels = min(128, n_fft at 24 kHz / 8)."""
    factor = 2 ** max(0, round(math.log2(max(sample_rate, 1) / 24000)))
    return [(w * factor, min(128, w // 8)) for w in MEL_BASE_WINDOWS]


def mel_distance_db(reference, estimate, sample_rate: int) -> float:
    """Multi-scale mel distance in dB: mean over scales of the mean |level difference| of mel bands.

    Per scale (see `mel_scales`): magnitude STFT (hop n_fft / 4, Hann), HTK mel filterbank, levels
    in dB (20 log10 of the band magnitude), clamped at the reference's loudest band - TOP_DB, then
    the mean absolute difference over channels, bands and frames. 0 for identical signals; a gain g
    gives |20 log10 g|.
    """
    ref, est = _pair(reference, estimate)
    values = []
    for n_fft, n_mels in mel_scales(sample_rate):
        bank = mel_filterbank(sample_rate, n_fft, n_mels)
        mel_ref = np.einsum("mf,cft->cmt", bank, stft_magnitude(ref, n_fft, n_fft // 4))
        mel_est = np.einsum("mf,cft->cmt", bank, stft_magnitude(est, n_fft, n_fft // 4))
        a, b = _floored_db(mel_ref, mel_est, 20.0)
        values.append(float(np.abs(a - b).mean()))
    return float(np.mean(values))


def lsd_db(reference, estimate, sample_rate: int) -> float:
    """Log-spectral distance in dB: mean over channels and frames of sqrt(mean over bins of
    (10 log10 P_ref - 10 log10 P_est)^2), P the power STFT (window LSD_WINDOW_S rounded to a power
    of two, hop a quarter of it), levels clamped at the reference's loudest bin - TOP_DB.
    """
    ref, est = _pair(reference, estimate)
    n_fft = 2 ** max(4, round(math.log2(LSD_WINDOW_S * sample_rate)))
    a, b = _floored_db(stft_magnitude(ref, n_fft, n_fft // 4) ** 2, stft_magnitude(est, n_fft, n_fft // 4) ** 2, 10.0)
    return float(np.sqrt(((a - b) ** 2).mean(axis=1)).mean())


@dataclass(frozen=True)
class Scores:
    """The three reconstruction metrics of one (reference, estimate) pair."""

    si_snr_db: float
    mel_distance_db: float
    lsd_db: float


def all_metrics(reference, estimate, sample_rate: int) -> Scores:
    """SI-SNR, mel distance and LSD for one pair of signals."""
    return Scores(
        si_snr_db=si_snr_db(reference, estimate),
        mel_distance_db=mel_distance_db(reference, estimate, sample_rate),
        lsd_db=lsd_db(reference, estimate, sample_rate),
    )
