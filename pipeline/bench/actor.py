"""The actor's CPU cost, without Ray: `ShardTokenizer` over FLAC tar shards with a stand-in model.

    result = run(BenchSettings(kind="speech", minutes=60), work_dir)
    print(report(result))

One `ShardTokenizer` in this process (the actor's place), its decoder processes as children, the
model replaced by `stand_in.StandInModel` (`EncodecModel.encode`'s signature, seeded random codes,
no compute), so what is left is the pipeline's own CPU cost: reading, decoding and resampling,
the hand-over to the actor, batch assembly, codes to Arrow, Parquet build and commit.

Speech: 16 kHz mono FLAC clips -> the 24 kHz model (configs/encodec_24khz.yaml); music: 44.1 kHz
stereo FLAC clips -> the 48 kHz model (configs/encodec_48khz.yaml); both on the CPU, 64-item shards
(`corpus.write_shards`). First `warmup_shards` shards of their own are run one by one (decoders
start, imports and first calls); then, measured, the shards run as the Ray actor runs them:
`shards_in_flight_per_actor` calls at once on threads, each naming the shards it runs after and
the next `prefetch_shards` to decode ahead. CPU seconds of every process over the measured part
are read from the OS (`proc_cpu`): this process (all threads), each child process alive at its end,
and children that ended meanwhile. Reported per hour of audio, as × realtime per core, and the
steady-state × realtime of the whole (measured audio / measured wall; Ray and actor start-up and
the warm-up are outside it).
"""

from __future__ import annotations

import importlib
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from . import corpus, proc_cpu

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {"speech": ("configs/encodec_24khz.yaml", "random:24khz"),
           "music": ("configs/encodec_48khz.yaml", "random:48khz")}


@dataclass(frozen=True)
class BenchSettings:
    kind: str = "speech"  # speech | music
    minutes: float = 60.0  # measured audio (at least)
    per_shard: int = 64
    decoders: int = 1  # decoder processes of the ShardTokenizer
    warmup_shards: int = 1
    seed: int = 0  # of the stand-in's codes
    model: str | None = None  # None: random:24khz (speech) / random:48khz (music); only its config matters
    overrides: tuple[str, ...] = ()  # job config overrides, e.g. ("audio.resample_on=actor",)
    # False: the real model encodes (on the CPU, `torch_threads` threads), shards one call at a time
    # with the next ones prefetched (a driver older commits also have: for A/B runs of the model path)
    stand_in: bool = True
    torch_threads: int = 1


@dataclass(frozen=True)
class BenchResult:
    settings: BenchSettings
    audio_s: float  # measured audio, seconds
    wall_s: float  # measured wall, seconds
    rows: int
    shards: int
    processes: list[proc_cpu.ProcessCPU] = field(default_factory=list)

    @property
    def audio_h(self) -> float:
        return self.audio_s / 3600

    @property
    def realtime(self) -> float:
        """Steady-state × realtime of the whole (measured audio / measured wall)."""
        return self.audio_s / self.wall_s

    def per_hour(self, role: str) -> float:
        """CPU seconds per audio-hour of all processes of `role` together."""
        return sum(p.cpu_s for p in self.processes if p.role == role) / self.audio_h

    def roles(self) -> list[str]:
        return list(dict.fromkeys(p.role for p in self.processes))


def _config(settings: BenchSettings):
    from pipeline.config import load_config

    if settings.kind not in CONFIGS:
        raise ValueError(f"kind must be one of {sorted(CONFIGS)}; got {settings.kind!r}")
    path, model = CONFIGS[settings.kind]
    overrides = [f"model={settings.model or model}", "device=cpu", f"decode_threads={settings.decoders}",
                 *settings.overrides]
    return load_config(REPO / path, overrides)


