"""Reconstruction metrics on signals with known answers."""

import math

import numpy as np
import pytest

from codec import metrics as M
from codec.mel import hz_to_mel, mel_to_hz

RATE = 24000
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def noise(n, seed=0):
    return np.random.default_rng(seed).standard_normal(n)


def at_snr(ref, snr_db, seed=1, orthogonal=False):
    """ref + white noise scaled so that |ref|^2 / |noise|^2 = 10^(snr/10)."""
    n = noise(ref.size, seed).reshape(ref.shape)
    if orthogonal:
        r = ref - ref.mean()
        n = n - n.mean()
        n = n - (n.ravel() @ r.ravel()) / (r.ravel() @ r.ravel()) * r
    r0 = ref - ref.mean()
    n *= math.sqrt((r0.ravel() @ r0.ravel()) / (n.ravel() @ n.ravel()) / 10 ** (snr_db / 10))
    return ref + n


def test_identical_signals_are_perfect():
    x = noise(RATE) * 0.1
    for sig in (x, np.stack([x, noise(RATE, 5)])):
        assert M.si_snr_db(sig, sig) == M.MAX_SI_SNR_DB
        assert M.mel_distance_db(sig, sig, RATE) == 0.0
        assert M.lsd_db(sig, sig, RATE) == 0.0


@pytest.mark.parametrize("snr", [-5.0, 0.0, 10.0, 20.0, 40.0])
def test_white_noise_at_known_snr(snr):
    ref = noise(2 * RATE, 3) * 0.3
    assert abs(M.si_snr_db(ref, at_snr(ref, snr)) - snr) < 0.1
    assert abs(M.si_snr_db(ref, at_snr(ref, snr, orthogonal=True)) - snr) < 1e-9
    # speech-like reference (a chirp with an envelope), stereo
    t = np.arange(RATE) / RATE
    chirp = np.sin(2 * np.pi * (200 + 900 * t) * t) * (0.2 + 0.8 * np.abs(np.sin(3 * t)))
    stereo = np.stack([chirp, 0.5 * chirp[::-1]])
    assert abs(M.si_snr_db(stereo, at_snr(stereo, snr, seed=7)) - snr) < 0.1


def test_spectral_distances_grow_as_snr_falls():
    ref = noise(RATE, 4)
    mel = [M.mel_distance_db(ref, at_snr(ref, s), RATE) for s in (30, 20, 10, 0)]
    lsd = [M.lsd_db(ref, at_snr(ref, s), RATE) for s in (30, 20, 10, 0)]
    assert mel == sorted(mel) and lsd == sorted(lsd) and mel[0] > 0 and lsd[0] > 0


@pytest.mark.parametrize("gain", [0.5, 2.0, -3.0, 0.05])
def test_gain(gain):
    ref = noise(RATE, 2) * 0.1
    assert abs(M.si_snr_db(ref, gain * ref) - M.MAX_SI_SNR_DB) < 1e-6  # invariant
    assert abs(M.si_snr_db(gain * ref, at_snr(ref, 10.0)) - M.si_snr_db(ref, at_snr(ref, 10.0))) < 1e-9
    expected = abs(20 * math.log10(abs(gain)))
    # a quieter copy pushes the few faint bins (zero-padded edge frames) onto the floor: not quite exact
    tol = 1e-6 if expected < 12 else 1e-2
    assert abs(M.mel_distance_db(ref, gain * ref, RATE) - expected) < tol
    assert abs(M.lsd_db(ref, gain * ref, RATE) - expected) < tol


@pytest.mark.parametrize("freq,lag", [(100.0, 1), (100.0, 5), (375.0, 3)])
def test_time_shift_of_a_tone_follows_its_autocorrelation(freq, lag):
    t = np.arange(RATE) / RATE  # 1 s: a whole number of periods, so a circular shift is exact
    tone = np.sin(2 * np.pi * freq * t)
    rho = math.cos(2 * math.pi * freq * lag / RATE)
    expected = 10 * math.log10(rho**2 / (1 - rho**2))
    assert abs(M.si_snr_db(tone, np.roll(tone, lag)) - expected) < 1e-6
    assert M.mel_distance_db(tone, np.roll(tone, lag), RATE) < 1.0  # leakage sidelobes move a little


def test_time_shift_of_noise_ruins_si_snr_but_not_spectra():
    ref = noise(RATE, 9)
    shifted = np.roll(ref, 1)
    assert M.si_snr_db(ref, shifted) < -30  # uncorrelated at lag 1: about -10 log10(T)
    assert M.mel_distance_db(ref, shifted, RATE) < 0.2
    assert M.lsd_db(ref, shifted, RATE) < 0.2
    assert M.mel_distance_db(ref, at_snr(ref, 10.0), RATE) > 5 * M.mel_distance_db(ref, shifted, RATE)


def test_edge_cases():
    silent = np.zeros(RATE)
    assert math.isnan(M.si_snr_db(silent, noise(RATE)))
    assert M.mel_distance_db(silent, silent, RATE) == 0.0
    x = noise(RATE)
    assert M.si_snr_db(x, np.zeros(RATE)) == -M.MAX_SI_SNR_DB
    with pytest.raises(ValueError, match="same shape"):
        M.si_snr_db(x, x[:-1])
    with pytest.raises(ValueError, match=r"\[T\] or \[C, T\]"):
        M.lsd_db(x.reshape(1, 1, -1), x.reshape(1, 1, -1), RATE)
    short = noise(1200)  # 50 ms, the job's shortest item
    assert M.all_metrics(short, short, RATE).lsd_db == 0.0


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 44100, 48000])
def test_mel_filterbank(rate):
    for n_fft, n_mels in M.mel_scales(rate):
        bank = M.mel_filterbank(rate, n_fft, n_mels)
        assert bank.shape == (n_mels, n_fft // 2 + 1)
        assert bank.min() >= 0 and bank.max() <= 1 and (bank.max(axis=1) > 0).all()
    bank = M.mel_filterbank(rate, 4096, 40)
    centres = mel_to_hz(np.linspace(0, hz_to_mel(rate / 2), 42))[1:-1]
    for m in (5, 20, 35):  # a tone at a band's centre frequency peaks in that band
        tone = np.sin(2 * np.pi * centres[m] * np.arange(rate) / rate)
        mags = bank @ M.stft_magnitude(tone[None], 4096, 1024)[0]
        assert int(mags.mean(axis=1).argmax()) == m
    assert abs(hz_to_mel(mel_to_hz(1234.5)) - 1234.5) < 1e-9
    with pytest.raises(ValueError, match="cover no FFT bin"):
        M.mel_filterbank(rate, 32, 64)
