"""The scale benchmark (pipeline/bench/scale.py): job start, training index, fragments, listing, scheduler.

python -m jobs.bench_scale --shards 10000 [--root DIR] [--figures job_start,row_index,...] [--storages local,fake]
                           [--rows 120] [--frames 750] [--n-q 8] [--actors 2048] [--scale-to 1000000] [--json F]

Builds (or reuses) a synthetic output of N shards under --root and prints each figure: on the local
disk (wall and CPU seconds) and on the fake object store (requests by kind, bytes, simulated seconds
at 20 ms a request, 10 in flight), with the store's figures scaled linearly to --scale-to shards.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

from pipeline.bench import scale


def main(argv: list[str] | None = None) -> list[scale.Figure]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shards", type=int, default=10_000)
    p.add_argument("--root", default=os.path.join(tempfile.gettempdir(), "audiotok-bench-scale"))
    p.add_argument("--figures", default=",".join(scale.FIGURES))
    p.add_argument("--storages", default="local,fake")
    p.add_argument("--rows", type=int, default=120)
    p.add_argument("--frames", type=int, default=750)
    p.add_argument("--n-q", type=int, default=8)
    p.add_argument("--actors", type=int, default=2048)
    p.add_argument("--scale-to", type=int, default=1_000_000)
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    small = [f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
             if k in ("shards", "rows", "frames", "n_q", "actors", "scale_to") and v < 1]
    if small:
        p.error(f"{', '.join(small)}: must be at least 1")
    try:
        figures = scale.run(args.root, args.shards, tuple(args.figures.split(",")), tuple(args.storages.split(",")),
                            args.actors, rows=args.rows, frames=args.frames, n_q=args.n_q)
    except ValueError as exc:
        p.error(str(exc))
    print(f"\n[bench_scale] {args.shards:,} shards; fake store figures scaled to {args.scale_to:,} shards:")
    for figure in figures:
        print(figure.line(args.scale_to))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(scale.as_json(figures), f, indent=1)
    return figures


if __name__ == "__main__":
    main()
