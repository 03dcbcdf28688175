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


def main(argv: list[str] | None = None) -> int:
    from pipeline.bench import precision as pt

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
    rows, flops = pt.run(args)
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


if __name__ == "__main__":
    raise SystemExit(main())
