"""How `EncodecModel` shapes and splits the work of one encode or decode call: the CPU or the CUDA plan.

    cpu    one item (chunked models: one chunk) per encoder pass, at its exact length; the LSTM
           runs item by item. Codes are bit-identical to encoding each item alone (and to the
           reference EnCodec), whatever the batch.
    cuda   as many items (chunks) per pass as the element budget allows, the batch padded to a
           coarse length grid (`grid_length`) with true-length masking, the batched LSTM and batched
           reductions: few kernel launches, few distinct shapes (cuDNN plans and allocator blocks are
           reused), one host sync per pass. Codes then depend on the batch a row was encoded in
           (a batched LSTM rounds differently from a batch of one), so the job records each row's
           batch and verify re-encodes it the same way.

A GPU runs the CUDA plan; asking for it on the CPU (`batch_plan: cuda` in the job config) runs
exactly the same batches there, which is how the CPU tests observe the GPU path.
"""

from __future__ import annotations

import math

import torch

PLANS = ("cpu", "cuda")
GRID_STEPS_PER_OCTAVE = 8  # padded lengths per doubling of the length: at most 1/8 of a batch is grid padding


def resolve_plan(name: str | None, device: torch.device | str) -> str:
    """None or "auto" -> the plan of the device's type; "cpu" / "cuda" as given."""
    if name in (None, "auto"):
        return "cuda" if torch.device(device).type == "cuda" else "cpu"
    if name not in PLANS:
        raise ValueError(f"batch_plan must be one of auto, {', '.join(PLANS)}; got {name!r}")
    return name


def grid_length(length: int, multiple: int) -> int:
    """Smallest length >= `length` on the coarse grid: a multiple of `multiple` (the hop) whose count of
    hops is a multiple of 2^floor(log2(hops)) / GRID_STEPS_PER_OCTAVE (at least 1 hop).

    hops 1..8 stay exact; 9 -> 9 (step 1 up to 15), 17 -> 18 (step 2), 100 -> 104 (step 8), ...
    """
    hops = max(1, math.ceil(length / multiple))
    step = max(1, (1 << (hops.bit_length() - 1)) // GRID_STEPS_PER_OCTAVE)
    return math.ceil(hops / step) * step * multiple


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor copied to `device` without blocking the host: staged in pinned memory for CUDA
    (torch's caching host allocator keeps the buffer until the copy has run); as is on the CPU."""
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def valid_mask(lengths: list[int], total: int, device: torch.device) -> torch.Tensor:
    """bool [B, total] on `device`: True on each item's first lengths[b] samples (or frames) of a batch
    padded to `total`; the lengths are copied to the device with `to_device`."""
    return torch.arange(total, device=device)[None] < to_device(torch.tensor(lengths), device)[:, None]
