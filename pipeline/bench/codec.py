"""Encode speed and code agreement of our codec's variants vs transformers' EncodecModel, in one run.

The library side of `python -m jobs.bench_codec` (and of gpu_check's codec rows):

1. Model: `--model` (a real checkpoint: its codebooks are used as they are) or seeded random weights
   whose codebooks are then fitted by k-means (`--kmeans-iters`) to the latents of real audio from
   ../shared/corpus (AUDIOTOK_CORPUS): random codebooks put codewords far apart, which hides the
   near-ties where precision choices flip codes, so agreement measured with them means nothing.
2. Audio: every readable corpus file, resampled to the model's rate and channels. Files whose name
   hashes to 0 mod 3 are held out: the benchmark clips are cut from them, the rest feed k-means.
3. Reference: our fp32 codec on the CPU, one clip at a time (bit-identical to transformers encoding
   each item alone; see tests/codec/test_codec_parity.py).
4. For each preset, bandwidth and batch size: transformers (fp32, batched, no_grad) and each variant
   of ours, timed (best of --repeats after a warm-up); prints x realtime, the ratio to transformers,
   the code agreement with the reference (all codebooks of that bandwidth, every frame; and of the
   first codebook alone, q0: a flip there changes every later residual; for transformers at 48 kHz
   only the full 1 s chunks, as it pads the last one), and peak
   memory (CUDA: max allocated; CPU: peak process RSS during the timed calls).

Variants (`--variants`; those that need CUDA are skipped on the CPU, with a note):
  fp32      the default: fp32 weights; CPU one item per forward pass, CUDA whole batches; TF32 off,
            as the job's actors set it (transformers is timed with TF32 off too)
  batched   fp32, the CUDA batch plan on the CPU too (whole batches, batched LSTM, length grid)
  bf16      bf16 weights and activations, RVQ in fp32 (job config `precision: bf16`); skipped
            when codec.precision.check_precision refuses it on this device
  fp16      fp16 likewise (CUDA only)
  tf32      fp32 with TF32 matmuls and convolutions (CUDA only)
  compile   fp32, encoder through torch.compile (whole batches)
A variant whose agreement falls below 99.9 % must not become a default. A run that runs out of
memory (CUDA or host) is printed as an `out of memory` row and the benchmark goes on.
"""

from __future__ import annotations

import copy
import hashlib
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from codec import EncodecModel, load_model, random_model, save_model
from codec.codebook_fitting import fit_codebooks
from codec.precision import PrecisionError, reduced_copy
from codec.precision import code_agreement as agreement
from codec.runtime import compile_encoder, dtype_for

AUDIO_DIRS = ("music", "speech", "env")
AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3", ".opus")
VARIANTS = ("fp32", "batched", "bf16", "fp16", "tf32", "compile")
CUDA_ONLY = ("fp16", "tf32")
MIN_AGREEMENT = 99.9


def corpus_dir() -> Path:
    return Path(os.environ.get("AUDIOTOK_CORPUS", Path(__file__).resolve().parents[2].parent / "shared" / "corpus"))


def held_out(name: str) -> bool:
    return int(hashlib.sha1(name.encode()).hexdigest(), 16) % 3 == 0


