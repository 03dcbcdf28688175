"""The Ray wiring of the tokenization job: actors that each hold a model and pull shards.

The driver lists shards, drops the ones already committed, and keeps every actor busy with one
shard in flight and the next `prefetch_shards` decoding. A shard is committed by the actor (atomically, see
`writer.py`); the driver only counts.

Faults: Ray never restarts an actor or retries a task by itself (a poison input would loop
forever). An actor that dies (killed, OOM, node lost) is replaced by the driver with a fresh one,
placed anywhere in the cluster, and its shard is re-queued; a shard is attempted at most
`max_shard_attempts` times and an actor slot may die at most `max_actor_restarts` times in a row
(without committing a shard in between), else the job fails. An exception raised by our own code
fails the job naming the shard, after the other in-flight shards have finished or failed, so no
commit is cut off by the driver.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field

import ray
import ray.exceptions

from . import sources, writer
from .config import JobConfig, to_dict
from .decode_pool import default_processes
from .records import Shard

PIPELINE_VERSION = "0.1.0"


class JobFailed(RuntimeError):
    pass


FAILURE_GRACE_S = 300.0  # on failure, how long the driver waits for other in-flight shards


@ray.remote
class TokenizerActor:
    """One model per actor; `run(shard, next_shards)` commits `shard` and starts decoding `next_shards`."""

    def __init__(self, cfg: JobConfig, out_dir: str):
        import torch

        from codec import load_first

        from .shard_worker import ShardTokenizer

        device = cfg.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu":
            torch.set_num_threads(max(1, int(cfg.cpus_per_actor)))
        # fp32 means fp32: torch runs cuDNN convolutions in TF32 unless told not to (codes would drift)
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.precision]
        sources = [cfg.model] + ([cfg.model_fallback] if cfg.model_fallback else [])
        self.model, skipped = load_first(sources, device=device, dtype=dtype)
        self.info = {**model_info(self.model, cfg, device), "model_sources_skipped": skipped}
        check_sha256(self.info, cfg)
        self.worker = ShardTokenizer(self.model, cfg, out_dir, self.info, decoders=decoder_processes(cfg, device))
        self.worker.record_extra = {"node_id": ray.get_runtime_context().get_node_id()}

    def describe(self) -> dict:
        return {**self.info, "node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid(),
                "decoder_processes": self.worker.decoder_processes}

    def run(self, shard: Shard, next_shards: list[Shard], attempt: int) -> dict:
        self.worker.keep_only([shard, *next_shards])  # shards the driver gave to other actors since
        for upcoming in [shard, *next_shards]:  # the shard to run first, if it is not decoding yet
            self.worker.prefetch(upcoming)
        record = self.worker.run(shard, attempt)
        record["node_id"] = ray.get_runtime_context().get_node_id()
        return record


def decoder_processes(cfg: JobConfig, device: str) -> int:
    """`decode_threads`, or for 0 this actor's share of its node's cores (Ray's logical CPUs), less
    what the actor itself uses (1 core on a GPU, its torch threads on the CPU)."""
    if cfg.decode_threads:
        return cfg.decode_threads
    node_id = ray.get_runtime_context().get_node_id()
    resources = next((n["Resources"] for n in ray.nodes() if n["NodeID"] == node_id), {})
    cpus = int(resources.get("CPU", 0)) or None
    if device == "cuda":  # actors sharing this node, and the cores each keeps for itself
        sharing, reserve = int(resources.get("GPU", 1) / max(cfg.gpus_per_actor, 1e-9)), 1
        sharing = min(sharing, cfg.num_actors or sharing)
    else:  # CPU actors: one unless num_actors says otherwise; each keeps its torch threads
        sharing = min(cfg.num_actors or 1, int((cpus or 1) / max(cfg.cpus_per_actor, 1)))
        reserve = max(1, int(cfg.cpus_per_actor))
    return default_processes(cpus, max(1, sharing), reserve)


def resampler_info(cfg: JobConfig, device: str) -> dict:
    if cfg.audio.resample_on == "actor":
        from . import device_resample as r

        return {"library": "audiotok.device_resample", "zeros": r.ZEROS, "rolloff": r.ROLLOFF,
                "kaiser_beta": r.KAISER_BETA, "device": device}
    return {"library": "soxr", "quality": cfg.audio.resample_quality}


def model_info(model, cfg: JobConfig, device: str) -> dict:
    c = model.config
    return {
        "format_version": 1,
        "model_name": c.name,
        "model_source": model.provenance["source"],
        "checkpoint_sha256": model.provenance["sha256"],
        "random_weights": model.provenance["random_weights"],
        "codec_config": c.to_dict(),
        "sample_rate": c.sampling_rate,
        "channels": c.audio_channels,
        "frame_rate": c.frame_rate,
        "hop_length": c.hop_length,
        "chunk_length": c.chunk_length,
        "chunk_stride": c.chunk_stride,
        "bandwidths": sorted(cfg.bandwidths),
        "bandwidth_to_num_quantizers": {str(b): c.num_quantizers_for(b) for b in sorted(cfg.bandwidths)},
        "num_quantizers": c.num_quantizers_for(max(cfg.bandwidths)),
        "precision": cfg.precision,
        "device": device,
        "pipeline_version": PIPELINE_VERSION,
        "resampler": resampler_info(cfg, device),
        "segment_max_s": cfg.audio.max_duration_s,
    }


def check_sha256(info: dict, cfg: JobConfig) -> None:
    """Any model_sha256 given (even one YAML read as a number, e.g. 000...0) must equal the checkpoint's."""
    want = cfg.model_sha256
    if want is not None and str(want).strip().lower() != info["checkpoint_sha256"]:
        raise JobFailed(f"model checkpoint sha256 {info['checkpoint_sha256']} does not match "
                        f"model_sha256 {want} in the config")


@dataclass
class _Slot:
    actor: object
    shard: Shard | None = None
    ref: object = None
    queued: deque = field(default_factory=deque)  # shards this slot's actor decodes ahead
    deaths: int = 0  # deaths in a row without a committed shard


def connect_ray(num_cpus: int | None = None) -> bool:
    """Join the cluster in RAY_ADDRESS (or a `ray job submit` job) or start a local Ray; True if started here."""
    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=True)
        return False
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)
    return True


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_job(cfg: JobConfig, input_spec: str, out_dir: str, log=_stderr) -> dict:
    """Tokenize every shard of `input_spec` into `out_dir`; returns the run summary (also written)."""
    started = time.time()
    shards = sources.list_shards(input_spec, cfg.source)
    writer.cleanup_uncommitted(out_dir)
    done = writer.committed_shards(out_dir)
    todo = deque(s for s in shards if s.shard_id not in done)
    log(f"[audiotok] {len(shards)} shards, {len(done)} already committed, {len(todo)} to do")

    gpus = ray.cluster_resources().get("GPU", 0) if cfg.device != "cpu" else 0
    if gpus:
        options = {"num_gpus": cfg.gpus_per_actor, "num_cpus": cfg.cpus_per_actor}
        count = cfg.num_actors or max(1, int(gpus / cfg.gpus_per_actor))
    else:
        options = {"num_cpus": cfg.cpus_per_actor}
        count = cfg.num_actors or 1
    count = max(1, min(count, len(todo))) if todo else 0
    actor_cls = TokenizerActor.options(max_restarts=0, max_task_retries=0, **options)
    driver = _Driver(cfg, log, todo, lambda: actor_cls.remote(cfg, out_dir), count)
    try:
        info = driver.describe() if driver.slots else {}
        if info:
            writer.write_provenance(out_dir, {**info, "job_config": to_dict(cfg), "input": input_spec})
            for line in info.get("model_sources_skipped", []):
                log(f"[audiotok] model source skipped: {line.splitlines()[0][:300]}")
            log(f"[audiotok] model: {info['model_source']} (sha256 {info['checkpoint_sha256'][:16]}...); "
                f"{count} actor(s) on {info['device']}, {info['decoder_processes']} decoder processes each, "
                f"{cfg.prefetch_shards} shard(s) decoded ahead")
            if info["random_weights"]:
                log("[audiotok] WARNING: model has RANDOM weights (random:*); tokens are for testing only")
            elif str(info["model_source"]).startswith("tiny:"):
                log("[audiotok] NOTE: this is audiotok's small demo codec (models/tiny-24khz/MODEL_CARD.md), "
                    "not facebook/encodec_24khz; its quality is low. Pass --model for real tokens.")
        records = driver.run(done, len(shards))
    finally:
        for slot in driver.slots:
            ray.kill(slot.actor, no_restart=True)

    summary = summarize(records, shards, time.time() - started, info)
    summary["actors"] = count  # actor slots used (0 when every shard was already committed)
    from . import verify

    checked = verify.verify_after_job(cfg, out_dir, log)  # None unless verify.sample_count > 0
    summary["verify"] = checked and {k: checked[k] for k in ("passed", "failures", "rows_sampled", "report")}
    writer.write_summary(out_dir, summary)
    return summary


