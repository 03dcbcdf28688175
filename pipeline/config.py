"""Typed job configuration, loaded from YAML plus `section.field=value` overrides.

Unknown keys raise (with the valid choices), so a typo in a config never silently does nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


@dataclass
class SourceConfig:
    metadata_columns: list[str] = field(default_factory=lambda: ["text", "speaker", "caption"])
    audio_column: str = "audio"  # Hugging Face datasets: the Audio column
    key_column: str | None = None  # datasets / manifests: column holding the key (else derived)
    path_column: str = "path"  # manifests: column holding the audio path or URL
    manifest_rows_per_shard: int = 256
    storage_options: dict[str, Any] = field(default_factory=dict)  # passed to fsspec, never logged
    shard_read_retries: int = 3
    # seconds: a storage call (an open, or one read of at most 4 MiB) that has not returned by then fails
    # the shard read, which is retried (shard_read_retries); None waits forever
    read_timeout_s: float | None = 300.0
    max_member_bytes: int = 2 * 1024**3  # an audio tar member / manifest file larger than this: too_large
    hf_split: str | None = None  # Hugging Face DatasetDict / Hub: the split to read (None: all, sorted)
    hf_config: str | None = None  # Hugging Face Hub: the dataset configuration name


@dataclass
class AudioConfig:
    min_sample_rate: int = 1000
    max_sample_rate: int = 384000
    max_channels: int = 16
    max_file_bytes: int = 2 * 1024**3
    max_decoded_bytes: int = 2 * 1024**3  # float32 samples of one file after decoding, all channels
    min_duration_s: float = 0.05
    max_duration_s: float = 30.0  # longer items are cut into segments key#0, key#1, ...
    resample_quality: str = "HQ"  # soxr: QQ, LQ, MQ, HQ, VHQ
    resample_on: str = "decoder"  # decoder: soxr in the decoder processes; actor: torch, on the model's device
    decode_timeout_s: float = 120.0
    decoder_crash_retries: int = 1  # retries of a file whose decoder process died


@dataclass
class BucketConfig:
    boundaries_s: list[float] | None = None  # None: estimated from each shard's lengths
    num_buckets: int = 8
    # samples (per channel) in one padded GPU batch, or "auto": sized on a CUDA device when the actor loads
    # the model (pipeline/budget_calibration.py), else batch_budget_fallback_samples
    batch_budget_samples: int | str = 24000 * 600
    batch_budget_fallback_samples: int = 24000 * 600  # in force with "auto" off CUDA or when sizing fails
    max_batch_items: int = 256

    @property
    def auto_budget(self) -> bool:
        return self.batch_budget_samples == "auto"

    def budget_samples(self) -> int:
        """The budget without sizing: the configured number, or with "auto" the fallback."""
        return self.batch_budget_fallback_samples if self.auto_budget else int(self.batch_budget_samples)


@dataclass
class OutputConfig:
    row_group_rows: int = 1024
    compression: str = "zstd"
    compression_level: int = 3
    # passed to fsspec for every read and write of the output directory (the job, its actors, the
    # snapshot, the row index, verify, the training reader), never logged
    storage_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class VerifyConfig:
    min_si_snr_db: float | None = None
    max_mel_distance: float | None = None
    min_code_agreement: float | None = 0.999
    sample_count: int = 0  # rows verified at the end of jobs.tokenize (0: off)
    seed: int = 0  # the verify sample depends only on this seed and the keys
    report_dir: str | None = None  # verify report of jobs.tokenize; None: <output>/_verify


@dataclass
class SemanticConfig:
    """A semantic tokenizer run beside the acoustic `model` (codec/semantic.py): its ids go in the
    `semantic_codes` column. Unset (`semantic: null`, the default): a job writes `codes` only."""

    model: str = "random:hubert_base"  # random:hubert_base[:seed=N], random:hubert_large, a local dir, a hub id
    layer: int = 9  # transformers' hidden_states[layer] (fairseq output_layer)
    centroids: str = ""  # k-means centroids: .safetensors from jobs.fit_kmeans, or a .npy [k, dim] float array


@dataclass
class JobConfig:
    model: str = "random:24khz"
    model_fallback: str | None = None  # loaded when `model` cannot be (e.g. offline): tiny:24khz in the demo
    model_sha256: str | None = None  # when set, the checkpoint must hash to this
    bandwidths: list[float] = field(default_factory=lambda: [6.0])
    precision: str = "fp32"  # fp32 | bf16 | fp16; reduced ones must pass codec.precision.check_precision
    device: str = "auto"  # auto | cpu | cuda
    # auto: the device's; cuda: batches exactly as on a GPU, also on the CPU (codec/batch_plan.py)
    batch_plan: str = "auto"  # auto | cpu | cuda
    num_actors: int = 0  # 0: one per GPU, or 1 on a CPU-only machine
    gpus_per_actor: float = 1.0
    cpus_per_actor: float = 1.0
    decode_threads: int = 0  # decoder processes per actor; 0: the actor's share of its node's cores, less 1
    prefetch_shards: int = 2  # shards an actor decodes ahead of the one it encodes, within prefetch_bytes
    # decoded float32 audio an actor holds besides the shard it encodes (shards ahead wait for room; 4 GiB)
    prefetch_bytes: int = 4 << 30
    shards_in_flight_per_actor: int = 2  # 2: a shard encodes while the one before it commits; 1: one at a time
    strict: bool = False
    max_actor_restarts: int = 3
    max_shard_attempts: int = 3
    placement_timeout_s: float = 120.0  # no actor can start for this long (no node fits it): the job fails
    retry_unreadable: bool = True  # a re-run tries again the shards recorded as shard_unreadable
    progress_interval_s: float = 5.0
    ray_address: str | None = None  # Ray cluster to join ("auto": `ray start`'s); None: RAY_ADDRESS, else local
    source: SourceConfig = field(default_factory=SourceConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    buckets: BucketConfig = field(default_factory=BucketConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    semantic: SemanticConfig | None = None  # a second token stream (`semantic_codes`); None: `codes` only


def _build(cls, data: dict[str, Any], where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in data.items():
        if name not in fields:
            raise ConfigError(f"unknown config key {where + name!r}; valid keys: {sorted(fields)}")
        sub = _SECTIONS.get(name) if cls is JobConfig else None
        kwargs[name] = _build(sub, value, f"{name}.") if sub and (value is not None or name not in _OPTIONAL) else value
    return cls(**kwargs)


_SECTIONS = {
    "source": SourceConfig,
    "audio": AudioConfig,
    "buckets": BucketConfig,
    "output": OutputConfig,
    "verify": VerifyConfig,
    "semantic": SemanticConfig,
}
_OPTIONAL = ("semantic",)  # sections that may be null (absent)


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` strings (values parsed as YAML) to a nested dict, returning a copy."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. buckets.num_buckets=4)")
        dotted, text = item.split("=", 1)
        parts = dotted.strip().split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = _parse_value(text)
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> JobConfig:
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path) as f:
                data = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
    data = apply_overrides(data, overrides or [])
    cfg = _build(JobConfig, data, "")
    validate(cfg)
    return cfg


def validate(cfg: JobConfig) -> None:
    if not cfg.bandwidths:
        raise ConfigError("bandwidths: give at least one target bandwidth in kbps, e.g. [6.0]")
    if cfg.precision not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"precision must be one of fp32, bf16, fp16; got {cfg.precision!r}")
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device must be one of auto, cpu, cuda; got {cfg.device!r}")
    if cfg.batch_plan not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"batch_plan must be one of auto, cpu, cuda; got {cfg.batch_plan!r}")
    if cfg.audio.resample_quality not in ("QQ", "LQ", "MQ", "HQ", "VHQ"):
        raise ConfigError(f"audio.resample_quality must be QQ, LQ, MQ, HQ or VHQ; got {cfg.audio.resample_quality!r}")
    if cfg.audio.resample_on not in ("decoder", "actor"):
        raise ConfigError(f"audio.resample_on must be decoder or actor; got {cfg.audio.resample_on!r}")
    if cfg.audio.max_duration_s <= 0 or cfg.audio.min_duration_s < 0:
        raise ConfigError("audio.max_duration_s must be > 0 and audio.min_duration_s >= 0")
    if cfg.audio.min_duration_s > cfg.audio.max_duration_s:
        raise ConfigError("audio.min_duration_s must not exceed audio.max_duration_s")
    for where, options in (("source", cfg.source.storage_options), ("output", cfg.output.storage_options)):
        if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
            raise ConfigError(f"{where}.storage_options must be a mapping of option names to values (passed to "
                              f"fsspec, e.g. {{anon: true}}); got a {type(options).__name__}")
    timeout = cfg.source.read_timeout_s
    if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ConfigError(f"source.read_timeout_s must be > 0 seconds or null; got {timeout!r}")
    if cfg.decode_threads < 0 or cfg.prefetch_shards < 0:
        raise ConfigError(f"decode_threads (0: auto) and prefetch_shards must be >= 0; got "
                         f"{cfg.decode_threads} and {cfg.prefetch_shards}")
    if cfg.prefetch_bytes <= 0 or cfg.shards_in_flight_per_actor not in (1, 2):
        raise ConfigError(f"prefetch_bytes must be > 0 and shards_in_flight_per_actor 1 or 2; got "
                          f"{cfg.prefetch_bytes} and {cfg.shards_in_flight_per_actor}")
    b = cfg.buckets
    if not (b.auto_budget or _positive_int(b.batch_budget_samples)):
        raise ConfigError(f"buckets.batch_budget_samples must be an integer > 0 (samples per channel) or auto; "
                          f"got {b.batch_budget_samples!r}")
    if not _positive_int(b.batch_budget_fallback_samples) or not _positive_int(b.max_batch_items):
        raise ConfigError(f"buckets.batch_budget_fallback_samples and buckets.max_batch_items must be integers > 0; "
                          f"got {b.batch_budget_fallback_samples!r} and {b.max_batch_items!r}")
    sem = cfg.semantic
    if sem is not None:
        if not isinstance(sem.model, str) or not sem.model:
            raise ConfigError(f"semantic.model must name a model (e.g. random:hubert_base); got {sem.model!r}")
        if isinstance(sem.layer, bool) or not isinstance(sem.layer, int) or sem.layer < 0:
            raise ConfigError(f"semantic.layer must be an integer >= 0 (hidden_states index); got {sem.layer!r}")
        if not isinstance(sem.centroids, str) or not sem.centroids:
            raise ConfigError("semantic.centroids: give the k-means centroids file (.safetensors from "
                              "jobs.fit_kmeans, or a .npy [k, dim] array)")


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def to_dict(cfg: JobConfig, redact_secrets: bool = True) -> dict[str, Any]:
    """The config as plain data; storage options are replaced by their keys only."""
    data = dataclasses.asdict(cfg)
    if redact_secrets:
        for section in ("source", "output"):
            data[section]["storage_options"] = {k: "<redacted>" for k in getattr(cfg, section).storage_options}
    return data
