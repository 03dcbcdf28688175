"""Codebook interleaving patterns: how K parallel codebooks of T frames become one sequence of S steps
that a language model predicts step by step (the layouts of audiocraft's `CodebooksPatternProvider`s).

A pattern places codebook q's frame t at one step `steps[q, t]`; a step holds at most one code per
codebook, and the other positions of a step are *empty* (filled with `empty_id`). With K = 3, T = 4
(digits: frame index, `.`: empty):

    parallel      delay (0,1,2)    flatten                      coarse_first / vall_e
    q0: 0123      q0: 0123..       q0: 0..1..2..3..             q0: 0123....
    q1: 0123      q1: .0123.       q1: .0..1..2..3.             q1: ....0123
    q2: 0123      q2: ..0123       q2: ..0..1..2..3             q2: ....0123
    S = T         S = T + max(d)   S = K * T                    S = 2T + max(d)

Steps count from 0 as audiocraft's `layout[1:]` (its layout starts with one empty step, the start
token): in `delay` with delays d, codebook q's frame t sits at step t + d[q]. A model reads
`shift_right(sequence, start_id)` (the start token, then steps 0..S-2) and is trained on every
position where `mask` is True: the positions that hold a real code of the item. `revert` is the
inverse: it reads the codes back from their steps.

`vall_e` is `coarse_first` with no delays (VALL-E: the first codebook autoregressive, the others in
parallel per frame; audiocraft's `VALLEPattern` became its `CoarseFirstPattern`). The delay pattern
keeps its end triangle (audiocraft's `keep_only_valid_steps=False`), so every code is trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PATTERNS = ("parallel", "delay", "flatten", "coarse_first", "vall_e")


@dataclass(frozen=True)
class Interleaved:
    """sequence: int64 [B, K, S] (codes, `empty_id` at pattern holes, `pad_id` at steps of frames past an
    item's length); mask: bool [B, K, S], True where a real code sits (the positions to train on)."""

    sequence: torch.Tensor
    mask: torch.Tensor


@dataclass(frozen=True)
class Pattern:
    """One interleaving of `n_q` codebooks. name: one of PATTERNS; delays: per codebook for `delay`
    (n_q values, default 0..n_q-1), per codebook 1..n_q-1 for `coarse_first` (default zeros)."""

    name: str
    n_q: int
    delays: tuple[int, ...] = ()

    def __post_init__(self):
        if self.name not in PATTERNS:
            raise ValueError(f"unknown pattern {self.name!r}; choose one of {list(PATTERNS)}")
        if self.n_q < 1:
            raise ValueError(f"n_q must be >= 1, got {self.n_q}")
        wanted = {"delay": self.n_q, "coarse_first": self.n_q - 1}.get(self.name, 0)
        delays = tuple(int(d) for d in self.delays) or {
            "delay": tuple(range(self.n_q)), "coarse_first": (0,) * (self.n_q - 1)}.get(self.name, ())
        if self.name == "vall_e":
            delays = (0,) * (self.n_q - 1)
        elif len(delays) != wanted:
            raise ValueError(f"pattern {self.name!r} with n_q={self.n_q} needs {wanted} delays, got {list(delays)}")
        if any(d < 0 for d in delays) or list(delays) != sorted(delays):
            raise ValueError(f"delays must be non-negative and non-decreasing, got {list(delays)}")
        object.__setattr__(self, "delays", delays)

    def num_steps(self, timesteps: int) -> int:
        """S, the sequence length for T = `timesteps` frames."""
        top = max(self.delays, default=0)
        if self.name in ("parallel", "delay"):
            return timesteps + top
        if self.name == "flatten":
            return timesteps * self.n_q
        return timesteps + (timesteps + top if self.n_q > 1 else 0)

    def steps(self, timesteps: int) -> torch.Tensor:
        """int64 [n_q, T]: the step at which each codebook's frame sits."""
        t = torch.arange(timesteps)[None]
        q = torch.arange(self.n_q)[:, None]
        if self.name in ("parallel", "delay"):
            shift = torch.tensor(self.delays or (0,) * self.n_q)[:, None]
            return (t + shift).expand(self.n_q, timesteps).contiguous()
        if self.name == "flatten":
            return t * self.n_q + q
        shift = torch.tensor((-timesteps,) + self.delays)[:, None]  # codebook 0 first, the rest after all T
        return t + timesteps + shift

    def layout(self, timesteps: int) -> list[list[tuple[int, int]]]:
        """Per step, the (t, q) coordinates it holds, in codebook order: audiocraft's `Pattern.layout[1:]`."""
        out: list[list[tuple[int, int]]] = [[] for _ in range(self.num_steps(timesteps))]
        for q, row in enumerate(self.steps(timesteps).tolist()):
            for t, s in enumerate(row):
                out[s].append((t, q))
        return [sorted(coords, key=lambda c: c[1]) for coords in out]

    def build(self, codes: torch.Tensor, lengths: torch.Tensor | None = None, *, empty_id: int,
              pad_id: int | None = None) -> Interleaved:
        """codes int [B, n_q, T] (frames past `lengths` [B] are ignored) -> Interleaved [B, n_q, S].

        empty_id: the special token at pattern holes, required (MusicGen: the codebook size, 2048, one
        more embedding row than codes); pad_id: at the steps of frames past an item's length (default:
        empty_id)."""
        batch, n_q, timesteps = codes.shape
        if n_q != self.n_q:
            raise ValueError(f"codes have {n_q} codebooks; this {self.name} pattern has {self.n_q}")
        steps = self.steps(timesteps).to(codes.device).expand(batch, n_q, timesteps)
        valid = _valid(lengths, batch, timesteps, codes.device)[:, None].expand(batch, n_q, timesteps)
        fill = empty_id if pad_id is None else pad_id
        size = (batch, n_q, self.num_steps(timesteps))
        sequence = torch.full(size, empty_id, dtype=torch.long, device=codes.device)
        sequence.scatter_(2, steps, torch.where(valid, codes.long(), fill))
        mask = torch.zeros(size, dtype=torch.bool, device=codes.device).scatter_(2, steps, valid)
        return Interleaved(sequence, mask)

    def revert(self, sequence: torch.Tensor, timesteps: int) -> torch.Tensor:
        """Interleaved sequence [B, n_q, S] (or per-step values such as logits [B, n_q, S, V]) ->
        the values at each code's step: [B, n_q, T] (or [B, n_q, T, V])."""
        if sequence.shape[1] != self.n_q or sequence.shape[2] != self.num_steps(timesteps):
            raise ValueError(f"sequence of shape {tuple(sequence.shape)} is not a {self.name} pattern of "
                             f"{self.n_q} codebooks x {timesteps} frames ({self.num_steps(timesteps)} steps)")
        index = self.steps(timesteps).to(sequence.device)
        index = index.view(1, self.n_q, timesteps, *[1] * (sequence.ndim - 3))
        index = index.expand(sequence.shape[0], self.n_q, timesteps, *sequence.shape[3:])
        return sequence.gather(2, index)


def shift_right(sequence: torch.Tensor, start_id: int) -> torch.Tensor:
    """A model's input for next-step prediction: [B, K, S] -> [B, K, S], step 0 is `start_id`, step s
    is the sequence's step s - 1 (so the output at step s is trained on the sequence's step s)."""
    start = torch.full_like(sequence[:, :, :1], start_id)
    return torch.cat([start, sequence[:, :, :-1]], dim=2)


def _valid(lengths, batch: int, timesteps: int, device) -> torch.Tensor:
    if lengths is None:
        return torch.ones(batch, timesteps, dtype=torch.bool, device=device)
    lengths = torch.as_tensor(lengths, device=device)
    if lengths.shape != (batch,) or (lengths < 0).any() or (lengths > timesteps).any():
        raise ValueError(f"lengths must be [B={batch}] values in [0, {timesteps}], got {lengths.tolist()}")
    return torch.arange(timesteps, device=device)[None] < lengths[:, None]
