"""`audiotok <command> ...`: the installed entry point."""

from __future__ import annotations

import sys

COMMANDS = {"tokenize": "jobs.tokenize", "verify": "jobs.verify", "diff": "jobs.diff",
            "gpu-check": "jobs.gpu_check.cli"}


def fail(prog: str, exc: BaseException) -> int:
    """Print a user-facing error in one line and return its exit status (pipeline.errors: 2 for a bad
    configuration, input or argument, 1 for a job that failed)."""
    from pipeline.errors import AudiotokError, ConfigError, InputError, JobFailed, one_line

    status = exc.exit_status if isinstance(exc, AudiotokError) else 2
    kinds = ((ConfigError, "bad configuration: "), (InputError, "bad input: "), (JobFailed, "job failed: "))
    kind = next((name for cls, name in kinds if isinstance(exc, cls)), "")
    print(f"{prog}: {kind}{one_line(exc)}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: audiotok {{{','.join(COMMANDS)}}} ...", file=sys.stderr)
        return 2
    import importlib

    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
