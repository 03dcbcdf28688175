"""python -m jobs.tokenize --config configs/<preset>.yaml --input <spec> --model <source> --output <dir>
[key=value ...]"""

from __future__ import annotations

import argparse
import json
import sys

from jobs.cli import fail
from pipeline.config import load_config
from pipeline.errors import AudiotokError, ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="audiotok tokenize", description="Tokenize audio into codec tokens in Parquet.")
    p.add_argument("--config", help="YAML config (configs/*.yaml)")
    p.add_argument("--input", required=True,
                   help="directory, glob (**) or brace pattern of audio files or of tars (shard-{000..009}.tar), "
                        "local or fsspec URL; manifest .jsonl/.csv; or hf:<name|dir>")
    p.add_argument("--model", help="model dir, original .th (EnCodec), .pth (DAC) or .safetensors (Mimi) file, hub "
                                   "id, or random:24khz / random:32khz / random:48khz / random:dac_44khz / "
                                   "random:dac_24khz / random:dac_16khz / random:mimi (overrides config; "
                                   "docs/codecs.md)")
    p.add_argument("--output", required=True, help="output directory or fsspec URL")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. bandwidths=[1.5,6] buckets.num_buckets=4")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = list(args.overrides)
    if args.model:
        overrides.append(f"model={json.dumps(args.model)}")
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as exc:
        return fail("audiotok", exc)
    from pipeline.engine.ray_backend import connect_ray
    from pipeline.job import run_job

    started_here = connect_ray()
    try:
        summary = run_job(cfg, args.input, args.output)
    except AudiotokError as exc:  # a user's mistake (exit 2) or a failed job (exit 1): one line, no traceback
        return fail("audiotok", exc)
    finally:
        if started_here:
            import ray

            ray.shutdown()
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
