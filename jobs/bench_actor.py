"""The actor's CPU cost per hour of audio, without Ray, with a stand-in model (pipeline/bench/actor.py).

python -m jobs.bench_actor --kind speech|music [--minutes M] [--decoders N] [--per-shard 64]
                           [--work DIR] [--json FILE] [--set KEY=VALUE ...] [--real-model [--torch-threads T]]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from pipeline.bench import actor


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=sorted(actor.CONFIGS), default="speech")
    p.add_argument("--minutes", type=float, default=60.0, help="measured audio (the warm-up shard comes on top)")
    p.add_argument("--decoders", type=int, default=1)
    p.add_argument("--per-shard", type=int, default=64)
    p.add_argument("--warmup-shards", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--real-model", action="store_true", help="encode with the model itself (one shard at a time)")
    p.add_argument("--torch-threads", type=int, default=1)
    p.add_argument("--work", type=Path, default=None, help="where shards and output go (default: a temp dir)")
    p.add_argument("--json", type=Path, default=None, help="also write the result as JSON here")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="job config override")
    args = p.parse_args(argv)
    settings = actor.BenchSettings(kind=args.kind, minutes=args.minutes, per_shard=args.per_shard,
                                   decoders=args.decoders, warmup_shards=args.warmup_shards, seed=args.seed,
                                   overrides=tuple(args.set), stand_in=not args.real_model,
                                   torch_threads=args.torch_threads)
    with tempfile.TemporaryDirectory(prefix="bench-actor-") as tmp:
        result = actor.run(settings, args.work or Path(tmp))
    print(actor.report(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps(actor.to_json(result), indent=1))


if __name__ == "__main__":
    main()