class _Driver:
    """Keeps `count` actor slots busy with shards from `todo`; replaces dead actors (bounded)."""

    def __init__(self, cfg: JobConfig, log, todo: deque, new_actor, count: int):
        self.cfg, self.log, self.todo, self.new_actor = cfg, log, todo, new_actor
        self.slots = [_Slot(new_actor()) for _ in range(count)]
        self.attempts: dict[str, int] = {}

    def describe(self) -> dict:
        slot = self.slots[0]
        while True:
            try:
                return ray.get(slot.actor.describe.remote())
            except ray.exceptions.RayActorError as exc:
                self._died(slot, exc, "while starting")
                self.log("[audiotok] the first actor died while starting; replacing it")
                self._replace(slot)

    def run(self, done: dict, total: int) -> dict:
        """{shard_id: record} of every committed shard; raises JobFailed."""
        records = dict(done)
        progress = _Progress(total, len(done), self.log, self.cfg.progress_interval_s)
        for slot in self.slots:
            self._dispatch(slot)
        try:
            while any(s.ref is not None for s in self.slots):
                refs = [s.ref for s in self.slots if s.ref is not None]
                ready, _ = ray.wait(refs, num_returns=1, timeout=self.cfg.progress_interval_s)
                for ref in ready:
                    slot = next(s for s in self.slots if s.ref is ref)
                    record = self._collect(slot)
                    if record is not None:
                        records[record["shard_id"]] = record
                        progress.shard_done(record)
                    self._dispatch(slot)
                for idle in [s for s in self.slots if s.ref is None]:  # e.g. shards re-queued by a death
                    self._dispatch(idle)
                progress.maybe_print(records)
        except JobFailed:
            inflight = [s.ref for s in self.slots if s.ref is not None]
            if inflight:  # let the other shards commit or fail on their own: never cut a commit short
                self.log(f"[audiotok] job failed; waiting up to {FAILURE_GRACE_S:.0f} s for "
                         f"{len(inflight)} shard(s) in flight")
                ray.wait(inflight, num_returns=len(inflight), timeout=FAILURE_GRACE_S)
            raise
        progress.maybe_print(records, force=True)
        return records

    def _next_shard(self, slot: _Slot) -> Shard | None:
        """The slot's own next shard, else the next unstarted one, else the last one another actor
        holds ahead (that actor forgets it at its next run())."""
        if slot.queued:
            return slot.queued.popleft()
        if self.todo:
            return self.todo.popleft()
        donor = max(self.slots, key=lambda s: len(s.queued))
        return donor.queued.pop() if donor.queued else None

    def _dispatch(self, slot: _Slot) -> None:
        slot.shard = self._next_shard(slot)
        # decode ahead, but never take shards another actor could start on: with few shards left
        # they spread over the actors instead of queueing behind one
        ahead = min(self.cfg.prefetch_shards, len(self.todo) // len(self.slots))
        while self.todo and len(slot.queued) < ahead:
            slot.queued.append(self.todo.popleft())
        if slot.shard is not None:
            n = self.attempts[slot.shard.shard_id] = self.attempts.get(slot.shard.shard_id, 0) + 1
            slot.ref = slot.actor.run.remote(slot.shard, list(slot.queued), n)
        else:
            slot.ref = None

    def _collect(self, slot: _Slot) -> dict | None:
        """The finished shard's record, or None after re-queueing the shard of an actor that died."""
        shard, ref = slot.shard, slot.ref
        slot.ref = None
        try:
            record = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            if self.attempts[shard.shard_id] >= self.cfg.max_shard_attempts and not exc.actor_init_failed:
                raise JobFailed(f"shard {shard.url} failed {self.attempts[shard.shard_id]} times "
                                f"(actor died each time): {exc}") from exc
            self._died(slot, exc, f"on shard {shard.url}")
            self.log(f"[audiotok] actor died on shard {shard.shard_id}; replacing it and retrying the shard")
            self.todo.extendleft(reversed(slot.queued))
            self.todo.appendleft(shard)
            slot.queued.clear()
            self._replace(slot)
            return None
        except ray.exceptions.RayTaskError as exc:
            raise JobFailed(f"shard {shard.url} failed: {exc}") from exc
        slot.deaths = 0
        return record

    def _died(self, slot: _Slot, exc: Exception, where: str) -> None:
        """Count an actor death; raises JobFailed if its constructor raised or it died too often."""
        if getattr(exc, "actor_init_failed", False):
            raise JobFailed(f"the model actor failed to start: {exc}") from exc
        slot.deaths += 1
        if slot.deaths > self.cfg.max_actor_restarts:
            raise JobFailed(f"an actor died {slot.deaths} times in a row (max_actor_restarts "
                            f"{self.cfg.max_actor_restarts}), last {where}: {exc}") from exc

    def _replace(self, slot: _Slot) -> None:
        ray.kill(slot.actor, no_restart=True)  # it may only be unreachable: make sure it is gone
        slot.actor = self.new_actor()


def summarize(records: dict, shards: list[Shard], wall: float, info: dict) -> dict:
    wanted = {s.shard_id for s in shards}
    mine = [r for k, r in records.items() if k in wanted]
    by_reason: dict[str, int] = {}
    for r in mine:
        for reason, n in r.get("rejects_by_reason", {}).items():
            by_reason[reason] = by_reason.get(reason, 0) + n
    audio = sum(r["audio_seconds"] for r in mine)
    padded = sum(r.get("padded_samples", 0) for r in mine)
    true = sum(r.get("true_samples", 0) for r in mine)
    return {
        "shards": len(shards),
        "shards_committed": len(mine),
        "rows": sum(r["rows"] for r in mine),
        "rejects": sum(r["rejects"] for r in mine),
        "rejects_by_reason": by_reason,
        "audio_hours": audio / 3600,
        "wall_seconds": wall,
        "realtime_factor": audio / wall if wall > 0 else None,
        "padding_waste": (padded - true) / padded if padded else 0.0,
        "model_source": info.get("model_source"),
        "random_weights": info.get("random_weights"),
    }


class _Progress:
    def __init__(self, total: int, already: int, log, interval: float):
        self.total, self.done, self.log, self.interval = total, already, log, interval
        self.started = time.time()
        self.last = 0.0
        self.audio = 0.0
        self.rejects = 0
        self.new = 0

    def shard_done(self, record: dict) -> None:
        self.done += 1
        self.new += 1
        self.audio += record["audio_seconds"]
        self.rejects += record["rejects"]

    def maybe_print(self, records, force=False) -> None:
        now = time.time()
        if not force and now - self.last < self.interval:
            return
        self.last = now
        wall = now - self.started
        rate = self.audio / wall if wall else 0.0
        left = self.total - self.done
        eta = wall / self.new * left if self.new else float("nan")
        self.log(f"[audiotok] shards {self.done}/{self.total}  audio {self.audio / 3600:.3f} h  "
                 f"{rate:,.1f}x realtime  ETA {eta:,.0f} s  rejects {self.rejects}")
