"""`audiotok <command> ...`: the installed entry point."""

from __future__ import annotations

import sys

COMMANDS = {"tokenize": "jobs.tokenize", "verify": "jobs.verify", "diff": "jobs.diff",
            "gpu-check": "jobs.gpu_check.cli"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: audiotok {{{','.join(COMMANDS)}}} ...", file=sys.stderr)
        return 2
    import importlib

    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
