"""The precision table (docs/precision.md): code agreement with fp32 and decoded quality per precision,
and the FLOPs per audio-second with the realtime limits they imply on an H100 SXM.

Precisions (`STUDIED`), each run on the CPU over the same clips, encode then decode:
  fp32      the exact mode (codes must equal the reference: a check of the harness itself)
  tf32      emulated (codec/tf32_emulation.py, RNA rounding): conv / conv-transpose / LSTM operands in
            TF32, fp32 accumulation; the RVQ distance matmul stays fp32 (cuDNN's allow_tf32 alone)
  tf32-rz   the same with truncation (RZ), the other conversion reported for tensor cores
  tf32-all  RNA, and the RVQ distance matmul in TF32 too (cuBLAS's allow_tf32 as well)
  bf16/fp16 measured: weights and activations in that dtype on this CPU, RVQ in fp32 (load_model's
            reduced precision); refused when codec.precision.check_precision refuses the kernels
Agreement: % of codes equal to the fp32 reference (all codebooks of the highest bandwidth, and q0);
quality: SI-SNR and multi-scale mel distance of the decoded clip against the input clip, mean over clips.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from codec.metrics import mel_distance_db, si_snr_db
from codec.precision import PrecisionError, code_agreement, reduced_copy
from codec.runtime import dtype_for
from codec.tf32_emulation import emulate_tf32

STUDIED = ("fp32", "tf32", "tf32-rz", "tf32-all", "bf16", "fp16")
EMULATED = {"tf32": dict(mode="rna"), "tf32-rz": dict(mode="rz"), "tf32-all": dict(mode="rna", matmul=True)}
H100_SXM_FP32_TFLOPS = 67.0  # without tensor cores (NVIDIA's H100 SXM datasheet, dense)
TENSOR_CORE_SPEEDUP = {"fp32": 1.0, "tf32": 7.0, "bf16": 15.0}  # ~ the datasheet's dense TF32 / BF16 ratios


@dataclass(frozen=True)
class PrecisionRow:
    """One precision on one model; `status` "ok" or "refused" (then `detail` says why)."""

    model: str
    precision: str
    how: str  # "measured" | "emulated"
    clips: int
    clip_s: float
    agreement_pct: float = math.nan
    q0_agreement_pct: float = math.nan
    si_snr_db: float = math.nan
    mel_distance_db: float = math.nan
    cpu_s: float = math.nan
    status: str = "ok"
    detail: str = ""


@dataclass(frozen=True)
class FlopRow:
    """GFLOP per audio-second of encoding (convs and RVQ from torch's counter, the LSTM by hand)."""

    model: str
    conv_gflop: float
    rvq_gflop: float
    lstm_gflop: float

    @property
    def total_gflop(self) -> float:
        return self.conv_gflop + self.rvq_gflop + self.lstm_gflop

    def realtime_limit(self, precision: str) -> float:
        """x realtime at 100 % of an H100 SXM's peak for `precision` (fp32 | tf32 | bf16)."""
        return H100_SXM_FP32_TFLOPS * TENSOR_CORE_SPEEDUP[precision] * 1e3 / self.total_gflop


def precision_context(precision: str):
    """The context a precision runs in: TF32 emulation for the emulated ones, nothing otherwise."""
    return emulate_tf32(**EMULATED[precision]) if precision in EMULATED else contextlib.nullcontext()


def precision_model(base: nn.Module, precision: str) -> nn.Module:
    """fp32 / emulated: `base` itself; bf16 / fp16: a reduced copy (PrecisionError if refused)."""
    if precision in EMULATED or precision == "fp32":
        return base
    return reduced_copy(base, dtype_for(precision))


def precision_row(name: str, base: nn.Module, clips: torch.Tensor, reference: list[torch.Tensor],
                  precision: str) -> PrecisionRow:
    """Encode `clips` [N, C, n] one by one at the highest bandwidth with `precision`, compare the codes
    with `reference` (fp32 codes per clip), decode them with the same precision, score against the clips."""
    rate = base.config.sampling_rate
    common = dict(model=name, precision=precision, how="emulated" if precision in EMULATED else "measured",
                  clips=clips.shape[0], clip_s=clips.shape[-1] / rate)
    try:
        model = precision_model(base, precision)
    except PrecisionError as exc:
        return PrecisionRow(**common, status="refused", detail=str(exc))
    started = time.process_time()
    with precision_context(precision), torch.inference_mode():
        items = [item for c in clips for item in model.encode(c[None])]
        decoded = model.decode(items)
    cpu_s = time.process_time() - started
    codes = [item.codes for item in items]
    audio = [(c.numpy(), d.numpy()) for c, d in zip(clips, decoded)]
    snr = [s for s in (si_snr_db(c, d) for c, d in audio) if not math.isnan(s)]
    return PrecisionRow(**common, agreement_pct=code_agreement(codes, reference),
                        q0_agreement_pct=code_agreement(codes, reference, levels=1),
                        si_snr_db=sum(snr) / len(snr) if snr else math.nan,
                        mel_distance_db=sum(mel_distance_db(c, d, rate) for c, d in audio) / len(audio),
                        cpu_s=cpu_s)


def flop_row(name: str, model: nn.Module, seconds: float = 1.0) -> FlopRow:
    """FLOPs of encoding `seconds` of noise at the highest bandwidth, per audio-second. torch's counter
    sees the convolutions and the RVQ distance matmuls but not the LSTM (one aten op it has no formula
    for): that is counted by hand from the frames the LSTM actually stepped, 2 * 4H * (D + H) per frame
    and layer (the gate GEMMs; the elementwise gate math, ~0.1 % of it, is left out)."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = model.config
    x = torch.randn(1, cfg.audio_channels, int(seconds * cfg.sampling_rate), generator=torch.Generator().manual_seed(0))
    lstm_flops = []

    def count(module, args, out):
        steps, batch = args[0].shape[:2]
        per_step = sum(2 * 4 * module.hidden_size * (module.input_size if layer == 0 else module.hidden_size)
                       + 2 * 4 * module.hidden_size * module.hidden_size for layer in range(module.num_layers))
        lstm_flops.append(steps * batch * per_step)

    hooks = [m.register_forward_hook(count) for m in model.encoder.modules() if isinstance(m, nn.LSTM)]
    try:
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model.encode(x)
    finally:
        for h in hooks:
            h.remove()
    counts = counter.get_flop_counts()
    conv = sum(counts.get("Encoder", {}).values())
    rvq = counter.get_total_flops() - conv
    return FlopRow(name, conv / seconds / 1e9, rvq / seconds / 1e9, sum(lstm_flops) / seconds / 1e9)


def format_markdown(rows: list[PrecisionRow], flops: list[FlopRow]) -> str:
    """The two tables of docs/precision.md."""
    fp32 = {r.model: r for r in rows if r.precision == "fp32" and r.status == "ok"}
    out = ["| model | precision | how | clips | agreement % | q0 % | SI-SNR dB (fp32) | mel dB (fp32) | CPU s |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.status != "ok":
            out.append(f"| {r.model} | {r.precision} | {r.how} | {r.clips} x {r.clip_s:g} s | refused | | | | |")
            continue
        ref = fp32.get(r.model)
        snr_ref = f" ({ref.si_snr_db:.2f})" if ref else ""
        mel_ref = f" ({ref.mel_distance_db:.3f})" if ref else ""
        out.append(f"| {r.model} | {r.precision} | {r.how} | {r.clips} x {r.clip_s:g} s | {r.agreement_pct:.2f} | "
                   f"{r.q0_agreement_pct:.2f} | {r.si_snr_db:.2f}{snr_ref} | {r.mel_distance_db:.3f}{mel_ref} | "
                   f"{r.cpu_s:.1f} |")
    out += ["", "| model | convs GFLOP/s | RVQ GFLOP/s | LSTM GFLOP/s (by hand) | total | H100 SXM limit fp32 / "
            "TF32 / bf16 (x realtime) |", "|---|---|---|---|---|---|"]
    for f in flops:
        limits = " / ".join(f"{f.realtime_limit(p):,.0f}" for p in ("fp32", "tf32", "bf16"))
        out.append(f"| {f.model} | {f.conv_gflop:.2f} | {f.rvq_gflop:.2f} | {f.lstm_gflop:.2f} | "
                   f"{f.total_gflop:.2f} | {limits} |")
    return "\n".join(out)


@dataclass(frozen=True)
class FitSizes:
    """How much corpus audio fits the codebooks and how many held-out clips are compared."""

    clip_s: float
    max_clips: int
    fit_seconds: float
    kmeans_iters: int
    kmeans_frames: int


def run(args) -> tuple[list, list]:
    """The precision rows and FLOP rows for `args` (jobs.precision_table's options): each preset's random
    model with codebooks fitted to the corpus (and tiny:24khz at 24 kHz), in each precision."""
    from codec import load_model

    from .codec import fit_preset

    size = FitSizes(clip_s=args.clip_s, max_clips=args.clips, fit_seconds=args.fit_seconds,
                    kmeans_iters=args.kmeans_iters, kmeans_frames=20000)
    rows, flops = [], []
    for preset in args.presets:
        started = time.perf_counter()
        fitted = fit_preset(preset, size)
        print(f"{preset}: {fitted.detail} ({time.perf_counter() - started:.0f} s)", flush=True)
        models = [(f"random:{preset} fitted", fitted.base, fitted.reference)]
        if preset == "24khz" and not args.no_tiny:
            tiny = load_model("tiny:24khz")
            with torch.inference_mode():
                models.append(("tiny:24khz", tiny, [i.codes for c in fitted.clips for i in tiny.encode(c[None])]))
        for name, model, reference in models:
            for precision in args.precisions:
                row = precision_row(name, model, fitted.clips, reference, precision)
                print(f"  {name} {precision}: {row.status} {row.agreement_pct:.2f} % (q0 {row.q0_agreement_pct:.2f}), "
                      f"SI-SNR {row.si_snr_db:.2f} dB, mel {row.mel_distance_db:.3f} dB, {row.cpu_s:.1f} CPU s "
                      f"{row.detail[:100]}", flush=True)
                rows.append(row)
        flops.append(flop_row(f"{preset} (EnCodec architecture)", fitted.base))
    return rows, flops

