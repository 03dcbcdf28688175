"""A/B of the actor bench between git revisions on one machine, runs alternating.

    trees = {"main": checkout("main", root), "this": Path(".")}
    runs = alternate(trees, ["--kind", "speech", "--minutes", "30"], rounds=3)
    print(summary(runs))

`checkout(ref, root)` makes (or reuses) a detached `git worktree` of `ref` under `root` and copies
this tree's bench files into it (pipeline/bench/, jobs/bench_actor.py), so every side runs the same
bench over its own pipeline. `alternate` runs `python -m jobs.bench_actor ... --json` in each tree
in turn (A B, then B A, ...: drift on a shared machine hits both sides alike), each run a fresh
process whose `pipeline` is imported from its tree (the JSON names the file it came from).
`summary` gives each side's median and range of every process's CPU-s per audio-hour and of the
steady-state × realtime.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from . import corpus

HERE = Path(__file__).resolve().parents[2]
BENCH_FILES = ["pipeline/bench", "jobs/bench_actor.py"]


def checkout(ref: str, root: Path) -> Path:
    """A detached worktree of `ref` under `root` (reused when it is already at that commit), with the bench files."""
    commit = subprocess.run(["git", "rev-parse", ref], cwd=HERE, check=True, capture_output=True,
                            text=True).stdout.strip()
    tree = Path(root) / f"ab-{ref.replace('/', '_')}"
    if tree.exists():
        have = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tree, capture_output=True, text=True).stdout.strip()
        if have != commit:
            subprocess.run(["git", "checkout", "-q", "--detach", commit], cwd=tree, check=True)
    else:
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(tree), commit], cwd=HERE, check=True)
    for rel in BENCH_FILES:
        src, dst = HERE / rel, tree / rel
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    return tree


def alternate(trees: dict[str, Path], bench_args: list[str], rounds: int = 3) -> dict[str, list[dict]]:
    """{side: [bench JSON of each run]}, the sides run in turn, the order reversed every other round."""
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    names = list(trees)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp:
                out = Path(tmp) / "result.json"
                cmd = [sys.executable, "-m", "jobs.bench_actor", *bench_args, "--work", tmp, "--json", str(out)]
                env = {**os.environ, "AUDIOTOK_CORPUS": str(corpus.default_corpus())}  # the same clips
                done = subprocess.run(cmd, cwd=trees[name], capture_output=True, text=True, env=env)
                if done.returncode:
                    raise RuntimeError(f"bench in {trees[name]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
                result = json.loads(out.read_text())
            runs[name].append(result)
            print(f"[ab] round {r + 1} {name}: {result['realtime']:,.0f}x, "
                  + ", ".join(f"{k} {v:.3f}" for k, v in result["cpu_s_per_audio_h"].items()), flush=True)
    return runs


def summary(runs: dict[str, list[dict]]) -> str:
    lines = ["side      runs  metric                        median      (min - max)"]
    for name, results in runs.items():
        metrics: dict[str, list[float]] = {}
        for res in results:
            for role, value in res["cpu_s_per_audio_h"].items():
                metrics.setdefault(f"{role} CPU-s/audio-h", []).append(value)
            for role, value in res.get("sys_s_per_audio_h", {}).items():  # of which in the kernel
                metrics.setdefault(f"{role} sys-s/audio-h", []).append(value)
            for role, value in res.get("minflt_per_audio_h", {}).items():  # page faults: fresh pages
                metrics.setdefault(f"{role} kfaults/audio-h", []).append(value / 1e3)
            metrics.setdefault("steady x realtime", []).append(res["realtime"])
        for metric, values in metrics.items():
            lines.append(f"{name:<9} {len(values):>4}  {metric:<28} {statistics.median(values):>8.3f}"
                         f"   ({min(values):.3f} - {max(values):.3f})")
        lines.append(f"{name:<9} pipeline from {results[0].get('pipeline', '?')}")
    return "\n".join(lines)
