"""How much the check does: full sizes on a GPU (rows not started within `budget_s` are skipped), small
ones on the CPU; and the GPU's time budget per row (ROW_S), which docs/gpu.md states."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

SECTIONS = ("env", "agreement", "invariance", "determinism", "memory", "profile", "e2e", "actor", "variants",
            "families")
MEMORY_PRESETS = ("24khz", "32khz", "48khz")  # the GPU presets whose batch budget the memory rows size

# Seconds each row may take on one GPU by design; a row starts only while this much of budget_s is left
# (table.Report), and the long ones are bounded inside too (baseline_limit_s, job_limit_s). Their sum over
# the GPU run (ROW_S_TOTAL) stays within GPU.budget_s: 285 s, so start-up and two tries fit 15 minutes.
ROW_S = {"env": 15, "fit": 12, "codec": 2, "memory": 3, "profile": 4, "corpus": 5, "baseline": 10,
         "ours": 20, "verify": 5, "actor": 12, "variant": 2, "family": 8, "compile": 60}
# The rows run in a child process (in_child.py) are killed at this limit, or where the budget ends if sooner.
LIMIT_S = {"fit": 30, "compile": 120}


@dataclass(frozen=True)
class Sizes:
    """clip_s / max_clips: held-out clips for agreement (seconds each, how many per preset).
    fit_seconds, kmeans_iters, kmeans_frames: k-means fitting of the random model's codebooks.
    batches: mixed batches for batch invariance. budget_scale: fraction of the presets' batch budgets
    for the peak-memory and LSTM-share rows. profile_batch: items of the profiled batches.
    e2e_minutes: corpus minutes per kind for the end-to-end rows (whole shards of e2e_per_shard items);
    baseline_minutes: the baseline's slice; baseline_limit_s / job_limit_s: where the baseline and our
    job are stopped; actor_kinds: kinds our job also runs with resample_on: actor. actor_minutes /
    actor_per_shard: the actor bench row. verify_rows: rows decode-verified. variants: reduced
    precision / compile variants; compile_presets: the presets compiled. budget_s: rows not started by
    then are reported as skipped. max_item_s: longest item of the peak-memory rows (None: the config's
    max_duration_s). family_clip_s: clip length of the DAC / Mimi rows. limit_s: where the rows run in a
    child process (setup's fit, compile) are stopped (LIMIT_S)."""

    mode: str
    clip_s: float
    max_clips: int
    fit_seconds: float
    kmeans_iters: int
    kmeans_frames: int
    batches: tuple[int, ...]
    budget_scale: float
    profile_batch: int
    e2e_minutes: dict[str, float]
    verify_rows: int
    variants: tuple[str, ...]
    budget_s: float
    max_item_s: float | None = None
    limit_s: dict[str, float] = field(default_factory=lambda: dict(LIMIT_S))
    verify_bandwidths: tuple[float, ...] | None = None  # None: every stored bandwidth
    e2e_per_shard: int = 512
    baseline_minutes: float = 10.0
    baseline_limit_s: float = ROW_S["baseline"]
    job_limit_s: float = ROW_S["ours"]
    actor_kinds: tuple[str, ...] = ("speech",)
    actor_minutes: float = 60.0
    actor_per_shard: int = 64
    compile_presets: tuple[str, ...] = ("24khz",)
    family_clip_s: float = 4.0
    row_s: dict[str, float] = field(default_factory=lambda: dict(ROW_S))


GPU = Sizes(mode="gpu", clip_s=10.0, max_clips=16, fit_seconds=60.0, kmeans_iters=8, kmeans_frames=20000,
            batches=(16, 64, 256), budget_scale=1.0, profile_batch=64,
            e2e_minutes={"speech": 600.0, "music": 180.0}, verify_rows=24, variants=("bf16", "fp16", "tf32", "compile"),
            budget_s=285.0)
CPU = Sizes(mode="cpu", clip_s=1.0, max_clips=2, fit_seconds=4.0, kmeans_iters=2, kmeans_frames=500,
            batches=(2, 3), budget_scale=1 / 512, profile_batch=2, e2e_minutes={"speech": 0.1},
            verify_rows=1, variants=("bf16", "fp16", "tf32"), budget_s=900.0, max_item_s=1.0,
            verify_bandwidths=(24.0,), e2e_per_shard=2, baseline_minutes=0.1, baseline_limit_s=120.0,
            job_limit_s=120.0, actor_minutes=0.5, actor_per_shard=8, family_clip_s=1.0,
            limit_s={"fit": 300.0, "compile": 600.0})


def planned_s(sizes: Sizes, presets: int = 2, families: int = 2) -> float:
    """The run's time by design: ROW_S summed over the rows run.py runs for `sizes` (on a GPU: GPU)."""
    r = sizes.row_s
    kinds = len(sizes.e2e_minutes)
    ours = kinds + sum(k in sizes.e2e_minutes for k in sizes.actor_kinds)
    compiled = len(sizes.compile_presets) if "compile" in sizes.variants else 0
    return (r["env"] + presets * (r["fit"] + 3 * r["codec"] + r["profile"])
            + len(MEMORY_PRESETS) * (r["memory"] + r["profile"])  # memory + budget advice; LSTM share
            + kinds * (r["corpus"] + r["baseline"] + r["verify"]) + ours * r["ours"]
            + len(sizes.actor_kinds) * r["actor"]
            + presets * sum(n != "compile" for n in sizes.variants) * r["variant"]
            + families * r["family"] + compiled * r["compile"])


def pick(cpu: bool, budget_s: float | None = None, e2e_minutes: dict[str, float] | None = None,
         variants: tuple[str, ...] | None = None) -> Sizes:
    sizes = CPU if cpu else GPU
    changes = {k: v for k, v in (("budget_s", budget_s), ("e2e_minutes", e2e_minutes), ("variants", variants))
               if v is not None}
    return replace(sizes, **changes)
