"""Op-level A/B of the codec's encode between git revisions: which torch ops, shapes and FLOPs each tree
runs on one fixed batch of real speech, and what they cost, measured in alternating fresh processes.

    trees = {"99d7744": ab.checkout("99d7744", root), "this": ab.HERE}
    runs = alternate(trees, OpSettings(), rounds=3)
    print(report(runs))

The batch: the eight speech clips of the actor bench (`corpus.SPEECH`, 16 kHz mono, 2.8-7.1 s) decoded
from their FLAC and resampled to the model's rate with soxr HQ (as the decoders do), padded to the longest
with their true lengths: one `model.encode(x, lengths)` call, as the job makes it for a batch. Each side
runs `python -m pipeline.bench.op_profile --worker` in its own tree (fresh process, `codec` imported from
that tree, checked), on `torch_threads` threads: a warm-up encode, `reps` timed encodes (process CPU
user/system and minor page faults from the OS, `resource.getrusage`), then one encode under
`torch.profiler` (CPU, shapes, FLOPs). The report compares:

* the codes (sha256 of every item's codes): the sides must agree byte for byte;
* the op inventory: per op name and input shapes, the call count; the total count and FLOPs; every
  (op, shapes) whose count differs. Deterministic: this is where a change in what the encoder computes
  (an extra mask multiply, a smaller GEMM, another padding path) shows, whatever the machine's load;
* per op name, the median self CPU time (profiler, µs) per side and the ratio: noisy on a shared
  machine, read it only where the inventory differs or the ratio is large and repeated;
* per side, the median CPU seconds of one encode (user, system) and its minor page faults.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from . import corpus


@dataclass(frozen=True)
class OpSettings:
    model: str = "random:24khz"
    reps: int = 3  # timed encodes per run (after one warm-up), besides the profiled one
    items: int = 8  # the first `items` clips of the batch (tests take fewer)
    clip_s: float | None = None  # each clip cut to at most this long (tests); None: whole clips
    torch_threads: int = 1


# ----- one side, in its own tree's process -------------------------------------------------------

def speech_batch(rate: int, items: int = 8, clip_s: float | None = None):
    """The fixed batch: (x float32 [items, 1, T], lengths) of the bench's speech clips at `rate` Hz."""
    import io

    import numpy as np
    import soundfile as sf
    import soxr
    import torch

    clips = []
    for clip in corpus.sources("speech")[:items]:
        data, got = sf.read(io.BytesIO(clip.flac), dtype="float32", always_2d=True)
        audio = soxr.resample(data[:, 0], got, rate, quality="HQ")[: None if clip_s is None else int(clip_s * rate)]
        clips.append(np.ascontiguousarray(audio, dtype=np.float32))
    lengths = [len(c) for c in clips]
    x = torch.zeros(len(clips), 1, max(lengths))
    for b, c in enumerate(clips):
        x[b, 0, : len(c)] = torch.from_numpy(c)
    return x, lengths


def _usage() -> tuple[float, float, int]:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime, u.ru_stime, u.ru_minflt


def measure(settings: OpSettings, model=None) -> dict:
    """Run the encode in this process (this tree's `codec`; `model`: already loaded `settings.model`) and
    return what `report` compares."""
    import numpy as np
    import torch
    from torch.profiler import ProfilerActivity, profile

    import codec
    from codec import load_model

    torch.set_num_threads(settings.torch_threads)
    model = model if model is not None else load_model(settings.model)
    rate = getattr(model, "sample_rate", None) or model.config.sampling_rate
    x, lengths = speech_batch(rate, settings.items, settings.clip_s)
    items = model.encode(x, lengths)  # warm-up: first calls, oneDNN primitives, allocator
    digest = hashlib.sha256()
    for item in items:
        digest.update(item.codes.numpy().astype(np.int16).tobytes())
    timed = []
    for _ in range(settings.reps):
        u0, s0, f0 = _usage()
        wall = time.perf_counter()
        model.encode(x, lengths)
        wall = time.perf_counter() - wall
        u1, s1, f1 = _usage()
        timed.append({"user_s": u1 - u0, "sys_s": s1 - s0, "minflt": f1 - f0, "wall_s": wall})
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True, with_flops=True) as prof:
        model.encode(x, lengths)
    ops = [{"name": e.key, "shapes": str(e.input_shapes), "count": e.count, "self_us": e.self_cpu_time_total,
            "flops": e.flops} for e in prof.key_averages(group_by_input_shape=True)]
    with OpCPU() as op_cpu:
        model.encode(x, lengths)
    return {"codec": codec.__file__, "codes_sha256": digest.hexdigest(), "audio_s": sum(lengths) / rate,
            "timed": timed, "ops": ops, "op_cpu": op_cpu.rows()}


