"""The batch budget an actor encodes with, and how it was decided (no torch here: the driver reads it).

`fixed`: `buckets.batch_budget_samples` was a number. `calibrated`: `auto` on a CUDA device, sized at
model load by budget_calibration.py (bytes per sample measured, memory free on the card). `fallback`:
`auto` where it could not be sized (not a CUDA device, or the calibration failed: `reason`), so
`buckets.batch_budget_fallback_samples`.
"""

from __future__ import annotations

from dataclasses import dataclass

HOWS = ("fixed", "calibrated", "fallback")


@dataclass(frozen=True)
class BudgetInForce:
    samples: int  # buckets.batch_budget_samples in force: padded samples per channel in one batch
    max_batch_items: int  # buckets.max_batch_items in force (raised for chunked models when calibrated)
    how: str  # one of HOWS
    sample_rate: int
    bytes_per_sample: float | None = None  # calibrated: measured, the worse calibration shape
    usable_bytes: int | None = None  # calibrated: memory free on the card plus what the actor held already
    reason: str = ""  # fallback: why it was not sized

    def line(self) -> str:
        what = (f"{self.samples:,} samples per batch ({self.samples / self.sample_rate:,.0f} s of audio), "
                f"max_batch_items {self.max_batch_items}")
        if self.how == "calibrated":
            return (f"{what}: calibrated on this card, {self.bytes_per_sample:.0f} bytes/sample, "
                    f"{(self.usable_bytes or 0) / 2**30:.1f} GiB usable")
        if self.how == "fallback":
            return f"{what}: auto's fallback ({self.reason})"
        return f"{what}: fixed by the config"
