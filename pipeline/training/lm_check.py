"""The language-model check of `python -m jobs.train_lm`: a small transformer (`TinyCodebookLM`) trained
on the tokens through `TokenLoader` and a codebook pattern, and the held-out cross-entropy per codebook
against a unigram model of the training codes.

Held-out rows: the files whose name (the key's last path part, before a `#segment` suffix), hashed
with the split seed, fall in the held-out fraction (`held_out`), so the segments of one file are on
one side. The learning-rate schedule (warm-up over 100 steps, then cosine) runs over `steps`, so a run
does not depend on the machine's load (`budget_s` only stops it early).
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .index import RowIndex, RowReader
from .loader import TokenLoader
from .patterns import Pattern, shift_right


def held_out(key: str, fraction: float, split_seed: int = 0, glob: str | None = None) -> bool:
    """Whether the file of `key` is held out: its name (no directories, no `#segment`) hashed with the seed;
    never when `glob` is given and the key (before `#segment`) does not match it."""
    if glob is not None and not fnmatch.fnmatchcase(key.split("#", 1)[0], glob):
        return False
    name = key.split("#", 1)[0].rsplit("/", 1)[-1]
    digest = hashlib.sha256(f"{split_seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


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
        out.extend(codes[:, start : start + size] for start in range(0, frames, size))
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
            summed, n = masked_ce(model, pattern, codes, lengths, card)
            total, count = total + summed.double(), count + n.double()
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


def train_steps(model: torch.nn.Module, pattern: Pattern, train: TokenLoader, card: int, steps: int, lr: float,
                weight_decay: float, budget_s: float = math.inf, log: Callable[[str], None] = print) -> int:
    """AdamW on the mean cross-entropy of `train`'s batches for `steps` steps (or until `budget_s` seconds
    have passed); gradient norm clipped at 1. Returns the steps taken."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    started, step = time.time(), 0
    while step < steps and time.time() - started < budget_s:
        for batch in train:
            for group in opt.param_groups:  # warm-up, then cosine decay over the steps
                group["lr"] = lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * step / steps))
            summed, count = masked_ce(model, pattern, batch["codes"], batch["num_frames"], card)
            loss = summed.sum() / count.sum()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            if step % 100 == 0:
                log(f"[train_lm] step {step} epoch {train.epoch} loss {loss.item():.3f} "
                    f"({time.time() - started:.0f} s)")
            if step >= steps or time.time() - started >= budget_s:
                break
    return step
