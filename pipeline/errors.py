"""The errors a user can cause or meet, in one small hierarchy; entry points map them to exit codes.

    AudiotokError
    ├── ConfigError    a bad configuration value or override (exit status 2)
    ├── InputError     an input spec, path or argument that cannot be used (exit status 2)
    └── JobFailed      the job ran and failed: a shard, an actor, the cluster (exit status 1)

Bad data inside an input is not an error: it is a recorded rejection (`pipeline.rejects`).
"""

from __future__ import annotations


class AudiotokError(RuntimeError):
    """Base of the errors the entry points report in one line, without a traceback."""

    exit_status = 1


class ConfigError(AudiotokError, ValueError):
    exit_status = 2


class InputError(AudiotokError, ValueError):
    exit_status = 2


class JobFailed(AudiotokError):
    exit_status = 1
