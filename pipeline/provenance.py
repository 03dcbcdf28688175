"""What produced a token dataset: the model, its checkpoint hash, the codec and job settings.

The same record goes into every Parquet file's key/value metadata (`schema.file_metadata`) and into
`<out>/_provenance.json` (datasets drops Parquet metadata); verify reads it back to re-run the job's
path. Built by each actor from the model it loaded, so it describes what actually ran.
"""

from __future__ import annotations

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


def model_info(model, cfg: JobConfig, device: str) -> dict[str, Any]:
    c = model.config
    return {
        "format_version": 1,
        "model_name": c.name,
        "model_source": model.provenance["source"],
        "checkpoint_sha256": model.provenance["sha256"],
        "random_weights": model.provenance["random_weights"],
        "codec_config": c.to_dict(),
        "sample_rate": c.sampling_rate,
        "channels": c.audio_channels,
        "frame_rate": c.frame_rate,
        "hop_length": c.hop_length,
        "chunk_length": c.chunk_length,
        "chunk_stride": c.chunk_stride,
        "bandwidths": sorted(cfg.bandwidths),
        "bandwidth_to_num_quantizers": {str(b): c.num_quantizers_for(b) for b in sorted(cfg.bandwidths)},
        "num_quantizers": c.num_quantizers_for(max(cfg.bandwidths)),
        "precision": cfg.precision,
        "device": device,
        "pipeline_version": PIPELINE_VERSION,
        "resampler": resampler_info(cfg.audio, device),
        "segment_max_s": cfg.audio.max_duration_s,
    }


def check_sha256(info: dict[str, Any], cfg: JobConfig) -> None:
    """Any model_sha256 given (even one YAML read as a number, e.g. 000...0) must equal the checkpoint's."""
    want = cfg.model_sha256
    if want is not None and str(want).strip().lower() != info["checkpoint_sha256"]:
        raise JobFailed(f"model checkpoint sha256 {info['checkpoint_sha256']} does not match "
                        f"model_sha256 {want} in the config")
