"""The decoders' stage ceiling vs a decoder process, on the same files, in one session.

python -m jobs.stage_ceilings --kind speech|music [--minutes M] [--rounds R] [--resample-on decoder|actor]
                              [--malloc decoder|default]

Files: the bench corpus clips (pipeline/bench/corpus.py: 16 kHz mono FLAC speech -> 24 kHz mono,
44.1 kHz stereo FLAC music -> 48 kHz stereo) repeated to M minutes. Each round times, in turn, the
stage ceiling (pipeline/bench/stage_ceilings.py: decode and resampling in this process, no hand-over)
and one decoder process over the same files (pipeline/bench/decoder_process.py: `DecodePool`, calls
of 64 files, the hand-over included). Prints CPU seconds per audio-hour per round and the medians.
The ceiling is timed with this process's malloc set as a decoder's (`--malloc decoder`, the default:
without it every array of a few MB is a fresh mapping to fault in, 0.6 CPU-s per audio-hour of music
on 2026-12-07, which the decoders do not pay; docs/actor_bench.md).
"""

from __future__ import annotations

import argparse
import statistics

from pipeline.bench import corpus, decoder_process, stage_ceilings
from pipeline.config import AudioConfig
from pipeline.decode_pool import DecodePool
from pipeline.records import Sample

TARGETS = {"speech": (24000, 1), "music": (48000, 2)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=sorted(TARGETS), default="speech")
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--resample-on", choices=["decoder", "actor"], default="decoder")
    p.add_argument("--malloc", choices=["decoder", "default"], default="decoder",
                   help="this process's malloc settings while timing the ceiling (default: a decoder's)")
    args = p.parse_args(argv)
    if args.malloc == "decoder" and not decoder_process.allocate_as_decoder():
        print("(no glibc: the ceiling is timed with this process's default malloc)")
    rate, channels = TARGETS[args.kind]
    cfg = AudioConfig(resample_on=args.resample_on)
    clips = corpus.sources(args.kind)
    items, seconds = [], 0.0
    while seconds < args.minutes * 60:
        clip = clips[len(items) % len(clips)]
        items.append((clip.flac, clip.seconds))
        seconds += clip.seconds
    hours = seconds / 3600
    print(f"stage_ceilings {args.kind}: {len(items)} files, {hours:.3f} h of audio -> {rate} Hz x {channels}, "
          f"resample_on {args.resample_on}, malloc {args.malloc}; CPU-s per audio-hour")
    pool = DecodePool(cfg, rate, channels, workers=1)
    rows = []
    try:
        pool.prepare_all([Sample("warmup", "stage_ceilings", data, "flac") for data, _ in items[:8]])
        for r in range(args.rounds):
            c = stage_ceilings.measure(items, rate, channels, cfg)
            decoder = decoder_process.measure(pool, items)
            rows.append((c.decode_cpu_s / hours, c.resample_cpu_s / hours, decoder / hours))
            print(f"round {r + 1}: ceiling decode {rows[-1][0]:.3f} + resample {rows[-1][1]:.3f} = "
                  f"{rows[-1][0] + rows[-1][1]:.3f}   decoder process {rows[-1][2]:.3f}", flush=True)
    finally:
        pool.close()
    dec, res, proc = (statistics.median(col) for col in zip(*rows))
    print(f"median: ceiling decode {dec:.3f} + resample {res:.3f} = "
          f"{statistics.median(a + b for a, b, _ in rows):.3f} ({3600 / (dec + res):,.0f}x realtime per core)   "
          f"decoder process {proc:.3f} ({3600 / proc:,.0f}x)")


if __name__ == "__main__":
    main()
