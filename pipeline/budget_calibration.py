"""`buckets.batch_budget_samples: auto`: the actor sizes its batch budget once, at model load, on the
card it runs on, by the rule of batch_budget.py (the one the GPU check's memory rows use).

    budget = size_budget(model, cfg)        # a BudgetInForce; never raises
    worker_cfg = in_force(cfg, budget)      # cfg with that budget (and max_batch_items) as numbers

On a CUDA device two calibration batches of noise are encoded, each inside a `peak_memory.CudaMeter`
row (torch.cuda.max_memory_allocated after reset_peak_memory_stats, empty_cache around it): the
config's longest item (audio.max_duration_s) alone, and max_batch_items short items at the fallback
budget (`calibration_shapes`, the shapes of the GPU check's memory rows). The memory the actor may
use is what the card has free (torch.cuda.mem_get_info: other processes may share it) plus what the
actor held already (its weights), and at most its share of the card (`gpus_per_actor` of the total:
actors placed on one card each size for their share, whichever calibrates first); the rule keeps 20 %
of it as headroom. Off CUDA, or when anything
in the calibration fails (out of memory included), the budget is the fallback and the reason is
logged. With the CPU batch plan codes do not depend on the budget; with the CUDA plan each row's
batch is recorded (codec/batch_plan.py), so verify re-encodes it the same way.
"""

from __future__ import annotations

import dataclasses
import logging

import torch

from . import batch_budget
from .budget_in_force import BudgetInForce
from .config import JobConfig
from .peak_memory import CudaMeter

log = logging.getLogger(__name__)


def calibration_shapes(rate: int, budget: int, max_items: int, longest: int,
                       chunk: int | None) -> list[tuple[str, int, int, int | None]]:
    """(label, items, samples each, chunks per pass) of two batches at `budget`: `max_items` short
    items, and as many `longest` items as fit (at least one). Chunked models: at most
    min(max_items, budget / chunk) chunks per forward pass, as the shard worker runs them."""
    max_chunks = None if chunk is None else max(1, min(max_items, budget // chunk))
    short = max(rate // 10, budget // max_items)
    return [(f"{max_items} x {short / rate:.2f} s", max_items, short, max_chunks),
            (f"{max(1, budget // longest)} x {longest / rate:.0f} s", max(1, budget // longest), longest, max_chunks)]


def pass_samples(model, items: int, samples: int, max_chunks: int | None) -> int:
    """Padded samples per channel in the largest forward pass of the batch: the whole batch, or for a
    chunked model (48 kHz) at most `max_chunks` chunks of chunk_length (what the budget bounds there)."""
    chunk = model.chunk_length
    if chunk is None:
        return items * samples
    chunks = items * len(model.chunk_spans(samples))
    return min(chunks, max_chunks or chunks) * min(chunk, samples)  # an item shorter than a chunk is one short chunk


def measure(model, cfg: JobConfig, meter) -> list[batch_budget.MemoryPoint]:
    """The calibration batches (`calibration_shapes` at the fallback budget) encoded in `meter`'s rows."""
    b, rate = cfg.buckets, model.sample_rate
    longest = int(cfg.audio.max_duration_s * rate)
    points = []
    for label, items, samples, max_chunks in calibration_shapes(rate, b.batch_budget_fallback_samples,
                                                                b.max_batch_items, longest, model.chunk_length):
        with torch.inference_mode(), meter.row() as mem:
            x = torch.randn(items, model.channels, samples) * 0.1  # on the host, as the shard worker's batches
            model.encode(x, bandwidth=max(cfg.bandwidths), max_batch=max_chunks)
            del x
        points.append(batch_budget.MemoryPoint(label, pass_samples(model, items, samples, max_chunks),
                                               mem.peak_bytes, mem.resident_bytes))
    return points


def size_budget(model, cfg: JobConfig, cuda=None, meter=None) -> BudgetInForce:
    """The budget the actor of `model` encodes with (module docstring). cuda: the torch.cuda API and
    meter: a peak_memory meter (stand-ins in tests); the device is `model.device`."""
    b, rate = cfg.buckets, model.sample_rate
    if not b.auto_budget:
        return BudgetInForce(b.budget_samples(), b.max_batch_items, "fixed", rate)
    device = torch.device(model.device)

    def fallback(reason: str, level: int = logging.WARNING) -> BudgetInForce:
        log.log(level, "batch_budget_samples auto: using the fallback %d samples (%s)",
                b.batch_budget_fallback_samples, reason)
        return BudgetInForce(b.batch_budget_fallback_samples, b.max_batch_items, "fallback", rate, reason=reason)

    if device.type != "cuda":
        return fallback(f"not a CUDA device: {device}", logging.INFO)
    cuda = cuda if cuda is not None else torch.cuda
    index = device.index if device.index is not None else 0
    try:
        points = measure(model, cfg, meter or CudaMeter(cuda, index))
        free, total = cuda.mem_get_info(index)
        share = min(1.0, cfg.gpus_per_actor) if cfg.gpus_per_actor > 0 else 1.0  # actors sharing the card
        usable = min(int(free) + max(p.resident_bytes for p in points), int(total * share))
        advice = batch_budget.recommend(model.name, points, usable, rate, int(cfg.audio.max_duration_s * rate),
                                        b.batch_budget_fallback_samples, b.max_batch_items, model.chunk_length)
    except Exception as exc:  # out of memory, a driver error, a rule refused: the fallback, never a crash
        try:
            cuda.empty_cache()
        except Exception:  # noqa: S110 - the fallback is taken whatever the state of the allocator
            pass
        return fallback(f"calibration failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
    budget = BudgetInForce(advice.budget_samples, advice.max_batch_items, "calibrated", rate,
                           bytes_per_sample=advice.bytes_per_sample, usable_bytes=usable)
    log.info("batch_budget_samples auto: %s", budget.line())
    return budget


def in_force(cfg: JobConfig, budget: BudgetInForce) -> JobConfig:
    """`cfg` with `budget`'s numbers as buckets.batch_budget_samples and max_batch_items."""
    buckets = dataclasses.replace(cfg.buckets, batch_budget_samples=budget.samples,
                                  max_batch_items=budget.max_batch_items)
    return dataclasses.replace(cfg, buckets=buckets)
