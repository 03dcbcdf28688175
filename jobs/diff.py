"""python -m jobs.diff A B [--min-agreement F] [--scale-rtol R] [--report DIR] [--show N]

Compares two token datasets (output directories or fsspec URLs of jobs.tokenize) key by key
(`pipeline/token_diff.py`). Prints a JSON summary with the worst `--show` keys; `--report DIR`
writes diff.json (every non-identical key) and index.html. Exit status: 0 when they agree (no
missing, duplicate or structurally different key, and code agreement >= --min-agreement, default 1:
identical), 1 when they do not, 2 for bad arguments or a path that is not a token dataset.
"""

from __future__ import annotations

import argparse
import json
import sys

from pipeline.errors import fail


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="audiotok diff", description="Compare two token datasets key by key.")
    p.add_argument("a", help="first dataset (output directory or fsspec URL)")
    p.add_argument("b", help="second dataset")
    p.add_argument("--min-agreement", type=float, default=1.0,
                   help="overall code agreement needed to pass, 0..1 (default 1: identical)")
    p.add_argument("--scale-rtol", type=float, default=0.0, help="relative tolerance of 48 kHz chunk scales")
    p.add_argument("--report", help="directory for diff.json and index.html")
    p.add_argument("--show", type=int, default=10, help="worst keys printed (default 10)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pipeline.token_diff import DiffOptions, diff_datasets
    from pipeline.token_diff_report import codebook_note, write_diff_report

    try:
        result = diff_datasets(args.a, args.b, DiffOptions(args.min_agreement, args.scale_rtol))
        if args.report:
            write_diff_report(args.report, result)
    except (ValueError, OSError) as exc:
        return fail("audiotok diff", exc)
    summary = result.summary()
    summary["keys"] = summary["keys"][: max(args.show, 0)]
    summary["keys_not_identical"] = len(result.keys)
    if args.report:
        summary["report"] = args.report
    note = codebook_note(result)
    if note:
        summary["note"] = note
    print(json.dumps(summary, indent=1, default=str))
    if note:
        print(f"audiotok diff: note: {note}", file=sys.stderr)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
