"""python -m jobs.train_lm --tokens <dir> --pattern delay [--bandwidth KBPS] [--steps N] [--seed S] ...

A check that the tokens plug into language-model training: a small transformer (`TinyCodebookLM`)
trained on CPU through `TokenLoader` and a codebook pattern, then the mean cross-entropy (nats per
code) on held-out files against a unigram model of the training codes, with a per-codebook table.
Held-out rows: the files whose name (the key's last path part, before a `#segment` suffix), hashed
with `--split-seed`, falls in the `--holdout` fraction, so the segments of one file are on one side;
with `--holdout-glob`, only files whose key matches it can be held out (the others always train: e.g.
extra training audio tokenized into the same dataset). The learning-rate schedule runs over `--steps`,
so a run does not depend on the machine's load (`--minutes` only stops it early).
An example, not a trainer: no checkpoints, one process.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.training import PATTERNS, Pattern, RowIndex, TokenLoader, shift_right
from pipeline.training.index import RowReader
from pipeline.training.tiny_lm import TinyCodebookLM


def held_out(key: str, fraction: float, split_seed: int = 0, glob: str | None = None) -> bool:
    """Whether the file of `key` is held out: its name (no directories, no `#segment`) hashed with the seed;
    never when `glob` is given and the key (before `#segment`) does not match it."""
    if glob is not None and not fnmatch.fnmatchcase(key.split("#", 1)[0], glob):
        return False
    name = key.split("#", 1)[0].rsplit("/", 1)[-1]
    digest = hashlib.sha256(f"{split_seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


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


def masked_ce(model, pattern, codes, lengths, card) -> torch.Tensor:
    """Summed cross-entropy per codebook [K] over the real codes of a padded batch, and their count."""
    built = pattern.build(codes, lengths, empty_id=card)
    logits = model(shift_right(built.sequence, card))
    loss = F.cross_entropy(logits.permute(0, 3, 1, 2), built.sequence.clamp(max=card - 1), reduction="none")
    return (loss * built.mask).sum(dim=(0, 2)), built.mask.sum(dim=(0, 2))


def windows(index: RowIndex, size: int) -> list[torch.Tensor]:
    """Every frame of the indexed rows, as consecutive windows of at most `size` frames: [n_q, <=size] each."""
    rows = RowReader(index)
    out = []
    for row, frames in enumerate(index.frames.tolist()):
        codes = rows.read(row, 0, frames)["codes"]
        out.extend(codes[:, s : s + size] for s in range(0, frames, size))
    return out


def evaluate(model, pattern, pieces, card, batch=16) -> np.ndarray:
    """Mean cross-entropy per codebook [K], nats per code, over `pieces`."""
    total, count = torch.zeros(pattern.n_q, dtype=torch.float64), torch.zeros(pattern.n_q, dtype=torch.float64)
    model.eval()
    with torch.no_grad():
        for i in range(0, len(pieces), batch):
            group = pieces[i : i + batch]
            lengths = torch.tensor([p.shape[1] for p in group])
            codes = torch.zeros(len(group), pattern.n_q, int(lengths.max()), dtype=torch.long)
            for b, p in enumerate(group):
                codes[b, :, : p.shape[1]] = p
            s, n = masked_ce(model, pattern, codes, lengths, card)
            total, count = total + s.double(), count + n.double()
    model.train()
    return (total / count).numpy()


def unigram(train: list[torch.Tensor], test: list[torch.Tensor], card: int) -> np.ndarray:
    """Cross-entropy per codebook [K] of the test codes under add-0.5 code frequencies of the training codes."""
    out = []
    for q in range(train[0].shape[0]):
        counts = np.bincount(torch.cat([t[q] for t in train]).numpy(), minlength=card) + 0.5
        logp = np.log(counts / counts.sum())
        out.append(-logp[torch.cat([t[q] for t in test]).numpy()].mean())
    return np.array(out)


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
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    started, step = time.time(), 0
    budget = math.inf if args.minutes is None else args.minutes * 60
    while step < args.steps and time.time() - started < budget:
        for batch in train:
            for group in opt.param_groups:  # warm-up, then cosine decay over the steps
                group["lr"] = args.lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
            s, n = masked_ce(model, pattern, batch["codes"], batch["num_frames"], card)
            loss = s.sum() / n.sum()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            if step % 100 == 0:
                print(f"[train_lm] step {step} epoch {train.epoch} loss {loss.item():.3f} "
                      f"({time.time() - started:.0f} s)", flush=True)
            if step >= args.steps or time.time() - started >= budget:
                break
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
