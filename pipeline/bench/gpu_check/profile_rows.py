"""Peak memory at the presets' batch budgets, the batch budget it recommends (pipeline/batch_budget.py), and
a profile of one encode: host syncs per batch, the cost of a new input shape, forward passes per
batch, the LSTM's share of a batch's time (lstm_share.py).

Host syncs are counted by `codec.host_syncs` (the torch.Tensor methods that wait for the device,
called on tensors of the model's device); on CUDA, torch's own sync debug mode (`torch.cuda.set_sync_debug_mode`) counts
the synchronizing operations it knows as a second opinion. On the CPU the counts are the calls that
would wait for a GPU.
"""

from __future__ import annotations

import statistics
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch

from codec.host_syncs import count_host_syncs, forward_passes
from pipeline import batch_budget, peak_memory
from pipeline.budget_calibration import calibration_shapes, pass_samples

from .codec_rows import Fitted, device_model, encode_codes, mixed_batch
from .lstm_share import LstmTimer
from .table import Check

REPO = Path(__file__).resolve().parents[3]
NOMINAL_CARD_GIB = 80.0  # CPU mode: the rule is exercised for an 80 GiB card (H100) on the CPU's numbers


@contextmanager
def cuda_sync_warnings():
    """List of torch's sync-debug warnings while the block runs (CUDA only; empty elsewhere)."""
    caught: list = []
    if not torch.cuda.is_available():
        yield caught
        return
    before = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield caught
        finally:
            torch.cuda.set_sync_debug_mode(before)
            caught.extend(w for w in seen if "synchroniz" in str(w.message).lower())


def _preset(preset: str):
    from codec.config import PRESETS
    from pipeline.config import load_config

    return PRESETS[preset], load_config(str(REPO / "configs" / f"encodec_{preset}.yaml"))


def budget_shapes(preset: str, scale: float, max_item_s: float | None = None) -> list[tuple[str, int, int, int | None]]:
    """(label, items, samples each, max_batch) of two batches at the preset config's batch budget
    (× scale; with `auto` its fallback): many short items (max_batch_items) and as many max-duration
    items (max_item_s when given) as fit: the actor's calibration shapes (budget_calibration.py)."""
    model_cfg, cfg = _preset(preset)
    rate = model_cfg.sampling_rate
    budget = max(1, int(cfg.buckets.budget_samples() * scale))
    most = max(1, int(cfg.buckets.max_batch_items * scale))
    longest = int((max_item_s or cfg.audio.max_duration_s) * rate)
    return calibration_shapes(rate, budget, most, longest, model_cfg.chunk_length)


def _encode_row(model, meter, items: int, samples: int, max_batch: int | None, device: str):
    """One batch of `items` noise items made and encoded inside the meter's row: its RowMemory."""
    bw = max(model.config.target_bandwidths)
    with meter.row() as mem:
        x = torch.randn(items, model.config.audio_channels, samples, device=device) * 0.1
        encode_codes(model, x, bw, max_batch)
        del x
    return mem


