"""A self-check for reduced precision: every layer in bf16/fp16 must stay close to fp32.

Backends have had wrong reduced-precision kernels for some shapes: torch 2.13.0 on x86 CPUs
(oneDNN 3.12) computes a bf16 conv1d with 16 input channels and stride 4 or 8 with a relative
error above 1 (README, "Codec speed and agreement"), which turns the codes of `tiny:24khz` into
noise. So before a model runs in bf16 or fp16, `check_precision` feeds one probe through each
encoder and decoder layer in both precisions (each layer gets the fp32 input, so errors do not
compound) and raises PrecisionError naming the first layer whose output is off by more than
`tolerance` (relative RMS).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

DEFAULT_TOLERANCE = 0.1


class PrecisionError(RuntimeError):
    """Reduced precision computes wrong values on this device. Not a ValueError on purpose:
    `load_first` must not take it for "this source cannot be loaded" and quietly use a fallback."""


def relative_error(reference: torch.Tensor, other: torch.Tensor) -> float:
    reference, other = reference.double(), other.double()
    return float((reference - other).norm() / reference.norm().clamp_min(1e-30))


@torch.inference_mode()
def check_precision(fp32_model: nn.Module, reduced_model: nn.Module, seconds: float = 0.5,
                    tolerance: float = DEFAULT_TOLERANCE) -> float:
    """Raise PrecisionError if a layer of `reduced_model` strays from `fp32_model`; returns the largest
    per-layer relative error. Both models must have the same architecture, on the same device. One
    unpadded item is probed: a kernel wrong only for larger batches would not be seen."""
    cfg = fp32_model.config
    device = next(reduced_model.parameters()).device
    dtype = next(reduced_model.encoder.parameters()).dtype
    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(1, cfg.audio_channels, int(seconds * cfg.sampling_rate), generator=generator) * 0.1).to(device)
    worst = 0.0
    for part in ("encoder", "decoder"):
        layer_pairs = zip(getattr(fp32_model, part).layers, getattr(reduced_model, part).layers)
        for i, (ref_layer, layer) in enumerate(layer_pairs):
            y, _ = ref_layer(x)
            y_reduced, _ = layer(x.to(dtype))
            error = relative_error(y, y_reduced)
            if not error <= tolerance:  # also catches NaN
                raise PrecisionError(
                    f"{dtype} on {device.type} computes {part} layer {i} ({type(layer).__name__}) with a relative "
                    f"error of {error:.3g} against fp32 (tolerance {tolerance}): a wrong kernel in this backend; "
                    f"use precision fp32 on this device"
                )
            worst = max(worst, error)
            x = y
    return worst


def reduced_copy(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A copy of `model` in `dtype` with the quantizer kept in fp32 (RVQ distances), as
    load_model(dtype=...) builds it; bf16 / fp16 must first pass `check_precision` (PrecisionError)."""
    out = copy.deepcopy(model).to(dtype)
    out.quantizer.float()
    if dtype != torch.float32:
        check_precision(model, out)
    return out


def code_agreement(codes: list[torch.Tensor], reference: list[torch.Tensor], levels: int | None = None) -> float:
    """% of equal codes over all items, the first `levels` codebooks (default all) and every frame
    (codes[i] is a prefix of reference[i])."""
    codes = [c[:levels] for c in codes]
    same = sum(int((c == r[: c.shape[0], : c.shape[1]]).sum()) for c, r in zip(codes, reference))
    return 100.0 * same / sum(c.numel() for c in codes)
