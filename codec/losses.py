"""EnCodec's reconstruction losses: L1 on the waveform, a multi-scale mel-spectrogram loss, and -SI-SNR.

    L_t = mean |x - x_hat|
    L_f = mean over windows w in `windows` of  mean |M_w(x) - M_w(x_hat)|  +  sqrt(mean (M_w(x) - M_w(x_hat))^2)

M_w: log-compressed mel magnitudes (natural log, floor 1e-5) of the STFT with a periodic Hann
window of w samples, hop w / 4, HTK mel filterbank of min(n_mels, w / 8) bands.
"""

from __future__ import annotations

import torch
from torch import nn

from . import mel


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """HTK-mel filters float32 [n_mels, n_fft // 2 + 1] between 0 Hz and sample_rate / 2 (`codec.mel`)."""
    return torch.from_numpy(mel.mel_filterbank(sample_rate, n_fft, n_mels)).float()


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


def neg_si_snr_db(x: torch.Tensor, x_hat: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean over the batch of -SI-SNR in dB (x, x_hat [B, C, T], zero-mean per item first): the
    differentiable training loss. The evaluation measure (float64, capped, NaN for silence) is
    `codec.metrics.si_snr_db`; the two agree to 1e-3 dB on ordinary audio (tests)."""
    x = x - x.mean(dim=-1, keepdim=True)
    x_hat = x_hat - x_hat.mean(dim=-1, keepdim=True)
    scale = (x_hat * x).sum(-1, keepdim=True) / (x.pow(2).sum(-1, keepdim=True) + eps)
    target = scale * x
    ratio = target.pow(2).sum(-1) / ((x_hat - target).pow(2).sum(-1) + eps)
    return -(10 * torch.log10(ratio + eps)).mean()
