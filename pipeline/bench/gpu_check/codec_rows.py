"""Codec rows: agreement of the device's batched path with the CPU one-item reference, batch invariance,
determinism, and the bf16 / fp16 / compile variants, on random models whose codebooks are fitted by
k-means to real audio (pipeline.bench.codec: random codebooks hide the near-ties where codes flip).

The reference is our fp32 codec on the CPU, one clip at a time (equal to transformers encoding each
clip alone, tests/codec/test_codec_parity.py), at the highest bandwidth; a lower bandwidth's codes are its
first codebooks. "Device path": the CUDA batch plan (codec/batch_plan.py: whole batches, the batched LSTM,
the length grid, TF32 off) on CUDA and, in CPU mode, on the CPU.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext

import numpy as np
import torch

from codec import EncodecModel
from codec.precision import PrecisionError
from codec.tf32_emulation import emulate_tf32
from pipeline.bench import codec as bench_codec
from pipeline.bench.codec import Fitted

from .table import Check

TARGET = 99.9  # % agreement a path must reach to be a default
BANDWIDTHS = (6.0, 24.0)


def device_model(base: EncodecModel, device: str) -> tuple[EncodecModel, int | None]:
    """(model on `device`, max_batch) for the device path (see module docstring)."""
    model = copy.deepcopy(base).to(device).set_batch_plan("cuda")  # on CPU too: what CUDA runs
    return model, (256 if device == "cpu" else None)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def encode_codes(model: EncodecModel, x: torch.Tensor, bw: float, max_batch: int | None,
                 lengths: list[int] | None = None) -> list[torch.Tensor]:
    with torch.inference_mode():
        return [item.codes for item in model.encode(x, lengths, bandwidth=bw, max_batch=max_batch)]


def _agreement_check(section: str, name: str, codes, reference, detail: str, data: dict) -> Check:
    agree = bench_codec.agreement(codes, reference)
    first = bench_codec.agreement(codes, reference, levels=1)
    status = "ok" if agree >= TARGET else "fail"
    return Check(section, name, status, f"{agree:.3f} % (q0 {first:.3f} %)", detail,
                 {**data, "agreement_pct": agree, "q0_agreement_pct": first, "target_pct": TARGET})


def agreement_rows(fitted: Fitted, device: str) -> list[Check]:
    """Device path on all clips in one batch, at each of BANDWIDTHS, against the reference; with speed."""
    import time

    model, max_batch = device_model(fitted.base, device)
    x = fitted.clips.to(device)
    rows = []
    for bw in BANDWIDTHS:
        encode_codes(model, x, bw, max_batch)  # warm-up
        _sync(device)
        t = time.perf_counter()
        codes = encode_codes(model, x, bw, max_batch)
        _sync(device)
        seconds = time.perf_counter() - t
        audio_s = x.shape[0] * x.shape[-1] / fitted.base.config.sampling_rate
        rows.append(_agreement_check("agreement", f"{fitted.preset} {bw:g} kbps, batch {x.shape[0]}", codes,
                                     fitted.reference,
                                     f"{audio_s / seconds:.0f}x realtime; {fitted.detail}",
                                     {"preset": fitted.preset, "kbps": bw, "batch": x.shape[0],
                                      "realtime": audio_s / seconds}))
    return rows


def mixed_batch(clips: torch.Tensor, size: int, probe_at: int, seed: int = 0) -> tuple[torch.Tensor, list[int]]:
    """`size` items [size, C, n] cycling through `clips`, each cut to a seeded length in 30..100 % of n
    (zeros after it), except item `probe_at`: clips[0] whole. Returns (audio, lengths)."""
    rng = np.random.default_rng(seed)
    n = clips.shape[-1]
    x = torch.zeros(size, clips.shape[1], n, dtype=clips.dtype)
    lengths = []
    for i in range(size):
        length = n if i == probe_at else int(rng.integers(int(0.3 * n), n + 1))
        source = clips[0] if i == probe_at else clips[i % clips.shape[0]]
        x[i, :, :length] = source[:, :length]
        lengths.append(length)
    return x, lengths


def invariance_rows(fitted: Fitted, device: str, sizes) -> list[Check]:
    """clips[0] alone vs inside mixed batches of sizes.batches items (highest bandwidth, device path)."""
    model, max_batch = device_model(fitted.base, device)
    bw = max(BANDWIDTHS)
    alone = encode_codes(model, fitted.clips[:1].to(device), bw, max_batch)[0]
    rows = []
    for size in sizes.batches:
        x, lengths = mixed_batch(fitted.clips, size, probe_at=size // 2)
        inside = encode_codes(model, x.to(device), bw, max_batch, lengths)[size // 2]
        differ = int((inside != alone).sum())
        vs_ref = bench_codec.agreement([inside], fitted.reference[:1])
        rows.append(Check("invariance", f"{fitted.preset} alone vs batch {size}", "ok" if differ == 0 else "fail",
                          f"{differ} codes differ", f"of {alone.numel()}; vs CPU reference {vs_ref:.3f} %",
                          {"preset": fitted.preset, "batch": size, "codes_differing": differ, "codes": alone.numel(),
                           "vs_reference_pct": vs_ref}))
    return rows


def determinism_rows(fitted: Fitted, device: str, sizes) -> list[Check]:
    """The same mixed batch twice; on CUDA once more with most of the free GPU memory taken."""
    model, max_batch = device_model(fitted.base, device)
    size = min(64, max(sizes.batches))
    x, lengths = mixed_batch(fitted.clips, size, probe_at=0, seed=1)
    x = x.to(device)
    bw = max(BANDWIDTHS)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    first = encode_codes(model, x, bw, max_batch, lengths)
    second = encode_codes(model, x, bw, max_batch, lengths)
    total = sum(c.numel() for c in first)

    def differing(other):
        return sum(int((a != b).sum()) for a, b in zip(first, other))

    d = differing(second)
    rows = [Check("determinism", f"{fitted.preset} batch {size} twice", "ok" if d == 0 else "fail",
                  f"{d} codes differ", f"of {total}", {"preset": fitted.preset, "codes_differing": d, "codes": total})]
    if device != "cuda":
        rows.append(Check("determinism", f"{fitted.preset} with GPU memory taken", "skipped", "CUDA only"))
        return rows
    peak = torch.cuda.max_memory_allocated()
    free, total_mem = torch.cuda.mem_get_info()
    take = max(0, free - 2 * peak - 2**30)
    hog = torch.empty(take, dtype=torch.uint8, device=device)
    try:
        third = encode_codes(model, x, bw, max_batch, lengths)
    finally:
        del hog
        torch.cuda.empty_cache()
    d = differing(third)
    rows.append(Check("determinism", f"{fitted.preset} with GPU memory taken", "ok" if d == 0 else "fail",
                      f"{d} codes differ", f"{take / 2**30:.1f} GiB of {total_mem / 2**30:.1f} GiB taken; "
                      f"batch peak {peak / 2**30:.2f} GiB", {"preset": fitted.preset, "codes_differing": d,
                                                             "taken_bytes": take, "batch_peak_bytes": peak}))
    return rows


def variant_rows(fitted: Fitted, device: str, name: str) -> list[Check]:
    """One pipeline.bench.codec variant (bf16 / fp16 / compile / tf32) on all clips at each bandwidth."""
    import time

    emulated = name == "tf32" and device != "cuda"  # on the CPU: codec/tf32_emulation.py, both TF32 flags' ops
    if name in bench_codec.CUDA_ONLY and device != "cuda" and not emulated:
        return [Check("variants", f"{fitted.preset} {name}", "skipped", "CUDA only")]
    try:
        v = bench_codec.make_variant("fp32" if emulated else name, fitted.base, device)
    except PrecisionError as exc:
        return [Check("variants", f"{fitted.preset} {name}", "fail", "refused", f"precision check: {exc}")]
    name = f"{name} (emulated)" if emulated else name
    x = fitted.clips.to(device)
    rows = []
    for bw in BANDWIDTHS:
        with bench_codec.backend_flags(**v.flags), (emulate_tf32(matmul=True) if emulated else nullcontext()):
            started = time.perf_counter()
            encode_codes(v.model, x, bw, v.max_batch)  # warm-up (compiles)
            _sync(device)
            first_s = time.perf_counter() - started
            started = time.perf_counter()
            codes = encode_codes(v.model, x, bw, v.max_batch)
            _sync(device)
            seconds = time.perf_counter() - started
        audio_s = x.shape[0] * x.shape[-1] / fitted.base.config.sampling_rate
        rows.append(_agreement_check("variants", f"{fitted.preset} {name} {bw:g} kbps", codes, fitted.reference,
                                     f"{audio_s / seconds:.0f}x realtime (first call {first_s:.1f} s)",
                                     {"preset": fitted.preset, "variant": name, "kbps": bw,
                                      "realtime": audio_s / seconds, "first_call_s": first_s}))
    return rows
