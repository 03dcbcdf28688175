"""`audiotok <command> ...`: the installed entry point."""

from __future__ import annotations

import sys

COMMANDS = {"tokenize": "jobs.tokenize", "verify": "jobs.verify", "diff": "jobs.diff",
            "gpu-check": "jobs.gpu_check.cli"}
SUMMARIES = {
    "tokenize": "tokenize an audio corpus (folder, glob, tars, manifest, hf:) into codec-token Parquet",
    "verify": "decode-verify a sample of a token dataset and write an HTML report",
    "diff": "compare two token datasets key by key (AGREE exit 0 / DIFFER exit 1) with an HTML page",
    "gpu-check": "check this machine's GPU, precision and throughput before a run",
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {SUMMARIES[name]}" for name in COMMANDS]
    return ("usage: audiotok <command> [options]   (audiotok <command> --help for its options)\n\ncommands:\n"
            + "\n".join(lines) + "\n\nexit status: 0 ok, 1 the job failed, 2 a usage, configuration or input "
            "mistake, 3 tokenize's own verify failed (docs/cli.md)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if not argv:
        print(usage(), file=sys.stderr)
        return 2
    if argv[0] not in COMMANDS:
        print(f"audiotok: unknown command {argv[0]!r}; commands: {', '.join(COMMANDS)} (audiotok --help)",
              file=sys.stderr)
        return 2
    import importlib

    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
