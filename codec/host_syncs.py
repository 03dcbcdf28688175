"""Count the calls that make the host wait for the device, so a GPU path can be checked on the CPU.

The torch.Tensor methods that wait for the device (.item, .tolist, .cpu, .numpy, .to(cpu), .nonzero,
bool / int / float / index conversions) are wrapped while the block runs, and each call on a tensor
of `device_type` is counted. A tensor that a call brought to the host (.cpu(), .to("cpu")) is marked
as host memory and calls on it are not counted, so on the CPU the counts are exactly the calls
that would wait for a GPU, except `.to`: with the CPU as the device, a move to the device and a copy
to the host look the same, so `.to` is counted on CUDA only (our code copies to the host with .cpu()).
`forward_passes` records the forward passes of a module (the encoder: one per pass over a batch).
Used by `tests/codec/test_batch_plan.py` and `pipeline.bench.gpu_check`.
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

import torch

SYNC_METHODS = ("item", "tolist", "cpu", "numpy", "nonzero", "to", "__bool__", "__int__", "__float__", "__index__")
_HOST_MARK = "_audiotok_on_host"


def _to_host(args, kwargs) -> bool:
    targets = [*args, kwargs.get("device")]
    return any((isinstance(t, str) and t.startswith("cpu")) or (isinstance(t, torch.device) and t.type == "cpu")
               for t in targets)


@contextmanager
def count_host_syncs(device_type: str):
    """Counter {method name: calls} of host-sync calls on tensors of `device_type` while the block runs."""
    counts: Counter = Counter()
    originals = {name: getattr(torch.Tensor, name) for name in SYNC_METHODS}

    def wrap(name, original):
        def wrapper(self, *args, **kwargs):
            syncs = name != "to" or (device_type != "cpu" and _to_host(args, kwargs))
            if syncs and self.device.type == device_type and not getattr(self, _HOST_MARK, False):
                counts[name] += 1
            out = original(self, *args, **kwargs)
            if name == "cpu" or (name == "to" and device_type != "cpu" and _to_host(args, kwargs)):
                setattr(out, _HOST_MARK, True)
            return out
        return wrapper

    for name, original in originals.items():
        setattr(torch.Tensor, name, wrap(name, original))
    try:
        yield counts
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


@contextmanager
def forward_passes(module: torch.nn.Module):
    """List of the input shapes of `module`'s forward calls while the block runs: one per pass."""
    shapes: list[tuple[int, ...]] = []
    hook = module.register_forward_hook(lambda mod, args, out: shapes.append(tuple(args[0].shape)))
    try:
        yield shapes
    finally:
        hook.remove()
