"""Op-level A/B of the codec's encode between git revisions (pipeline/bench/op_profile.py).

python -m jobs.op_profile --ab REF [REF ...] [--rounds R] [--reps N] [--model random:24khz]
                          [--torch-threads T] [--ab-dir DIR] [--json FILE]

Each REF gets a detached worktree (with this tree's bench files); the REFs and this tree then run the
same encode of one fixed batch of speech in turn, each in a fresh process; the report compares the codes,
the ops (name, shapes, count, FLOPs) and their CPU time.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.bench import ab, op_profile


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ab", nargs="+", metavar="REF", required=True, help="git refs to compare with this tree")
    p.add_argument("--rounds", type=int, default=3, help="each side runs once per round, order alternating")
    p.add_argument("--reps", type=int, default=3, help="timed encodes per run (after a warm-up)")
    p.add_argument("--model", default="random:24khz")
    p.add_argument("--torch-threads", type=int, default=1)
    p.add_argument("--ab-dir", type=Path, default=Path("/tmp/audiotok-ab"), help="where the worktrees go")
    p.add_argument("--json", type=Path, default=None, help="also write every run's measurements here")
    args = p.parse_args(argv)
    settings = op_profile.OpSettings(model=args.model, reps=args.reps, torch_threads=args.torch_threads)
    trees = {ref: ab.checkout(ref, args.ab_dir) for ref in args.ab}
    trees["this tree"] = ab.HERE
    runs = op_profile.alternate(trees, settings, args.rounds)
    print(op_profile.report(runs), flush=True)
    if args.json:
        args.json.write_text(json.dumps(runs))


if __name__ == "__main__":
    main()
