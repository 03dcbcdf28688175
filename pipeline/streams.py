"""Token streams beside the acoustic `codes`: today one, the semantic tokenizer (`JobConfig.semantic`).

A job's acoustic codec (`model`) writes `codes`, exactly as in a one-stream job. Each other stream has a
tokenizer with its own sample rate (HuBERT: 16 kHz mono) and writes its ids to its own column
(`semantic_codes`, list<list<int16>> [1, frames]). The decoder processes decode each file once and
resample it once per rate (`stream_audio`); here, in the actor:

- `admit` rejects, as a whole, every segment a stream cannot encode (shorter than its `min_samples`, the
  receptive field of HuBERT's first convolution: 400 samples at 16 kHz), with reason `too_short`, so that
  the streams never disagree on which keys exist;
- `TokenStream.encode` encodes the admitted segments in length buckets of their own (the tokenizer's
  ids of an item do not depend on its batch) and puts each row's ids in `TokenRow.streams`.

`StreamInfo` (one per stream, in `Provenance.streams` and so in every Parquet file's metadata) records
the tokenizer's identity, its frame rate and the column. Nothing here imports Ray.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import buckets
from .config import JobConfig
from .errors import ConfigError
from .records import Rejection, Segment
from .schema import TokenRow

INT16_MAX = 32767


@dataclass(frozen=True)
class StreamInfo:
    """What wrote one other stream's column: the provenance of its ids (see `Provenance.streams`)."""

    name: str  # "semantic"
    column: str  # "semantic_codes"
    family: str  # "hubert"
    model_name: str  # e.g. hubert_base_l9_k500
    model_source: str
    checkpoint_sha256: str | None
    random_weights: bool
    centroids_sha256: str
    tokenizer_config: dict[str, Any]  # SemanticTokenizer.config_dict(): model, layer, k, centroids, architecture
    sample_rate: int
    channels: int
    frame_rate: float
    hop_length: int
    min_samples: int
    codebook_size: int
    resampler: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StreamInfo:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class TokenStream:
    """One other token stream of a job: its tokenizer (a loaded `codec.semantic.SemanticTokenizer`, or
    anything with its attributes and `encode(audio [B, C, T], lengths) -> [int64 [1, frames]]`)."""

    def __init__(self, name: str, tokenizer, cfg: JobConfig):
        if tokenizer.codebook_size > INT16_MAX:
            raise ConfigError(f"{name}: {tokenizer.codebook_size} clusters do not fit the int16 column "
                              f"{name}_codes; use at most {INT16_MAX}")
        self.name, self.column, self.tokenizer, self.cfg = name, f"{name}_codes", tokenizer, cfg

    @property
    def sample_rate(self) -> int:
        return int(self.tokenizer.sample_rate)

    @property
    def channels(self) -> int:
        return int(self.tokenizer.channels)

    def info(self) -> StreamInfo:
        t = self.tokenizer
        return StreamInfo(
            name=self.name, column=self.column, family=t.family, model_name=t.name, model_source=t.provenance.source,
            checkpoint_sha256=t.provenance.sha256, random_weights=t.provenance.random_weights,
            centroids_sha256=t.centroids_sha256, tokenizer_config=t.config_dict(), sample_rate=self.sample_rate,
            channels=self.channels, frame_rate=float(t.frame_rate), hop_length=int(t.hop_length),
            min_samples=int(t.min_samples), codebook_size=int(t.codebook_size),
            resampler={"library": "soxr", "quality": self.cfg.audio.resample_quality})

    def too_short(self, audio: np.ndarray) -> str | None:
        """Why this stream cannot encode `audio` (its piece of a segment), or None."""
        n, least = int(audio.shape[-1]), int(self.tokenizer.min_samples)
        if n < least:
            return (f"{self.name}: {n} samples at {self.sample_rate} Hz < {least}, the shortest input "
                    f"{self.tokenizer.name} encodes")
        return None

    def encode(self, audio: list[np.ndarray], rows: list[TokenRow]) -> None:
        """Encode `audio` (float32 [C, T] at this stream's rate, one per row) and set each row's
        `streams[self.column]` to its int16 ids [1, frames]."""
        if not audio:
            return
        cfg = self.cfg.buckets
        t = self.tokenizer
        lengths = [int(a.shape[-1]) for a in audio]
        boundaries = buckets.estimate_boundaries(lengths, cfg.num_buckets)
        budget = max(cfg.budget_samples(), max(lengths))
        for batch in buckets.plan_batches(lengths, boundaries, budget, cfg.max_batch_items, multiple=t.hop_length):
            longest = max(lengths[i] for i in batch)
            x = torch.zeros(len(batch), self.channels, longest, dtype=torch.float32)
            for b, i in enumerate(batch):
                x[b, :, : lengths[i]] = torch.from_numpy(audio[i])
            ids = t.encode(x.to(t.device), [lengths[i] for i in batch])
            for i, item in zip(batch, ids):
                want = t.frames_for(lengths[i])
                if tuple(item.shape) != (1, want):
                    raise RuntimeError(f"{self.name} tokenizer gave {tuple(item.shape)} ids for {rows[i].key} "
                                       f"of {lengths[i]} samples; expected (1, {want})")
                rows[i].streams[self.column] = item.detach().cpu().numpy().astype(np.int16)


