"""End-to-end rows (pipeline.bench.e2e on one GPU): the transformers baseline, our job with the preset
config limited to one actor (one GPU), again with `audio.resample_on: actor`, the ratio (whole run and
steady state: start-up reported apart), GPU / CPU busy %, the bound-by line, and verify on our output;
and the actor bench (pipeline.bench.actor: the actor's own CPU per audio-hour, stand-in model).

Corpora are built on the machine from the carried clips (pipeline.bench.corpus: the clips as FLAC,
repeated; `per_shard` items per shard, the shards past the first few hard links to identical ones, so
hours of audio cost megabytes of disk), sized in whole shards to at least the minutes asked for. The
baseline runs on a slice (its own shards of the same clips, `baseline_minutes`): one Python process
cannot reach our job's rate, and its × realtime is a rate. Every run is bounded: the baseline stops
after `baseline_limit_s`, our job after `job_limit_s` (it then reports what its committed shards
hold), the actor bench is sized to finish well inside its row. Both runs use random weights
(throughput does not depend on the codebook values).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.bench import corpus as bench_corpus
from pipeline.bench import e2e as bench_e2e
from pipeline.bench import stage_ceilings

from .table import Check

REPO = Path(__file__).resolve().parents[3]
PRESET = {"speech": "24khz", "music": "48khz"}
# our job fails when its actor cannot start within this (a GPU Ray does not see), or within its own time limit
# where that is longer (CPU mode: an actor's start on a loaded 2-core machine took over 30 s, 2026-12-08)
PLACEMENT_TIMEOUT_S = 30


@dataclass
class E2E:
    """State shared by one kind's rows; sizes from sizes.Sizes (e2e_per_shard, baseline_minutes, limits)."""

    kind: str
    minutes: float
    work: Path
    per_shard: int = 512
    baseline_minutes: float = 10.0
    baseline_limit_s: float = 15.0
    job_limit_s: float = 25.0
    shards: list[str] = field(default_factory=list)
    slice_shards: list[str] = field(default_factory=list)
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
    peak = run.device_peak_mb
    mem = "our GPU peak n/a (CPU)" if peak is None else f"our GPU peak {peak:.0f} MiB (torch)"
    if u.gpu:
        gpu = f"{mem}; GPU busy {u.gpu.busy_pct:.0f} % (nvidia-smi)"
    else:
        gpu = f"{mem}; GPU busy n/a ({u.gpu_missing})"
    cpu = "CPU n/a" if u.cpu_busy_pct is None else f"CPU busy {u.cpu_busy_pct:.0f} % of {os.cpu_count()} cores"
    startup = "n/a" if run.startup_s is None else f"{run.startup_s:.1f} s"
    cut = "" if run.cut_at_s is None else f"; STOPPED at its limit after {run.cut_at_s:.0f} s"
    return (f"{gpu}; {cpu}; start-up {startup}; wall {run.wall_s:.1f} s; {run.audio_s / 3600:.2f} h of audio; "
            f"padding {100 * run.padding_waste:.1f} %{cut}")


def _run_data(run: bench_e2e.Run) -> dict:
    u = run.usage
    return {"realtime": run.realtime, "steady_realtime": run.steady_realtime, "startup_s": run.startup_s,
            "wall_s": run.wall_s, "audio_s": run.audio_s, "rows": run.rows, "gpus": run.gpus,
            "device_peak_mb": run.device_peak_mb, "gpu_busy_pct": u.gpu.busy_pct if u.gpu else None,
            "nvidia_smi_device_mem_mib_extra": u.gpu.peak_mem_mib if u.gpu else None,  # device-wide: not ours
            "cpu_busy_pct": u.cpu_busy_pct, "padding_waste": run.padding_waste, "peak_rss": run.peak_rss,
            "cut_at_s": run.cut_at_s}


def _value(run: bench_e2e.Run) -> str:
    return f"{bench_e2e.rt(run.realtime)} rt, steady {bench_e2e.rt(run.steady_realtime)}"


def whole_shards_s(clips: list, minutes: float, per_shard: int) -> float:
    """Seconds of audio to ask write_shards for: at least `minutes`, rounded up to whole shards of
    `per_shard` items (the clips repeat in order, so a shard holds per_shard x their mean duration)."""
    mean = sum(c.seconds for c in clips) / len(clips)
    items = math.ceil(minutes * 60 / mean / per_shard) * per_shard
    return items * mean - 1e-6


def corpus_row(e2e: E2E) -> Check:
    """The kind's corpus (whole shards, at least e2e.minutes) and the baseline's slice; CPU ceilings."""
    clips = bench_corpus.sources(e2e.kind)
    built = bench_corpus.write_shards(clips, whole_shards_s(clips, e2e.minutes, e2e.per_shard), e2e.work / "shards",
                                      e2e.per_shard)
    e2e.shards, e2e.audio_s = built.shards, built.seconds
    per = min(e2e.per_shard, max(1, math.ceil(e2e.baseline_minutes * 60 / (built.seconds / built.items))))
    sliced = bench_corpus.write_shards(clips, min(e2e.baseline_minutes * 60, built.seconds), e2e.work / "baseline",
                                       per, distinct=1)
    e2e.slice_shards = sliced.shards
    files = len({os.stat(s).st_ino for s in built.shards})
    rate, channels = e2e.rate_channels
    from pipeline.config import AudioConfig

    e2e.ceilings = stage_ceilings.measure([(c.flac, c.seconds) for c in clips], rate, channels, AudioConfig())
    cores = os.cpu_count() or 1
    return Check("e2e", f"{e2e.kind}: corpus + CPU ceilings", "ok",
                 f"{e2e.audio_s / 3600:.2f} h, {len(e2e.shards)} shards x {e2e.per_shard}",
                 f"{built.items} items ({files} shard files, the rest hard links); baseline slice "
                 f"{sliced.seconds / 60:.1f} min in {len(sliced.shards)} shard(s); per core: decode "
                 f"{bench_e2e.rt(e2e.ceilings.decode_rt)}, decode + resample {bench_e2e.rt(e2e.ceilings.prepare_rt)}; "
                 f"x {cores} cores",
                 {"audio_s": e2e.audio_s, "shards": len(e2e.shards), "items": built.items,
                  "per_shard": e2e.per_shard, "shard_files": files, "slice_audio_s": sliced.seconds,
                  "decode_rt_per_core": e2e.ceilings.decode_rt, "prepare_rt_per_core": e2e.ceilings.prepare_rt,
                  "cores": cores})


