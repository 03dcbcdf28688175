"""Verify's pass/fail rules: the thresholds (`verify:` in the job config, or flags) applied to results."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from ..config import VerifyConfig
from ..provenance import Provenance
from .result import CheckResult


def badness(result: CheckResult) -> tuple:
    """Sort key, worst first: unverifiable rows, then lowest code agreement, then lowest SI-SNR at
    the highest verified bandwidth."""
    top = result.top_scores()
    snr = top.si_snr_db if top else math.nan
    agree = result.code_agreement_all
    return (result.status == "ok", -1.0 if math.isnan(agree) else agree,
            -math.inf if math.isnan(snr) else snr, result.key)


def judged(thresholds: VerifyConfig, random_weights: bool | None) -> VerifyConfig:
    """The thresholds verify judges: all, or with random weights only code agreement (SI-SNR and mel
    distance of noise-like audio are reported, not judged)."""
    if random_weights:
        return dataclasses.replace(thresholds, min_si_snr_db=None, max_mel_distance=None)
    return thresholds


def _checks(thresholds: VerifyConfig) -> list[tuple[str, float, Callable[[CheckResult], float], bool]]:
    """(name, limit, value of a result, limit is a maximum) of each threshold that is set."""
    checks = [
        ("code agreement", thresholds.min_code_agreement, lambda r: r.code_agreement_all, False),
        ("SI-SNR dB", thresholds.min_si_snr_db, lambda r: r.top_scores().si_snr_db, False),
        ("mel distance dB", thresholds.max_mel_distance, lambda r: r.top_scores().mel_distance_db, True),
    ]
    return [c for c in checks if c[1] is not None]


def _fails(value: float, limit: float, is_max: bool) -> bool:
    return not math.isnan(value) and (value > limit if is_max else value < limit)


def row_failures(result: CheckResult, thresholds: VerifyConfig) -> list[str]:
    """The thresholds one verified row fails, e.g. ["SI-SNR dB -12.7 < -8"] (empty for an unverified row)."""
    if result.status != "ok" or not result.bandwidths:
        return []
    return [f"{name} {value(result):.4g} {'>' if is_max else '<'} {limit:g}" for name, limit, value, is_max
            in _checks(thresholds) if _fails(value(result), limit, is_max)]


def threshold_failures(results: list[CheckResult], thresholds: VerifyConfig) -> list[str]:
    """One line per failed check; SI-SNR and mel distance are taken at each item's highest verified
    bandwidth, code agreement over all stored codebooks, NaN SI-SNR (silent original) is skipped."""
    failures = []
    bad = [r for r in results if r.status != "ok"]
    if bad:
        failures.append(f"{len(bad)}/{len(results)} rows could not be verified: "
                        + "; ".join(f"{r.key} ({r.status}: {r.detail})" for r in bad[:5]))
    ok = [r for r in results if r.status == "ok" and r.bandwidths]
    for name, limit, value, is_max in _checks(thresholds):
        failed = [(value(r), r.key) for r in ok if _fails(value(r), limit, is_max)]
        if failed:
            failed.sort(reverse=is_max)
            worst = ", ".join(f"{k} ({v:.4g})" for v, k in failed[:5])
            failures.append(f"{name} {'>' if is_max else '<'} {limit} for {len(failed)}/{len(ok)} rows: {worst}")
    limit = thresholds.min_code_agreement
    for stream in sorted({n for r in ok for n in r.stream_agreement}) if limit is not None else []:
        failed = sorted((r.stream_agreement[stream], r.key) for r in ok
                        if stream in r.stream_agreement and _fails(r.stream_agreement[stream], limit, False))
        if failed:
            worst = ", ".join(f"{k} ({v:.4g})" for v, k in failed[:5])
            failures.append(f"{stream} code agreement < {limit} for {len(failed)}/{len(ok)} rows: {worst}")
    return failures


# Lowest code agreement with the job's codes that verify accepts by default when it re-encodes a
# reduced-precision dataset on another device type than the job's (other kernels: codes flip at
# near-ties): the lowest agreement with fp32 measured for that precision on real audio (docs/precision.md,
# 2026-12-07: bf16 63 %, fp16 91 %), less a margin. fp32 keeps the configured threshold: it is exact.
CROSS_DEVICE_MIN_CODE_AGREEMENT = {"bf16": 0.5, "fp16": 0.75}


def thresholds_from(provenance: Provenance, verify_device: str | None = None) -> VerifyConfig:
    """The job's `verify` section from the provenance (defaults where absent). With `verify_device` of
    another type than the job's and a reduced precision, min_code_agreement is lowered to that
    precision's CROSS_DEVICE_MIN_CODE_AGREEMENT; SI-SNR and mel distance keep theirs."""
    known = {f.name for f in dataclasses.fields(VerifyConfig)}
    stored = (provenance.job_config or {}).get("verify") or {}
    thresholds = VerifyConfig(**{k: v for k, v in stored.items() if k in known})
    floor = CROSS_DEVICE_MIN_CODE_AGREEMENT.get(provenance.precision)
    if (floor is not None and verify_device is not None and thresholds.min_code_agreement is not None
            and _device_type(verify_device) != _device_type(provenance.device)):
        thresholds = dataclasses.replace(thresholds, min_code_agreement=min(thresholds.min_code_agreement, floor))
    return thresholds


def _device_type(device: str) -> str:
    return str(device).split(":")[0]
