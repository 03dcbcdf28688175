"""What the job, verify, diff, the reader and the benchmarks need from a codec: the `Codec` protocol.

A codec family (EnCodec, DAC, ...) is a folder or a set of files that provides a model satisfying this
protocol and a `registry.CodecFamily` entry that loads it; the job only ever talks to `Codec`.

Shapes and units:
    audio       float [B, C, T] at `sample_rate`, C = `channels`; `lengths[b]` valid samples of item b
    codes       int64 [n_q, num_frames] per item (`EncodedItem.codes`); num_frames = `frames_for(L)`
    decode      float32 [C, L] per item: exactly the item's true length L
    bandwidths  kbps; each maps to a codebook count (`num_quantizers_for`), lower ones are prefixes
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch


@dataclass
class EncodedItem:
    """One item's tokens.

    codes: int64 [n_q, num_frames]; chunked models (EnCodec 48 kHz): the chunks' frames concatenated.
    scales: one float per chunk for codecs that normalise chunks (EnCodec 48 kHz); None otherwise
        (EnCodec 24/32 kHz, DAC): the Parquet `scales` column is then null.
    num_samples: true length in samples at the model rate; decode returns exactly this many.
    """

    codes: torch.Tensor
    scales: list[float] | None
    num_samples: int


@dataclass
class ModelProvenance:
    """Where a model's weights came from: source (as given to the loader, or random:<preset>:seed=N),
    sha256 of the weights file (of the state for random models; None when unknown), whether the
    weights are random (tests and demos only), and the model card of a shipped tiny model."""

    source: str
    sha256: str | None
    random_weights: bool
    model_card: str | None = None


@runtime_checkable
class Codec(Protocol):
    """A loaded, inference-ready codec model (weights folded, eval mode) on one device."""

    family: str  # "encodec", "dac": the registry's family name
    provenance: ModelProvenance  # what was loaded

    @property
    def name(self) -> str: ...  # preset / model name, e.g. "encodec_24khz", "dac_44khz"

    @property
    def sample_rate(self) -> int: ...

    @property
    def channels(self) -> int: ...

    @property
    def hop_length(self) -> int: ...  # samples per code frame

    @property
    def frame_rate(self) -> float: ...  # frames per second, possibly non-integer (DAC 44 kHz: 86.13)

    @property
    def chunk_length(self) -> int | None: ...  # samples per independently encoded chunk; None: whole items

    @property
    def chunk_stride(self) -> int | None: ...

    @property
    def codebook_size(self) -> int: ...

    @property
    def target_bandwidths(self) -> tuple[float, ...]: ...  # kbps, ascending

    @property
    def plan(self) -> str: ...  # "cpu" or "cuda" (codec/batch_plan.py)

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def num_quantizers_for(self, bandwidth: float) -> int: ...  # ValueError for an unsupported bandwidth

    def config_dict(self) -> dict[str, Any]: ...  # the codec config, JSON-able, for provenance

    def set_batch_plan(self, name: str | None) -> Codec: ...

    def frames_for(self, num_samples: int) -> int: ...

    def pad_samples_for(self, num_samples: int) -> int: ...

    def padded_length(self, longest: int) -> int: ...

    def largest_forward_pass(self, lengths: list[int], padded: int, max_batch: int | None = None) -> int: ...

    def encode(self, audio: torch.Tensor, lengths=None, bandwidth: float | None = None,
               sample_rate: int | None = None, max_batch: int | None = None) -> list[EncodedItem]: ...

    def decode(self, items: list[EncodedItem]) -> list[torch.Tensor]: ...


def bandwidth_of(num_quantizers: int, frame_rate: float, codebook_size: int) -> float:
    """kbps of `num_quantizers` codebooks of `codebook_size` entries at `frame_rate`, rounded to 3 decimals
    (the key a bandwidth is written and asked for with; e.g. DAC 44 kHz, 9 codebooks: 7.752)."""
    return round(num_quantizers * frame_rate * (codebook_size.bit_length() - 1) / 1000, 3)
