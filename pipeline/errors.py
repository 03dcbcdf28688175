"""The errors a user can cause or meet, in one small hierarchy; entry points map them to exit codes.

    AudiotokError
    ├── ConfigError    a bad configuration value or override (exit status 2)
    ├── InputError     an input spec, path or argument that cannot be used (exit status 2)
    ├── JobFailed      the job ran and failed: a shard, an actor, the cluster (exit status 1)
    └── BadInputError  strict=true: the first rejection fails the job (inside an actor; the job
                       then ends in JobFailed)

Inside the pipeline, `sources.ShardReadError` (a shard to read again) and
`decode_pool.DecoderError` (our decoding code failed) derive from AudiotokError too.

Bad data inside an input is not an error: it is a recorded rejection (`pipeline.rejects`).
"""

from __future__ import annotations

import re
import sys


class AudiotokError(RuntimeError):
    """Base of the errors the entry points report in one line, without a traceback."""

    exit_status = 1


class ConfigError(AudiotokError, ValueError):
    exit_status = 2


class InputError(AudiotokError, ValueError):
    exit_status = 2


class JobFailed(AudiotokError):
    exit_status = 1


class BadInputError(AudiotokError):
    """Raised instead of recording a rejection when the job runs with strict=true."""


def one_line(exc: BaseException | str, limit: int = 600) -> str:
    """The message of `exc` on one line: remote errors carry a whole traceback, and the exception's
    own message starts at its last `SomeError: ...` line; its lines are joined, colours removed."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if _EXCEPTION_LINE.match(line)]
    message = " ".join(lines[starts[-1]:] if starts else lines) or type(exc).__name__
    return message if len(message) <= limit else message[: limit - 3] + "..."


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Failed|Exit|Interrupt)\b[^:\s]*:")


def fail(prog: str, exc: BaseException) -> int:
    """Print a user-facing error in one line and return its exit status (2 for a bad configuration,
    input or argument, 1 for a job that failed); the entry points of `jobs/` end with it."""
    status = exc.exit_status if isinstance(exc, AudiotokError) else 2
    kinds = ((ConfigError, "bad configuration: "), (InputError, "bad input: "), (JobFailed, "job failed: "))
    kind = next((name for cls, name in kinds if isinstance(exc, cls)), "")
    print(f"{prog}: {kind}{one_line(exc)}", file=sys.stderr)
    return status
