"""HuBERT (base and large) in pure PyTorch: 16 kHz waveform -> the hidden states of one transformer layer.

    audio [B, T] (right-padded; item b valid for lengths[b] samples)
      -> (large: each item normalised over its true length)                        features.normalize_items
      -> convolutional front end [B, 512, F] (masked GroupNorm: padding-exact)    features.FeatureEncoder
      -> LayerNorm, Linear 512 -> D                                                feature_projection
      -> position convolution and the first `layer` transformer layers [B, F, D]   transformer.Encoder

Frames per item: floor((L - 400) / 320) + 1 for the presets (`frames_for`); an item shorter than the
receptive field (400 samples) has no frame and is refused (`TooShort`). Module and parameter names are
transformers' `HubertModel`'s, with the position convolution's weight norm folded.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import HubertConfig
from .features import FeatureEncoder, normalize_items
from .transformer import Encoder


class TooShort(ValueError):
    """An item shorter than the model's receptive field: it has no frame."""


class FeatureProjection(nn.Module):
    def __init__(self, config: HubertConfig):
        super().__init__()
        self.use_norm = config.feat_proj_layer_norm
        if self.use_norm:
            self.layer_norm = nn.LayerNorm(config.conv_dim[-1], eps=config.layer_norm_eps)
        self.projection = nn.Linear(config.conv_dim[-1], config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.layer_norm(x) if self.use_norm else x)


class HubertModel(nn.Module):
    def __init__(self, config: HubertConfig):
        super().__init__()
        self.config = config
        self.feature_extractor = FeatureEncoder(config)
        self.feature_projection = FeatureProjection(config)
        self.encoder = Encoder(config)

    def frames_for(self, num_samples: int) -> int:
        """Frames of an item of `num_samples` samples (0 when shorter than the receptive field)."""
        return self.config.frames_after(num_samples)[-1]

    def check_layer(self, layer: int) -> None:
        if not 0 <= layer <= self.config.num_hidden_layers:
            raise ValueError(f"layer must be 0..{self.config.num_hidden_layers} (transformers' hidden_states index) "
                             f"for {self.config.name}; got {layer}")

    def forward(self, audio: torch.Tensor, lengths: list[int], layer: int) -> tuple[torch.Tensor, list[int]]:
        """audio float [B, T] or [B, 1, T] at 16 kHz, zero or anything after `lengths[b]` ->
        (`hidden_states[layer]` [B, F, D], frames per item); rows past an item's frames are garbage.
        TooShort names the first item shorter than the receptive field."""
        self.check_layer(layer)
        if audio.dim() == 3:
            if audio.shape[1] != 1:
                raise ValueError(f"HuBERT takes mono audio [B, 1, T]; got {tuple(audio.shape)}")
            audio = audio[:, 0]
        if len(lengths) != audio.shape[0] or any(not 0 <= n <= audio.shape[-1] for n in lengths):
            raise ValueError(f"lengths {lengths} do not fit audio of shape {tuple(audio.shape)}")
        need = self.config.receptive_field
        for b, n in enumerate(lengths):
            if n < need:
                raise TooShort(f"item {b} has {n} samples, fewer than the {need} of one HuBERT frame "
                               f"({need / self.config.sampling_rate * 1000:.0f} ms at {self.config.sampling_rate} Hz)")
        longest = max(lengths)
        audio = audio[:, :longest]
        if self.config.do_normalize:
            audio = normalize_items(audio, lengths)
        frames = [self.frames_for(n) for n in lengths]
        x = self.feature_extractor(audio, lengths).transpose(1, 2)
        h = self.feature_projection(x)
        return self.encoder(h, frames, layer), frames
