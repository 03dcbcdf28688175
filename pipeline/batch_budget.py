"""The rule that sizes `buckets.batch_budget_samples` from peak-memory rows: used by the actor for
`batch_budget_samples: auto` (budget_calibration.py, on the card it runs on) and by the GPU check's
memory rows (pipeline/bench/gpu_check/profile_rows.py).

    advice = recommend(preset, points, card_bytes, rate, longest_samples, configured, max_batch_items, chunk_samples)

Inputs: the memory rows of one preset (`MemoryPoint`: padded samples per channel in the batch, our
peak and resident bytes from `peak_memory`, measured at the config's budget: many short items, and the
longest items, 30 s, that fit) and the card's memory. The rule:

  bytes_per_sample = the largest (peak - resident) / padded samples of the rows (the worse shape wins)
  usable           = card x (1 - HEADROOM) - the largest resident bytes of the rows
  budget           = usable / bytes_per_sample, rounded down to whole seconds of audio (at 48 kHz:
                     whole one-second chunks), and at most what a batch can hold: max_batch_items
                     items of the longest duration (whole-item presets)
It refuses (ValueError) when one longest item does not fit. Activation memory grows linearly with
the padded samples of a batch (every layer's output is [B, C, T / stride]), so the measured rows
extrapolate; the check then runs one batch at the recommended budget and reports its real peak.

HEADROOM (20 % of the card) is left for what the rows do not see: the CUDA context and cuDNN
workspaces outside torch's allocator count, the allocator's fragmentation (reserved above allocated;
the rows print both), and the error of the linear extrapolation.

For a chunked preset (48 kHz: one-second chunks) a forward pass holds min(max_batch_items,
budget / chunk) chunks, so the advice raises max_batch_items with the budget.
"""

from __future__ import annotations

from dataclasses import dataclass

HEADROOM = 0.20


@dataclass(frozen=True)
class MemoryPoint:
    """One memory row: `padded_samples` per channel in the batch; bytes from peak_memory.RowMemory."""

    label: str
    padded_samples: int
    peak_bytes: int
    resident_bytes: int

    @property
    def bytes_per_sample(self) -> float:
        return max(0, self.peak_bytes - self.resident_bytes) / max(1, self.padded_samples)


@dataclass(frozen=True)
class BudgetAdvice:
    preset: str
    rate: int
    card_bytes: int
    headroom: float
    bytes_per_sample: float
    resident_bytes: int
    budget_samples: int  # the recommended buckets.batch_budget_samples
    max_batch_items: int  # the recommended buckets.max_batch_items (raised for chunked presets)
    configured_samples: int
    worst: str  # label of the row that set bytes_per_sample

    def predicted_peak_bytes(self, samples: int) -> float:
        return self.resident_bytes + self.bytes_per_sample * samples

    @property
    def usable_bytes(self) -> float:
        return self.card_bytes * (1 - self.headroom)

    def line(self) -> str:
        gib = 2**30
        return (f"batch_budget_samples {self.budget_samples:,} ({self.budget_samples / self.rate:,.0f} s of audio), "
                f"max_batch_items {self.max_batch_items}: {self.card_bytes / gib:.0f} GiB card, "
                f"{100 * self.headroom:.0f} % headroom; {self.bytes_per_sample:.0f} bytes/sample ({self.worst}), "
                f"{self.resident_bytes / gib:.2f} GiB resident; predicted peak "
                f"{self.predicted_peak_bytes(self.budget_samples) / gib:.1f} GiB; configured "
                f"{self.configured_samples:,} (predicted "
                f"{self.predicted_peak_bytes(self.configured_samples) / gib:.1f} GiB)")


def recommend(preset: str, points: list[MemoryPoint], card_bytes: int, rate: int, longest_samples: int,
              configured_samples: int, max_batch_items: int, chunk_samples: int | None = None,
              headroom: float = HEADROOM) -> BudgetAdvice:
    """The advice of the module docstring's rule; ValueError when it cannot be met."""
    if not points:
        raise ValueError(f"{preset}: no memory rows to size the batch budget from")
    if not 0 <= headroom < 1 or card_bytes <= 0:
        raise ValueError(f"headroom must be in [0, 1) and the card's memory > 0; got {headroom}, {card_bytes}")
    worst = max(points, key=lambda p: p.bytes_per_sample)
    if worst.bytes_per_sample <= 0:
        raise ValueError(f"{preset}: the memory rows measured no growth ({[p.label for p in points]})")
    resident = max(p.resident_bytes for p in points)
    usable = card_bytes * (1 - headroom) - resident
    step = chunk_samples or rate
    budget = int(usable / worst.bytes_per_sample) // step * step
    if chunk_samples is None:
        budget = min(budget, max_batch_items * longest_samples)
    if budget < longest_samples:
        raise ValueError(f"{preset}: one {longest_samples / rate:g} s item needs "
                         f"{resident + worst.bytes_per_sample * longest_samples:,.0f} bytes; "
                         f"{card_bytes:,} x (1 - {headroom:g}) is less")
    items = max(max_batch_items, budget // chunk_samples) if chunk_samples else max_batch_items
    return BudgetAdvice(preset, rate, card_bytes, headroom, worst.bytes_per_sample, resident, budget, items,
                        configured_samples, worst.label)
