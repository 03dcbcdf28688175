"""DAC configuration: the fields of transformers' `DacConfig`, the three released presets, derived numbers.

Presets (descript-audio-codec 1.0.0 weights, `metadata["kwargs"]`; transformers' `descript/dac_*` configs):

    preset      rate    encoder rates   hop  frames/s  codebooks  kbps (all codebooks)
    dac_44khz   44100   2, 4, 8, 8      512  86.13     9          7.752
    dac_24khz   24000   2, 4, 5, 8      320  75        32         24.0
    dac_16khz   16000   2, 4, 5, 8      320  50        12         6.0

All: encoder dim 64 (latent 64 * 2^4 = 1024), decoder dim 1536, codebook size 1024, codebook dim 8,
mono. Derived values (hop, frame rate, bandwidths) are computed, never configured twice.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..interface import bandwidth_of


@dataclass(frozen=True)
class DacConfig:
    sampling_rate: int = 44100
    encoder_hidden_size: int = 64
    downsampling_ratios: tuple[int, ...] = (2, 4, 8, 8)
    decoder_hidden_size: int = 1536
    n_codebooks: int = 9
    codebook_size: int = 1024
    codebook_dim: int = 8
    name: str = field(default="dac", compare=False)

    def __post_init__(self):
        object.__setattr__(self, "downsampling_ratios", tuple(int(r) for r in self.downsampling_ratios))
        if 2 ** int(math.log2(self.codebook_size)) != self.codebook_size:
            raise ValueError(f"codebook_size must be a power of 2, got {self.codebook_size}")
        if self.n_codebooks < 1 or not self.downsampling_ratios:
            raise ValueError(f"need n_codebooks >= 1 and downsampling ratios; got {self.n_codebooks}, "
                             f"{self.downsampling_ratios}")
        if self.decoder_hidden_size % 2 ** len(self.downsampling_ratios):
            raise ValueError(f"decoder_hidden_size {self.decoder_hidden_size} must be divisible by "
                             f"2^{len(self.downsampling_ratios)}")

    @property
    def upsampling_ratios(self) -> tuple[int, ...]:
        return self.downsampling_ratios[::-1]

    @property
    def hidden_size(self) -> int:
        """Latent channels: the encoder's last width."""
        return self.encoder_hidden_size * 2 ** len(self.downsampling_ratios)

    @property
    def hop_length(self) -> int:
        return math.prod(self.downsampling_ratios)

    @property
    def frame_rate(self) -> float:
        """Code frames per second, exact (transformers' `DacConfig.frame_rate` rounds it up)."""
        return self.sampling_rate / self.hop_length

    @property
    def bandwidth_to_num_quantizers(self) -> dict[float, int]:
        """kbps (3 decimals, `interface.bandwidth_of`) -> codebooks, for 1..n_codebooks codebooks."""
        return {bandwidth_of(n, self.frame_rate, self.codebook_size): n for n in range(1, self.n_codebooks + 1)}

    def to_dict(self) -> dict[str, Any]:
        """Fields in transformers' `config.json` naming (lists, not tuples)."""
        data = dataclasses.asdict(self)
        data.pop("name")
        data["downsampling_ratios"] = list(self.downsampling_ratios)
        data["upsampling_ratios"] = list(self.upsampling_ratios)
        data["hop_length"] = self.hop_length
        data["hidden_size"] = self.hidden_size
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], name: str = "dac") -> DacConfig:
        """From a transformers `config.json` (derived and training-only keys ignored) or the original
        checkpoint's `metadata["kwargs"]` (encoder_dim, encoder_rates, decoder_dim, sample_rate...)."""
        renames = {"encoder_dim": "encoder_hidden_size", "encoder_rates": "downsampling_ratios",
                   "decoder_dim": "decoder_hidden_size", "sample_rate": "sampling_rate"}
        data = {renames.get(k, k): v for k, v in data.items()}
        if "decoder_rates" in data and list(data["decoder_rates"]) != list(data["downsampling_ratios"])[::-1]:
            raise ValueError(f"decoder rates {data['decoder_rates']} are not the encoder rates reversed; "
                             "this DAC implementation needs them to be")
        if "upsampling_ratios" in data and list(data["upsampling_ratios"]) != list(data["downsampling_ratios"])[::-1]:
            raise ValueError(f"upsampling_ratios {data['upsampling_ratios']} are not downsampling_ratios reversed")
        known = {f.name for f in dataclasses.fields(cls)} - {"name"}
        return cls(**{k: v for k, v in data.items() if k in known}, name=name)


PRESETS: dict[str, DacConfig] = {
    "dac_44khz": DacConfig(sampling_rate=44100, downsampling_ratios=(2, 4, 8, 8), n_codebooks=9, name="dac_44khz"),
    "dac_24khz": DacConfig(sampling_rate=24000, downsampling_ratios=(2, 4, 5, 8), n_codebooks=32, name="dac_24khz"),
    "dac_16khz": DacConfig(sampling_rate=16000, downsampling_ratios=(2, 4, 5, 8), n_codebooks=12, name="dac_16khz"),
}
