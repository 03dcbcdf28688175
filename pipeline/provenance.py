"""What produced a token dataset: the model, its checkpoint hash, the codec and job settings.

The same record goes into every Parquet file's key/value metadata (`schema.file_metadata`) and into
`<out>/_provenance.json` (datasets drops Parquet metadata); verify reads it back to re-run the job's
path. Built by each actor from the model it loaded, so it describes what actually ran.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from . import device_resample
from .config import AudioConfig, JobConfig
from .errors import JobFailed

PIPELINE_VERSION = "0.1.0"


def resampler_info(audio: AudioConfig, device: str) -> dict[str, Any]:
    if audio.resample_on == "actor":
        r = device_resample
        return {"library": "audiotok.device_resample", "zeros": r.ZEROS, "rolloff": r.ROLLOFF,
                "kaiser_beta": r.KAISER_BETA, "device": device}
    return {"library": "soxr", "quality": audio.resample_quality}


@dataclass(frozen=True, kw_only=True)
class Provenance:
    """What produced a dataset. Fields in the order they are written."""

    format_version: int = 1
    codec_family: str = "encodec"  # codec/registry.py's family name; datasets written before it were EnCodec
    model_name: str
    model_source: str
    checkpoint_sha256: str
    random_weights: bool
    codec_config: dict[str, Any]
    sample_rate: int
    channels: int
    frame_rate: float
    hop_length: int
    chunk_length: int | None
    chunk_stride: int | None
    bandwidths: list[float]  # kbps, sorted
    bandwidth_to_num_quantizers: dict[str, int]  # str(kbps) -> codebooks
    num_quantizers: int  # at the highest bandwidth: the rows of `codes`
    precision: str
    device: str
    pipeline_version: str
    batch_plan: str = "cpu"  # codec/batch_plan.py: "cuda" codes depend on each row's batch (see the manifest)
    resampler: dict[str, Any]
    segment_max_s: float
    model_sources_skipped: list[str] = field(default_factory=list)
    torch_threads: int | None = None  # the actors' torch thread count (codes at near-ties depend on it)
    gpu_name: str | None = None
    torch_version: str | None = None
    cuda_version: str | None = None  # of the torch build
    cudnn_version: int | None = None
    simulated_gpu: bool = False  # test clusters only: a logical GPU, encoded on the CPU
    # token streams beside `codes` (pipeline/streams.py StreamInfo.to_json): column, tokenizer, frame rate
    streams: list[dict[str, Any]] = field(default_factory=list)
    job_config: dict[str, Any] | None = None  # in _provenance.json only
    input: str | None = None  # the input spec, in _provenance.json only

    def num_quantizers_by_bandwidth(self) -> dict[float, int]:
        return {float(k): int(v) for k, v in self.bandwidth_to_num_quantizers.items()}

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {k: v for k, v in data.items() if v is not None or k not in ("job_config", "input")}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Provenance:
        """From `_provenance.json` or Parquet metadata; unknown keys (a newer writer's) are left out."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ValueError(f"provenance lacks {missing}")
        return cls(**{k: v for k, v in data.items() if k in fields})


def build_provenance(model, cfg: JobConfig, device: str, skipped: list[str] | None = None,
                     runtime=None, streams=()) -> Provenance:
    """The provenance of a job running `model` (a loaded `codec.Codec`) with `cfg` on `device`;
    `runtime` (engine.actor_env.Runtime) adds the torch threads, GPU and versions; `streams` (the job's
    `streams.TokenStream`s) their `StreamInfo`."""
    extra = {} if runtime is None else dict(
        torch_threads=runtime.torch_threads, gpu_name=runtime.gpu_name, torch_version=runtime.torch_version,
        cuda_version=runtime.cuda_version, cudnn_version=runtime.cudnn_version, simulated_gpu=runtime.simulated_gpu)
    return Provenance(
        codec_family=model.family,
        model_name=model.name,
        model_source=model.provenance.source,
        checkpoint_sha256=model.provenance.sha256,
        random_weights=model.provenance.random_weights,
        codec_config=model.config_dict(),
        sample_rate=model.sample_rate,
        channels=model.channels,
        frame_rate=model.frame_rate,
        hop_length=model.hop_length,
        chunk_length=model.chunk_length,
        chunk_stride=model.chunk_stride,
        bandwidths=sorted(cfg.bandwidths),
        bandwidth_to_num_quantizers={str(b): model.num_quantizers_for(b) for b in sorted(cfg.bandwidths)},
        num_quantizers=model.num_quantizers_for(max(cfg.bandwidths)),
        precision=cfg.precision,
        device=device,
        batch_plan=model.plan,
        pipeline_version=PIPELINE_VERSION,
        resampler=resampler_info(cfg.audio, device),
        segment_max_s=cfg.audio.max_duration_s,
        model_sources_skipped=list(skipped or []),
        streams=[s.info().to_json() for s in streams],
        **extra,
    )


def check_sha256(provenance: Provenance, cfg: JobConfig) -> None:
    """Any model_sha256 given (even one YAML read as a number, e.g. 000...0) must equal the checkpoint's."""
    want = cfg.model_sha256
    if want is not None and str(want).strip().lower() != provenance.checkpoint_sha256:
        raise JobFailed(f"model checkpoint sha256 {provenance.checkpoint_sha256} does not match "
                        f"model_sha256 {want} in the config")