def _op_cpu_mode():
    from torch.utils._python_dispatch import TorchDispatchMode

    class _OpCPU(TorchDispatchMode):
        """CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID) in each top-level aten op, by op and
        input layout (shapes, and whether each input is contiguous). CPU time, unlike the profiler's wall
        time, does not grow while the process waits for a core on a loaded machine; with one torch thread
        the op's whole compute runs on this thread."""

        def __init__(self):
            super().__init__()
            self.table: dict[tuple[str, str], list[int]] = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            started = time.thread_time_ns()
            out = func(*args, **(kwargs or {}))
            spent = time.thread_time_ns() - started
            layout = [(tuple(a.shape), a.is_contiguous()) for a in args if hasattr(a, "is_contiguous")]
            row = self.table.setdefault((str(func.overloadpacket), str(layout)), [0, 0])
            row[0] += 1
            row[1] += spent
            return out

        def rows(self) -> list[dict]:
            return [{"name": op, "layout": layout, "count": n, "cpu_ns": ns}
                    for (op, layout), (n, ns) in self.table.items()]

    return _OpCPU


def OpCPU():  # noqa: N802 (a class built on first use: torch is imported lazily)
    return _op_cpu_mode()()


# ----- the A/B driver ----------------------------------------------------------------------------

def run_side(tree: Path, settings: OpSettings) -> dict:
    """`measure` in a fresh process in `tree` (which must hold this module: `ab.checkout` copies it)."""
    with tempfile.TemporaryDirectory(prefix="op-profile-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "pipeline.bench.op_profile", "--worker", str(out),
               "--settings", json.dumps(asdict(settings))]
        env = {**os.environ, "AUDIOTOK_CORPUS": str(corpus.default_corpus()), "PYTHONPATH": str(tree)}
        done = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, env=env)
        if done.returncode:
            raise RuntimeError(f"op profile in {tree} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        result = json.loads(out.read_text())
    if not Path(result["codec"]).resolve().is_relative_to(Path(tree).resolve()):
        raise RuntimeError(f"the run in {tree} imported codec from {result['codec']}")
    return result


def alternate(trees: dict[str, Path], settings: OpSettings, rounds: int = 3) -> dict[str, list[dict]]:
    """{side: [measure() of each run]}, the sides in turn, the order reversed every other round."""
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    names = list(trees)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            result = run_side(trees[name], settings)
            runs[name].append(result)
            cpu = statistics.median(t["user_s"] + t["sys_s"] for t in result["timed"])
            print(f"[op-profile] round {r + 1} {name}: encode {cpu:.3f} CPU-s (median of {len(result['timed'])}), "
                  f"codes {result['codes_sha256'][:12]}", flush=True)
    return runs


def inventory(result: dict) -> dict[tuple[str, str], int]:
    """(op, input shapes) -> calls in the profiled encode."""
    return {(op["name"], op["shapes"]): op["count"] for op in result["ops"]}


def cpu_ms_by_op(result: dict) -> dict[str, float]:
    """Op name -> CPU ms in the timed encode (`OpCPU`), all layouts together."""
    out: dict[str, float] = defaultdict(float)
    for op in result["op_cpu"]:
        out[op["name"]] += op["cpu_ns"] / 1e6
    return out


def layouts(result: dict) -> dict[tuple[str, str], int]:
    """(top-level aten op, input shapes and contiguity) -> calls in the timed encode."""
    return {(op["name"], op["layout"]): op["count"] for op in result["op_cpu"]}


def report(runs: dict[str, list[dict]], top: int = 15, examples: int = 12) -> str:
    names = list(runs)
    base = names[0]
    lines = []
    codes = {name: {r["codes_sha256"] for r in results} for name, results in runs.items()}
    same = len(set().union(*codes.values())) == 1
    lines.append(f"codes: {'identical on every side and run' if same else 'DIFFER'} "
                 f"({', '.join(f'{n} {sorted(c)[0][:12]}' for n, c in codes.items())})")
    audio_s = runs[base][0]["audio_s"]
    lines.append(f"batch: {audio_s:.1f} s of audio; encode CPU per side (median over runs of each run's median):")
    lines.append(f"{'side':<12} {'runs':>4} {'CPU s':>7} {'user s':>7} {'sys s':>6} {'minflt':>8} "
                 f"{'CPU-s/audio-h':>14} {'ops':>7} {'GFLOP':>8}")
    for name, results in runs.items():
        def med(key, rs=results):
            return statistics.median(statistics.median(t[key] for t in r["timed"]) for r in rs)
        cpu = statistics.median(statistics.median(t["user_s"] + t["sys_s"] for t in r["timed"]) for r in results)
        ops = results[0]["ops"]
        lines.append(f"{name:<12} {len(results):>4} {cpu:>7.3f} {med('user_s'):>7.3f} {med('sys_s'):>6.3f} "
                     f"{med('minflt'):>8.0f} {cpu / audio_s * 3600:>14.1f} {sum(o['count'] for o in ops):>7} "
                     f"{sum(o['flops'] for o in ops) / 1e9:>8.2f}")
    for title, inv_of in (("profiler ops (name, input shapes)", inventory),
                          ("top-level aten ops (name, input shapes, contiguous)", layouts)):
        base_inv = inv_of(runs[base][0])
        for name in names[1:]:
            inv = inv_of(runs[name][0])
            diff = sorted(k for k in set(base_inv) | set(inv) if base_inv.get(k, 0) != inv.get(k, 0))
            lines.append(f"{title}, {base} -> {name}: {sum(base_inv.values())} -> {sum(inv.values())} calls; "
                         f"{len(diff)} keys with different counts" + (":" if diff else " (same ops, same inputs)"))
            for op, shapes in diff[:examples]:
                lines.append(f"    {op:<28} {base_inv.get((op, shapes), 0):>5} -> {inv.get((op, shapes), 0):<5} "
                             f"{shapes[:90]}")
            if len(diff) > examples:
                lines.append(f"    ... {len(diff) - examples} more")
    lines.append(f"CPU per op (thread CPU time in each top-level aten op, ms, median over runs; top {top}):")
    lines.append(f"    {'op':<32}" + "".join(f" {n[:10]:>10}" for n in names)
                 + "".join(f" {n[:8] + '/' + base[:7]:>17}" for n in names[1:]))
    med_ms = {name: {} for name in names}
    for name, results in runs.items():
        per_run = [cpu_ms_by_op(r) for r in results]
        for op in set().union(*per_run):
            med_ms[name][op] = statistics.median(p.get(op, 0.0) for p in per_run)
    order = sorted(set().union(*med_ms.values()), key=lambda op: -max(m.get(op, 0.0) for m in med_ms.values()))
    for op in order[:top]:
        row = f"    {op:<32}" + "".join(f" {med_ms[n].get(op, 0.0):>10.1f}" for n in names)
        a = med_ms[base].get(op, 0.0)
        row += "".join(f" {(med_ms[n].get(op, 0.0) / a if a else float('nan')):>17.3f}" for n in names[1:])
        lines.append(row)
    totals = {n: sum(med_ms[n].values()) for n in names}
    lines.append(f"    {'(all ops)':<32}" + "".join(f" {totals[n]:>10.1f}" for n in names)
                 + "".join(f" {totals[n] / totals[base]:>17.3f}" for n in names[1:]))
    return "\n".join(lines)


def _worker(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--worker", type=Path, required=True)
    p.add_argument("--settings", default="{}")
    args = p.parse_args(argv)
    args.worker.write_text(json.dumps(measure(OpSettings(**json.loads(args.settings)))))


if __name__ == "__main__":
    _worker(sys.argv[1:])
