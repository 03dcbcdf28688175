"""python -m jobs.tokenize --config configs/<preset>.yaml --input <spec> --model <source> --output <dir>
[--ray-address <addr>] [key=value ...]"""

from __future__ import annotations

import argparse
import json
import sys

from pipeline.config import load_config
from pipeline.errors import AudiotokError, fail
from pipeline.preflight import preflight

VERIFY_FAILED = 3  # exit status: the job's verify step failed; its tokens stay committed


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
    p.add_argument("--ray-address", help="Ray cluster to join, e.g. host:6379 or auto (the one `ray start` "
                                         "started here); default: RAY_ADDRESS, else a local Ray of this job's own")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. bandwidths=[1.5,6] buckets.num_buckets=4")
    return p


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 done, 1 the job failed, 2 a usage, configuration or input mistake (found before Ray
    starts where it can be), 3 the job's own verify step failed (its tokens stay committed); docs/cli.md."""
    args = build_parser().parse_args(argv)
    overrides = list(args.overrides)
    if args.model:  # a model named on the command line must load or fail: no fallback to another
        overrides += [f"model={json.dumps(args.model)}", "model_fallback=null"]
    if args.ray_address:
        overrides.append(f"ray_address={json.dumps(args.ray_address)}")
    try:
        cfg = load_config(args.config, overrides)
        checked = preflight(cfg, args.input, args.output, _stderr)
    except (AudiotokError, OSError) as exc:
        return fail("audiotok", exc)
    from pipeline.engine.ray_backend import connect_ray, shutdown_ray
    from pipeline.job import run_job

    started_here = False
    try:
        started_here = connect_ray(address=cfg.ray_address)
        summary = run_job(cfg, args.input, args.output, shards=checked.shards, state=checked.state)
    except AudiotokError as exc:  # a user's mistake (exit 2) or a failed job (exit 1): one line, no traceback
        return fail("audiotok", exc)
    finally:
        if started_here:
            shutdown_ray()
    print(json.dumps(summary.to_json(), indent=2))
    checked = summary.verify
    if checked is not None and not checked.passed:
        print(f"audiotok: verify FAILED on {len(checked.failures)} check(s); the tokens are committed; report: "
              f"{checked.report}", file=sys.stderr)
        return VERIFY_FAILED
    return 0


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
