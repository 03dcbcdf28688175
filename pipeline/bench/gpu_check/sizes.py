"""How much the check does: full sizes on a GPU (rows not started within `budget_s` are skipped), small
ones on the CPU."""

from __future__ import annotations

from dataclasses import dataclass, replace

SECTIONS = ("env", "agreement", "invariance", "determinism", "memory", "profile", "e2e", "variants", "families")


@dataclass(frozen=True)
class Sizes:
    """clip_s / max_clips: held-out clips for agreement (seconds each, how many per preset).
    fit_seconds, kmeans_iters, kmeans_frames: k-means fitting of the random model's codebooks.
    batches: mixed batches for batch invariance. budget_scale: fraction of the presets' batch budgets
    for the peak-memory rows. profile_batch: items of the profiled batches. e2e_minutes: corpus
    minutes per kind for the end-to-end rows. verify_rows: rows decode-verified. variants: reduced
    precision / compile variants. budget_s: rows not started by then are reported as skipped.
    max_item_s: longest item of the peak-memory rows (None: the config's max_duration_s)."""

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
    verify_bandwidths: tuple[float, ...] | None = None  # None: every stored bandwidth


GPU = Sizes(mode="gpu", clip_s=10.0, max_clips=16, fit_seconds=60.0, kmeans_iters=8, kmeans_frames=20000,
            batches=(16, 64, 256), budget_scale=1.0, profile_batch=64,
            e2e_minutes={"speech": 60.0, "music": 20.0}, verify_rows=24, variants=("bf16", "fp16", "tf32", "compile"),
            budget_s=285.0)
CPU = Sizes(mode="cpu", clip_s=1.0, max_clips=2, fit_seconds=4.0, kmeans_iters=2, kmeans_frames=500,
            batches=(2, 3), budget_scale=1 / 256, profile_batch=2, e2e_minutes={"speech": 0.1},
            verify_rows=1, variants=("bf16", "fp16", "tf32"), budget_s=900.0, max_item_s=2.0,
            verify_bandwidths=(24.0,))


def pick(cpu: bool, budget_s: float | None = None, e2e_minutes: dict[str, float] | None = None,
         variants: tuple[str, ...] | None = None) -> Sizes:
    sizes = CPU if cpu else GPU
    changes = {k: v for k, v in (("budget_s", budget_s), ("e2e_minutes", e2e_minutes), ("variants", variants))
               if v is not None}
    return replace(sizes, **changes)
