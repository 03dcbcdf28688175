"""Measure token rows against their originals: re-read, decode per bandwidth, re-encode, compare.

`Checker` holds one model and runs inline (`verify.run`) or, as `CheckWork`, inside an actor that
`pipeline.verify_on_ray` places with the engine's Ray backend; `CheckSettings` is the plain data
both need; each row gives a `result.CheckResult`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import torch

from codec import ModelProvenance, metrics

from .. import audio as audio_prep
from .. import sources
from ..config import AudioConfig, JobConfig, SemanticConfig, SourceConfig
from ..device_resample import batch_at_model_rate, encoder_batch
from ..records import EncodeBatch, Segment, Shard
from ..sources import ShardReadError, shard_id_for
from .result import BandwidthScores, CheckResult, Media

STATUSES = ("ok", "missing_original", "length_mismatch", "bad_row")


@dataclass
class CheckSettings:
    """Everything a checker (inline or in a Ray actor) needs; plain picklable data."""

    model: str
    device: str
    precision: str
    threads: int | None
    sample_rate: int
    channels: int
    source: SourceConfig
    audio: AudioConfig
    input_spec: str | None
    bandwidths: list[float]
    n_q: dict[float, int]
    encode_bandwidth: float
    batch_plan: str = "cpu"  # the job's (codec/batch_plan.py)
    # CUDA plan: the batch each sampled row was encoded in (from the manifest), re-encoded the same way
    batches: dict[str, EncodeBatch] = field(default_factory=dict)
    semantic: SemanticConfig | None = None  # the job's semantic tokenizer: its ids are re-encoded and compared


def base_keys(key: str) -> set[str]:
    """Source keys a row key may come from: the key itself and, for `k#n`, k."""
    match = re.fullmatch(r"(.*)#\d+", key)
    return {key, match.group(1)} if match else {key}


class Checker:
    """Holds one model; `check(rows)` re-reads the originals and measures each row."""

    def __init__(self, settings: CheckSettings):
        from codec import load_codec
        from codec.runtime import dtype_for, strict_fp32

        self.settings = settings
        self.model = load_codec(settings.model, device=settings.device, dtype=dtype_for(settings.precision))
        self.model.set_batch_plan(settings.batch_plan)  # as the job's actors
        strict_fp32()  # as the job's actors
        from ..streams import load_streams

        self.streams = load_streams(JobConfig(semantic=settings.semantic, audio=settings.audio,
                                              batch_plan=settings.batch_plan), settings.device)
        self._shards: dict[str, Shard] | None = None

    def shard_for(self, url: str) -> Shard:
        if self._shards is None:
            self._shards = {}
            if self.settings.input_spec:
                try:
                    listed = sources.list_shards(self.settings.input_spec, self.settings.source)
                    self._shards = {s.url: s for s in listed}
                except (ValueError, OSError):
                    pass  # input moved or gone: fall back to the row's own source URL
        return self._shards.get(url) or Shard(shard_id_for(url), url, "webdataset")

    def originals(self, rows: list[dict]) -> dict[str, Segment | tuple[str, str]]:
        """{row key: Segment re-read like the job did, or (status, detail)} for rows of any sources."""
        s = self.settings
        found: dict[str, Segment | tuple[str, str]] = {}
        by_source: dict[str, set[str]] = {}
        for row in rows:
            by_source.setdefault(row["source"], set()).add(row["key"])
        for url, wanted in sorted(by_source.items()):
            bases = set().union(*(base_keys(k) for k in wanted))
            try:
                for sample in sources.read_shard(self.shard_for(url), s.source):
                    if sample.key not in bases:
                        continue
                    segments, rejections = audio_prep.prepare(sample, s.audio, s.sample_rate, s.channels,
                                                              [(t.sample_rate, t.channels) for t in self.streams])
                    for seg in segments:
                        if seg.key in wanted:
                            found[seg.key] = seg
                    for rej in rejections:
                        if rej.key in wanted:
                            found[rej.key] = ("missing_original", f"now rejected: {rej.reason} ({rej.detail})")
                    if wanted <= set(found):
                        break
            except (ShardReadError, ValueError, OSError) as exc:
                for key in wanted - set(found):
                    found[key] = ("missing_original", f"cannot read {url}: {type(exc).__name__}: {exc}"[:300])
            for key in wanted - set(found):
                found[key] = ("missing_original", f"key not found in {url}")
        return found

    def check(self, rows: list[dict], keep_audio: bool = False) -> list[CheckResult]:
        """One result per row (see `check_one`); torch runs with settings.threads threads meanwhile."""
        before = torch.get_num_threads()
        if self.settings.threads:
            torch.set_num_threads(self.settings.threads)
        try:
            mates = [{"key": k, "source": row["source"]} for row in rows
                     for k in self._batch_of(row).keys if k != row["key"]]
            originals = self.originals(rows + mates)
            now = self.encode_as_the_job(rows, originals)
            return [self.check_one(row, originals[row["key"]], keep_audio, now.get(row["key"])) for row in rows]
        finally:
            torch.set_num_threads(before)

    def _batch_of(self, row: dict) -> EncodeBatch:
        """The batch the job encoded `row` in (CUDA plan), else the row alone."""
        return self.settings.batches.get(row["key"]) or EncodeBatch([row["key"]])

    def encode_as_the_job(self, rows: list[dict], originals: dict) -> dict[str, torch.Tensor]:
        """{row key: codes now} for rows whose batch the job recorded (CUDA plan): the originals of the
        whole batch encoded together, in the job's order and pass size, so codes that depend on the
        batch (the batched LSTM) come out as the job wrote them. Other rows are encoded alone by
        `check_one`; so are rows of a batch whose other originals cannot be read any more."""
        now: dict[str, torch.Tensor] = {}
        for row in rows:
            batch = self.settings.batches.get(row["key"])
            if batch is None or row["key"] in now:
                continue
            segments = [originals.get(k) for k in batch.keys]
            if not all(isinstance(seg, Segment) for seg in segments):
                continue
            x, lengths = encoder_batch(segments, self.model)
            try:
                items = self.model.encode(x, lengths, bandwidth=self.settings.encode_bandwidth,
                                          max_batch=batch.max_batch)
            except (ValueError, RuntimeError):
                continue  # check_one encodes the row alone and reports what fails there
            now.update({k: item.codes for k, item in zip(batch.keys, items)})
        return now

    def check_one(self, row: dict, original: Segment | tuple[str, str], keep_audio: bool,
                  now: torch.Tensor | None = None) -> CheckResult:
        """The row measured at each bandwidth; media (original and decoded float32 [C, T]) when keep_audio.
        now: the original's codes re-encoded in the job's batch (`encode_as_the_job`); None: encoded alone."""
        from codec import EncodedItem

        s = self.settings
        result = CheckResult(key=row["key"], source=row["source"], num_samples=int(row["num_samples"]),
                             duration_s=float(row["duration_s"]), start_s=float(row["start_s"]))
        if isinstance(original, tuple):
            result.status, result.detail = original
            return result
        x, (length,) = batch_at_model_rate([original], s.sample_rate, self.model.device)
        if length != row["num_samples"]:
            result.status = "length_mismatch"
            result.detail = f"original now has {length} samples, the row {row['num_samples']}"
            return result
        audio = x[0].cpu().numpy()
        stored = torch.from_numpy(row["codes"].astype(np.int64))
        try:
            if now is None:
                now = self.model.encode(x, bandwidth=s.encode_bandwidth)[0].codes
            if now.shape != stored.shape:
                raise ValueError(f"stored codes {tuple(stored.shape)} but the original encodes to {tuple(now.shape)}")
            same = (now == stored).double()
            result.code_agreement_all = float(same.mean())
            media = Media(audio)
            for b in s.bandwidths:
                n_q = s.n_q[b]
                item = EncodedItem(stored[:n_q], row["scales"], int(row["num_samples"]))
                decoded = self.model.decode([item])[0].numpy()
                result.bandwidths[b] = BandwidthScores.from_scores(
                    n_q, metrics.all_metrics(audio, decoded, s.sample_rate), float(same[:n_q].mean()))
                media.decoded[b] = decoded
            for stream, audio_at in zip(self.streams, original.other_audio):
                result.stream_agreement[stream.name] = self.stream_agreement(stream, row, audio_at)
        except (ValueError, IndexError, RuntimeError) as exc:
            result.status, result.detail = "bad_row", f"{type(exc).__name__}: {exc}"[:300]
            return result
        if keep_audio:
            result.media = media
        return result


    @staticmethod
    def stream_agreement(stream, row: dict, audio: np.ndarray) -> float:
        """Share of the row's stored ids of `stream` that its tokenizer gives the original (at the
        stream's rate, as the job resampled it) encoded alone; ValueError when the lengths differ."""
        stored = torch.from_numpy(np.asarray(row[stream.column]).astype(np.int64))
        now = stream.tokenizer.encode(torch.from_numpy(audio)[None], [audio.shape[-1]])[0].cpu()
        if now.shape != stored.shape:
            raise ValueError(f"stored {stream.column} {tuple(stored.shape)} but the original encodes to "
                             f"{tuple(now.shape)}")
        return float((now == stored).double().mean())


class CheckWork:
    """A checker as work for a placed actor (the engine builds it as `CheckWork(context, settings)`):
    describe() is the model's provenance, run(rows) the rows' results without their audio."""

    actor_name = "VerifyActor"  # as Ray shows verify's actor processes

    def __init__(self, context, settings: CheckSettings):  # context: where it runs (unused)
        self.checker = Checker(settings)

    def describe(self) -> ModelProvenance:
        return self.checker.model.provenance

    def run(self, rows: list[dict]) -> list[CheckResult]:
        return self.checker.check(rows, keep_audio=False)
