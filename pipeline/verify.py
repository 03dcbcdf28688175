"""Decode-verify a token dataset: a deterministic sample of rows, decoded and compared with the originals.

    tokens ─► sample_keys (sha256 of seed + key) ─► rows (codes, scales, num_samples, source)
      ─► original: sources.read_shard(row.source) ─► audio.prepare with the job's AudioConfig ─► key / key#n
      ─► decode codes[:n_q(b)] per bandwidth b ─► metrics vs the original (pipeline.metrics)
      ─► encode the original now at the stored bandwidth ─► code agreement with the stored codes
      ─► pipeline.report (JSON, Parquet, HTML) ─► threshold failures (VerifyConfig)

Re-encoding reproduces the job exactly only with the same model, precision, device and, on the
CPU, the same torch thread count (float reductions depend on it: 2 threads instead of 1 gave ~99 %
agreement on the demo). So the check runs with the job's `cpus_per_actor` threads unless told
otherwise; agreement then drops only for corrupted codes, a changed model or drifted numerics.
Small samples run inline; large ones (or `use_ray="ray"`) on Ray actors (pipeline.engine.ray_backend).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow.compute as pc

from . import reader, report
from .config import AudioConfig, JobConfig, SourceConfig, VerifyConfig
from .verify_check import STATUSES, Checker, CheckSettings


@dataclass
class VerifyOptions:
    """How to sample and where to run. count / fraction: rows to verify (fraction: each key kept when
    its score < fraction, so the choice of one key never depends on the others). bandwidths: kbps
    to decode (None: all stored). model / input_spec: override the provenance's model source and
    job input (when data moved). threads: torch CPU threads for the check (None: the job's)."""

    count: int | None = 20
    fraction: float | None = None
    seed: int = 0
    bandwidths: list[float] | None = None
    model: str | None = None
    device: str = "cpu"
    threads: int | None = None
    input_spec: str | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)
    max_media_items: int = 12
    use_ray: str = "auto"  # auto (Ray when more than ray_min_rows rows), inline, ray
    ray_min_rows: int = 64
    num_actors: int = 0


def stable_score(key: str, seed: int = 0) -> float:
    """A number in [0, 1) fixed by (seed, key): the first 8 bytes of sha256 — same on every machine."""
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def sample_keys(keys: list[str], count: int | None = None, fraction: float | None = None,
                seed: int = 0) -> list[str]:
    """The `count` keys of lowest score, or every key with score < `fraction`; sorted by score."""
    if (count is None) == (fraction is None):
        raise ValueError("give exactly one of count (rows) or fraction (0..1)")
    scored = sorted((stable_score(k, seed), k) for k in set(keys))
    if count is not None:
        return [k for _, k in scored[: max(0, count)]]
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must lie in [0, 1]; got {fraction}")
    return [k for s, k in scored if s < fraction]


def read_rows(tokens: str, keys: list[str]) -> list[dict[str, Any]]:
    """The committed rows of `keys`: dicts with codes int16 [n_q, F] and the other core columns."""
    columns = ["key", "source", "num_frames", "num_samples", "pad_samples", "scales", "start_s", "duration_s"]
    table = reader.arrow_dataset(tokens).to_table(columns=[*columns, "codes"], filter=pc.field("key").isin(keys))
    codes = reader.codes_from_arrow(table.column("codes"))
    rows = table.select(columns).to_pylist()
    for row, block in zip(rows, codes):
        row["codes"] = block
    return rows


