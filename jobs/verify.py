"""python -m jobs.verify --tokens <dir> [--count N | --fraction F] [--seed S] [--bandwidths ...] [--model ...]
    --report <dir>

Exit status: 0 when every check passed, 1 when a threshold failed or a sampled row could not be
verified (each failure is printed), 2 for bad arguments or an unreadable dataset.
Thresholds: the job's `verify` section stored in the dataset's provenance, then --config's
`verify:` section, then the --min-*/--max-* flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import yaml

from pipeline.errors import fail


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="audiotok verify", description="Decode-verify a sample of a token dataset.")
    p.add_argument("--tokens", required=True, help="output directory (or fsspec URL) of jobs.tokenize")
    p.add_argument("--report", required=True, help="local directory for index.html, items.parquet, summary.json")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--count", type=int, help="rows to verify (default 20)")
    size.add_argument("--fraction", type=float, help="fraction of rows to verify, 0..1")
    p.add_argument("--seed", type=int, default=0, help="sample seed (the sample depends only on seed and keys)")
    p.add_argument("--bandwidths", type=float, nargs="+", help="kbps to decode (default: all stored)")
    p.add_argument("--model", help="model source (default: the one recorded in the provenance)")
    p.add_argument("--input", help="input spec of the job, if its shards moved (default: from the provenance)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, help="torch CPU threads (default: the job's cpus_per_actor)")
    p.add_argument("--ray", default="auto", choices=["auto", "inline", "ray"],
                   help="where to run: auto uses Ray actors for more than 64 rows")
    p.add_argument("--num-actors", type=int, default=0)
    p.add_argument("--ray-address", help="Ray cluster to join (default: RAY_ADDRESS, else a local Ray; never one "
                                         "that `ray start` left on this machine unless named, e.g. auto)")
    p.add_argument("--max-media-items", type=int, default=12, help="worst items given spectrograms and players")
    p.add_argument("--storage-options", type=json.loads, default={}, help="fsspec options for the sources (JSON)")
    p.add_argument("--output-storage-options", type=json.loads, default={},
                   help="fsspec options for the tokens output (JSON; the job's output.storage_options)")
    p.add_argument("--config", help="YAML whose verify: section sets thresholds")
    p.add_argument("--min-si-snr", type=float, dest="min_si_snr_db")
    p.add_argument("--max-mel-distance", type=float, dest="max_mel_distance")
    p.add_argument("--min-code-agreement", type=float, dest="min_code_agreement")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pipeline import reader
    from pipeline.config import VerifyConfig
    from pipeline.verify import VerifyOptions
    from pipeline.verify.thresholds import thresholds_from
    from pipeline.verify_on_ray import run_verify

    try:
        provenance = reader.load_provenance(args.tokens, args.output_storage_options)
        thresholds = dataclasses.asdict(thresholds_from(provenance, args.device))
        if args.config:
            with open(args.config) as f:
                section = (yaml.safe_load(f) or {}).get("verify") or {}
            unknown = sorted(set(section) - set(thresholds))
            if unknown:
                raise ValueError(f"unknown verify keys {unknown} in {args.config}; valid: {sorted(thresholds)}")
            thresholds.update(section)
        for name in ("min_si_snr_db", "max_mel_distance", "min_code_agreement"):
            if getattr(args, name) is not None:
                thresholds[name] = getattr(args, name)
        options = VerifyOptions(
            count=args.count if args.count is not None or args.fraction is not None else 20,
            fraction=args.fraction, seed=args.seed, bandwidths=args.bandwidths, model=args.model,
            device=args.device, threads=args.threads, input_spec=args.input, storage_options=args.storage_options,
            output_storage_options=args.output_storage_options,
            max_media_items=args.max_media_items, use_ray=args.ray, num_actors=args.num_actors,
            ray_address=args.ray_address,
        )
        summary = run_verify(args.tokens, args.report, options, VerifyConfig(**thresholds), provenance=provenance)
    except (ValueError, OSError) as exc:  # bad arguments, a missing dataset or config (AudiotokError too)
        return fail("audiotok verify", exc)
    data = summary.to_json()
    shown = {k: data[k] for k in ("passed", "failures", "rows_sampled", "rows_total", "status_counts", "report")}
    if data["streams"]:  # other token streams re-encoded (semantic_codes)
        shown["streams"] = data["streams"]
    print(json.dumps(shown, indent=2))
    return 0 if summary.passed else 1


if __name__ == "__main__":
    sys.exit(main())
