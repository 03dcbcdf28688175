"""Decode-verify a token dataset: a deterministic sample of rows, decoded and compared with the originals.

    tokens ─► sample_keys (sha256 of seed + key) ─► rows (codes, scales, num_samples, source)
      ─► original: sources.read_shard(row.source) ─► audio.prepare with the job's AudioConfig ─► key / key#n
      ─► decode codes[:n_q(b)] per bandwidth b ─► metrics vs the original (`codec/metrics.py`)
      ─► encode the original now at the stored bandwidth ─► code agreement with the stored codes
         (CUDA batch plan: together with the rows of its batch, as the manifest records the job did)
      ─► `verify/report.py` (JSON, Parquet, HTML) ─► threshold failures (VerifyConfig)

Re-encoding reproduces the job exactly only with the same model, precision, device, batch plan
(with the CUDA plan a row's codes depend on its batch: the batched LSTM) and, on the CPU, the same
torch thread count (float reductions depend on it; README, "Verifying a run"). So
the check runs with the job's `cpus_per_actor` threads unless told otherwise; agreement then drops
only for corrupted codes, a changed model or drifted numerics.
Small samples run inline; large ones (or `use_ray="ray"`) on actors, through the `on_actors` runner
the caller hands in (`pipeline.verify_on_ray` passes Ray's; verify itself knows no engine).
The sample is drawn in `sampling.py`, the pass/fail rules live in `thresholds.py`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from codec import ModelProvenance

from .. import reader, rows_gathered, shard_rows, writer
from ..config import AudioConfig, JobConfig, SemanticConfig, SourceConfig, VerifyConfig
from ..provenance import Provenance
from ..records import EncodeBatch
from . import report
from .check import STATUSES, Checker, CheckSettings
from .job_context import column_by_key, job_rejects, transcripts
from .result import CheckResult
from .sampling import read_rows, sample_keys
from .summary import VerifySummary
from .thresholds import badness, judged, threshold_failures, thresholds_from


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
    storage_options: dict[str, Any] = field(default_factory=dict)  # the sources' (fsspec)
    output_storage_options: dict[str, Any] = field(default_factory=dict)  # the tokens output's (fsspec)
    max_media_items: int = 12
    use_ray: str = "auto"  # auto (Ray when more than ray_min_rows rows), inline, ray
    ray_min_rows: int = 64
    num_actors: int = 0
    ray_address: str | None = None  # None: RAY_ADDRESS, else a local Ray (engine.ray_connect)


# runs Checker.check on rows elsewhere: (rows, settings, num_actors) -> (results in any order, the model's
# provenance; None when there were no rows)
ActorRunner = Callable[[list[dict], CheckSettings, int], tuple[list[CheckResult], ModelProvenance | None]]


def settings_for(provenance: Provenance, options: VerifyOptions) -> CheckSettings:
    """CheckSettings from a dataset's provenance (its job_config) and the options."""
    job = dict(provenance.job_config or {})
    defaults = JobConfig()

    def section(cls, name):
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (job.get(name) or {}).items() if k in known})

    source = dataclasses.replace(section(SourceConfig, "source"), storage_options=dict(options.storage_options))
    n_q = provenance.num_quantizers_by_bandwidth()
    bandwidths = sorted(n_q) if options.bandwidths is None else sorted(float(b) for b in options.bandwidths)
    unknown = [b for b in bandwidths if b not in n_q]
    if unknown:
        raise ValueError(f"bandwidths {unknown} are not stored in this dataset; stored: {sorted(n_q)}")
    threads = options.threads
    if threads is None and options.device == "cpu":  # the job's thread count: codes depend on it
        threads = max(1, int(provenance.torch_threads or job.get("cpus_per_actor", defaults.cpus_per_actor)))
    return CheckSettings(
        model=options.model or provenance.model_source, device=options.device,
        precision=provenance.precision, threads=threads,
        sample_rate=int(provenance.sample_rate), channels=int(provenance.channels),
        source=source, audio=section(AudioConfig, "audio"),
        input_spec=options.input_spec or provenance.input, bandwidths=bandwidths, n_q=n_q,
        encode_bandwidth=max(n_q), batch_plan=provenance.batch_plan,
        semantic=_semantic_of(provenance),
    )


