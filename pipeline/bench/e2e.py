"""End-to-end throughput: the baseline users write today vs our job, on the same shards, in one run.

The library side of `python -m jobs.bench_e2e` (and of gpu_check's end-to-end rows):

(a) baseline: `datasets` streams the tar shards (webdataset builder, audio as bytes), soundfile + soxr
    decode and resample, transformers' EncodecModel encodes batches of 16 padded to the longest
    (fp32 with TF32 off: fp32 means fp32, as in our actors; no_grad; on one GPU when torch sees one),
    codes written to Parquet;
(b) our job with its default config for the model (configs/encodec_24khz.yaml or _48khz.yaml,
    model overridden) through `pipeline.job.run_job` on a local Ray, limited to as many GPUs as
    the baseline used (one actor per GPU; `--our-gpus N` to change it, and the ratio line then says
    the runs are not like for like).
The corpus is built from ../shared/corpus (AUDIOTOK_CORPUS): 16 kHz speech or 44.1 kHz stereo music,
transcoded to FLAC and repeated until M minutes.

Output, in order:
  * stage ceilings (pipeline.bench.stage_ceilings): decode, and resample + channel conversion, timed in this
    process on the corpus bytes in memory, as × realtime per core and × the machine's core count;
  * one block per run: × realtime, rows, wall; our peak GPU memory from torch (Run.device_peak_mb);
    GPU busy % (mean) and the device's memory while the run was timed (pipeline.bench.resource_monitor,
    nvidia-smi, device-wide; "n/a (no GPU)" without it); CPU busy %, system-wide
    over all cores and processes; padding waste; peak RSS (baseline: this process's ru_maxrss;
    ours: the actors' and decoder processes' peaks from the manifest records); for ours also the
    summed prepare (read + decode + resample) and encode seconds;
  * the ratio ours / baseline in × realtime, over the whole run and over the steady state (start-up,
    reported apart: the baseline's model load; ours from the call of run_job until the driver has
    the first actor's description, i.e. Ray actor start and model load);
  * the bound line: the lower of the job's encode ceiling (encode rate per actor x actors) and the
    CPU decode + resample ceiling names the bound ("neither stage alone" when our run reached less
    than half of it), with the share reached and both ceilings stated.
Both timed windows include start-up; `steady` excludes it.
"""

from __future__ import annotations

import io
import os
import resource
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..device_peak import DevicePeak
from ..engine.progress import device_peak_mb
from .resource_monitor import ResourceMonitor, Usage
from .stage_ceilings import Ceilings

SPEECH = ["speech/librivox_0870_16k.wav", "speech/librivox_0890_16k.flac", "speech/librivox_0920_16k.ogg",
          "speech/cards_005_16k.wav", "speech/cmu_arctic_a0007_16k.wav", "speech/goforward_16k.wav"]
MUSIC = ["music/wesnoth_battle-epic_10s_44k.flac", "music/wesnoth_elvish-theme_6s_44k.wav",
         "music/drascula_track12_9s_44k.ogg", "music/wesnoth_loyalists_30s_44k_192kbps.mp3"]
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    """One timed run. peak_rss: (what, MiB) pairs, each saying where the number comes from."""

    name: str
    wall_s: float
    audio_s: float
    rows: int
    padding_waste: float
    usage: Usage
    peak_rss: list[tuple[str, float]] = field(default_factory=list)
    startup_s: float | None = None  # part of wall_s: model load (and actor start) before the first item
    gpus: int = 0  # GPUs the run used
    cut_at_s: float | None = None  # stopped at its time limit (limit_s): audio_s / wall_s are what it did by then
    device_peak_mb: float | None = None  # torch's peak CUDA memory allocated (ours: the largest shard's); None on CPU

    @property
    def realtime(self) -> float:
        return self.audio_s / self.wall_s

    @property
    def steady_realtime(self) -> float | None:
        """× realtime after start-up (None when start-up is unknown or took the whole wall)."""
        if self.startup_s is None or self.wall_s <= self.startup_s:
            return None
        return self.audio_s / (self.wall_s - self.startup_s)


@dataclass(frozen=True)
class JobStages:
    """From our job's manifest records: seconds summed over shards, and the number of actors."""

    prepare_s: float  # read + decode + resample, wall of the actor's reader thread (overlaps encode)
    encode_s: float
    actors: int