def load_corpus(rate: int, channels: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(fit, held-out) lists of float32 [C, T] arrays: every readable corpus file at the model's format,
    converted and resampled as the job does (soxr HQ). Files libsndfile cannot read are named and skipped."""
    import soundfile as sf

    from pipeline.audio import convert_channels, resample

    fit, held = [], []
    for sub in AUDIO_DIRS:
        for path in sorted((corpus_dir() / sub).glob("*")):
            if path.suffix.lower() not in AUDIO_EXTS:
                continue
            try:
                data, sr = sf.read(path, dtype="float32", always_2d=True)
            except sf.LibsndfileError as exc:  # e.g. GSM in WAV
                print(f"  (skipped {sub}/{path.name}: {exc})")
                continue
            data = resample(convert_channels(data, channels), sr, rate)
            (held if held_out(f"{sub}/{path.name}") else fit).append(np.ascontiguousarray(data.T, dtype=np.float32))
    if not fit or not held:
        raise SystemExit(f"no usable audio under {corpus_dir()} (set AUDIOTOK_CORPUS)")
    return fit, held


def cut_clips(audio: list[np.ndarray], rate: int, seconds: float) -> torch.Tensor:
    """The held-out files end to end, cut into clips of `seconds`: [N, C, n]."""
    joined = np.concatenate(audio, axis=1)
    n = int(seconds * rate)
    count = joined.shape[1] // n
    if count == 0:
        raise SystemExit(f"held-out audio is shorter than one {seconds} s clip")
    return torch.from_numpy(np.stack([joined[:, i * n : (i + 1) * n] for i in range(count)]))


def fit_to_audio(model: EncodecModel, audio: list[np.ndarray], iters: int, max_frames: int) -> int:
    """Fit the model's codebooks by k-means to the latents of `audio` (as encode computes them:
    normalised, chunked); returns the number of latent frames used."""
    latents: list[torch.Tensor] = []
    hook = model.encoder.register_forward_hook(lambda mod, args, out: latents.extend(out[0].transpose(1, 2).float()))
    try:
        for x in audio:
            model.encode(torch.from_numpy(x)[None])
    finally:
        hook.remove()
    frames = torch.cat(latents)
    generator = torch.Generator().manual_seed(0)
    if frames.shape[0] > max_frames:
        frames = frames[torch.randperm(frames.shape[0], generator=generator)[:max_frames]]
    fit_codebooks(model.quantizer, frames, iters=iters, generator=generator)
    return frames.shape[0]


@dataclass
class Variant:
    name: str
    model: EncodecModel
    max_batch: int | None = None  # None: the model's default for its device
    flags: dict = field(default_factory=dict)  # torch.backends settings held while it runs


def make_variant(name: str, base: EncodecModel, device: str) -> Variant:
    model = copy.deepcopy(base).to(device)
    if name in ("bf16", "fp16"):
        model = reduced_copy(model, dtype_for(name))  # as load_model does: PrecisionError on a wrong kernel
    if name in ("batched", "compile"):
        model.set_batch_plan("cuda")  # whole batches, the batched LSTM, the length grid
    if name == "compile":
        compile_encoder(model)
    flags = {"tf32": True} if name == "tf32" else {"tf32": False}
    return Variant(name, model, max_batch=256 if name in ("batched", "compile") else None, flags=flags)


@contextmanager
def backend_flags(tf32: bool):
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


class PeakMemory:
    """Peak memory (MiB) during a block: CUDA max allocated, or process RSS sampled every 5 ms."""

    def __init__(self, device: str):
        self.device, self.peak = device, 0.0

    def __enter__(self):
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            return self
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._stop.is_set():
            with open("/proc/self/statm") as f:
                self.peak = max(self.peak, int(f.read().split()[1]) * page / 2**20)
            self._stop.wait(0.005)

    def __exit__(self, *exc):
        if self.device == "cuda":
            self.peak = torch.cuda.max_memory_allocated() / 2**20
        else:
            self._stop.set()
            self._thread.join()


def timed(fn, repeats: int):
    """(best wall seconds of `repeats` calls after one warm-up, the last call's result)."""
    result = fn()
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        result = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best, result


def out_of_memory(exc: BaseException) -> bool:
    """True for torch's CUDA out-of-memory error, a host MemoryError, or a RuntimeError saying so."""
    return isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def guarded_timed(fn, repeats: int):
    """timed(fn, repeats), or (None, "out of memory: ...") when it runs out of memory (CUDA cache freed)."""
    try:
        return timed(fn, repeats)
    except Exception as exc:  # only out of memory is swallowed; the rest is raised again
        if not out_of_memory(exc):
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return None, f"out of memory: {(str(exc).splitlines() or [type(exc).__name__])[0][:120]}"


def row_line(preset: str, bw: float, batch: int, name: str, audio_s: float, t: float | None, t_hf: float | None,
             agree: float | None, first: float | None, peak: float) -> str:
    """One printed row; t None: the run failed (out of memory), said in place of the numbers."""
    head = f"{preset:7} {bw:5.1f} {batch:5d} {name:12}"
    if t is None:
        return f"{head} {'out of memory':>11}"
    vs = f"{t_hf / t:6.2f}" if t_hf else f"{'n/a':>6}"
    flag = "" if agree >= MIN_AGREEMENT else "  < 99.9 %"
    return f"{head} {audio_s / t:11.1f} {vs} {agree:8.3f} {first:8.3f} {peak:9.0f}{flag}"


def hf_codes(out, batch: int, model: EncodecModel, num_samples: int) -> list[torch.Tensor]:
    """transformers' audio_codes [chunks, B, n_q, F] -> per item [n_q, frames]. 48 kHz: transformers
    pads the last chunk to a full one (with its own scale) where we encode the remainder as it is,
    so only the frames of full chunks are comparable and kept."""
    codes = out.audio_codes.cpu()
    hop, full = model.config.hop_length, model.config.chunk_length
    frames = sum(-(-n // hop) for _, n in model.chunk_spans(num_samples) if full is None or n == full)
    return [torch.cat(list(codes[:, b]), dim=-1)[:, :frames] for b in range(batch)]


def bench_preset(preset: str | None, args, device: str) -> None:
    """One model: `args.model` when given (preset None), else random:<preset> with fitted codebooks."""
    import transformers

    if args.model:
        base = load_model(args.model)
        fitted = "codebooks from the checkpoint"
    else:
        base = random_model(f"random:{preset}")
    cfg = base.config
    preset = preset or f"{cfg.sampling_rate // 1000}khz"
    fit_audio, held_audio = load_corpus(cfg.sampling_rate, cfg.audio_channels)
    if not args.model:
        t = time.perf_counter()
        frames = fit_to_audio(base, fit_audio, args.kmeans_iters, args.kmeans_frames)
        fitted = (f"random weights, codebooks fitted by k-means ({args.kmeans_iters} iters) to {frames} latent "
                  f"frames of {len(fit_audio)} corpus files in {time.perf_counter() - t:.0f} s")
    clips = cut_clips(held_audio, cfg.sampling_rate, args.seconds)
    print(f"\n{preset}: {fitted}; {len(clips)} held-out {args.seconds:g} s clips from {len(held_audio)} files")
    reference = [item.codes for c in clips for item in base.encode(c[None])]  # CPU fp32, one at a time
    ref_model = transformers.EncodecModel.from_pretrained(save_model(base, tempfile.mkdtemp())).eval().to(device)
    variants = []
    for name in args.variants:
        if name in CUDA_ONLY and device != "cuda":
            print(f"  ({name}: CUDA only, skipped)")
            continue
        try:
            variants.append(make_variant(name, base, device))
        except PrecisionError as exc:
            print(f"  ({name}: refused by the precision check, as load_model would: {exc})")
    print(f"{'preset':7} {'kbps':>5} {'batch':>5} {'variant':12} {'x realtime':>11} {'vs hf':>6} "
          f"{'agree %':>8} {'q0 %':>8} {'peak MiB':>9}")
    for bw in args.bandwidths:
        if bw not in cfg.target_bandwidths:
            print(f"  ({bw} kbps: not a bandwidth of {preset}, skipped)")
            continue
        for batch in args.batch_sizes:
            index = [i % len(clips) for i in range(batch)]
            x = clips[index].to(device)
            audio_s = batch * args.seconds
            with PeakMemory(device) as mem, torch.no_grad(), backend_flags(tf32=False):  # as the job runs
                t_hf, out = guarded_timed(lambda x=x, bw=bw: ref_model.encode(x, bandwidth=bw), args.repeats)
            rows = [("transformers", t_hf, hf_codes(out, batch, base, x.shape[-1]) if t_hf else None, mem.peak)]
            for v in variants:
                with PeakMemory(device) as mem, backend_flags(**v.flags):
                    t, items = guarded_timed(
                        lambda v=v, x=x, bw=bw: v.model.encode(x, bandwidth=bw, max_batch=v.max_batch), args.repeats)
                rows.append((v.name, t, [i.codes for i in items] if t else None, mem.peak))
            for name, t, codes, peak in rows:
                agree = first = None
                if codes is not None:
                    agree = agreement(codes, [reference[i] for i in index])
                    first = agreement(codes, [reference[i] for i in index], levels=1)
                print(row_line(preset, bw, batch, name, audio_s, t, t_hf, agree, first, peak))


@dataclass
class Fitted:
    """A preset's fitted model (CPU, fp32), its held-out clips [N, C, n] and their reference codes [n_q, F]."""

    preset: str
    base: EncodecModel
    clips: torch.Tensor
    reference: list[torch.Tensor]
    detail: str


def fit_preset(preset: str, sizes) -> Fitted:
    """random:<preset> with codebooks fitted to the corpus (AUDIOTOK_CORPUS) and the reference codes.
    sizes: fit_seconds, max_clips, clip_s, kmeans_iters, kmeans_frames (pipeline.bench.gpu_check.sizes.Sizes)."""
    base = random_model(f"random:{preset}")
    rate, channels = base.config.sampling_rate, base.config.audio_channels
    fit_cut, held = load_audio(rate, channels, sizes.fit_seconds, sizes.max_clips * sizes.clip_s)
    frames = fit_to_audio(base, fit_cut, sizes.kmeans_iters, sizes.kmeans_frames)
    clips = cut_clips(held, rate, sizes.clip_s)[: sizes.max_clips]
    with torch.inference_mode():
        reference = [item.codes for c in clips for item in base.encode(c[None])]
    detail = (f"k-means {sizes.kmeans_iters} iters on {frames} latent frames of {len(fit_cut)} files; "
              f"{len(clips)} held-out {sizes.clip_s:g} s clips")
    return Fitted(preset, base, clips, reference, detail)


def load_audio(rate: int, channels: int, fit_s: float, held_s: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(fit, held-out) float32 [C, T] arrays as pipeline.bench.codec.load_corpus splits the corpus files,
    converted and resampled as the job does, but only as much as needed: the first `fit_s` seconds of
    fit audio and `held_s` of held-out audio (files in name order; each read no further than needed)."""
    import soundfile as sf

    from pipeline.audio import convert_channels, resample

    want = {True: held_s, False: fit_s}
    out: dict[bool, list[np.ndarray]] = {True: [], False: []}
    for sub in AUDIO_DIRS:
        for path in sorted((corpus_dir() / sub).glob("*")):
            held = held_out(f"{sub}/{path.name}")
            if path.suffix.lower() not in AUDIO_EXTS or want[held] <= 0:
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
        raise ValueError(f"no usable audio under {corpus_dir()} (set AUDIOTOK_CORPUS)")
    return out[False], out[True]