def _semantic_of(provenance: Provenance) -> SemanticConfig | None:
    """The job's semantic tokenizer (its config), when the dataset has a semantic stream."""
    section = (provenance.job_config or {}).get("semantic")
    if not section or not any(s.get("name") == "semantic" for s in provenance.streams):
        return None
    known = {f.name for f in dataclasses.fields(SemanticConfig)}
    return SemanticConfig(**{k: v for k, v in section.items() if k in known})


def job_batches(tokens: str, keys: set[str], storage_options: dict | None = None) -> dict[str, EncodeBatch]:
    """{key: the batch the job encoded it in} for `keys`: from the shards' row-index files
    (`shard_rows`, gathered: `rows_gathered`), and for shards committed before those existed, from
    their manifest records' `encode_batches`."""
    found: dict[str, EncodeBatch] = {}
    records = writer.committed_shards(tokens, storage_options=storage_options)
    with_rows = {s: r for s, r in records.items() if writer.ROWS in r.files}
    for shard_id in sorted(records):
        for batch in records[shard_id].encode_batches:
            found.update({k: batch for k in batch.keys if k in keys})
    wanted = pa.array(sorted(keys), pa.string())
    for chunk in rows_gathered.chunks(tokens, with_rows, write=False, storage_options=storage_options):
        hit = chunk.table.filter(pc.is_in(chunk.table.column("key"), value_set=wanted))
        for part in sorted(set(hit.column("part").to_pylist())):
            table = chunk.table.filter(pc.equal(chunk.table.column("part"), part))
            for batch in shard_rows.encode_batches(table):
                found.update({k: batch for k in batch.keys if k in keys})
    return found


def stream_summary(results: list[CheckResult]) -> dict[str, dict[str, float]]:
    """{stream: {"rows", "mean_code_agreement", "min_code_agreement"}} over the rows that re-encoded it."""
    out = {}
    for name in sorted({n for r in results for n in r.stream_agreement}):
        values = [r.stream_agreement[name] for r in results if name in r.stream_agreement]
        out[name] = {"rows": len(values), "mean_code_agreement": sum(values) / len(values),
                     "min_code_agreement": min(values)}
    return out


