"""Peak memory at the presets' batch budgets and a profile of one encode: host syncs per batch, the
cost of a new input shape, forward passes per batch.

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
from pipeline.bench import codec as bench_codec

from .codec_rows import Fitted, device_model, encode_codes, mixed_batch
from .table import Check

REPO = Path(__file__).resolve().parents[3]


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


def budget_shapes(preset: str, scale: float, max_item_s: float | None = None) -> list[tuple[str, int, int, int | None]]:
    """(label, items, samples each, max_batch) of two batches at the preset config's batch budget
    (× scale): many short items (max_batch_items) and as many max-duration items (max_item_s when
    given) as fit."""
    from pipeline.config import load_config

    cfg = load_config(str(REPO / "configs" / f"encodec_{preset}.yaml"))
    rate = 24000 if preset == "24khz" else 48000
    budget = max(1, int(cfg.buckets.batch_budget_samples * scale))
    most = max(1, int(cfg.buckets.max_batch_items * scale))
    longest = int((max_item_s or cfg.audio.max_duration_s) * rate)
    max_chunks = None if preset == "24khz" else max(1, min(most, budget // rate))  # as the shard worker
    short = max(rate // 10, budget // most)
    return [(f"{most} x {short / rate:.2f} s", most, short, max_chunks),
            (f"{max(1, budget // longest)} x {longest / rate:.0f} s", max(1, budget // longest), longest, max_chunks)]


def memory_rows(fitted: Fitted, device: str, scale: float, max_item_s: float | None = None) -> list[Check]:
    model, _ = device_model(fitted.base, device)
    rows = []
    for label, items, samples, max_batch in budget_shapes(fitted.preset, scale, max_item_s):
        x = torch.randn(items, model.config.audio_channels, samples, device=device) * 0.1
        with bench_codec.PeakMemory(device) as mem:
            encode_codes(model, x, 24.0, max_batch)
        what = "CUDA max allocated" if device == "cuda" else "process RSS"
        rows.append(Check("memory", f"{fitted.preset} budget: {label}", "ok", f"{mem.peak:.0f} MiB",
                          f"{what}; budget x {scale:g}" + ("" if max_batch is None else f", {max_batch} chunks/pass"),
                          {"preset": fitted.preset, "items": items, "samples": samples, "peak_mib": mem.peak,
                           "budget_scale": scale}))
        del x
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