def settings_for(provenance: dict, options: VerifyOptions) -> CheckSettings:
    """CheckSettings from a dataset's provenance (its job_config) and the options."""
    job = dict(provenance.get("job_config") or {})
    defaults = JobConfig()

    def section(cls, name):
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (job.get(name) or {}).items() if k in known})

    source = dataclasses.replace(section(SourceConfig, "source"), storage_options=dict(options.storage_options))
    n_q = {float(k): int(v) for k, v in provenance["bandwidth_to_num_quantizers"].items()}
    bandwidths = sorted(n_q) if options.bandwidths is None else sorted(float(b) for b in options.bandwidths)
    unknown = [b for b in bandwidths if b not in n_q]
    if unknown:
        raise ValueError(f"bandwidths {unknown} are not stored in this dataset; stored: {sorted(n_q)}")
    threads = options.threads
    if threads is None and options.device == "cpu":
        threads = max(1, int(job.get("cpus_per_actor", defaults.cpus_per_actor)))
    return CheckSettings(
        model=options.model or provenance["model_source"], device=options.device,
        precision=provenance.get("precision", "fp32"), threads=threads,
        sample_rate=int(provenance["sample_rate"]), channels=int(provenance["channels"]),
        source=source, audio=section(AudioConfig, "audio"),
        input_spec=options.input_spec or provenance.get("input"), bandwidths=bandwidths, n_q=n_q,
        encode_bandwidth=max(n_q),
    )


def badness(result: dict) -> tuple:
    """Sort key, worst first: unverifiable rows, then lowest code agreement, then lowest SI-SNR at
    the highest verified bandwidth."""
    top = result["bandwidths"][max(result["bandwidths"])] if result["bandwidths"] else {}
    snr = top.get("si_snr_db", math.nan)
    agree = result["code_agreement_all"]
    return (result["status"] == "ok", -1.0 if math.isnan(agree) else agree,
            -math.inf if math.isnan(snr) else snr, result["key"])


def threshold_failures(results: list[dict], thresholds: VerifyConfig) -> list[str]:
    """One line per failed check; SI-SNR and mel distance are taken at each item's highest verified
    bandwidth, code agreement over all stored codebooks, NaN SI-SNR (silent original) is skipped."""
    failures = []
    bad = [r for r in results if r["status"] != "ok"]
    if bad:
        failures.append(f"{len(bad)}/{len(results)} rows could not be verified: "
                        + "; ".join(f"{r['key']} ({r['status']}: {r['detail']})" for r in bad[:5]))
    ok = [r for r in results if r["status"] == "ok" and r["bandwidths"]]
    checks = [
        ("code agreement", thresholds.min_code_agreement, lambda r: r["code_agreement_all"], False),
        ("SI-SNR dB", thresholds.min_si_snr_db, lambda r: r["bandwidths"][max(r["bandwidths"])]["si_snr_db"], False),
        ("mel distance dB", thresholds.max_mel_distance,
         lambda r: r["bandwidths"][max(r["bandwidths"])]["mel_distance_db"], True),
    ]
    for name, limit, value, is_max in checks:
        if limit is None:
            continue
        failed = [(value(r), r["key"]) for r in ok
                  if not math.isnan(value(r)) and (value(r) > limit if is_max else value(r) < limit)]
        if failed:
            failed.sort(reverse=is_max)
            worst = ", ".join(f"{k} ({v:.4g})" for v, k in failed[:5])
            failures.append(f"{name} {'>' if is_max else '<'} {limit} for {len(failed)}/{len(ok)} rows: {worst}")
    return failures


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def thresholds_from(provenance: dict) -> VerifyConfig:
    """The job's `verify` section from the provenance (defaults where absent)."""
    known = {f.name for f in dataclasses.fields(VerifyConfig)}
    stored = (provenance.get("job_config") or {}).get("verify") or {}
    return VerifyConfig(**{k: v for k, v in stored.items() if k in known})