def flac_sources(kind: str) -> list[tuple[bytes, float]]:
    """The corpus files of `kind` transcoded to FLAC once (the datasets webdataset builder wants one
    type): (bytes, duration in seconds)."""
    import soundfile as sf

    corpus = Path(os.environ.get("AUDIOTOK_CORPUS", REPO.parent / "shared" / "corpus"))
    files = []
    for rel in SPEECH if kind == "speech" else MUSIC:
        data, rate = sf.read(corpus / rel, dtype="float32", always_2d=True)
        buf = io.BytesIO()
        sf.write(buf, np.clip(data, -1, 1), rate, format="FLAC", subtype="PCM_16")
        files.append((buf.getvalue(), data.shape[0] / rate))
    return files


def build_corpus(files: list[tuple[bytes, float]], minutes: float, out: Path,
                 per_shard: int) -> tuple[list[str], list[tuple[bytes, float]]]:
    """Tar shards of `files` repeated until `minutes` of audio, written with webdataset's TarWriter:
    (shard paths, items in write order)."""
    import webdataset as wds

    items: list[tuple[bytes, float]] = []
    total = 0.0
    while total < minutes * 60:
        items.append(files[len(items) % len(files)])
        total += items[-1][1]
    out.mkdir(parents=True, exist_ok=True)
    shards = []
    for first in range(0, len(items), per_shard):
        shards.append(str(out / f"bench-{len(shards):05d}.tar"))
        with wds.TarWriter(shards[-1], encoder=False) as sink:
            for i in range(first, min(first + per_shard, len(items))):
                sink.write({"__key__": f"item{i:06d}", "flac": items[i][0]})
    return shards, items


class TimeLimitReached(Exception):
    """A timed run passed its `limit_s` (raised inside it to stop it; the run reports what it did)."""