def baseline_row(e2e: E2E) -> Check:
    e2e.base = bench_e2e.baseline(e2e.slice_shards, f"random:{e2e.preset}", e2e.work, limit_s=e2e.baseline_limit_s)
    return Check("e2e", f"{e2e.kind}: baseline (transformers, TF32 off)", "ok", _value(e2e.base),
                 f"on the slice; {_usage(e2e.base)}", _run_data(e2e.base))


def ours_rows(e2e: E2E, resample_on: str, gpu: bool) -> list[Check]:
    """Our job (one actor: the baseline's one GPU) with `audio.resample_on`; its ratio and bound line."""
    from pipeline.config import load_config

    cores = os.cpu_count() or 1
    config = REPO / "configs" / f"encodec_{e2e.preset}.yaml"
    cpus = min(load_config(str(config)).cpus_per_actor, cores)
    cfg = load_config(str(config), [f"model=random:{e2e.preset}", f"cpus_per_actor={cpus}", "num_actors=1",
                                    f"audio.resample_on={resample_on}", f"device={'cuda' if gpu else 'cpu'}",
                                    f"placement_timeout_s={max(PLACEMENT_TIMEOUT_S, e2e.job_limit_s):g}",
                                    "progress_interval_s=1"])
    name = f"ours-{resample_on}"
    run, stages = bench_e2e.ours(e2e.shards, cfg, e2e.work, name, limit_s=e2e.job_limit_s)
    if run.rows:  # verify needs committed rows (a run stopped before its first commit has none)
        e2e.outputs[resample_on] = e2e.work / name
    label = f"{e2e.kind}: ours, resample_on {resample_on}"
    base_rows = f" (baseline {e2e.base.rows} on its slice)" if e2e.base else ""
    status = "ok" if run.rows > 0 else "fail"
    rows = [Check("e2e", label, status, _value(run), _usage(run) + f"; {run.rows} rows{base_rows}", _run_data(run))]
    if e2e.base is not None:
        ratio = bench_e2e.ratio_line(run, e2e.base)
        like = run.gpus == e2e.base.gpus
        rows.append(Check("e2e", f"{label}: ratio", "ok" if like else "fail", ratio.split(": ", 1)[1][:30],
                          ratio, {"whole": run.realtime / e2e.base.realtime, "steady": (
                              run.steady_realtime / e2e.base.steady_realtime
                              if run.steady_realtime and e2e.base.steady_realtime else None)}))
    if run.audio_s > 0:
        bound = bench_e2e.bound_line(run.realtime, stages, run.audio_s, e2e.ceilings, cores, resample_on == "decoder")
        rows.append(Check("e2e", f"{label}: bound by", "ok", bound.split(":", 1)[0][:30], bound))
    return rows


def actor_row(kind: str, minutes: float, per_shard: int, work: Path) -> Check:
    """pipeline.bench.actor on `minutes` of `kind`: the actor's and its decoders' CPU per audio-hour
    (one ShardTokenizer in this process, stand-in model, decoders as on this machine, less one core)."""
    from pipeline.bench import actor as bench_actor

    decoders = max(1, min(8, (os.cpu_count() or 2) - 1))
    result = bench_actor.run(bench_actor.BenchSettings(kind=kind, minutes=minutes, per_shard=per_shard,
                                                       decoders=decoders), work)
    per_h = {role: result.per_hour(role) for role in result.roles()}
    total = sum(per_h.values())
    return Check("actor", f"{kind}: actor bench (stand-in model)", "ok", f"{total:.2f} CPU-s per audio-h",
                 "; ".join(f"{role} {v:.2f}" for role, v in per_h.items())
                 + f"; {result.audio_h:.2f} h in {result.shards} shards of {per_shard}, {decoders} decoder(s); "
                 f"steady {bench_e2e.rt(result.realtime)} rt",
                 {"kind": kind, "cpu_s_per_audio_h": per_h, "total_cpu_s_per_audio_h": total,
                  "audio_s": result.audio_s, "wall_s": result.wall_s, "realtime": result.realtime,
                  "decoders": decoders, "shards": result.shards})


def verify_row(e2e: E2E, rows: int, gpu: bool, bandwidths: tuple[float, ...] | None = None) -> Check:
    """jobs.verify on our decoder-resampled output, re-encoding on the same device (inline)."""
    from pipeline.verify import VerifyOptions, run_verify  # inline

    out = e2e.outputs.get("decoder")
    if out is None:
        return Check("verify", f"{e2e.kind}: verify our output", "skipped", "no output", "our run committed no shard")
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
