"""End-to-end throughput: the baseline users write today vs our job, on the same shards, in one run.

python -m jobs.bench_e2e --kind speech|music --minutes M [--model random:24khz] [--work DIR] [--items-per-shard 8]

(a) baseline: `datasets` streams the tar shards (webdataset builder, audio as bytes), soundfile + soxr
    decode and resample, transformers' EncodecModel encodes batches of 16 padded to the longest
    (fp32, no_grad), codes written to Parquet;
(b) our job with its default config for the model (configs/encodec_24khz.yaml or _48khz.yaml,
    model overridden) through `pipeline.runner.run_job` on a local Ray.
The corpus is built from ../shared/corpus (AUDIOTOK_CORPUS): 16 kHz speech or 44.1 kHz stereo music,
transcoded to FLAC and repeated until M minutes. Prints x realtime, CPU busy %, peak RSS,
padding waste, the ratio (b)/(a) and which stage bounds our run. GPU busy % needs nvidia-smi
and is reported only when a GPU is present.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

SPEECH = ["speech/librivox_0870_16k.wav", "speech/librivox_0890_16k.flac", "speech/librivox_0920_16k.ogg",
          "speech/cards_005_16k.wav", "speech/cmu_arctic_a0007_16k.wav", "speech/goforward_16k.wav"]
MUSIC = ["music/wesnoth_battle-epic_10s_44k.flac", "music/wesnoth_elvish-theme_6s_44k.wav",
         "music/drascula_track12_9s_44k.ogg", "music/wesnoth_loyalists_30s_44k_192kbps.mp3"]


def build_corpus(kind: str, minutes: float, out: Path, per_shard: int) -> tuple[list[str], float]:
    import soundfile as sf

    corpus = Path(os.environ.get("AUDIOTOK_CORPUS", Path(__file__).resolve().parents[1].parent / "shared" / "corpus"))
    files = []  # every source transcoded to FLAC once (the datasets webdataset builder wants one type)
    for rel in SPEECH if kind == "speech" else MUSIC:
        data, rate = sf.read(corpus / rel, dtype="float32", always_2d=True)
        buf = io.BytesIO()
        sf.write(buf, np.clip(data, -1, 1), rate, format="FLAC", subtype="PCM_16")
        files.append((buf.getvalue(), data.shape[0] / rate))
    out.mkdir(parents=True, exist_ok=True)
    total, i, shards = 0.0, 0, []
    tf = None
    while total < minutes * 60:
        if i % per_shard == 0:
            if tf:
                tf.close()
            shards.append(str(out / f"bench-{len(shards):05d}.tar"))
            tf = tarfile.open(shards[-1], "w")
        data, duration = files[i % len(files)]
        info = tarfile.TarInfo(f"item{i:06d}.flac")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        total += duration
        i += 1
    tf.close()
    return shards, total


def cpu_seconds() -> float:
    self_, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return self_.ru_utime + self_.ru_stime + children.ru_utime + children.ru_stime


def baseline(shards: list[str], model_source: str, out: Path) -> dict:
    """What a user writes today with datasets + transformers (see module docstring)."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq
    import soundfile as sf
    import soxr
    import torch
    import transformers

    from codec import load_model, save_model

    ref_dir = Path(tempfile.mkdtemp()) / "ref"
    save_model(load_model(model_source), ref_dir)
    model = transformers.EncodecModel.from_pretrained(ref_dir).eval()
    rate, channels = model.config.sampling_rate, model.config.audio_channels
    started, cpu0 = time.perf_counter(), cpu_seconds()
    # audio as raw bytes: datasets 5 Audio feature (even decode=False) needs torchcodec, not installed here
    features = datasets.Features({"__key__": datasets.Value("string"), "__url__": datasets.Value("string"),
                                  "flac": datasets.Value("binary")})
    ds = datasets.load_dataset("webdataset", data_files=shards, split="train", streaming=True, features=features)
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
            out_ = model.encode(torch.from_numpy(x), torch.from_numpy(mask), bandwidth=max(model.config.target_bandwidths))
        codes = out_.audio_codes.transpose(0, 1)  # [B, chunks, n_q, F]
        for j in range(len(batch)):
            rows.append(codes[j].reshape(codes.shape[2], -1).numpy().astype(np.int16).tolist())
        padded += x.shape[0] * longest
        true += int(mask.sum())
        batch.clear()

    for example in ds:
        a, sr = sf.read(io.BytesIO(example["flac"]), dtype="float32", always_2d=True)
        a = a.mean(1, keepdims=True) if channels == 1 else (np.repeat(a, 2, 1) if a.shape[1] == 1 else a[:, :2])
        a = soxr.resample(a, sr, rate) if sr != rate else a
        audio_s += a.shape[0] / rate
        batch.append(np.ascontiguousarray(a.T))
        if len(batch) == 16:
            flush()
    if batch:
        flush()
    pq.write_table(pa.table({"codes": rows}), out / "baseline.parquet", compression="zstd")
    wall = time.perf_counter() - started
    return {"wall_s": wall, "audio_s": audio_s, "cpu_busy_pct": 100 * (cpu_seconds() - cpu0) / wall / os.cpu_count(),
            "padding_waste": 1 - true / padded, "rows": len(rows)}


