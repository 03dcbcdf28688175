"""The actor's CPU cost per hour of audio, without Ray, with a stand-in model (pipeline/bench/actor.py).

python -m jobs.bench_actor --kind speech|music [--minutes M] [--decoders N] [--per-shard 64]
                           [--work DIR] [--json FILE] [--set KEY=VALUE ...] [--real-model [--torch-threads T]]
                           [--ab REF [REF ...] [--rounds R] [--ab-dir DIR]]   (A/B: pipeline/bench/ab.py)
"""

from __future__ import annotations

import argparse
import json
import sys
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
    p.add_argument("--ab", nargs="+", metavar="REF", default=None,
                   help="A/B: run the bench in worktrees of these git refs and in this tree, alternating")
    p.add_argument("--rounds", type=int, default=3, help="A/B rounds (each side runs once per round)")
    p.add_argument("--ab-dir", type=Path, default=Path("/tmp/audiotok-ab"), help="where the A/B worktrees go")
    args = p.parse_args(argv)
    if args.ab:
        from pipeline.bench import ab

        passed = [a for a in (argv if argv is not None else sys.argv[1:])]
        bench_args = _without(passed, {"--ab": len(args.ab), "--rounds": 1, "--ab-dir": 1, "--work": 1, "--json": 1})
        trees = {ref: ab.checkout(ref, args.ab_dir) for ref in args.ab}
        trees["this tree"] = ab.HERE
        print(ab.summary(ab.alternate(trees, bench_args, args.rounds)))
        return
    settings = actor.BenchSettings(kind=args.kind, minutes=args.minutes, per_shard=args.per_shard,
                                   decoders=args.decoders, warmup_shards=args.warmup_shards, seed=args.seed,
                                   overrides=tuple(args.set), stand_in=not args.real_model,
                                   torch_threads=args.torch_threads)
    with tempfile.TemporaryDirectory(prefix="bench-actor-") as tmp:
        result = actor.run(settings, args.work or Path(tmp))
    print(actor.report(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps(actor.to_json(result), indent=1))


def _without(argv: list[str], options: dict[str, int]) -> list[str]:
    """argv less each option in `options` and the number of values it takes."""
    out, skip = [], 0
    for a in argv:
        if skip:
            skip -= 1
        elif a in options:
            skip = options[a]
        else:
            out.append(a)
    return out


if __name__ == "__main__":
    main()
