"""Mimi configuration: the fields of transformers' `MimiConfig` (its defaults are `kyutai/mimi`'s), derived numbers.

    rate    SEANet ratios (decoder order)  SEANet hop  frames/s (SEANet)  downsample  frames/s  hop   codebooks
    24000   8, 6, 5, 4                     960         25                 stride 2    12.5      1920  32 x 2048

One semantic codebook (distilled from a self-supervised speech model) + 31 acoustic ones, each a
Euclidean codebook of 2048 x 256 behind a 512 -> 256 projection; 11 bits per codebook per frame:
0.1375 kbps per codebook (8 codebooks: 1.1 kbps, Moshi's; 32: 4.4 kbps). Derived values (hops, frame rate,
bandwidths) are computed, never configured twice.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..interface import bandwidth_of


@dataclass(frozen=True)
class MimiConfig:
    sampling_rate: int = 24000
    audio_channels: int = 1
    hidden_size: int = 512
    num_filters: int = 64
    num_residual_layers: int = 1
    upsampling_ratios: tuple[int, ...] = (8, 6, 5, 4)
    kernel_size: int = 7
    last_kernel_size: int = 3
    residual_kernel_size: int = 3
    dilation_growth_rate: int = 2
    compress: int = 2
    codebook_size: int = 2048
    codebook_dim: int = 256
    num_quantizers: int = 32
    num_semantic_quantizers: int = 1
    vector_quantization_hidden_dimension: int = 256
    upsample_groups: int = 512
    num_hidden_layers: int = 8
    intermediate_size: int = 2048
    num_attention_heads: int = 8
    head_dim: int = 64
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    sliding_window: int = 250
    downsample_stride: int = 2  # SEANet frame rate / code frame rate (transformers' `latent_stride`)
    name: str = field(default="mimi", compare=False)

    def __post_init__(self):
        object.__setattr__(self, "upsampling_ratios", tuple(int(r) for r in self.upsampling_ratios))
        if self.codebook_size & (self.codebook_size - 1):
            raise ValueError(f"codebook_size must be a power of 2, got {self.codebook_size}")
        if not 0 < self.num_semantic_quantizers < self.num_quantizers:
            raise ValueError(f"need 0 < num_semantic_quantizers < num_quantizers; got {self.num_semantic_quantizers}, "
                             f"{self.num_quantizers}")
        if self.audio_channels != 1:
            raise ValueError(f"only mono Mimi is supported; audio_channels = {self.audio_channels}")
        if self.codebook_dim != self.vector_quantization_hidden_dimension:
            raise ValueError(f"codebook_dim {self.codebook_dim} must equal vector_quantization_hidden_dimension "
                             f"{self.vector_quantization_hidden_dimension} (the codebooks live in the projected space)")
        if self.hidden_size != self.num_attention_heads * self.head_dim:
            raise ValueError(f"hidden_size {self.hidden_size} != heads {self.num_attention_heads} x head_dim "
                             f"{self.head_dim}")

    @property
    def seanet_hop(self) -> int:
        return math.prod(self.upsampling_ratios)

    @property
    def hop_length(self) -> int:
        """Samples per code frame (1920 for kyutai/mimi)."""
        return self.seanet_hop * self.downsample_stride

    @property
    def frame_rate(self) -> float:
        return self.sampling_rate / self.hop_length

    @property
    def bandwidth_to_num_quantizers(self) -> dict[float, int]:
        """kbps (3 decimals) -> codebooks, for num_semantic_quantizers..num_quantizers codebooks (the semantic
        codebooks are always kept: transformers refuses fewer)."""
        return {bandwidth_of(n, self.frame_rate, self.codebook_size): n
                for n in range(self.num_semantic_quantizers, self.num_quantizers + 1)}

    def to_dict(self) -> dict[str, Any]:
        """Fields in transformers' `config.json` naming (lists, rope in `rope_parameters`)."""
        data = dataclasses.asdict(self)
        data.pop("name")
        data.pop("downsample_stride")
        data["upsampling_ratios"] = list(self.upsampling_ratios)
        data["rope_parameters"] = {"rope_theta": data.pop("rope_theta"), "rope_type": "default"}
        data.update(num_key_value_heads=self.num_attention_heads, use_causal_conv=True, pad_mode="constant",
                    trim_right_ratio=1.0, use_conv_shortcut=False, hidden_act="gelu", attention_bias=False,
                    layer_scale_initial_scale=0.01, max_position_embeddings=8000)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], name: str = "mimi") -> MimiConfig:
        """From a transformers `config.json` (4.x: top-level `rope_theta`, `frame_rate`; 5.x: `rope_parameters`).
        Architecture switches this implementation does not have raise a ValueError naming them."""
        required = {"use_causal_conv": True, "pad_mode": "constant", "trim_right_ratio": 1.0,
                    "use_conv_shortcut": False, "hidden_act": "gelu", "attention_bias": False}
        for key, value in required.items():
            if key in data and data[key] != value:
                raise ValueError(f"Mimi config has {key} = {data[key]!r}; this implementation needs {value!r}")
        heads = data.get("num_attention_heads", cls.num_attention_heads)
        if data.get("num_key_value_heads", heads) != heads:
            raise ValueError("grouped-query attention (num_key_value_heads != num_attention_heads) is not supported")
        rope = data.get("rope_parameters") or {}
        if rope.get("rope_type", "default") != "default":
            raise ValueError(f"rope_type {rope['rope_type']!r} is not supported (only 'default')")
        out = {k: v for k, v in data.items() if k in {f.name for f in dataclasses.fields(cls)} - {"name"}}
        out["rope_theta"] = float(rope.get("rope_theta", data.get("rope_theta", cls.rope_theta)))
        if out.get("head_dim") is None:
            out["head_dim"] = data.get("hidden_size", cls.hidden_size) // heads
        if "codebook_dim" in data and data["codebook_dim"] is None:  # transformers: None means hidden_size
            out["codebook_dim"] = data.get("hidden_size", cls.hidden_size)
        config = cls(**out, name=name)
        frame_rate = data.get("frame_rate") or data.get("_frame_rate")
        if frame_rate and abs(float(frame_rate) - config.frame_rate) > 1e-9:
            raise ValueError(f"config frame_rate {frame_rate} is not {config.frame_rate} (SEANet rate / "
                             f"{config.downsample_stride}); this implementation needs the downsampling convolution")
        return config


PRESETS: dict[str, MimiConfig] = {"mimi": MimiConfig(name="mimi")}
