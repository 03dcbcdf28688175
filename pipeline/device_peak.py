"""Our peak GPU memory over a block of work, as torch counts it (`torch.cuda.max_memory_allocated` after
`reset_peak_memory_stats`): the tensors this process holds, weights included, without the allocator's
cache or other processes (which nvidia-smi's device-wide number includes). None off CUDA."""

from __future__ import annotations

import torch


class DevicePeak:
    """`with DevicePeak(device) as peak: ...` then `peak.mb`: MiB at the block's peak, None unless
    `device` is a CUDA device. cuda: the torch.cuda API (a stand-in in tests)."""

    def __init__(self, device: torch.device | str, cuda=None):
        self.device = torch.device(device)
        self.cuda = cuda if cuda is not None else torch.cuda
        self.mb: float | None = None

    def __enter__(self) -> DevicePeak:
        if self.device.type == "cuda":
            self.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.mb = self.cuda.max_memory_allocated(self.device) / 2**20
