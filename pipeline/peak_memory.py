"""Our peak memory per row: from torch's CUDA allocator on a GPU, the process's RSS on the CPU.

    meter = meter_for(device)
    with meter.row() as row:        # CUDA: synchronize, empty_cache, reset_peak_memory_stats
        model.encode(make_batch())
    row.peak_bytes, row.resident_bytes, row.activation_bytes

CUDA (`CudaMeter`): `torch.cuda.max_memory_allocated` since the row's reset, so only tensors this
process allocated count (not the CUDA context, not another process, not the allocator's cached but
free blocks, which nvidia-smi's device-wide number includes); `resident_bytes` is what was allocated
when the row began (the model's weights, the inputs); `empty_cache` before and after every row so
one row's cached blocks do not serve the next. `reserved_peak_bytes` (max_memory_reserved) is kept
beside it: the allocator's own overhead (fragmentation), which the batch budget's headroom covers.

CPU (`TensorMeter`): the bytes of the tensors the row's ops create that are alive at once, counted
by a torch dispatch mode (the process's RSS would mostly show glibc's cached pages). These are the
tensors a GPU allocates for the same plan, so the CPU's bytes per sample predict the GPU's, short of
the CUDA allocator's rounding and cuDNN's workspaces; the GPU's own number comes from `CudaMeter`.

`cuda` is the `torch.cuda` module by default; the tests pass a fake with the same functions.
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from dataclasses import dataclass

from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


@dataclass
class RowMemory:
    """Bytes of one row: `resident_bytes` allocated when it began, `peak_bytes` at most during it."""

    resident_bytes: int = 0
    peak_bytes: int = 0
    reserved_peak_bytes: int | None = None  # CUDA: max_memory_reserved (allocator cache included)

    @property
    def activation_bytes(self) -> int:
        """What the row's work added on top of what was already there."""
        return max(0, self.peak_bytes - self.resident_bytes)


class CudaMeter:
    """torch's CUDA allocator statistics, reset per row (see the module docstring)."""

    what = "torch.cuda.max_memory_allocated"

    def __init__(self, cuda=None, device_index: int = 0):
        if cuda is None:
            import torch

            cuda = torch.cuda
        self.cuda, self.index = cuda, device_index

    def card_bytes(self) -> int:
        return int(self.cuda.get_device_properties(self.index).total_memory)

    @contextmanager
    def row(self):
        self.cuda.synchronize()
        self.cuda.empty_cache()
        self.cuda.reset_peak_memory_stats()
        mem = RowMemory(resident_bytes=int(self.cuda.memory_allocated()))
        try:
            yield mem
            self.cuda.synchronize()
            mem.peak_bytes = int(self.cuda.max_memory_allocated())
            mem.reserved_peak_bytes = int(self.cuda.max_memory_reserved())
        finally:
            self.cuda.empty_cache()


class TensorMeter:
    """CPU mode: the bytes of the tensors the row's ops create, live at once (no card).

    A `TorchDispatchMode` sees every op's outputs; a storage not seen before (and not one of the op's
    inputs: a view) adds its bytes, and they are subtracted when the last tensor on it that the mode
    saw is freed. Weights and inputs made before the row are not counted. The same tensors are what
    a GPU allocates for the same plan, so bytes per sample carry over to CUDA up to the allocator's
    rounding and cuDNN's workspaces (which `CudaMeter` on the GPU includes)."""

    what = "live tensor bytes (dispatch mode)"

    def card_bytes(self) -> None:
        return None

    @contextmanager
    def row(self):
        mem = RowMemory()
        with _LiveTensors() as live:
            yield mem
        mem.peak_bytes = live.peak


class _LiveTensors(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.bytes: dict[int, int] = {}  # storage data_ptr -> its bytes, while a tensor on it lives
        self.refs: dict[int, int] = {}
        self.total = self.peak = 0

    def _release(self, key: int) -> None:
        self.refs[key] -= 1
        if not self.refs[key]:
            del self.refs[key]
            self.total -= self.bytes.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        import torch

        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key in self.bytes:
                self.refs[key] += 1
            elif key in inputs or storage.nbytes() == 0:
                continue  # a view of (or in-place on) a tensor made before the row
            else:
                self.bytes[key], self.refs[key] = storage.nbytes(), 1
                self.total += storage.nbytes()
                self.peak = max(self.peak, self.total)
            weakref.finalize(t, self._release, key)
        return out


def meter_for(device: str):
    return CudaMeter() if device == "cuda" else TensorMeter()
