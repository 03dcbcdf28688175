"""HuBERT configuration: the fields of transformers' `HubertConfig` that inference reads, the presets, derived numbers.

Presets (transformers' `facebook/hubert-base-ls960` and `facebook/hubert-large-ll60k` configs):

    preset         conv stack norm      input norm   width  layers  heads  ffn    pre-LN (stable)
    hubert_base    GroupNorm (conv 0)   none         768    12      12     3072   no
    hubert_large   LayerNorm (every)    per item     1024   24      16     4096   yes

Both: 7 convolutions of 512 channels, kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2 (receptive field
400 samples, hop 320 = 50 frames/s at 16 kHz), exact GELU, a positional convolution of kernel 128 in 16
groups. Layer L means transformers' `hidden_states[L]` (0: the transformer's input, L: after layer L).
Derived values (hop, receptive field, frame rate) are computed, never configured twice.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class HubertConfig:
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    conv_dim: tuple[int, ...] = (512,) * 7
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    conv_bias: bool = False
    feat_extract_norm: str = "group"  # "group": GroupNorm after conv 0 only; "layer": LayerNorm after each conv
    feat_proj_layer_norm: bool = True
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    do_stable_layer_norm: bool = False  # pre-LN layers + a final LayerNorm (large)
    layer_norm_eps: float = 1e-5
    do_normalize: bool = False  # zero mean, unit variance per item over its true length (large's feature extractor)
    sampling_rate: int = 16000
    name: str = field(default="hubert", compare=False)

    def __post_init__(self):
        for key in ("conv_dim", "conv_kernel", "conv_stride"):
            object.__setattr__(self, key, tuple(int(v) for v in getattr(self, key)))
        if not len(self.conv_dim) == len(self.conv_kernel) == len(self.conv_stride) > 0:
            raise ValueError(f"conv_dim, conv_kernel and conv_stride must have one entry per convolution; got "
                             f"{self.conv_dim}, {self.conv_kernel}, {self.conv_stride}")
        if self.feat_extract_norm not in ("group", "layer"):
            raise ValueError(f"feat_extract_norm must be 'group' or 'layer'; got {self.feat_extract_norm!r}")
        if self.hidden_size % self.num_attention_heads or self.hidden_size % self.num_conv_pos_embedding_groups:
            raise ValueError(f"hidden_size {self.hidden_size} must divide into {self.num_attention_heads} heads and "
                             f"{self.num_conv_pos_embedding_groups} positional groups")

    @property
    def hop_length(self) -> int:
        return math.prod(self.conv_stride)

    @property
    def receptive_field(self) -> int:
        """Samples seen by one frame: the shortest item that gives a frame (400 for the presets)."""
        field_, jump = 1, 1
        for kernel, stride in zip(self.conv_kernel, self.conv_stride):
            field_ += (kernel - 1) * jump
            jump *= stride
        return field_

    @property
    def frame_rate(self) -> float:
        return self.sampling_rate / self.hop_length

    def frames_after(self, num_samples: int) -> list[int]:
        """Valid frames after each convolution for an item of `num_samples` (0 once too short)."""
        out, n = [], num_samples
        for kernel, stride in zip(self.conv_kernel, self.conv_stride):
            n = (n - kernel) // stride + 1 if n >= kernel else 0
            out.append(n)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Fields in transformers' `config.json` naming (lists, not tuples); `do_normalize` is the feature
        extractor's setting and travels in the same file."""
        data = dataclasses.asdict(self)
        data.pop("name")
        for key in ("conv_dim", "conv_kernel", "conv_stride"):
            data[key] = list(data[key])
        data["num_feat_extract_layers"] = len(self.conv_dim)
        data["feat_extract_activation"] = data["hidden_act"] = "gelu"
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], name: str = "hubert") -> HubertConfig:
        """From a transformers `config.json` (training-only keys ignored). A directory without
        `do_normalize` gets the released models' choice: per-item normalisation with the LayerNorm conv
        stack (large), none with the GroupNorm stack (base). Activations other than GELU are refused."""
        for key in ("feat_extract_activation", "hidden_act"):
            if data.get(key, "gelu") != "gelu":
                raise ValueError(f"{key} {data[key]!r} is not supported (HuBERT uses 'gelu')")
        if data.get("conv_pos_batch_norm", False):
            raise ValueError("conv_pos_batch_norm is not supported (the released HuBERT models use weight norm)")
        known = {f.name for f in dataclasses.fields(cls)} - {"name"}
        values = {k: v for k, v in data.items() if k in known}
        values.setdefault("do_normalize", data.get("feat_extract_norm", "group") == "layer")
        return cls(**values, name=name)


PRESETS: dict[str, HubertConfig] = {
    "hubert_base": HubertConfig(name="hubert_base"),
    "hubert_large": HubertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                 intermediate_size=4096, conv_bias=True, feat_extract_norm="layer",
                                 do_stable_layer_norm=True, do_normalize=True, name="hubert_large"),
}
