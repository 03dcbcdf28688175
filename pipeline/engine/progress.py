"""Progress lines while a job runs, and the run summary at its end (plain code, no Ray)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..budget_in_force import BudgetInForce
from ..provenance import Provenance
from ..records import Shard, ShardRecord


class Progress:
    """Prints `shards done/total, hours of audio, x realtime, ETA, rejects` every `interval` seconds."""

    def __init__(self, total: int, already: int, log: Callable[[str], None], interval: float):
        self.total, self.done, self.log, self.interval = total, already, log, interval
        self.started = time.time()
        self.last = 0.0
        self.audio = 0.0
        self.rejects = 0
        self.new = 0

    def shard_done(self, record: ShardRecord) -> None:
        self.done += 1
        self.new += 1
        self.audio += record.audio_seconds
        self.rejects += record.rejects

    def due(self) -> bool:
        """Whether `maybe_print` would print now."""
        return time.time() - self.last >= self.interval

    def maybe_print(self, force: bool = False, pending: int = 0) -> None:
        now = time.time()
        if not force and now - self.last < self.interval:
            return
        self.last = now
        wall = now - self.started
        rate = self.audio / wall if wall else 0.0
        left = self.total - self.done
        eta = wall / self.new * left if self.new else float("nan")
        waiting = f"  actors starting {pending}" if pending else ""
        self.log(f"[audiotok] shards {self.done}/{self.total}  audio {self.audio / 3600:.3f} h  "
                 f"{rate:,.1f}x realtime  ETA {eta:,.0f} s  rejects {self.rejects}{waiting}")


@dataclass(kw_only=True)
class RunSummary:
    """The run summary over the shards of one input (`_summary.json`; the job adds its own fields)."""

    shards: int
    shards_committed: int
    rows: int
    rejects: int
    rejects_by_reason: dict[str, int]
    audio_hours: float
    wall_seconds: float
    realtime_factor: float | None  # audio seconds per wall second; None for a run of no time
    padding_waste: float  # share of padded samples that are padding
    model_source: str | None  # None when no actor started (every shard was already committed)
    random_weights: bool | None
    device_peak_mb: float | None = None  # the largest ShardRecord.device_peak_mb (torch, CUDA); None on CPU
    batch_budget: BudgetInForce | None = None  # the first actor's batch budget and how it was decided

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def summarize(records: dict[str, ShardRecord], shards: list[Shard], wall: float,
              provenance: Provenance | None, batch_budget: BudgetInForce | None = None) -> RunSummary:
    """The run summary over the shards of this input (records of other inputs are left out)."""
    wanted = {s.shard_id for s in shards}
    mine = [r for k, r in records.items() if k in wanted]
    by_reason: dict[str, int] = {}
    for r in mine:
        for reason, n in r.rejects_by_reason.items():
            by_reason[reason] = by_reason.get(reason, 0) + n
    audio = sum(r.audio_seconds for r in mine)
    padded = sum(r.padded_samples for r in mine)
    true = sum(r.true_samples for r in mine)
    return RunSummary(
        shards=len(shards),
        shards_committed=len(mine),
        rows=sum(r.rows for r in mine),
        rejects=sum(r.rejects for r in mine),
        rejects_by_reason=by_reason,
        audio_hours=audio / 3600,
        wall_seconds=wall,
        realtime_factor=audio / wall if wall > 0 else None,
        padding_waste=(padded - true) / padded if padded else 0.0,
        model_source=provenance.model_source if provenance else None,
        random_weights=provenance.random_weights if provenance else None,
        device_peak_mb=device_peak_mb(mine),
        batch_budget=batch_budget,
    )


def device_peak_mb(records) -> float | None:
    """The largest `device_peak_mb` of `records` (our CUDA peak over one shard's encode); None when
    none has one (CPU runs, records written before the field)."""
    peaks = [r.device_peak_mb for r in records if r.device_peak_mb is not None]
    return max(peaks) if peaks else None