def baseline(shards: list[str], model_source: str, out: Path, limit_s: float | None = None) -> Run:
    """What a user writes today with datasets + transformers (see module docstring). With `limit_s`
    it stops after the first batch that ends past `limit_s` seconds (start-up included) and reports
    the audio encoded by then (`Run.cut_at_s`)."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq
    import soundfile as sf
    import soxr
    import torch
    import transformers

    from codec import load_model, save_model
    from codec.runtime import resolve_device, strict_fp32

    strict_fp32()  # fp32 means fp32, as in the job's actors
    device = resolve_device("auto")  # one GPU: cuda:0
    batch, rows, audio_s, padded, true = [], [], 0.0, 0, 0

    def flush():
        nonlocal padded, true
        longest = max(x.shape[-1] for x in batch)
        x = np.zeros((len(batch), channels, longest), np.float32)
        mask = np.zeros((len(batch), longest), np.int64)
        for j, a in enumerate(batch):
            x[j, :, : a.shape[-1]] = a
            mask[j, : a.shape[-1]] = 1
        with torch.no_grad():
            out_ = model.encode(torch.from_numpy(x).to(device), torch.from_numpy(mask).to(device),
                                bandwidth=max(model.config.target_bandwidths))
        codes = out_.audio_codes.transpose(0, 1).cpu()  # [B, chunks, n_q, F]
        for j in range(len(batch)):
            rows.append(codes[j].reshape(codes.shape[2], -1).numpy().astype(np.int16).tolist())
        padded += x.shape[0] * longest
        true += int(mask.sum())
        batch.clear()

    with DevicePeak(device) as peak, ResourceMonitor() as monitor:
        started = time.perf_counter()
        ref_dir = Path(tempfile.mkdtemp()) / "ref"
        save_model(load_model(model_source), ref_dir)
        model = transformers.EncodecModel.from_pretrained(ref_dir).eval().to(device)
        rate, channels = model.config.sampling_rate, model.config.audio_channels
        startup = time.perf_counter() - started
        # audio as raw bytes: datasets 5 Audio feature (even decode=False) needs torchcodec, not installed here
        features = datasets.Features({"__key__": datasets.Value("string"), "__url__": datasets.Value("string"),
                                      "flac": datasets.Value("binary")})
        ds = datasets.load_dataset("webdataset", data_files=shards, split="train", streaming=True, features=features)
        cut = None
        for example in ds:
            a, sr = sf.read(io.BytesIO(example["flac"]), dtype="float32", always_2d=True)
            a = a.mean(1, keepdims=True) if channels == 1 else (np.repeat(a, 2, 1) if a.shape[1] == 1 else a[:, :2])
            a = soxr.resample(a, sr, rate) if sr != rate else a
            audio_s += a.shape[0] / rate
            batch.append(np.ascontiguousarray(a.T))
            if len(batch) == 16:
                flush()
                if limit_s is not None and time.perf_counter() - started > limit_s:
                    cut = time.perf_counter() - started
                    break
        if batch:
            flush()
        pq.write_table(pa.table({"codes": rows}), out / "baseline.parquet", compression="zstd")
        wall = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return Run("baseline (datasets + transformers, batch 16, fp32, TF32 off)", wall, audio_s, len(rows),
               1 - true / padded, monitor.usage,
               [("driver (ru_maxrss of this process so far: corpus, ceilings, model load, run)", rss)],
               startup_s=startup, gpus=int(device == "cuda"), cut_at_s=cut,
               device_peak_mb=peak.mb)


STARTED_LINE = "[audiotok] model:"  # run_job logs it once the first actor has started and loaded the model


def ours(shards: list[str], cfg, out: Path, name: str = "ours", limit_s: float | None = None) -> tuple[Run, JobStages]:
    """Our job on `shards` into `out/name`; start-up is the time until run_job logs STARTED_LINE.

    With `limit_s` the job is stopped at the first line it logs past `limit_s` seconds (it logs
    progress every `progress_interval_s`; run_job then stops its actors) and the run is what the
    committed shards hold: audio and rows of those shards over the time until the last one committed
    (`Run.cut_at_s`; shards in flight are lost, so the rate is a lower bound)."""
    from pipeline import writer
    from pipeline.engine.ray_backend import connect_ray
    from pipeline.job import run_job

    connect_ray()
    spec = "{" + ",".join(shards) + "}" if len(shards) > 1 else shards[0]
    startup: list[float] = []

    def log(message: str) -> None:
        if not startup and str(message).startswith(STARTED_LINE):
            startup.append(time.perf_counter() - started)
        if limit_s is not None and time.perf_counter() - started > limit_s:
            raise TimeLimitReached(f"{name} passed its {limit_s:g} s")

    summary, cut = None, None
    with ResourceMonitor() as monitor:
        started_unix, started = time.time(), time.perf_counter()
        try:
            summary = run_job(cfg, spec, str(out / name), log=log)
        except TimeLimitReached:
            cut = time.perf_counter() - started
        wall = time.perf_counter() - started
    records = list(writer.committed_shards(str(out / name)).values())
    if summary is None:
        return _cut_run(records, cfg, wall, started_unix, startup, monitor.usage, cut)
    peak = [("actor", max((r.worker_peak_rss_mb for r in records), default=0)),
            ("decoder process", max((r.decoder_peak_rss_mb for r in records), default=0))]
    gpus = summary.actors if cfg.device != "cpu" and cuda_devices() else 0
    run = Run(f"audiotok job ({summary.actors} actor(s))", wall, summary.audio_hours * 3600, summary.rows,
              summary.padding_waste, monitor.usage, peak, startup_s=startup[0] if startup else None, gpus=gpus,
              device_peak_mb=summary.device_peak_mb)
    stages = JobStages(sum(r.read_seconds for r in records),
                       sum(r.encode_seconds for r in records), summary.actors)
    return run, stages


def _cut_run(records, cfg, wall: float, started_unix: float, startup: list[float], usage: Usage,
             cut: float) -> tuple[Run, JobStages]:
    """`ours` stopped at its limit: the committed shards' audio over the time until the last commit."""
    ends = [r.finished_at for r in records if r.finished_at]
    if ends:
        wall = max(ends) - started_unix
    padded, true = sum(r.padded_samples for r in records), sum(r.true_samples for r in records)
    actors = max(1, cfg.num_actors or 1)
    peak = [("actor", max((r.worker_peak_rss_mb for r in records), default=0)),
            ("decoder process", max((r.decoder_peak_rss_mb for r in records), default=0))]
    run = Run(f"audiotok job ({actors} actor(s), stopped at {cut:.0f} s)", max(wall, 1e-9),
              sum(r.audio_seconds for r in records), sum(r.rows for r in records),
              1 - true / padded if padded else 0.0, usage, peak, startup_s=startup[0] if startup else None,
              gpus=actors if cfg.device != "cpu" and cuda_devices() else 0, cut_at_s=cut,
              device_peak_mb=device_peak_mb(records))
    return run, JobStages(sum(r.read_seconds for r in records), sum(r.encode_seconds for r in records), actors)


