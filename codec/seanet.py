"""SEANet encoder and decoder of EnCodec, with true-length batching.

Module names follow transformers' `EncodecEncoder` / `EncodecDecoder` (`layers.<i>.conv`, `.block`,
`.shortcut`, `.lstm`), so a transformers state dict maps onto ours by dropping weight norm.
Every layer takes and returns `(x [B, C, T], lengths)`; lengths are per-item valid samples (or
frames) at that layer's resolution, or None when every item fills the batch.
"""

from __future__ import annotations

from torch import nn

from .config import EncodecConfig
from .conv import PaddedConv1d, PaddedConvTranspose1d


def _conv(cfg: EncodecConfig, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1):
    return PaddedConv1d(
        cin, cout, kernel, stride, dilation,
        causal=cfg.use_causal_conv, pad_mode=cfg.pad_mode, group_norm=cfg.norm_type == "time_group_norm",
    )


class ELU(nn.ELU):
    def forward(self, x, lengths=None):
        return super().forward(x), lengths


class LSTM(nn.Module):
    """Unidirectional LSTM over time with a skip connection; causal, so padding never leaks back.

    `per_item = True` runs each item alone over exactly its valid frames. A batched LSTM rounds
    differently from a batch of one (GEMM vs GEMV in the recurrence), which flips codes at
    near-ties; per item, batched encoding is bit-identical to encoding each item alone. None (the
    default) means per item on the CPU (where it is no slower) and batched on CUDA.
    """

    per_item: bool | None = None

    def __init__(self, cfg: EncodecConfig, dim: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, cfg.num_lstm_layers)

    def forward(self, x, lengths=None):
        h = x.permute(2, 0, 1)
        per_item = (not h.is_cuda) if self.per_item is None else self.per_item
        if per_item and h.shape[1] > 1:
            out = h.clone()
            for b, n in enumerate(lengths or [h.shape[0]] * h.shape[1]):
                out[:n, b : b + 1] += self.lstm(h[:n, b : b + 1])[0]
            return out.permute(1, 2, 0), lengths
        h = self.lstm(h)[0] + h
        return h.permute(1, 2, 0), lengths


class ResnetBlock(nn.Module):
    """ELU -> conv(k, dilation) -> ELU -> conv(1), plus a 1x1-conv (or identity) shortcut."""

    def __init__(self, cfg: EncodecConfig, dim: int, dilation: int):
        super().__init__()
        hidden = dim // cfg.compress
        self.block = nn.ModuleList([
            ELU(),
            _conv(cfg, dim, hidden, cfg.residual_kernel_size, dilation=dilation),
            ELU(),
            _conv(cfg, hidden, dim, 1),
        ])
        self.shortcut = _conv(cfg, dim, dim, 1) if cfg.use_conv_shortcut else None

    def forward(self, x, lengths=None):
        h, h_lengths = x, lengths
        for layer in self.block:
            h, h_lengths = layer(h, h_lengths)
        skip = x if self.shortcut is None else self.shortcut(x, lengths)[0]
        return skip + h, lengths


class Encoder(nn.Module):
    """audio [B, C, T] -> latents [B, hidden_size, ceil(T / hop)]."""

    def __init__(self, cfg: EncodecConfig):
        super().__init__()
        layers: list[nn.Module] = [_conv(cfg, cfg.audio_channels, cfg.num_filters, cfg.kernel_size)]
        scale = 1
        for ratio in reversed(cfg.upsampling_ratios):
            dim = scale * cfg.num_filters
            for j in range(cfg.num_residual_layers):
                layers.append(ResnetBlock(cfg, dim, cfg.dilation_growth_rate**j))
            layers.append(ELU())
            layers.append(_conv(cfg, dim, dim * 2, ratio * 2, stride=ratio))
            scale *= 2
        layers += [LSTM(cfg, scale * cfg.num_filters), ELU()]
        layers.append(_conv(cfg, scale * cfg.num_filters, cfg.hidden_size, cfg.last_kernel_size))
        self.layers = nn.ModuleList(layers)

    def forward(self, x, lengths=None):
        for layer in self.layers:
            x, lengths = layer(x, lengths)
        return x, lengths


class Decoder(nn.Module):
    """latents [B, hidden_size, F] -> audio [B, C, F * hop]."""

    def __init__(self, cfg: EncodecConfig):
        super().__init__()
        scale = 2 ** len(cfg.upsampling_ratios)
        group_norm = cfg.norm_type == "time_group_norm"
        layers: list[nn.Module] = [_conv(cfg, cfg.hidden_size, scale * cfg.num_filters, cfg.kernel_size)]
        layers.append(LSTM(cfg, scale * cfg.num_filters))
        for ratio in cfg.upsampling_ratios:
            dim = scale * cfg.num_filters
            layers.append(ELU())
            layers.append(PaddedConvTranspose1d(
                dim, dim // 2, ratio * 2, ratio,
                causal=cfg.use_causal_conv, trim_right_ratio=cfg.trim_right_ratio, group_norm=group_norm,
            ))
            for j in range(cfg.num_residual_layers):
                layers.append(ResnetBlock(cfg, dim // 2, cfg.dilation_growth_rate**j))
            scale //= 2
        layers += [ELU(), _conv(cfg, cfg.num_filters, cfg.audio_channels, cfg.last_kernel_size)]
        self.layers = nn.ModuleList(layers)

    def forward(self, x, lengths=None):
        for layer in self.layers:
            x, lengths = layer(x, lengths)
        return x, lengths
