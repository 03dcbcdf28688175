"""python -m jobs.train_lm --tokens <dir> --pattern delay [--bandwidth KBPS] [--steps N] [--seed S] ...

A check that the tokens plug into language-model training: a small transformer (`TinyCodebookLM`)
trained on CPU through `TokenLoader` and a codebook pattern, then the mean cross-entropy (nats per
code) on held-out files against a unigram model of the training codes, with a per-codebook table.
Held-out rows: the files whose name (the key's last path part, before a `#segment` suffix), hashed
with `--split-seed`, falls in the `--holdout` fraction, so the segments of one file are on one side;
with `--holdout-glob`, only files whose key matches it can be held out (the others always train: e.g.
extra training audio tokenized into the same dataset). The learning-rate schedule runs over `--steps`,
so a run does not depend on the machine's load (`--minutes` only stops it early).
An example, not a trainer: no checkpoints, one process. The code is `pipeline.training.lm_check`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch

from pipeline.training import PATTERNS, Pattern, RowIndex, TokenLoader
from pipeline.training.lm_check import evaluate, held_out, train_steps, unigram, windows
from pipeline.training.tiny_lm import TinyCodebookLM


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jobs.train_lm", description=__doc__.split("\n\n")[1])
    p.add_argument("--tokens", required=True, help="a token dataset written by jobs.tokenize")
    p.add_argument("--pattern", default="delay", choices=PATTERNS)
    p.add_argument("--delays", type=int, nargs="*", help="delays of the delay / coarse_first pattern")
    p.add_argument("--bandwidth", type=float, help="kbps, a stored one (default: all stored codebooks)")
    p.add_argument("--steps", type=int, default=8000, help="optimizer steps (the learning-rate schedule's length)")
    p.add_argument("--minutes", type=float, help="stop early after this long (makes the result depend on load)")
    p.add_argument("--max-frames", type=int, default=150, help="training crop and evaluation window, frames")
    p.add_argument("--max-tokens", type=int, default=4096, help="padded frames x codebooks per batch")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--holdout", type=float, default=0.1, help="fraction of files held out")
    p.add_argument("--split-seed", type=int, default=0, help="another seed: another set of held-out files")
    p.add_argument("--holdout-glob", help="only keys matching this (fnmatch, before #segment) can be held out")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--json", help="write the results here too")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, args.threads))

    def is_test(key):
        return held_out(key, args.holdout, args.split_seed, args.holdout_glob)

    try:
        train = TokenLoader(args.tokens, args.max_tokens, args.bandwidth, args.max_frames, seed=args.seed,
                            num_workers=args.num_workers, keep_key=lambda k: not is_test(k))
        test_index = RowIndex.build(args.tokens, args.bandwidth, keep_key=is_test)
        pattern = Pattern(args.pattern, train.n_q, tuple(args.delays or ()))
    except (ValueError, OSError) as exc:
        print(f"train_lm: {exc}", file=sys.stderr)
        return 2
    if not len(train.index) or not len(test_index):
        print(f"train_lm: {len(train.index)} training and {len(test_index)} held-out rows; need both "
              f"(change --holdout)", file=sys.stderr)
        return 2
    card = train.pad_id  # the codebook size: also the start / empty / padding id
    model = TinyCodebookLM(train.n_q, card, args.dim, args.layers, max_steps=pattern.num_steps(args.max_frames) + 1,
                           dropout=args.dropout)
    params = sum(p.numel() for p in model.parameters())
    print(f"[train_lm] {len(train.index)} training rows ({int(train.index.frames.sum())} frames), "
          f"{len(test_index)} held-out rows ({int(test_index.frames.sum())} frames), {train.n_q} codebooks of "
          f"{card}, pattern {pattern.name} {list(pattern.delays)}, model {params:,} parameters", flush=True)
    print(f"[train_lm] {train.plan().report()}", flush=True)
    started = time.time()
    budget = math.inf if args.minutes is None else args.minutes * 60
    step = train_steps(model, pattern, train, card, args.steps, args.lr, args.weight_decay, budget,
                       log=lambda line: print(line, flush=True))
    test = windows(test_index, args.max_frames)
    lm = evaluate(model, pattern, test, card)
    base = unigram(windows(train.index, 10**9), test, card)
    print(f"\nheld-out cross-entropy, nats per code ({sum(p.numel() for p in test)} codes, after {step} steps "
          f"in {time.time() - started:.0f} s):")
    print("| codebook | unigram | LM | below unigram |\n|---|---|---|---|")
    for q in range(train.n_q):
        print(f"| {q} | {base[q]:.3f} | {lm[q]:.3f} | {1 - lm[q] / base[q]:.1%} |")
    print(f"| mean | {base.mean():.3f} | {lm.mean():.3f} | {1 - lm.mean() / base.mean():.1%} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"steps": step, "seconds": time.time() - started, "params": params, "pattern": pattern.name,
                       "train_rows": len(train.index), "heldout_rows": len(test_index),
                       "heldout_frames": int(test_index.frames.sum()), "unigram": base.tolist(),
                       "lm": lm.tolist(), "reduction": float(1 - lm.mean() / base.mean())}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
