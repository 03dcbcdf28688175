"""Decode-verify a token dataset: sample rows, re-read their originals, decode, compare, report.

    sampling.py    which rows (sha256 of seed + key), reading them
    check.py       Checker: re-read, decode per bandwidth, re-encode, measure (one model; inline or, as
                   CheckWork, on an actor)
    result.py      CheckResult per row: status, BandwidthScores by kbps, optional Media (the audio compared)
    (metrics: codec/metrics.py, SI-SNR, multi-scale mel distance, log-spectral distance, `Scores`)
    thresholds.py  pass/fail rules (the `verify:` config section)
    summary.py     VerifySummary: what run_verify returns and summary.json holds
    report.py      JSON, Parquet and HTML report (+ report_media.py: spectrograms, audio players)
    run.py         run_verify / verify_after_job: the above wired together (actors through a runner the
                   caller hands in: pipeline.verify_on_ray passes Ray's; this package imports no engine)
"""

from .run import VerifyOptions, run_verify, settings_for, verify_after_job
from .sampling import sample_keys, stable_score
from .summary import VerifySummary

__all__ = ["VerifyOptions", "VerifySummary", "run_verify", "sample_keys", "settings_for", "stable_score",
           "verify_after_job"]
