"""Verify wired to the engine: verify's `CheckWork` on the Ray backend's placed actors.

`pipeline.verify` knows no engine and `pipeline.engine` knows no verify (tests/test_architecture.py);
this module may import both. `run_verify` and `verify_after_job` are verify's, with `check_with_ray`
as the way to check rows on actors (used when a sample is large, or `use_ray="ray"`).
"""

from __future__ import annotations

import functools

from codec import ModelProvenance

from .config import JobConfig, VerifyConfig
from .engine.placement import ActorRequest, capacity, unplaceable
from .engine.ray_backend import alive_nodes, connect_ray, run_on_actors
from .errors import JobFailed
from .provenance import Provenance
from .verify import run as verify_run
from .verify.check import CheckSettings, CheckWork
from .verify.result import CheckResult
from .verify.summary import VerifySummary


def check_with_ray(rows: list[dict], settings: CheckSettings, num_actors: int = 0,
                   placement_timeout_s: float = 120.0,
                   ray_address: str | None = None) -> tuple[list[CheckResult], ModelProvenance | None]:
    """Results of `Checker.check` for `rows` (any order) and the actors' model provenance.

    Each actor re-reads whole source shards, so rows are grouped by `source` and the groups are
    dealt to actors largest first. num_actors 0: one per GPU when settings.device is cuda, else one
    per 2 CPUs (at least 1), never more than there are sources. Joins `ray_address` or RAY_ADDRESS,
    else starts a local Ray of its own (`engine.ray_connect`).
    """
    connect_ray(address=ray_address)
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["source"], []).append(row)
    if not groups:
        return [], None
    # the same rules as the job's actors: GPUs are a requirement, and an actor that cannot start fails
    # the check after placement_timeout_s instead of waiting forever
    request = ActorRequest(num_cpus=1.0, num_gpus=1.0 if settings.device == "cuda" else 0.0)
    nodes = alive_nodes()
    fits = capacity(request, nodes) if settings.device == "cuda" else max(1, sum(int(n.cpus) for n in nodes) // 2)
    if not fits:
        raise JobFailed(f"verify on {settings.device}: no node can hold a verify actor: {unplaceable(request, nodes)}")
    count = max(1, min(num_actors or fits, fits, len(groups)))
    ordered = sorted(groups.values(), key=len, reverse=True)
    return run_on_actors(CheckWork, (settings,), ordered, request, count, placement_timeout_s, what="verify")


def run_verify(tokens: str, report_dir: str, options: verify_run.VerifyOptions | None = None,
               thresholds: VerifyConfig | None = None, log=verify_run.log_stderr,
               provenance: Provenance | None = None) -> VerifySummary:
    """`pipeline.verify.run_verify` with Ray actors for large samples (see there)."""
    address = options.ray_address if options else None
    return verify_run.run_verify(tokens, report_dir, options, thresholds, log, provenance,
                                 on_actors=functools.partial(check_with_ray, ray_address=address))


def verify_after_job(cfg: JobConfig, out_dir: str, log=verify_run.log_stderr) -> VerifySummary | None:
    """`pipeline.verify.verify_after_job` with Ray actors for large samples (see there)."""
    return verify_run.verify_after_job(cfg, out_dir, log,
                                       on_actors=functools.partial(check_with_ray, ray_address=cfg.ray_address))
