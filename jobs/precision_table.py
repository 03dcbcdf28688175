"""python -m jobs.precision_table [--presets 24khz 32khz 48khz] [--clips 4] [--clip-s 2] [--no-tiny]
                                [--precisions fp32 tf32 ...] [--markdown PATH]

Regenerates the tables of docs/precision.md (pipeline/precision_table.py) on the CPU: random:<preset>
models with codebooks fitted by k-means to corpus audio (AUDIOTOK_CORPUS, as jobs.gpu_check fits them),
plus the trained tiny:24khz with its own codebooks, on held-out corpus clips. Reduced sizes for a quick
re-run (a few CPU-minutes): --clips 2 --clip-s 1 --fit-seconds 8; the defaults, which produced
docs/precision.md, take longer (see there).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import torch


def main(argv: list[str] | None = None) -> int:
    from pipeline import precision_table as pt

    p = argparse.ArgumentParser(prog="python -m jobs.precision_table", description=__doc__.split("\n\n")[1])
    p.add_argument("--presets", nargs="+", default=["24khz", "32khz", "48khz"], choices=["24khz", "32khz", "48khz"])
    p.add_argument("--precisions", nargs="+", default=list(pt.STUDIED), choices=pt.STUDIED)
    p.add_argument("--clips", type=int, default=4, help="held-out clips per model")
    p.add_argument("--clip-s", type=float, default=2.0, help="seconds per clip")
    p.add_argument("--fit-seconds", type=float, default=30.0, help="corpus seconds k-means is fitted on")
    p.add_argument("--kmeans-iters", type=int, default=4)
    p.add_argument("--no-tiny", action="store_true", help="leave out the trained tiny:24khz")
    p.add_argument("--markdown", help="also write the tables to this file")
    p.add_argument("--json", help="also write the rows as JSON to this file")
    args = p.parse_args(argv)
    if args.clips < 1 or args.clip_s <= 0 or args.fit_seconds <= 0:
        print("precision_table: --clips, --clip-s and --fit-seconds must be > 0", file=sys.stderr)
        return 2
    if "fp32" not in args.precisions:
        args.precisions.insert(0, "fp32")  # the quality reference of every other row
    rows, flops = run(args)
    text = pt.format_markdown(rows, flops)
    print("\n" + text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"precision": [dataclasses.asdict(r) for r in rows],
                       "flops": [dict(dataclasses.asdict(f), total_gflop=f.total_gflop) for f in flops]}, f, indent=1)
    return 0


def run(args):
    from codec import load_model
    from jobs.gpu_check import codec_rows, sizes
    from pipeline import precision_table as pt

    size = dataclasses.replace(sizes.CPU, clip_s=args.clip_s, max_clips=args.clips, fit_seconds=args.fit_seconds,
                               kmeans_iters=args.kmeans_iters, kmeans_frames=20000)
    rows, flops = [], []
    for preset in args.presets:
        started = time.perf_counter()
        fitted = codec_rows.fit_preset(preset, size)
        print(f"{preset}: {fitted.detail} ({time.perf_counter() - started:.0f} s)", flush=True)
        models = [(f"random:{preset} fitted", fitted.base, fitted.reference)]
        if preset == "24khz" and not args.no_tiny:
            tiny = load_model("tiny:24khz")
            with torch.inference_mode():
                models.append(("tiny:24khz", tiny, [i.codes for c in fitted.clips for i in tiny.encode(c[None])]))
        for name, model, reference in models:
            for precision in args.precisions:
                row = pt.precision_row(name, model, fitted.clips, reference, precision)
                print(f"  {name} {precision}: {row.status} {row.agreement_pct:.2f} % (q0 {row.q0_agreement_pct:.2f}), "
                      f"SI-SNR {row.si_snr_db:.2f} dB, mel {row.mel_distance_db:.3f} dB, {row.cpu_s:.1f} CPU s "
                      f"{row.detail[:100]}", flush=True)
                rows.append(row)
        flops.append(pt.flop_row(f"{preset} (EnCodec architecture)", fitted.base))
    return rows, flops


if __name__ == "__main__":
    raise SystemExit(main())
