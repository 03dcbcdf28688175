"""What the verify report shows besides the checks: the transcripts of the rows shown and the job's rejects."""

from __future__ import annotations

from dataclasses import dataclass, field

import fsspec
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import reader, writer


@dataclass(frozen=True)
class Reject:
    """One input item the job recorded as rejected (rejects/part-*.parquet)."""

    key: str
    source: str
    reason: str
    detail: str


def column_by_key(tokens: str, keys: list[str], column: str, storage_options: dict | None = None) -> dict[str, str]:
    """{key: value} of a string `column` for those of `keys` with a non-empty value (none when the
    dataset has no such column: older datasets lack item_path, most lack text)."""
    if not keys:
        return {}
    dataset = reader.arrow_dataset(tokens, storage_options)
    if column not in dataset.schema.names:
        return {}
    table = dataset.to_table(columns=["key", column], filter=pc.field("key").isin(keys))
    return {k: v for k, v in zip(table.column("key").to_pylist(), table.column(column).to_pylist()) if v}


def transcripts(tokens: str, keys: list[str], storage_options: dict | None = None) -> dict[str, str]:
    return column_by_key(tokens, keys, "text", storage_options)


def job_rejects(tokens: str, storage_options: dict | None = None) -> list[Reject]:
    """Every rejection the job committed, in shard then row order."""
    out = []
    for part in writer.committed_parts(tokens, "rejects", storage_options):
        with fsspec.open(part, "rb", **(storage_options or {})) as f:
            rows = pq.read_table(f).to_pylist()
        out += [Reject(r["key"], r["source"], r["reason"], r["detail"]) for r in rows]
    return out


@dataclass(frozen=True)
class JobContext:
    """The job's side of the report: transcripts and item paths by key (rows shown with media), its rejects."""

    transcripts: dict[str, str] = field(default_factory=dict)
    rejects: list[Reject] = field(default_factory=list)
    item_paths: dict[str, str] = field(default_factory=dict)
