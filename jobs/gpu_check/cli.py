"""python -m jobs.gpu_check [--cpu] [--data DIR] [--json PATH] [--work DIR] [--budget-s S] [--skip SECTION ...]
python -m jobs.gpu_check --prepare DIR [--bundle site.tar.xz | --no-bundle]

Runs every check of pipeline/bench/gpu_check (see its __init__.py), prints one row per check as it finishes and the
whole table at the end, and keeps the JSON at --json up to date after every row. Exit status: 0 when
no check raised (rows may still say FAIL: a measured result outside its target, OOM, or TIMEOUT: a row
run in a child process and stopped at its limit), 1 when one
raised (ERROR), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pipeline.bench.gpu_check.sizes import SECTIONS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="audiotok gpu-check", description="One-shot GPU check (CPU mode: smaller sizes).")
    p.add_argument("--cpu", action="store_true", help="CPU mode with small sizes (the default without CUDA)")
    p.add_argument("--data", default=".gpucheck", help="folder made by --prepare (its corpus/ is used when present)")
    p.add_argument("--json", default="gpu_check.json", help="where the JSON goes (rewritten after every row)")
    p.add_argument("--work", help="scratch folder for corpora and job outputs (default: a new temp folder)")
    p.add_argument("--budget-s", type=float, help="rows not started by then are skipped (GPU 285, CPU 900)")
    p.add_argument("--skip", nargs="*", default=[], choices=SECTIONS, help="sections not to run")
    p.add_argument("--minutes", type=float, nargs=2, metavar=("SPEECH", "MUSIC"),
                   help="end-to-end corpus minutes, at least (GPU 600 180; CPU 0.1 and no music); 0 skips a kind")
    p.add_argument("--prepare", metavar="DIR", help="build the data folder DIR instead of checking")
    bundle = p.add_mutually_exclusive_group()
    bundle.add_argument("--bundle", help="with --prepare: copy this site.tar.xz instead of building one")
    bundle.add_argument("--no-bundle", action="store_true", help="with --prepare: no package bundle")
    return p


def main(argv: list[str] | None = None) -> int:
    # no hub, no dataset downloads: the check runs on machines without outside network (set before any import)
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    args = build_parser().parse_args(argv)
    if args.prepare:
        from pipeline.bench.gpu_check.prepare import prepare

        try:
            prepare(Path(args.prepare), None if args.no_bundle else (args.bundle or "build"))
        except (ValueError, OSError) as exc:
            print(f"audiotok gpu-check: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.budget_s is not None and args.budget_s <= 0:
        print("audiotok gpu-check: --budget-s must be > 0", file=sys.stderr)
        return 2
    corpus = Path(args.data) / "corpus"
    if corpus.is_dir():
        os.environ["AUDIOTOK_CORPUS"] = str(corpus.resolve())
    from pipeline.bench.gpu_check.run import run_all

    return run_all(args)
