"""A committed shard's files as its manifest record lists them (`ShardRecord.files`), held compactly.

A record's `files` is, in its JSON, `{kind: {"path": relative path, "bytes": size}}` for the kinds
`tokens`, `rejects` (the part files) and `rows` (the row-index file). The paths are those the shard
id gives (`path`), so a driver holding a million records needs only the sizes: `ShardFiles` keeps
the shard id (the record's own string) and the three sizes, and reads as the mapping it stands for
(`files["tokens"]["bytes"]`, `"rows" in files`, `to_json()`). A `files` map that is not of this
form (another path, another key, a size that is not an integer) is kept as the dict it is.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from typing import Any

KINDS = ("tokens", "rejects", "rows")


def affixes(kind: str) -> tuple[str, str]:
    """(prefix, suffix) of the file names of `kind` around the shard id, in the folder named `kind`."""
    return ("", ".parquet") if kind == "rows" else ("part-", ".parquet")


def path(kind: str, shard_id: str) -> str:
    """Relative path of a shard's file of `kind`: `tokens/part-<shard_id>.parquet` (tokens | rejects),
    `rows/<shard_id>.parquet` (rows)."""
    prefix, suffix = affixes(kind)
    return f"{kind}/{prefix}{shard_id}{suffix}"


class ShardFiles(Mapping):
    """{kind: {"path", "bytes"}} of a shard's files, held as their sizes (None: the kind is absent)."""

    __slots__ = ("shard_id", "tokens", "rejects", "rows")

    def __init__(self, shard_id: str, tokens: int | None, rejects: int | None, rows: int | None):
        self.shard_id, self.tokens, self.rejects, self.rows = shard_id, tokens, rejects, rows

    def size(self, kind: str) -> int | None:
        return getattr(self, kind) if kind in KINDS else None

    def __getitem__(self, kind: str) -> dict[str, Any]:
        size = self.size(kind)
        if size is None:
            raise KeyError(kind)
        return {"path": path(kind, self.shard_id), "bytes": size}

    def __iter__(self) -> Iterator[str]:
        return (k for k in KINDS if getattr(self, k) is not None)

    def __len__(self) -> int:
        return sum(getattr(self, k) is not None for k in KINDS)

    def __contains__(self, kind: object) -> bool:
        return isinstance(kind, str) and self.size(kind) is not None

    def to_json(self) -> dict[str, dict[str, Any]]:
        return {k: self[k] for k in self}

    def __repr__(self) -> str:
        return f"ShardFiles({self.to_json()!r})"

    def __reduce__(self):
        return ShardFiles, (self.shard_id, self.tokens, self.rejects, self.rows)


def compact(shard_id: str, files: Mapping) -> Mapping:
    """`files` as a `ShardFiles` when it is of the form the commit writes, else as a dict (its names interned)."""
    if isinstance(files, ShardFiles) and files.shard_id == shard_id:
        return files
    sizes = dict.fromkeys(KINDS)
    for kind, entry in files.items():
        if (kind not in sizes or not isinstance(entry, Mapping) or set(entry) != {"path", "bytes"}
                or entry["path"] != path(kind, shard_id) or type(entry["bytes"]) is not int):
            return {sys.intern(k): {sys.intern(a): b for a, b in v.items()} if isinstance(v, Mapping) else v
                    for k, v in files.items()}
        sizes[kind] = entry["bytes"]
    return ShardFiles(shard_id, **sizes)


def as_json(files: Mapping) -> dict:
    """A record's `files` as plain JSON data."""
    return files.to_json() if isinstance(files, ShardFiles) else {
        k: dict(v) if isinstance(v, Mapping) else v for k, v in files.items()}


def size(files: Mapping, kind: str) -> int | None:
    """The size a record's `files` gives for `kind` (None: not given)."""
    if isinstance(files, ShardFiles):
        return files.size(kind)
    entry = files.get(kind)
    return entry.get("bytes") if isinstance(entry, Mapping) else None
