"""One verified row: its scores per bandwidth, and (for the report's worst items) the audio compared.

    BandwidthScores  n_q, SI-SNR, mel distance, LSD and code agreement of one row at one bandwidth
    Media            the original and the decoded audio per bandwidth (float32 [C, T]); pictures and players only
    CheckResult      what `check.Checker` returns per row: status, detail, timing, scores by kbps, optional media

The JSON form (`to_json` / `from_json`) has string kbps keys ("6.0") and null for non-finite numbers;
it leaves the media out (arrays are written as PNG and WAV by report.py, not as JSON).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from codec.metrics import Scores


def finite_or_none(value: float | None) -> float | None:
    """JSON and Parquet form of a number: None for None, NaN or an infinity."""
    return None if value is None or not math.isfinite(value) else float(value)


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else float(value)


@dataclass
class BandwidthScores:
    """One row decoded from its first n_q codebooks, measured against the original."""

    n_q: int
    si_snr_db: float
    mel_distance_db: float
    lsd_db: float
    code_agreement: float  # share of the first n_q codebooks' codes that re-encoding reproduces

    @classmethod
    def from_scores(cls, n_q: int, scores: Scores, code_agreement: float) -> BandwidthScores:
        return cls(n_q, scores.si_snr_db, scores.mel_distance_db, scores.lsd_db, code_agreement)

    def to_json(self) -> dict[str, Any]:
        return {"n_q": self.n_q, "si_snr_db": finite_or_none(self.si_snr_db),
                "mel_distance_db": finite_or_none(self.mel_distance_db), "lsd_db": finite_or_none(self.lsd_db),
                "code_agreement": finite_or_none(self.code_agreement)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BandwidthScores:
        return cls(int(data["n_q"]), _nan_if_none(data["si_snr_db"]), _nan_if_none(data["mel_distance_db"]),
                   _nan_if_none(data["lsd_db"]), _nan_if_none(data["code_agreement"]))


@dataclass
class Media:
    """The audio behind one result: the original at the model's rate and each decoded bandwidth."""

    original: np.ndarray
    decoded: dict[float, np.ndarray] = field(default_factory=dict)


@dataclass
class CheckResult:
    """One token row checked against its original. status is one of check.STATUSES; when it is not
    "ok", detail says why and bandwidths is empty. code_agreement_all: share of all stored codes that
    re-encoding reproduces (NaN when the row could not be re-encoded). media: kept only when asked
    for (the report's worst items); not compared by ==."""

    key: str
    source: str
    num_samples: int
    duration_s: float
    start_s: float
    status: str = "ok"
    detail: str = ""
    code_agreement_all: float = math.nan
    bandwidths: dict[float, BandwidthScores] = field(default_factory=dict)
    # other token streams (pipeline/streams.py): share of the stored ids that re-encoding reproduces, by name
    stream_agreement: dict[str, float] = field(default_factory=dict)
    media: Media | None = field(default=None, compare=False)

    def top_scores(self) -> BandwidthScores | None:
        """The scores at the highest verified bandwidth; None when nothing was decoded."""
        return self.bandwidths[max(self.bandwidths)] if self.bandwidths else None

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "source": self.source, "status": self.status, "detail": self.detail,
                "num_samples": self.num_samples, "duration_s": self.duration_s, "start_s": self.start_s,
                "code_agreement_all": finite_or_none(self.code_agreement_all),
                "bandwidths": {str(float(b)): s.to_json() for b, s in self.bandwidths.items()},
                "stream_agreement": {k: finite_or_none(v) for k, v in self.stream_agreement.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckResult:
        return cls(key=data["key"], source=data["source"], num_samples=int(data["num_samples"]),
                   duration_s=float(data["duration_s"]), start_s=float(data["start_s"]), status=data["status"],
                   detail=data["detail"], code_agreement_all=_nan_if_none(data["code_agreement_all"]),
                   bandwidths={float(b): BandwidthScores.from_json(s) for b, s in data["bandwidths"].items()},
                   stream_agreement={k: _nan_if_none(v) for k, v in data.get("stream_agreement", {}).items()})
