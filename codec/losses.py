"""EnCodec's reconstruction losses: L1 on the waveform and a multi-scale mel-spectrogram loss.

    L_t = mean |x - x_hat|
    L_f = mean over windows w in `windows` of  mean |M_w(x) - M_w(x_hat)|  +  sqrt(mean (M_w(x) - M_w(x_hat))^2)

M_w: log-compressed mel magnitudes (natural log, floor 1e-5) of the STFT with a periodic Hann
window of w samples, hop w / 4, HTK mel filterbank of min(n_mels, w / 8) bands.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """Triangular HTK-mel filters [n_mels, n_fft // 2 + 1] between 0 Hz and sample_rate / 2
    (1 at each band's centre)."""
    def hz_to_mel(f):
        return 2595.0 * math.log10(1.0 + f / 700.0)

    mels = torch.linspace(0.0, hz_to_mel(sample_rate / 2), n_mels + 2, dtype=torch.float64)
    edges = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    bins = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    bank = torch.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)).clamp(min=0.0)
    if (bank.max(dim=1).values <= 0).any():
        raise ValueError(f"{n_mels} mel bands at n_fft={n_fft}, {sample_rate} Hz leave some band without an FFT bin")
    return bank.float()


class MultiScaleMelLoss(nn.Module):
    def __init__(self, sample_rate: int, windows=(64, 128, 256, 512, 1024, 2048), n_mels: int = 64):
        super().__init__()
        self.windows = tuple(windows)
        for w in self.windows:
            self.register_buffer(f"bank_{w}", mel_filterbank(sample_rate, w, min(n_mels, w // 8)), persistent=False)
            self.register_buffer(f"window_{w}", torch.hann_window(w, periodic=True), persistent=False)

    def log_mel(self, x: torch.Tensor, w: int) -> torch.Tensor:
        """x [B, C, T] -> log mel [B*C, n_mels, frames]."""
        spec = torch.stft(x.reshape(-1, x.shape[-1]), w, w // 4, window=getattr(self, f"window_{w}"),
                          center=True, return_complex=True).abs()
        return torch.log(torch.clamp(getattr(self, f"bank_{w}") @ spec, min=1e-5))

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        total = x.new_zeros(())
        for w in self.windows:
            diff = self.log_mel(x, w) - self.log_mel(x_hat, w)
            total = total + diff.abs().mean() + diff.pow(2).mean().sqrt()
        return total / len(self.windows)


def waveform_l1(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    return (x - x_hat).abs().mean()
