"""The verify summary: what `run.run_verify` returns and `report.py` writes as summary.json.

`VerifySummary.to_json()` is the summary.json form (keys in this order; `sample` as {count, fraction},
`thresholds` as the `verify:` config section); report.py turns its non-finite numbers into null.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..config import VerifyConfig


@dataclass
class VerifySummary:
    """One verify run. passed: no failures. path: "inline" or "ray". rows_total / rows_sampled: committed
    rows and those checked; sample_count / sample_fraction: how they were drawn (with seed).
    status_counts: rows per check.STATUSES. model_*: the model used and whether its sha256 is the
    provenance's. report: the report directory (absolute). aggregates: the rows of aggregates.parquet,
    filled in by report.write_report."""

    passed: bool
    failures: list[str]
    tokens: str
    path: str
    rows_total: int
    rows_sampled: int
    seed: int
    sample_count: int | None
    sample_fraction: float | None
    status_counts: dict[str, int]
    model_source: str
    model_sha256: str | None
    model_matches_provenance: bool
    random_weights: bool | None
    device: str
    precision: str
    threads: int | None
    bandwidths: list[float]
    thresholds: VerifyConfig
    report: str
    wall_seconds: float | None = None
    aggregates: list[dict[str, Any]] = field(default_factory=list)
    # other token streams re-encoded (semantic): {name: {rows, mean_code_agreement, min_code_agreement}}
    streams: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed, "failures": list(self.failures), "tokens": self.tokens, "path": self.path,
            "rows_total": self.rows_total, "rows_sampled": self.rows_sampled, "seed": self.seed,
            "sample": {"count": self.sample_count, "fraction": self.sample_fraction},
            "status_counts": dict(self.status_counts), "model_source": self.model_source,
            "model_sha256": self.model_sha256, "model_matches_provenance": self.model_matches_provenance,
            "random_weights": self.random_weights, "device": self.device, "precision": self.precision,
            "threads": self.threads, "bandwidths": list(self.bandwidths),
            "thresholds": dataclasses.asdict(self.thresholds), "report": self.report,
            "wall_seconds": self.wall_seconds, "aggregates": list(self.aggregates), "streams": dict(self.streams),
        }