def cuda_devices() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def rt(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.1f}x" if x < 100 else f"{x:.0f}x"


def ratio_line(ours_run: Run, base: Run) -> str:
    """ours / baseline in × realtime, whole run and steady state, saying when GPU counts differ."""
    steady = (f"{ours_run.steady_realtime / base.steady_realtime:.2f}"
              if ours_run.steady_realtime and base.steady_realtime else "n/a")
    line = f"ratio (ours / baseline): {ours_run.realtime / base.realtime:.2f} whole run, {steady} steady state"
    if ours_run.gpus != base.gpus:
        line += f"  (NOT like for like: ours on {ours_run.gpus} GPU(s), baseline on {base.gpus})"
    return line


def ceiling_lines(c: Ceilings, cores: int, rate: int, channels: int, quality: str) -> list[str]:
    rows = [("decode (soundfile)", c.decode_rt),
            (f"resample + channels (soxr {quality} -> {rate} Hz, {channels} ch)", c.resample_rt),
            ("decode + resample", c.prepare_rt)]
    return [f"stage ceilings (one process, CPU time, {c.audio_s:.1f} s of the corpus in memory):"] + [
        f"  {name}: {rt(v)} rt per core, {rt(v * cores)} on {cores} cores" for name, v in rows]


def run_lines(r: Run) -> list[str]:
    u = r.usage
    gpu = (f"GPU busy {u.gpu.busy_pct:.0f} % (mean of {u.gpu.samples} samples), "
           f"device memory {u.gpu.peak_mem_mib:.0f} MiB (nvidia-smi: device-wide, all processes, caches)") if u.gpu \
        else f"GPU busy n/a ({u.gpu_missing})"
    ours_mem = "n/a (CPU)" if r.device_peak_mb is None else f"{r.device_peak_mb:.0f} MiB"
    cpu = "n/a (no /proc/stat)" if u.cpu_busy_pct is None else f"{u.cpu_busy_pct:.0f} %"
    startup = "n/a" if r.startup_s is None else f"{r.startup_s:.1f} s"
    return [f"{r.name}:",
            f"  {rt(r.realtime)} realtime, {r.rows} rows, wall {r.wall_s:.1f} s on {r.gpus} GPU(s)",
            f"  start-up {startup}, steady state {rt(r.steady_realtime)} realtime",
            f"  our GPU memory peak {ours_mem} (torch.cuda.max_memory_allocated)",
            f"  {gpu}",
            f"  CPU busy {cpu} (system-wide: all cores, all processes)",
            f"  padding waste {100 * r.padding_waste:.1f} %",
            "  peak RSS: " + ", ".join(f"{what} {mib:.0f} MiB" for what, mib in r.peak_rss)]


def bound_line(ours_rt: float, stages: JobStages, audio_s: float, c: Ceilings, cores: int,
               resample_on_cpu: bool = True) -> str:
    """Names the lower of the encode ceiling (per-actor encode rate x actors) and the CPU ceiling
    (decode + resample per core x cores; decode alone when the actor resamples), with the share of
    it our run reached; states both."""
    per_actor = audio_s / stages.encode_s if stages.encode_s > 0 else float("inf")
    cpu_name, cpu_rt = ("CPU decode + resample", c.prepare_rt) if resample_on_cpu else ("CPU decode", c.decode_rt)
    limits = {"encode": per_actor * stages.actors, cpu_name: cpu_rt * cores}
    name = min(limits, key=limits.get)
    share = 100 * ours_rt / limits[name]
    head = f"bound by {name}" if share >= 50 else "bound by neither stage alone (below half of the lower ceiling)"
    actors = f"{stages.actors} actor" + ("s" if stages.actors != 1 else "")
    encode = "encode" if resample_on_cpu else "resample + encode"
    return (f"{head}: ours {rt(ours_rt)} rt = {share:.0f} % of the {name} ceiling; "
            f"{encode} ceiling {rt(limits['encode'])} ({rt(per_actor)} rt per actor x {actors}); "
            f"{cpu_name} ceiling {rt(limits[cpu_name])} on {cores} cores"
            + (f" (decode alone {rt(c.decode_rt * cores)})" if resample_on_cpu else ""))
