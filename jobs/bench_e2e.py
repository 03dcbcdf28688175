"""python -m jobs.bench_e2e --kind speech|music --minutes M [--model random:24khz] [--work DIR]
                         [--items-per-shard 8] [--our-gpus N] [--set KEY=VALUE ...]

End-to-end throughput, the baseline users write today vs our job on the same shards: what is run
and printed is described in `pipeline.bench.e2e`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from codec import PRESETS
from pipeline.bench import stage_ceilings
from pipeline.bench.e2e import (
    REPO,
    baseline,
    bound_line,
    build_corpus,
    ceiling_lines,
    cuda_devices,
    flac_sources,
    ours,
    ratio_line,
    run_lines,
)
from pipeline.config import load_config


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="baseline (datasets + transformers) vs our job, same shards")
    p.add_argument("--kind", choices=["speech", "music"], default="speech")
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--model", default=None, help="default random:24khz for speech, random:48khz for music")
    p.add_argument("--items-per-shard", type=int, default=8)
    p.add_argument("--work", default=None)
    p.add_argument("--our-gpus", type=int, default=None,
                   help="actors (one GPU each) for our job on a GPU machine; default: the baseline's GPU count (1)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides of our job's config, e.g. audio.resample_on=actor prefetch_shards=3")
    args = p.parse_args(argv)
    preset = "24khz" if args.kind == "speech" else "48khz"
    model = args.model or f"random:{preset}"
    cores = os.cpu_count() or 1
    config = REPO / "configs" / f"encodec_{preset}.yaml"
    # the preset's cpus_per_actor, or every core where there are fewer (Ray could not place the actor)
    cpus = min(load_config(config).cpus_per_actor, cores)
    gpu_limit = [f"num_actors={args.our_gpus or 1}"] if cuda_devices() else []  # the baseline uses one GPU
    cfg = load_config(config, [f"model={model}", f"cpus_per_actor={cpus}", *gpu_limit, *args.set])
    work = Path(args.work or tempfile.mkdtemp(prefix="audiotok-bench-"))
    shards, items = build_corpus(flac_sources(args.kind), args.minutes, work / "shards", args.items_per_shard)
    seconds = sum(d for _, d in items)
    print(f"corpus: {args.kind}, {seconds / 60:.1f} min in {len(shards)} shards; model {model}; {cores} CPUs; "
          f"our overrides: {' '.join(args.set) or 'none'}")
    rate, channels = PRESETS[preset].sampling_rate, PRESETS[preset].audio_channels
    ceilings = stage_ceilings.measure(items, rate, channels, cfg.audio)
    print("\n".join(ceiling_lines(ceilings, cores, rate, channels, cfg.audio.resample_quality)))
    a = baseline(shards, model, work)
    b, stages = ours(shards, cfg, work)
    print("\n".join(run_lines(a) + run_lines(b)))
    print(f"  prepare (read + decode + resample, overlaps encode) {stages.prepare_s:.1f} s, "
          f"encode {stages.encode_s:.1f} s (summed over shards)")
    print(ratio_line(b, a))
    print(bound_line(b.realtime, stages, b.audio_s, ceilings, cores, cfg.audio.resample_on == "decoder"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
