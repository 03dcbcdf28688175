"""Codec rows: agreement of the device's batched path with the CPU one-item reference, batch invariance,
determinism, and the bf16 / fp16 / compile variants, on random models whose codebooks are fitted by
k-means to real audio (jobs.bench_codec: random codebooks hide the near-ties where codes flip).

The reference is our fp32 codec on the CPU, one clip at a time (equal to transformers encoding each
clip alone, tests/codec/test_codec_parity.py), at the highest bandwidth; a lower bandwidth's codes are its
first codebooks. "Device path": the CUDA batch plan (codec/batch_plan.py: whole batches, the batched LSTM,
the length grid, TF32 off) on CUDA and, in CPU mode, on the CPU.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from codec import EncodecModel, random_model
from codec.precision import PrecisionError
from codec.tf32_emulation import emulate_tf32
from jobs import bench_codec

from .table import Check

TARGET = 99.9  # % agreement a path must reach to be a default
BANDWIDTHS = (6.0, 24.0)


@dataclass
class Fitted:
    """A preset's fitted model (CPU, fp32), its held-out clips [N, C, n] and their reference codes [n_q, F]."""

    preset: str
    base: EncodecModel
    clips: torch.Tensor
    reference: list[torch.Tensor]
    detail: str


def fit_preset(preset: str, sizes) -> Fitted:
    """random:<preset> with codebooks fitted to the corpus (AUDIOTOK_CORPUS) and the reference codes."""
    base = random_model(f"random:{preset}")
    rate, channels = base.config.sampling_rate, base.config.audio_channels
    fit_cut, held = load_audio(rate, channels, sizes.fit_seconds, sizes.max_clips * sizes.clip_s)
    frames = bench_codec.fit_to_audio(base, fit_cut, sizes.kmeans_iters, sizes.kmeans_frames)
    clips = bench_codec.cut_clips(held, rate, sizes.clip_s)[: sizes.max_clips]
    with torch.inference_mode():
        reference = [item.codes for c in clips for item in base.encode(c[None])]
    detail = (f"k-means {sizes.kmeans_iters} iters on {frames} latent frames of {len(fit_cut)} files; "
              f"{len(clips)} held-out {sizes.clip_s:g} s clips")
    return Fitted(preset, base, clips, reference, detail)


