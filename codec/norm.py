"""GroupNorm(1, C) over each item's valid samples only, for batches of items of different true lengths.

EnCodec's 48 kHz model normalises every conv output over all of (C, T). In a batch padded to the
longest item T, a shorter item's statistics must exclude its padded tail, or its codes change:

    item b, length L_b:   y[b, :, :L_b] -> GroupNorm(y[b, :, :L_b])       y[b, :, L_b:] unchanged

Items of equal length that sit next to each other in the batch are normalised by one call on their
common valid slice. GroupNorm reduces each item independently, so this is exactly what normalising
each item alone gives (same reduction, same values); a masked sum over the padded batch would round
differently. The padded tail is left as it is: the convolutions never read it (they rewrite the
samples they need from the valid part).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def equal_length_runs(lengths: list[int]) -> list[tuple[int, int, int]]:
    """(first item, end item, length) of each run of consecutive items with the same length."""
    runs: list[tuple[int, int, int]] = []
    for b, n in enumerate(lengths):
        if runs and runs[-1][2] == n:
            runs[-1] = (runs[-1][0], b + 1, n)
        else:
            runs.append((b, b + 1, n))
    return runs


class LengthGroupNorm(nn.GroupNorm):
    """nn.GroupNorm (same parameters and state-dict names) that also takes per-item valid lengths.

    forward(x [B, C, T], lengths [B] or None) -> y [B, C, T]; lengths None (or all T): plain GroupNorm.
    """

    def forward(self, x: torch.Tensor, lengths: list[int] | None = None) -> torch.Tensor:
        total = x.shape[-1]
        if lengths is None or all(n == total for n in lengths):
            return super().forward(x)
        out = x.clone() if torch.is_grad_enabled() else x  # in place unless autograd needs x
        for first, end, n in equal_length_runs(lengths):
            out[first:end, :, :n] = F.group_norm(x[first:end, :, :n], self.num_groups, self.weight, self.bias, self.eps)
        return out
