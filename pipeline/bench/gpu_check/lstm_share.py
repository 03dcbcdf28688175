"""The LSTM's share of a batch's encode time, timed apart by hooks on the encoder's LSTM modules.

    with LstmTimer(model.encoder, device) as timer:
        model.encode(batch)
    timer.lstm_s, timer.total_s, timer.share, timer.calls

The LSTM steps once per latent frame whatever the batch holds: the more audio-seconds a batch has,
the fewer steps per audio-second, so its share says how much a larger batch budget can still win.
A forward pre-hook and a forward hook on each `codec.seanet.LSTM` mark its start and end. On CUDA
the marks are CUDA events (`torch.cuda.Event(enable_timing=True)`: recorded on the stream, no host
sync inside the batch) read once after a synchronize at the end; on the CPU `time.perf_counter`.
`cuda` is `torch.cuda` by default; the tests pass a fake with `Event` and `synchronize`.
"""

from __future__ import annotations

import time

from codec.seanet import LSTM


class _CpuClock:
    def mark(self):
        return time.perf_counter()

    def seconds(self, start, end) -> float:
        return end - start

    def settle(self) -> None:
        pass


class _CudaClock:
    def __init__(self, cuda):
        self.cuda = cuda

    def mark(self):
        event = self.cuda.Event(enable_timing=True)
        event.record()
        return event

    def seconds(self, start, end) -> float:
        return start.elapsed_time(end) / 1000.0  # ms

    def settle(self) -> None:
        self.cuda.synchronize()


class LstmTimer:
    """Seconds spent in the LSTM modules of `module` and in the whole block (see the module docstring)."""

    def __init__(self, module, device: str, cuda=None):
        if device == "cuda" and cuda is None:
            import torch

            cuda = torch.cuda
        self.clock = _CudaClock(cuda) if device == "cuda" else _CpuClock()
        self.lstms = [m for m in module.modules() if isinstance(m, LSTM)]
        self.spans: list[list] = []
        self.handles: list = []
        self.lstm_s = self.total_s = 0.0

    def __enter__(self):
        if not self.lstms:
            raise ValueError("no codec.seanet.LSTM in the module: nothing to time")
        def begin(mod, args):
            self.spans.append([self.clock.mark()])

        def end(mod, args, out):
            self.spans[-1].append(self.clock.mark())

        for m in self.lstms:
            self.handles += [m.register_forward_pre_hook(begin), m.register_forward_hook(end)]
        self.clock.settle()
        self._start = self.clock.mark()
        return self

    def __exit__(self, *exc):
        end = self.clock.mark()
        for h in self.handles:
            h.remove()
        self.clock.settle()
        if exc[0] is None:
            self.total_s = self.clock.seconds(self._start, end)
            self.lstm_s = sum(self.clock.seconds(a, b) for a, b in self.spans)

    @property
    def calls(self) -> int:
        return len(self.spans)

    @property
    def share(self) -> float:
        return self.lstm_s / self.total_s if self.total_s > 0 else 0.0
