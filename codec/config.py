"""EnCodec configuration: the fields of transformers' `EncodecConfig`, presets as data, derived numbers.

Derived values (hop length, frame rate, chunk length/stride, codebooks per bandwidth) are computed
from the fields, never configured twice.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class EncodecConfig:
    target_bandwidths: tuple[float, ...] = (1.5, 3.0, 6.0, 12.0, 24.0)
    sampling_rate: int = 24000
    audio_channels: int = 1
    normalize: bool = False
    chunk_length_s: float | None = None
    overlap: float | None = None
    hidden_size: int = 128
    num_filters: int = 32
    num_residual_layers: int = 1
    upsampling_ratios: tuple[int, ...] = (8, 5, 4, 2)
    norm_type: str = "weight_norm"
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    dilation_growth_rate: int = 2
    use_causal_conv: bool = True
    pad_mode: str = "reflect"
    compress: int = 2
    num_lstm_layers: int = 2
    trim_right_ratio: float = 1.0
    codebook_size: int = 1024
    codebook_dim: int | None = None
    use_conv_shortcut: bool = True
    name: str = field(default="encodec", compare=False)

    def __post_init__(self):
        object.__setattr__(self, "target_bandwidths", tuple(float(b) for b in self.target_bandwidths))
        object.__setattr__(self, "upsampling_ratios", tuple(int(r) for r in self.upsampling_ratios))
        if self.codebook_dim is None:
            object.__setattr__(self, "codebook_dim", self.hidden_size)
        if self.norm_type not in ("weight_norm", "time_group_norm"):
            raise ValueError(f"norm_type must be 'weight_norm' or 'time_group_norm', got {self.norm_type!r}")
        if self.audio_channels not in (1, 2):
            raise ValueError(f"audio_channels must be 1 or 2, got {self.audio_channels}")
        if 2 ** int(math.log2(self.codebook_size)) != self.codebook_size:
            raise ValueError(f"codebook_size must be a power of 2, got {self.codebook_size}")
        if not (self.use_causal_conv or self.trim_right_ratio == 1.0):
            raise ValueError("trim_right_ratio != 1.0 only makes sense for causal convolutions")
        if (self.chunk_length_s is None) != (self.overlap is None):
            raise ValueError("chunk_length_s and overlap must be both set or both None")

    @property
    def hop_length(self) -> int:
        """Samples per code frame."""
        return math.prod(self.upsampling_ratios)

    @property
    def frame_rate(self) -> int:
        """Code frames per second."""
        return math.ceil(self.sampling_rate / self.hop_length)

    @property
    def codebook_nbits(self) -> int:
        return math.ceil(math.log2(self.codebook_size))

    @property
    def num_quantizers(self) -> int:
        """Codebooks at the highest target bandwidth."""
        return int(1000 * self.target_bandwidths[-1] // (self.frame_rate * self.codebook_nbits))

    @property
    def chunk_length(self) -> int | None:
        """Samples per chunk (48 kHz model), None when the whole item is encoded at once."""
        if self.chunk_length_s is None:
            return None
        return int(self.chunk_length_s * self.sampling_rate)

    @property
    def chunk_stride(self) -> int | None:
        if self.chunk_length is None or self.overlap is None:
            return None
        return max(1, int((1.0 - self.overlap) * self.chunk_length))

    def num_quantizers_for(self, bandwidth: float) -> int:
        """Codebooks used at `bandwidth` kbps; raises for a bandwidth the model was not trained for."""
        if bandwidth not in self.target_bandwidths:
            raise ValueError(
                f"bandwidth {bandwidth!r} kbps is not supported by this model; "
                f"choose one of {list(self.target_bandwidths)}"
            )
        bw_per_q = math.log2(self.codebook_size) * self.frame_rate
        return int(max(1, math.floor(bandwidth * 1000 / bw_per_q)))

    @property
    def bandwidth_to_num_quantizers(self) -> dict[float, int]:
        return {bw: self.num_quantizers_for(bw) for bw in self.target_bandwidths}

    def to_dict(self) -> dict[str, Any]:
        """Fields in transformers' `config.json` naming (lists, not tuples)."""
        data = dataclasses.asdict(self)
        data.pop("name")
        data["target_bandwidths"] = list(self.target_bandwidths)
        data["upsampling_ratios"] = list(self.upsampling_ratios)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], name: str = "encodec") -> EncodecConfig:
        """Build from a transformers `config.json` dict; keys that are not EnCodec fields are ignored."""
        known = {f.name for f in dataclasses.fields(cls)} - {"name"}
        return cls(**{k: v for k, v in data.items() if k in known}, name=name)


PRESETS: dict[str, EncodecConfig] = {
    "24khz": EncodecConfig(name="encodec_24khz"),
    "48khz": EncodecConfig(
        target_bandwidths=(3.0, 6.0, 12.0, 24.0),
        sampling_rate=48000,
        audio_channels=2,
        normalize=True,
        chunk_length_s=1.0,
        overlap=0.01,
        norm_type="time_group_norm",
        use_causal_conv=False,
        name="encodec_48khz",
    ),
    "32khz": EncodecConfig(  # MusicGen's tokenizer (facebook/encodec_32khz)
        target_bandwidths=(2.2,),
        sampling_rate=32000,
        upsampling_ratios=(8, 5, 4, 4),
        num_filters=64,
        codebook_size=2048,
        use_causal_conv=False,
        use_conv_shortcut=False,
        name="encodec_32khz",
    ),
}