def run(settings: BenchSettings, work: Path) -> BenchResult:
    """Build the corpus under `work` (its shards and output are replaced), run the bench, return the result."""
    import torch

    from codec import load_model
    if (REPO / "pipeline" / "provenance.py").exists():
        from pipeline.provenance import build_provenance
    else:  # trees before pipeline/provenance.py (an A/B against 99d7744): a module this tree does not have
        build_provenance = importlib.import_module("pipeline.runner").model_info
    from pipeline.shard_worker import ShardTokenizer
    from pipeline.sources import list_shards

    from .stand_in import StandInModel

    cfg = _config(settings)
    clips = corpus.sources(settings.kind)
    per_clip = sum(c.seconds for c in clips) / len(clips)
    warm = corpus.write_shards(clips, settings.warmup_shards * settings.per_shard * per_clip - 1e-6,
                               work / "warmup", settings.per_shard) if settings.warmup_shards else None
    corpus.write_shards(clips, settings.minutes * 60, work / "shards", settings.per_shard)
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    torch.set_num_threads(settings.torch_threads)
    model = load_model(cfg.model)
    if hasattr(model, "set_batch_plan"):  # (trees before batch plans: an A/B against 99d7744)
        model.set_batch_plan(cfg.batch_plan)
    if settings.stand_in:
        model = StandInModel(model, seed=settings.seed)
    worker = ShardTokenizer(model, cfg, str(out), build_provenance(model, cfg, "cpu"), decoders=settings.decoders)
    try:
        for shard in list_shards(str(work / "warmup" / "*.tar"), cfg.source) if warm else []:
            worker.run(shard)
        todo = list_shards(str(work / "shards" / "*.tar"), cfg.source)
        before, started = proc_cpu.snapshot(), time.perf_counter()
        records = (_as_actor if settings.stand_in else _one_at_a_time)(worker, todo, cfg)
        wall = time.perf_counter() - started
        after = proc_cpu.snapshot()
    finally:
        worker.close()
    _check_one_tree()
    records = [r if isinstance(r, dict) else r.to_json() for r in records]
    return BenchResult(settings, sum(r["audio_seconds"] for r in records), wall, sum(r["rows"] for r in records),
                       len(records), proc_cpu.cpu_between(before, after))


def _check_one_tree() -> None:
    """Every pipeline and codec module this run used came from this tree (an editable install of another
    tree can serve modules this one lacks: an A/B would then mix two trees)."""
    import sys

    strays = [m.__file__ for name, m in list(sys.modules.items()) if name.split(".")[0] in ("pipeline", "codec")
              and getattr(m, "__file__", None) and not Path(m.__file__).resolve().is_relative_to(REPO)]
    if strays:
        raise RuntimeError(f"modules from outside {REPO}: {strays[:5]}")


def _as_actor(worker, todo, cfg) -> list:
    """As the Ray actor runs shards: calls in flight on threads, handed out in order."""
    ahead, inflight = cfg.prefetch_shards, cfg.shards_in_flight_per_actor
    with ThreadPoolExecutor(inflight) as calls:
        return list(calls.map(lambda i: worker.run(todo[i], 1, ahead=todo[i + 1 : i + 1 + ahead],
                                                   after=todo[max(0, i - inflight + 1) : i]), range(len(todo))))


def _one_at_a_time(worker, todo, cfg) -> list:
    records = []
    for i, shard in enumerate(todo):
        for upcoming in todo[i + 1 : i + 1 + cfg.prefetch_shards]:
            worker.prefetch(upcoming)
        records.append(worker.run(shard))
    return records


def report(result: BenchResult) -> str:
    s = result.settings
    lines = [f"bench_actor {s.kind}: {result.audio_h:.2f} h of audio in {result.shards} shards of {s.per_shard} "
             f"items ({result.rows} rows), {s.decoders} decoder process(es), "
             f"{'stand-in model' if s.stand_in else 'real model, ' + str(s.torch_threads) + ' torch thread(s)'}",
             f"{'process':<22} {'pid':>7} {'CPU s':>8} {'CPU-s / audio-h':>16} {'x realtime / core':>18}"]
    for p in result.processes:
        per_h = p.cpu_s / result.audio_h
        rt = f"{3600 / per_h:,.0f}" if per_h > 0 else "-"
        lines.append(f"{p.role:<22} {p.pid or '-':>7} {p.cpu_s:>8.2f} {per_h:>16.3f} {rt:>18}")
    for role in result.roles():
        if sum(1 for p in result.processes if p.role == role) > 1:
            lines.append(f"{role + ' (together)':<22} {'':>7} {'':>8} {result.per_hour(role):>16.3f}")
    total = sum(p.cpu_s for p in result.processes)
    lines.append(f"{'all processes':<22} {'':>7} {total:>8.2f} {total / result.audio_h:>16.3f}")
    lines.append(f"steady state: {result.realtime:,.0f}x realtime ({result.audio_s:.0f} s of audio in "
                 f"{result.wall_s:.2f} s wall, warm-up and start-up excluded)")
    return "\n".join(lines)


def to_json(result: BenchResult) -> dict:
    import dataclasses

    import pipeline

    return {"pipeline": str(Path(pipeline.__file__).parent), "settings": dataclasses.asdict(result.settings),
            "audio_s": result.audio_s, "wall_s": result.wall_s,
            "rows": result.rows, "shards": result.shards, "realtime": result.realtime,
            "cpu_s_per_audio_h": {role: result.per_hour(role) for role in result.roles()},
            "sys_s_per_audio_h": {role: sum(p.sys_s for p in result.processes if p.role == role) / result.audio_h
                                  for role in result.roles()},
            "minflt_per_audio_h": {role: sum(p.minflt for p in result.processes if p.role == role) / result.audio_h
                                   for role in result.roles()},
            "processes": [dataclasses.asdict(p) for p in result.processes]}