def ours(shards: list[str], model_source: str, out: Path, preset: str) -> dict:
    from pipeline.config import load_config
    from pipeline.runner import connect_ray, run_job

    config = Path(__file__).resolve().parents[1] / "configs" / f"encodec_{preset}.yaml"
    cfg = load_config(config, [f"model={model_source}", f"cpus_per_actor={max(1, (os.cpu_count() or 2) // 2)}"])
    connect_ray()
    started, cpu0 = time.perf_counter(), cpu_seconds()
    summary = run_job(cfg, "{" + ",".join(shards) + "}" if len(shards) > 1 else shards[0], str(out / "ours"),
                      log=lambda m: None)
    wall = time.perf_counter() - started
    records = [json.loads(p.read_text()) for p in (out / "ours" / "_manifest").glob("*.json")]
    read = sum(r.get("read_seconds", 0) for r in records)
    encode = sum(r.get("encode_seconds", 0) for r in records)
    return {"wall_s": wall, "audio_s": summary["audio_hours"] * 3600, "rows": summary["rows"],
            "padding_waste": summary["padding_waste"], "decode_s": read, "encode_s": encode,
            "actor_peak_rss_mb": max((r.get("worker_peak_rss_mb", 0) for r in records), default=0),
            "cpu_busy_pct_driver": 100 * (cpu_seconds() - cpu0) / wall / os.cpu_count()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="baseline (datasets + transformers) vs our job, same shards")
    p.add_argument("--kind", choices=["speech", "music"], default="speech")
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--model", default=None, help="default random:24khz for speech, random:48khz for music")
    p.add_argument("--items-per-shard", type=int, default=8)
    p.add_argument("--work", default=None)
    args = p.parse_args(argv)
    preset = "24khz" if args.kind == "speech" else "48khz"
    model = args.model or f"random:{preset}"
    work = Path(args.work or tempfile.mkdtemp(prefix="audiotok-bench-"))
    shards, seconds = build_corpus(args.kind, args.minutes, work / "shards", args.items_per_shard)
    print(f"corpus: {args.kind}, {seconds / 60:.1f} min in {len(shards)} shards; model {model}; {os.cpu_count()} CPUs")
    a = baseline(shards, model, work)
    b = ours(shards, model, work, preset)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for name, r in (("baseline (datasets + transformers, batch 16, fp32)", a), ("audiotok job (default config)", b)):
        print(f"{name}: {r['audio_s'] / r['wall_s']:.1f}x realtime, {r['rows']} rows, wall {r['wall_s']:.1f} s, "
              f"padding waste {100 * r['padding_waste']:.1f} %")
    print(f"baseline CPU busy {a['cpu_busy_pct']:.0f} % of all cores; driver peak RSS {peak:.0f} MiB")
    print(f"ours: decode+resample {b['decode_s']:.1f} s, encode {b['encode_s']:.1f} s (summed over shards); "
          f"bound by {'encode' if b['encode_s'] >= b['decode_s'] else 'CPU decode'}")
    print(f"ours: actor peak RSS {b['actor_peak_rss_mb']:.0f} MiB")
    print(f"ratio (ours / baseline): {(b['audio_s'] / b['wall_s']) / (a['audio_s'] / a['wall_s']):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
