"""TF32 on the CPU: every operand of the tensor-core ops rounded to TF32, products accumulated in fp32.

TF32 keeps fp32's sign and 8-bit exponent and 10 of its 23 mantissa bits. An Ampere / Hopper tensor
core reading fp32 data drops the low 13 mantissa bits; how they are dropped depends on the path
(docs/precision.md, "Rounding mode"): the PTX conversion `cvt.rna.tf32.f32` and CUTLASS's
`round_half_ulp_truncate` round to nearest with ties away from zero (RNA: add half a TF32 ulp to the
bit pattern, then truncate); an MMA fed raw fp32 bits truncates (RZ). `round_to_tf32` implements
both, and round-to-nearest-even (RNE) for comparison; RNA is the default.

`emulate_tf32()` is a torch function mode: while it is active, conv1d, conv_transpose1d and the LSTM
(what `torch.backends.cudnn.allow_tf32` puts on tensor cores) see rounded operands, and with
`matmul=True` also matmul / linear (`torch.backends.cuda.matmul.allow_tf32`). Nothing in the model
changes: outside the context the fp32 code paths run as before. The LSTM is re-computed step by step
(input GEMM over all frames, then one recurrent GEMM per frame with the rounded hidden state), as
cuDNN runs it; the elementwise gate math stays fp32, as on the GPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

MODES = ("rna", "rne", "rz")
_DROPPED = 13  # fp32 mantissa bits that TF32 does not keep
_LOW = (1 << _DROPPED) - 1


def round_to_tf32(x: torch.Tensor, mode: str = "rna") -> torch.Tensor:
    """fp32 tensor -> fp32 tensor holding TF32 values (low 13 mantissa bits zero).

    rna: nearest, ties away from zero; rne: nearest, ties to even; rz: toward zero (truncation).
    Inf and NaN pass unchanged; finite values may round up to +-Inf (RNA/RNE near fp32's maximum),
    as the hardware conversion does; subnormals round on the same bit grid.
    """
    if mode not in MODES:
        raise ValueError(f"TF32 rounding mode must be one of {', '.join(MODES)}; got {mode!r}")
    if x.dtype != torch.float32:
        raise TypeError(f"round_to_tf32 takes float32 tensors; got {x.dtype}")
    bits = x.contiguous().view(torch.int32)
    if mode == "rna":
        bits = bits + (1 << (_DROPPED - 1))
    elif mode == "rne":
        bits = bits + ((1 << (_DROPPED - 1)) - 1) + ((bits >> _DROPPED) & 1)
    rounded = (bits & ~_LOW).view(torch.float32).view(x.shape)
    return torch.where(torch.isfinite(x), rounded, x)


class emulate_tf32(TorchFunctionMode):  # noqa: N801 - used as a context manager, like torch's modes
    """with emulate_tf32(mode="rna", matmul=False): ...  (see module docstring)."""

    def __init__(self, mode: str = "rna", matmul: bool = False):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"TF32 rounding mode must be one of {', '.join(MODES)}; got {mode!r}")
        self.mode, self.matmul = mode, matmul

    def _r(self, t):
        return round_to_tf32(t, self.mode) if isinstance(t, torch.Tensor) and t.dtype == torch.float32 else t

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (F.conv1d, torch.conv1d, F.conv_transpose1d, torch.conv_transpose1d):
            x, w, *rest = args
            return func(self._r(x), self._r(w), *rest, **kwargs)
        if func is torch.lstm and not kwargs and len(args) == 9:
            return lstm_tf32(*args, round_fn=self._r)
        if func is torch.lstm:
            raise NotImplementedError("emulate_tf32: only the unpacked torch.lstm(input, hx, params, ...) form")
        if self.matmul and func in (torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.mm,
                                    torch.bmm, F.linear):
            return func(*[self._r(a) for a in args], **{k: self._r(v) for k, v in kwargs.items()})
        return func(*args, **kwargs)


def lstm_tf32(x, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first, round_fn):
    """torch.lstm's unpacked form, computed with `round_fn` applied to every GEMM operand.

    x [T, B, D] (or [B, T, D] with batch_first); hx (h0, c0) [L, B, H]; params per layer
    (w_ih, w_hh[, b_ih, b_hh]). Returns (output, h_n, c_n) as torch.lstm does.
    """
    if bidirectional or (train and dropout > 0):
        raise NotImplementedError("emulate_tf32: unidirectional inference LSTMs only")
    per_layer = 4 if has_biases else 2
    h0, c0 = hx
    seq = x.transpose(0, 1) if batch_first else x
    h_out, c_out = [], []
    for layer in range(num_layers):
        w_ih, w_hh, *bias = params[layer * per_layer : (layer + 1) * per_layer]
        gates_x = round_fn(seq) @ round_fn(w_ih).t()  # [T, B, 4H]: one GEMM over all frames
        if bias:
            gates_x = gates_x + bias[0] + bias[1]
        w_hh_t = round_fn(w_hh).t()
        h, c = h0[layer], c0[layer]
        outputs = []
        for t in range(seq.shape[0]):
            i, f, g, o = (gates_x[t] + round_fn(h) @ w_hh_t).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        seq = torch.stack(outputs) if outputs else seq.new_zeros(0, seq.shape[1], w_hh.shape[1])
        h_out.append(h)
        c_out.append(c)
    out = seq.transpose(0, 1) if batch_first else seq
    return out, torch.stack(h_out), torch.stack(c_out)