def run_verify(tokens: str, report_dir: str, options: VerifyOptions | None = None,
               thresholds: VerifyConfig | None = None, log=_stderr) -> dict:
    """Verify a sample of `tokens` (an audiotok output dir or URL), write the report to `report_dir`
    (local), and return the summary: {"passed": bool, "failures": [str], "aggregates": [...], ...}."""
    started = time.time()
    options = options or VerifyOptions()
    provenance = reader.load_provenance(tokens)
    thresholds = thresholds or thresholds_from(provenance)
    settings = settings_for(provenance, options)
    keys = reader.arrow_dataset(tokens).to_table(columns=["key"]).column("key").to_pylist()
    count = options.count if options.fraction is None else None
    chosen = sample_keys(keys, count, options.fraction, options.seed)
    order = {k: i for i, k in enumerate(chosen)}
    rows = sorted(read_rows(tokens, chosen), key=lambda r: order[r["key"]]) if chosen else []
    use_ray = options.use_ray == "ray" or (options.use_ray == "auto" and len(rows) > options.ray_min_rows)
    log(f"[audiotok verify] {len(rows)} of {len(keys)} rows, bandwidths {settings.bandwidths} kbps, "
        f"{'Ray actors' if use_ray else 'inline'}, model {settings.model}, {settings.threads or 'default'} threads")
    checker = None
    if use_ray:
        from .engine.ray_backend import check_with_ray  # Ray is imported only when it is used

        results, model_provenance = check_with_ray(rows, settings, options.num_actors)
    else:
        checker = Checker(settings)
        model_provenance = checker.model.provenance
        results = checker.check(rows, keep_audio=len(rows) <= options.max_media_items)
    results.sort(key=badness)
    shown = results[: options.max_media_items]
    missing = [r["key"] for r in shown if r["status"] == "ok" and "media" not in r]
    if missing:  # pictures and sounds only for the worst items: decode those again, keeping the audio
        checker = checker or Checker(settings)
        again = {r["key"]: r for r in checker.check([r for r in rows if r["key"] in set(missing)], keep_audio=True)}
        results = [again.get(r["key"], r) if i < len(shown) else r for i, r in enumerate(results)]
    for r in results[options.max_media_items:]:
        r.pop("media", None)
    failures = threshold_failures(results, thresholds)
    if not rows:
        failures.insert(0, f"no rows to verify ({len(keys)} committed rows, count={count}, fraction={options.fraction})")
    summary = {
        "passed": not failures, "failures": failures, "tokens": str(tokens), "path": "inline" if not use_ray else "ray",
        "rows_total": len(keys), "rows_sampled": len(rows), "seed": options.seed,
        "sample": {"count": count, "fraction": options.fraction},
        "status_counts": {s: sum(r["status"] == s for r in results) for s in STATUSES},
        "model_source": settings.model, "model_sha256": model_provenance.get("sha256"),
        "model_matches_provenance": model_provenance.get("sha256") == provenance.get("checkpoint_sha256"),
        "random_weights": model_provenance.get("random_weights"), "device": settings.device,
        "precision": settings.precision, "threads": settings.threads, "bandwidths": settings.bandwidths,
        "thresholds": dataclasses.asdict(thresholds), "report": os.path.abspath(report_dir),
        "wall_seconds": None,
    }
    summary["wall_seconds"] = time.time() - started
    summary = report.write_report(report_dir, results, summary, settings.sample_rate)
    for line in failures:
        log(f"[audiotok verify] FAILED: {line}")
    log(f"[audiotok verify] {'passed' if not failures else 'FAILED'}; report {os.path.join(report_dir, 'index.html')}")
    return summary


def verify_after_job(cfg: JobConfig, out_dir: str, log=_stderr) -> dict | None:
    """The sample at the end of `jobs.tokenize`: None when cfg.verify.sample_count is 0, else the
    verify summary (report in cfg.verify.report_dir or <out_dir>/_verify, which Parquet readers skip)."""
    v = cfg.verify
    if v.sample_count <= 0:
        return None
    device = cfg.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    options = VerifyOptions(count=v.sample_count, seed=v.seed, device=device,
                            storage_options=dict(cfg.source.storage_options))
    report_dir = v.report_dir or os.path.join(str(out_dir), "_verify")
    return run_verify(str(out_dir), report_dir, options, v, log)
