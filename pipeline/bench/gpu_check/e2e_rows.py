"""End-to-end rows (pipeline.bench.e2e on one GPU): the transformers baseline, our job with the preset
config limited to one actor (one GPU), again with `audio.resample_on: actor`, the ratio (whole run and
steady state: start-up reported apart), GPU / CPU busy %, the bound-by line, and verify on our output.

The corpus for each kind is built here from the clips bench_e2e names (AUDIOTOK_CORPUS), repeated to
the size asked for. Both runs use random weights (throughput does not depend on the codebook values).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.bench import e2e as bench_e2e
from pipeline.bench import stage_ceilings

from .table import Check

REPO = Path(__file__).resolve().parents[3]
PRESET = {"speech": "24khz", "music": "48khz"}


@dataclass
class E2E:
    """State shared by one kind's rows."""

    kind: str
    minutes: float
    work: Path
    shards: list[str] = field(default_factory=list)
    audio_s: float = 0.0
    ceilings: object = None
    base: bench_e2e.Run | None = None
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def preset(self) -> str:
        return PRESET[self.kind]

    @property
    def rate_channels(self) -> tuple[int, int]:
        return (24000, 1) if self.preset == "24khz" else (48000, 2)


def _usage(run: bench_e2e.Run) -> str:
    u = run.usage
    if u.gpu:
        gpu = f"GPU busy {u.gpu.busy_pct:.0f} %, GPU mem {u.gpu.peak_mem_mib:.0f} MiB"
    else:
        gpu = f"GPU n/a ({u.gpu_missing})"
    cpu = "CPU n/a" if u.cpu_busy_pct is None else f"CPU busy {u.cpu_busy_pct:.0f} % of {os.cpu_count()} cores"
    startup = "n/a" if run.startup_s is None else f"{run.startup_s:.1f} s"
    return f"{gpu}; {cpu}; start-up {startup}; wall {run.wall_s:.1f} s; padding {100 * run.padding_waste:.1f} %"


def _run_data(run: bench_e2e.Run) -> dict:
    u = run.usage
    return {"realtime": run.realtime, "steady_realtime": run.steady_realtime, "startup_s": run.startup_s,
            "wall_s": run.wall_s, "audio_s": run.audio_s, "rows": run.rows, "gpus": run.gpus,
            "gpu_busy_pct": u.gpu.busy_pct if u.gpu else None,
            "gpu_peak_mem_mib": u.gpu.peak_mem_mib if u.gpu else None,
            "cpu_busy_pct": u.cpu_busy_pct, "padding_waste": run.padding_waste, "peak_rss": run.peak_rss}


def _value(run: bench_e2e.Run) -> str:
    return f"{bench_e2e.rt(run.realtime)} rt, steady {bench_e2e.rt(run.steady_realtime)}"


def corpus_row(e2e: E2E) -> Check:
    files = bench_e2e.flac_sources(e2e.kind)
    e2e.shards, items = bench_e2e.build_corpus(files, e2e.minutes, e2e.work / "shards", per_shard=8)
    e2e.audio_s = sum(d for _, d in items)
    rate, channels = e2e.rate_channels
    from pipeline.config import AudioConfig

    e2e.ceilings = stage_ceilings.measure(files, rate, channels, AudioConfig())  # per-core rates: the unique files
    cores = os.cpu_count() or 1
    return Check("e2e", f"{e2e.kind}: corpus + CPU ceilings", "ok",
                 f"{e2e.audio_s / 60:.1f} min, {len(e2e.shards)} shards",
                 f"per core: decode {bench_e2e.rt(e2e.ceilings.decode_rt)}, decode + resample "
                 f"{bench_e2e.rt(e2e.ceilings.prepare_rt)}; x {cores} cores",
                 {"audio_s": e2e.audio_s, "shards": len(e2e.shards), "decode_rt_per_core": e2e.ceilings.decode_rt,
                  "prepare_rt_per_core": e2e.ceilings.prepare_rt, "cores": cores})


def baseline_row(e2e: E2E) -> Check:
    e2e.base = bench_e2e.baseline(e2e.shards, f"random:{e2e.preset}", e2e.work)
    return Check("e2e", f"{e2e.kind}: baseline (transformers, TF32 off)", "ok", _value(e2e.base), _usage(e2e.base),
                 _run_data(e2e.base))


def ours_rows(e2e: E2E, resample_on: str, gpu: bool) -> list[Check]:
    """Our job (one actor: the baseline's one GPU) with `audio.resample_on`; its ratio and bound line."""
    from pipeline.config import load_config

    cores = os.cpu_count() or 1
    config = REPO / "configs" / f"encodec_{e2e.preset}.yaml"
    cpus = min(load_config(str(config)).cpus_per_actor, cores)
    cfg = load_config(str(config), [f"model=random:{e2e.preset}", f"cpus_per_actor={cpus}", "num_actors=1",
                                    f"audio.resample_on={resample_on}", f"device={'cuda' if gpu else 'cpu'}"])
    name = f"ours-{resample_on}"
    run, stages = bench_e2e.ours(e2e.shards, cfg, e2e.work, name)
    e2e.outputs[resample_on] = e2e.work / name
    label = f"{e2e.kind}: ours, resample_on {resample_on}"
    base_rows = f" (baseline {e2e.base.rows}; ours splits items over max_duration_s)" if e2e.base else ""
    rows = [Check("e2e", label, "ok", _value(run), _usage(run) + f"; {run.rows} rows{base_rows}", _run_data(run))]
    if e2e.base is not None:
        ratio = bench_e2e.ratio_line(run, e2e.base)
        like = run.gpus == e2e.base.gpus
        rows.append(Check("e2e", f"{label}: ratio", "ok" if like else "fail", ratio.split(": ", 1)[1][:30],
                          ratio, {"whole": run.realtime / e2e.base.realtime, "steady": (
                              run.steady_realtime / e2e.base.steady_realtime
                              if run.steady_realtime and e2e.base.steady_realtime else None)}))
    bound = bench_e2e.bound_line(run.realtime, stages, run.audio_s, e2e.ceilings, cores, resample_on == "decoder")
    rows.append(Check("e2e", f"{label}: bound by", "ok", bound.split(":", 1)[0][:30], bound))
    return rows


def verify_row(e2e: E2E, rows: int, gpu: bool, bandwidths: tuple[float, ...] | None = None) -> Check:
    """jobs.verify on our decoder-resampled output, re-encoding on the same device (inline)."""
    from pipeline.verify import VerifyOptions, run_verify  # inline

    out = e2e.outputs.get("decoder")
    if out is None:
        return Check("verify", f"{e2e.kind}: verify our output", "skipped", "no output", "our run did not finish")
    summary = run_verify(str(out), str(e2e.work / f"verify-{e2e.kind}"),
                         VerifyOptions(count=rows, device="cuda" if gpu else "cpu", use_ray="inline",
                                       max_media_items=0, bandwidths=list(bandwidths) if bandwidths else None),
                         log=lambda *a: None)
    agree = [a.get("code_agreement_mean") for a in summary.aggregates if a.get("group") == "bandwidth"]
    agree = [a for a in agree if a is not None]
    value = f"{'passed' if summary.passed else 'FAILED'}, {summary.rows_sampled} rows"
    detail = (f"code agreement mean {min(agree):.4f} (worst bandwidth)" if agree else "no agreement") + (
        f"; failures: {summary.failures[:3]}" if summary.failures else "")
    return Check("verify", f"{e2e.kind}: verify our output", "ok" if summary.passed else "fail", value, detail,
                 {"passed": summary.passed, "failures": summary.failures, "code_agreement_means": agree})