@dataclass(frozen=True)
class StreamColumn:
    """A token stream read beside `codes` (pipeline/streams.py): its name ("semantic"), column
    ("semantic_codes"), frame rate and codebook size (the default pad id), from the provenance (for readers)."""

    name: str
    column: str
    frame_rate: float
    codebook_size: int


def stream_columns(provenance, names: tuple[str, ...]) -> tuple[StreamColumn, ...]:
    """The provenance's streams named in `names`, in that order; ValueError for one the dataset lacks."""
    stored = {s["name"]: s for s in provenance.streams}
    missing = [n for n in names if n not in stored]
    if missing:
        raise ValueError(f"streams {missing} are not in this dataset; it has {sorted(stored) or 'only codes'}")
    return tuple(StreamColumn(n, stored[n]["column"], float(stored[n]["frame_rate"]), int(stored[n]["codebook_size"]))
                 for n in names)


def semantic_spec(cfg: JobConfig):
    """The `codec.semantic.SemanticSpec` of `cfg.semantic` (which must be set)."""
    from codec.semantic import SemanticSpec

    sem = cfg.semantic
    return SemanticSpec(model=sem.model, layer=int(sem.layer), centroids=sem.centroids)


def load_streams(cfg: JobConfig, device: torch.device | str = "cpu") -> list[TokenStream]:
    """The job's other streams, loaded on `device` (none unless `cfg.semantic` is set). The semantic
    tokenizer runs in fp32 whatever `precision` says (that is the acoustic codec's), with the job's
    `batch_plan`; a model, layer or centroids file that does not load is a ConfigError."""
    if cfg.semantic is None:
        return []
    from codec.semantic import load_semantic  # torch models load in the actor only

    try:
        tokenizer = load_semantic(semantic_spec(cfg), device=device, dtype=torch.float32)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"semantic: cannot load {cfg.semantic.model} layer {cfg.semantic.layer} with centroids "
                          f"{cfg.semantic.centroids}: {exc}") from exc
    tokenizer.set_batch_plan(cfg.batch_plan)
    return [TokenStream("semantic", tokenizer, cfg)]


def targets(streams: list[TokenStream]) -> list[tuple[int, int]]:
    """(sample_rate, channels) of each stream, in order: what the decoders add to each segment."""
    return [(s.sample_rate, s.channels) for s in streams]


def admit(streams: list[TokenStream], segments: list[Segment]) -> tuple[list[Segment], list[Rejection]]:
    """(segments every stream can encode, a `too_short` Rejection for each of the others)."""
    kept, rejected = [], []
    for seg in segments:
        why = next((w for s, a in zip(streams, seg.other_audio) if (w := s.too_short(a))), None)
        if why is None:
            kept.append(seg)
        else:
            rejected.append(Rejection(seg.key, seg.source, "too_short", why))
    return kept, rejected


def encode_all(streams: list[TokenStream], segments: list[Segment], rows: list[TokenRow]) -> None:
    """Each stream's ids for `rows` (rows[i] is the row of segments[i]); the segments' audio for the
    streams is released afterwards."""
    for n, stream in enumerate(streams):
        stream.encode([seg.other_audio[n] for seg in segments], rows)
    for seg in segments:
        seg.other_audio = []