def load_audio(rate: int, channels: int, fit_s: float, held_s: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(fit, held-out) float32 [C, T] arrays as jobs.bench_codec.load_corpus splits the corpus files,
    converted and resampled as the job does, but only as much as needed: the first `fit_s` seconds of
    fit audio and `held_s` of held-out audio (files in name order; each read no further than needed)."""
    import soundfile as sf

    from pipeline.audio import convert_channels, resample

    want = {True: held_s, False: fit_s}
    out: dict[bool, list[np.ndarray]] = {True: [], False: []}
    for sub in bench_codec.AUDIO_DIRS:
        for path in sorted((bench_codec.corpus_dir() / sub).glob("*")):
            held = bench_codec.held_out(f"{sub}/{path.name}")
            if path.suffix.lower() not in bench_codec.AUDIO_EXTS or want[held] <= 0:
                continue
            try:
                info = sf.info(path)
                data, sr = sf.read(path, frames=int(want[held] * info.samplerate) + 1, dtype="float32",
                                   always_2d=True)
            except sf.LibsndfileError:
                continue
            x = np.ascontiguousarray(resample(convert_channels(data, channels), sr, rate).T, dtype=np.float32)
            out[held].append(x)
            want[held] -= x.shape[1] / rate
    if not out[True] or not out[False]:
        raise ValueError(f"no usable audio under {bench_codec.corpus_dir()} (set AUDIOTOK_CORPUS)")
    return out[False], out[True]


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


def agreement_rows(f: Fitted, device: str) -> list[Check]:
    """Device path on all clips in one batch, at each of BANDWIDTHS, against the reference; with speed."""
    import time

    model, max_batch = device_model(f.base, device)
    x = f.clips.to(device)
    rows = []
    for bw in BANDWIDTHS:
        encode_codes(model, x, bw, max_batch)  # warm-up
        _sync(device)
        t = time.perf_counter()
        codes = encode_codes(model, x, bw, max_batch)
        _sync(device)
        seconds = time.perf_counter() - t
        audio_s = x.shape[0] * x.shape[-1] / f.base.config.sampling_rate
        rows.append(_agreement_check("agreement", f"{f.preset} {bw:g} kbps, batch {x.shape[0]}", codes, f.reference,
                                     f"{audio_s / seconds:.0f}x realtime; {f.detail}",
                                     {"preset": f.preset, "kbps": bw, "batch": x.shape[0],
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


def invariance_rows(f: Fitted, device: str, sizes) -> list[Check]:
    """clips[0] alone vs inside mixed batches of sizes.batches items (highest bandwidth, device path)."""
    model, max_batch = device_model(f.base, device)
    bw = max(BANDWIDTHS)
    alone = encode_codes(model, f.clips[:1].to(device), bw, max_batch)[0]
    rows = []
    for size in sizes.batches:
        x, lengths = mixed_batch(f.clips, size, probe_at=size // 2)
        inside = encode_codes(model, x.to(device), bw, max_batch, lengths)[size // 2]
        differ = int((inside != alone).sum())
        vs_ref = bench_codec.agreement([inside], f.reference[:1])
        rows.append(Check("invariance", f"{f.preset} alone vs batch {size}", "ok" if differ == 0 else "fail",
                          f"{differ} codes differ", f"of {alone.numel()}; vs CPU reference {vs_ref:.3f} %",
                          {"preset": f.preset, "batch": size, "codes_differing": differ, "codes": alone.numel(),
                           "vs_reference_pct": vs_ref}))
    return rows


def determinism_rows(f: Fitted, device: str, sizes) -> list[Check]:
    """The same mixed batch twice; on CUDA once more with most of the free GPU memory taken."""
    model, max_batch = device_model(f.base, device)
    size = min(64, max(sizes.batches))
    x, lengths = mixed_batch(f.clips, size, probe_at=0, seed=1)
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
    rows = [Check("determinism", f"{f.preset} batch {size} twice", "ok" if d == 0 else "fail",
                  f"{d} codes differ", f"of {total}", {"preset": f.preset, "codes_differing": d, "codes": total})]
    if device != "cuda":
        rows.append(Check("determinism", f"{f.preset} with GPU memory taken", "skipped", "CUDA only"))
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
    rows.append(Check("determinism", f"{f.preset} with GPU memory taken", "ok" if d == 0 else "fail",
                      f"{d} codes differ", f"{take / 2**30:.1f} GiB of {total_mem / 2**30:.1f} GiB taken; "
                      f"batch peak {peak / 2**30:.2f} GiB", {"preset": f.preset, "codes_differing": d,
                                                             "taken_bytes": take, "batch_peak_bytes": peak}))
    return rows


def variant_rows(f: Fitted, device: str, name: str) -> list[Check]:
    """One jobs.bench_codec variant (bf16 / fp16 / compile / tf32) on all clips at each bandwidth."""
    import time

    emulated = name == "tf32" and device != "cuda"  # on the CPU: codec/tf32_emulation.py, both TF32 flags' ops
    if name in bench_codec.CUDA_ONLY and device != "cuda" and not emulated:
        return [Check("variants", f"{f.preset} {name}", "skipped", "CUDA only")]
    try:
        v = bench_codec.make_variant("fp32" if emulated else name, f.base, device)
    except PrecisionError as exc:
        return [Check("variants", f"{f.preset} {name}", "fail", "refused", f"precision check: {exc}")]
    name = f"{name} (emulated)" if emulated else name
    x = f.clips.to(device)
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
        audio_s = x.shape[0] * x.shape[-1] / f.base.config.sampling_rate
        rows.append(_agreement_check("variants", f"{f.preset} {name} {bw:g} kbps", codes, f.reference,
                                     f"{audio_s / seconds:.0f}x realtime (first call {first_s:.1f} s)",
                                     {"preset": f.preset, "variant": name, "kbps": bw, "realtime": audio_s / seconds,
                                      "first_call_s": first_s}))
    return rows