def memory_rows(preset: str, device: str, scale: float, max_item_s: float | None = None, meter=None,
                card_bytes: int | None = None) -> list[Check]:
    """Our peak memory at the preset config's batch budget (× scale; `budget_shapes`), from torch
    (peak_memory: CUDA max_memory_allocated, reset per row, empty_cache between rows); then the
    batch budget the rule of batch_budget.py recommends for the card (a nominal 80 GiB one in CPU
    mode, or `card_bytes`), and on a card one batch at that budget, measured."""
    from codec import random_model

    meter = meter or peak_memory.meter_for(device)
    model_cfg, cfg = _preset(preset)
    model, _ = device_model(random_model(f"random:{preset}"), device)  # codebook values do not change memory
    rate, chunk = model_cfg.sampling_rate, model_cfg.chunk_length
    rows, points = [], []
    mib = 2**20
    for label, items, samples, max_batch in budget_shapes(preset, scale, max_item_s):
        mem = _encode_row(model, meter, items, samples, max_batch, device)
        point = batch_budget.MemoryPoint(label, pass_samples(model, items, samples, max_batch), mem.peak_bytes,
                                         mem.resident_bytes)
        points.append(point)
        reserved = "" if mem.reserved_peak_bytes is None else f"; reserved peak {mem.reserved_peak_bytes / mib:.0f} MiB"
        rows.append(Check("memory", f"{preset} budget: {label}", "ok", f"{mem.peak_bytes / mib:.0f} MiB",
                          f"{meter.what}; resident {mem.resident_bytes / mib:.0f} MiB, {point.bytes_per_sample:.0f} "
                          f"bytes/sample{reserved}; budget x {scale:g}"
                          + ("" if max_batch is None else f", {max_batch} chunks/pass"),
                          {"preset": preset, "items": items, "samples": samples, "padded_samples": point.padded_samples,
                           "peak_bytes": mem.peak_bytes, "resident_bytes": mem.resident_bytes,
                           "reserved_peak_bytes": mem.reserved_peak_bytes, "peak_mib": mem.peak_bytes / mib,
                           "bytes_per_sample": point.bytes_per_sample, "budget_scale": scale, "meter": meter.what}))
    card = meter.card_bytes() or card_bytes
    nominal = card is None
    card = card or int(NOMINAL_CARD_GIB * 2**30)
    longest = int(cfg.audio.max_duration_s * rate)
    try:
        advice = batch_budget.recommend(preset, points, card, rate, longest, cfg.buckets.budget_samples(),
                                        cfg.buckets.max_batch_items, chunk)
    except ValueError as exc:
        rows.append(Check("memory", f"{preset} recommended batch budget", "fail", "does not fit", str(exc)))
        return rows
    where = (f"CPU mode: {meter.what} on a nominal {NOMINAL_CARD_GIB:g} GiB card (a prediction, "
             "not a GPU measurement)" if nominal else f"{meter.what} on this card")
    rows.append(Check("memory", f"{preset} recommended batch budget", "ok", f"{advice.budget_samples:,} samples",
                      f"{advice.line()}; {where}",
                      {"preset": preset, "budget_samples": advice.budget_samples,
                       "max_batch_items": advice.max_batch_items, "card_bytes": card, "nominal_card": nominal,
                       "headroom": advice.headroom, "bytes_per_sample": advice.bytes_per_sample,
                       "resident_bytes": advice.resident_bytes, "configured_samples": advice.configured_samples,
                       "predicted_peak_bytes": advice.predicted_peak_bytes(advice.budget_samples)}))
    if nominal:
        rows.append(Check("memory", f"{preset} at the recommended budget", "skipped", "CUDA only",
                          "one batch at the recommended budget needs the card it was sized for"))
        return rows
    items = max(1, advice.budget_samples // longest)
    max_batch = None if chunk is None else max(1, min(advice.max_batch_items, advice.budget_samples // chunk))
    mem = _encode_row(model, meter, items, longest, max_batch, device)
    predicted = advice.predicted_peak_bytes(pass_samples(model, items, longest, max_batch))
    fits = mem.peak_bytes <= advice.usable_bytes
    rows.append(Check("memory", f"{preset} at the recommended budget", "ok" if fits else "fail",
                      f"{mem.peak_bytes / 2**30:.1f} GiB", f"{items} x {longest / rate:.0f} s; predicted "
                      f"{predicted / 2**30:.1f} GiB, usable {advice.usable_bytes / 2**30:.1f} GiB of "
                      f"{card / 2**30:.0f} GiB" + ("" if mem.reserved_peak_bytes is None else
                                                   f"; reserved peak {mem.reserved_peak_bytes / 2**30:.1f} GiB"),
                      {"preset": preset, "items": items, "samples": longest, "peak_bytes": mem.peak_bytes,
                       "predicted_bytes": predicted, "usable_bytes": advice.usable_bytes,
                       "reserved_peak_bytes": mem.reserved_peak_bytes}))
    return rows


def lstm_rows(preset: str, device: str, scale: float, max_item_s: float | None = None, cuda=None) -> list[Check]:
    """The LSTM's share of one batch's encode time (lstm_share.LstmTimer), at the budget shapes."""
    from codec import random_model

    model, _ = device_model(random_model(f"random:{preset}"), device)
    bw = max(model.config.target_bandwidths)
    rows = []
    for label, items, samples, max_batch in budget_shapes(preset, scale, max_item_s):
        x = torch.randn(items, model.config.audio_channels, samples, device=device) * 0.1
        if device == "cuda":  # warm-up: cuDNN's plans and the allocator's blocks (the CPU has neither)
            encode_codes(model, x, bw, max_batch)
        with LstmTimer(model.encoder, device, cuda) as timer:
            encode_codes(model, x, bw, max_batch)
        del x
        audio_s = items * samples / model.config.sampling_rate
        rows.append(Check("profile", f"{preset} LSTM share: {label}", "ok", f"{100 * timer.share:.0f} % of the batch",
                          f"LSTM {1000 * timer.lstm_s:.1f} ms in {timer.calls} call(s) of {1000 * timer.total_s:.1f} "
                          f"ms (encode, {audio_s:.1f} s of audio); budget x {scale:g}",
                          {"preset": preset, "items": items, "samples": samples, "lstm_s": timer.lstm_s,
                           "total_s": timer.total_s, "share": timer.share, "lstm_calls": timer.calls}))
    return rows


def _timed(fn, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def profile_rows(fitted: Fitted, device: str, batch: int) -> list[Check]:
    """Syncs and forward passes of one mixed batch of `batch` items at 24 kbps; cost of a new shape."""
    model, max_batch = device_model(fitted.base, device)
    x, lengths = mixed_batch(fitted.clips, batch, probe_at=0, seed=2)
    x = x.to(device)
    encode_codes(model, x, 24.0, max_batch, lengths)  # warm-up
    with (count_host_syncs(device) as counts, forward_passes(model.encoder) as passes,
          cuda_sync_warnings() as cuda_warned):
        encode_codes(model, x, 24.0, max_batch, lengths)
    syncs = sum(counts.values())
    chunk = model.config.chunk_length
    distinct = len({n for length in lengths for _, n in model.chunk_spans(length)}) if chunk else 1
    cuda_note = f"; torch sync debug mode saw {len(cuda_warned)}" if device == "cuda" else ""
    rows = [
        Check("profile", f"{fitted.preset} host syncs per batch of {batch}", "ok", f"{syncs} syncs",
              f"{syncs / max(len(passes), 1):.1f} per forward pass; {dict(counts)}{cuda_note}",
              {"preset": fitted.preset, "syncs": syncs, "by_method": dict(counts), "forward_passes": len(passes),
               "cuda_sync_warnings": len(cuda_warned)}),
        Check("profile", f"{fitted.preset} forward passes per batch of {batch}", "ok", f"{len(passes)} passes",
              f"{distinct} distinct chunk lengths" if chunk else "whole items, one length per batch",
              {"preset": fitted.preset, "forward_passes": len(passes), "distinct_chunk_lengths": distinct}),
    ]
    n = x.shape[-1]
    same = [_timed(lambda: encode_codes(model, x, 24.0, max_batch, lengths), device) for _ in range(2)]
    fresh = []
    for k in (1, 2, 3):  # lengths never seen: n - k * 997 samples
        cut = n - k * 997
        fresh.append(_timed(lambda cut=cut: encode_codes(model, x[..., :cut], 24.0, max_batch,
                                                         [min(v, cut) for v in lengths]), device))
    extra = statistics.median(fresh) - min(same)
    benchmark = torch.backends.cudnn.benchmark
    rows.append(Check("profile", f"{fitted.preset} cost of a new shape", "ok", f"{1000 * extra:+.0f} ms",
                      f"first call of a new length {1000 * statistics.median(fresh):.0f} ms vs repeat "
                      f"{1000 * min(same):.0f} ms (cudnn.benchmark={benchmark})",
                      {"preset": fitted.preset, "new_shape_s": fresh, "same_shape_s": same, "extra_s": extra}))
    return rows
