"""Fitting k-means centroids for semantic tokens on a seeded sample of a corpus (`python -m jobs.fit_kmeans`).

    input spec (pipeline.sources: a folder, glob, tars, manifest, hf:...)
      -> shards in a seeded order; an item is sampled when sha256(seed, key) < fraction, until max_seconds
      -> decoded and resampled to 16 kHz mono (`audio.prepare`; items cut at max_item_seconds)
      -> HuBERT hidden_states[layer], appended to a float32 file on disk (streamed: memory holds one
         batch; disk holds frames x dim x 4 bytes, 1 h of audio at 768 dims: 553 MB)
      -> mini-batch k-means (`codec.kmeans`) on the file, memory-mapped, on the model's device
      -> .safetensors: the centroids and their provenance (`codec.centroids.CentroidMeta`)

The same seed, input, options and device give the same file, byte for byte. Items that cannot be
decoded or are shorter than one HuBERT frame are skipped and counted by reason in the summary.
"""

from __future__ import annotations

import hashlib
import random
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from codec.centroids import CentroidMeta, save_centroids
from codec.hubert import load_hubert
from codec.kmeans import minibatch_kmeans
from codec.runtime import resolve_device, strict_fp32
from codec.semantic import layer_features

from . import sources
from .audio import prepare
from .config import AudioConfig, SourceConfig
from .errors import InputError


@dataclass(frozen=True)
class FitOptions:
    input: str  # an input spec, as `jobs.tokenize --input` takes
    output: str  # the .safetensors to write
    model: str = "random:hubert_base"
    layer: int = 9
    k: int = 500
    seed: int = 0
    fraction: float = 1.0  # chance that an item is sampled (decided by a hash of seed and key)
    max_seconds: float = 3600.0  # stop sampling after this much audio
    max_item_seconds: float = 30.0  # longer items are cut into pieces of this length (all of them used)
    batch_size: int = 10000  # feature frames per mini-batch
    steps: int = 300  # mini-batches
    device: str = "auto"
    work_dir: str | None = None  # where the feature file goes (default: a temporary folder beside output)

    def __post_init__(self):
        if not 0.0 < self.fraction <= 1.0:
            raise InputError(f"fraction must be in (0, 1]; got {self.fraction}")
        if self.k < 1 or self.batch_size < 1 or self.steps < 1 or self.max_seconds <= 0:
            raise InputError(f"k, batch_size, steps and max_seconds must be positive; got k={self.k}, "
                             f"batch_size={self.batch_size}, steps={self.steps}, max_seconds={self.max_seconds}")
        if not self.output.endswith(".safetensors"):
            raise InputError(f"output must be a .safetensors file; got {self.output!r}")


@dataclass
class FitSummary:
    output: str
    items: int = 0
    seconds: float = 0.0
    frames: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> items
    final_inertia: float | None = None
    empty_clusters: int = 0
    sample_sha256: str = ""


def sampled(seed: int, key: str, fraction: float) -> bool:
    """Whether `key` is in the seed's sample: the first 8 bytes of sha256("seed:key") as a fraction of 2^64."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def sampled_segments(options: FitOptions, rate: int, skipped: Counter, log: Callable[[str], None]):
    """Yield the sampled Segments (float32 [1, T] at `rate`) in a seeded shard order, until max_seconds."""
    shards = sources.list_shards(options.input, SourceConfig(), log)
    random.Random(options.seed).shuffle(shards)
    audio_cfg = AudioConfig(max_duration_s=options.max_item_seconds, min_duration_s=0.0)
    seconds = 0.0
    for shard in shards:
        for sample in sources.read_shard(shard, SourceConfig()):
            if not sampled(options.seed, sample.key, options.fraction):
                continue
            segments, rejections = prepare(sample, audio_cfg, rate, 1)
            for rejection in rejections:
                skipped[rejection.reason] += 1
            for segment in segments:
                yield segment
                seconds += segment.audio.shape[-1] / rate
                if seconds >= options.max_seconds:
                    return


def fit_kmeans(options: FitOptions, log: Callable[[str], None] = print) -> FitSummary:
    """Sample, extract features, fit, write (see the module docstring); InputError when the input has fewer
    usable feature frames than k."""
    device = resolve_device(options.device)
    strict_fp32()
    model = load_hubert(options.model, device=device)
    model.check_layer(options.layer)
    config = model.config
    summary = FitSummary(options.output)
    keys = hashlib.sha256()
    work = Path(options.work_dir) if options.work_dir else Path(options.output).expanduser().resolve().parent
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work, prefix=".fit_kmeans-") as tmp:
        feature_file = Path(tmp) / "features.f32"
        with open(feature_file, "wb") as out:
            for segment in sampled_segments(options, config.sampling_rate, summary.skipped, log):
                length = segment.audio.shape[-1]
                if length < config.receptive_field:
                    summary.skipped["shorter_than_one_frame"] += 1
                    continue
                audio = torch.from_numpy(segment.audio)[None]
                feats = layer_features(model, audio, [length], options.layer, "cpu")[0]
                out.write(feats.cpu().numpy().astype(np.float32, copy=False).tobytes())
                keys.update(f"{segment.key}:{length}\n".encode())
                summary.items += 1
                summary.seconds += length / config.sampling_rate
                summary.frames += feats.shape[0]
        log(f"[fit_kmeans] {summary.items} items, {summary.seconds:.1f} s, {summary.frames} frames of layer "
            f"{options.layer}; skipped {dict(summary.skipped) or 'none'}")
        if summary.frames < options.k:
            raise InputError(f"the sample of {options.input!r} has {summary.frames} feature frames, fewer than "
                             f"k={options.k}; sample more audio (max_seconds, fraction) or lower k")
        dim = config.hidden_size
        table = np.memmap(feature_file, dtype=np.float32, mode="r", shape=(summary.frames, dim))

        def rows(index: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(table[index.numpy()]))

        def progress(step: int, inertia: float) -> None:
            if step % 50 == 0 or step == options.steps - 1:
                log(f"[fit_kmeans] step {step + 1}/{options.steps}: mean squared distance {inertia:.4f}")

        result = minibatch_kmeans(rows, summary.frames, options.k, seed=options.seed, batch_size=options.batch_size,
                                  steps=options.steps, device=device, progress=progress)
    summary.sample_sha256 = keys.hexdigest()
    summary.final_inertia = result.inertia[-1]
    summary.empty_clusters = int((result.counts == 0).sum())
    meta = CentroidMeta(
        model=model.provenance.source, model_sha256=str(model.provenance.sha256), layer=options.layer, k=options.k,
        dim=dim, seed=options.seed,
        sample=(f"{options.input}: {summary.items} items, {summary.seconds:.1f} s, {summary.frames} frames "
                f"(fraction {options.fraction}, max_seconds {options.max_seconds}, "
                f"max_item_seconds {options.max_item_seconds})"),
        sample_sha256=summary.sample_sha256, iterations=options.steps, batch_size=options.batch_size)
    save_centroids(options.output, result.centers, meta)
    log(f"[fit_kmeans] wrote {options.output}: k={options.k}, {summary.empty_clusters} clusters never assigned, "
        f"final mean squared distance {summary.final_inertia:.4f}")
    return summary