def log_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_verify(tokens: str, report_dir: str, options: VerifyOptions | None = None,
               thresholds: VerifyConfig | None = None, log=log_stderr,
               provenance: Provenance | None = None, on_actors: ActorRunner | None = None) -> VerifySummary:
    """Verify a sample of `tokens` (an audiotok output dir or URL), write the report to `report_dir`
    (local), and return the summary (passed, failures, aggregates, ...). provenance: the dataset's, when
    the caller has read it already (else read here). on_actors: how to check rows on actors, used when
    options.use_ray asks for it (`pipeline.verify_on_ray.run_verify` passes Ray's); without it every
    sample is checked inline."""
    started = time.time()
    options = options or VerifyOptions()
    out_options = options.output_storage_options
    provenance = provenance or reader.load_provenance(tokens, out_options)
    thresholds = thresholds or thresholds_from(provenance, options.device)
    settings = settings_for(provenance, options)
    keys = reader.arrow_dataset(tokens, out_options).to_table(columns=["key"]).column("key").to_pylist()
    count = options.count if options.fraction is None else None
    chosen = sample_keys(keys, count, options.fraction, options.seed)
    order = {k: i for i, k in enumerate(chosen)}
    columns = [s["column"] for s in provenance.streams]
    rows = sorted(read_rows(tokens, chosen, columns, out_options), key=lambda r: order[r["key"]]) if chosen else []
    if settings.batch_plan == "cuda":  # codes depend on the batch: re-encode each row in the job's batch
        settings = dataclasses.replace(settings, batches=job_batches(tokens, {r["key"] for r in rows}, out_options))
    if options.use_ray not in ("auto", "inline", "ray"):
        raise ValueError(f"use_ray must be auto, inline or ray, not {options.use_ray!r}")
    if options.use_ray == "ray" and on_actors is None:
        raise ValueError("use_ray='ray' needs an actor runner: call pipeline.verify_on_ray.run_verify")
    use_ray = on_actors is not None and (
        options.use_ray == "ray" or (options.use_ray == "auto" and len(rows) > options.ray_min_rows))
    log(f"[audiotok verify] {len(rows)} of {len(keys)} rows, bandwidths {settings.bandwidths} kbps, "
        f"{'Ray actors' if use_ray else 'inline'}, model {settings.model}, {settings.threads or 'default'} threads")
    checker = None
    if use_ray:
        results, model_provenance = on_actors(rows, settings, options.num_actors)
    else:
        checker = Checker(settings)
        model_provenance = checker.model.provenance
        results = checker.check(rows, keep_audio=len(rows) <= options.max_media_items)
    results.sort(key=badness)
    shown = results[: options.max_media_items]
    missing = [r.key for r in shown if r.status == "ok" and r.media is None]
    if missing:  # pictures and sounds only for the worst items: decode those again, keeping the audio
        checker = checker or Checker(settings)
        again = {r.key: r for r in checker.check([r for r in rows if r["key"] in set(missing)], keep_audio=True)}
        results = [again.get(r.key, r) if i < len(shown) else r for i, r in enumerate(results)]
    for r in results[options.max_media_items:]:
        r.media = None
    random_weights = bool((model_provenance and model_provenance.random_weights) or provenance.random_weights)
    failures = threshold_failures(results, judged(thresholds, random_weights))
    model_sha256 = model_provenance.sha256 if model_provenance else None
    if not rows:
        failures.insert(0, f"no rows to verify ({len(keys)} committed rows, count={count}, "
                           f"fraction={options.fraction})")
    summary = VerifySummary(
        passed=not failures, failures=failures, tokens=str(tokens), path="inline" if not use_ray else "ray",
        rows_total=len(keys), rows_sampled=len(rows), seed=options.seed, sample_count=count,
        sample_fraction=options.fraction, status_counts={s: sum(r.status == s for r in results) for s in STATUSES},
        model_source=settings.model, model_sha256=model_sha256,
        model_matches_provenance=model_sha256 == provenance.checkpoint_sha256,
        random_weights=random_weights, device=settings.device,
        precision=settings.precision, threads=settings.threads, bandwidths=settings.bandwidths,
        thresholds=thresholds, report=os.path.abspath(report_dir), streams=stream_summary(results),
    )
    summary.wall_seconds = time.time() - started
    shown_keys = [r.key for r in results if r.media is not None]
    context = report.JobContext(transcripts(tokens, shown_keys, out_options), job_rejects(tokens, out_options),
                                column_by_key(tokens, shown_keys, "item_path", out_options))
    summary = report.write_report(report_dir, results, summary, settings.sample_rate, context)
    for line in failures:
        log(f"[audiotok verify] FAILED: {line}")
    log(f"[audiotok verify] {'passed' if not failures else 'FAILED'}; report {os.path.join(report_dir, 'index.html')}")
    return summary


def verify_after_job(cfg: JobConfig, out_dir: str, log=log_stderr,
                     on_actors: ActorRunner | None = None) -> VerifySummary | None:
    """The sample at the end of `jobs.tokenize`: None when cfg.verify.sample_count is 0, else the
    verify summary (report in cfg.verify.report_dir or <out_dir>/_verify, which Parquet readers skip)."""
    v = cfg.verify
    if v.sample_count <= 0:
        return None
    provenance = reader.load_provenance(str(out_dir), cfg.output.storage_options)
    options = VerifyOptions(count=v.sample_count, seed=v.seed, device=provenance.device,  # where the job's actors ran
                            storage_options=dict(cfg.source.storage_options),
                            output_storage_options=dict(cfg.output.storage_options))
    report_dir = v.report_dir or os.path.join(str(out_dir), "_verify")
    return run_verify(str(out_dir), report_dir, options, v, log, provenance, on_actors)
