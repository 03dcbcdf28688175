"""Manifests: a .jsonl or .csv file listing audio files (`cfg.path_column`) and their metadata.

A shard is a run of `cfg.manifest_rows_per_shard` consecutive rows, found again by its byte offset,
so reading one shard never parses the whole manifest. Relative paths are relative to the manifest.
A row's key follows `common.derive_key` on its path as written (`audio/spk1/0001.flac` -> `audio/spk1/0001`).
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..config import SourceConfig
from ..errors import InputError
from ..records import Sample, Shard
from .common import ShardReadError, dedupe, derive_key, ext_of, fetch, is_remote, keep_meta, shard_id_for
from .timed_read import open_timed


@dataclass(frozen=True)
class ManifestRows:
    """Options of a manifest shard: `rows` records from byte `offset` (row index `first_row`) of
    `manifest`; `columns` is the CSV header, None for JSONL."""

    manifest: str
    offset: int
    rows: int
    first_row: int
    columns: tuple[str, ...] | None


def _records(f, is_csv: bool) -> Iterator[tuple[int, Any]]:
    """(byte offset, record) of each non-blank record, from the binary file's current position.

    JSONL records are raw lines; CSV records are field lists (quoted newlines allowed).
    """
    pos = [f.tell()]

    def lines():
        for line in f:
            pos[0] += len(line)
            yield line if not is_csv else line.decode("utf-8", "replace")

    if not is_csv:
        for line in lines():
            if line.strip():
                yield pos[0] - len(line), line
        return
    reader = csv.reader(lines())
    while True:
        start = pos[0]
        record = next(reader, None)
        if record is None:
            return
        if record:
            yield start, record


def list_manifest(url: str, cfg: SourceConfig) -> list[Shard]:
    """One pass over the manifest: shards of cfg.manifest_rows_per_shard rows with their byte offsets."""
    is_csv = url.lower().endswith(".csv")
    step = max(1, cfg.manifest_rows_per_shard)
    groups: list[list[int]] = []  # [byte offset, rows, first row index]
    columns = None
    try:
        f = open_timed(url, cfg.storage_options, cfg.read_timeout_s)
    except FileNotFoundError as exc:
        raise InputError(f"manifest {url!r} does not exist") from exc
    with f:
        records = _records(f, is_csv)
        if is_csv:
            header = next(records, (0, []))[1]
            columns = [c.lstrip("\ufeff").strip() for c in header]
            if header and cfg.path_column not in columns:
                raise InputError(f"manifest {url!r} has no column {cfg.path_column!r} (source.path_column); "
                                 f"columns: {columns}")
        for n, (offset, record) in enumerate(records):
            if n == 0 and not is_csv:
                _check_first_json_row(url, record, cfg)
            if n % step == 0:
                groups.append([offset, 0, n])
            groups[-1][1] += 1
    shards = []
    for offset, rows, first in groups:
        shard_url = f"{url}#rows={first}-{first + rows}"
        options = ManifestRows(url, offset, rows, first, None if columns is None else tuple(columns))
        shards.append(Shard(shard_id_for(shard_url), shard_url, "manifest", options))
    return shards


def _check_first_json_row(url: str, line: bytes, cfg: SourceConfig) -> None:
    try:
        row = json.loads(line)
    except ValueError:
        return
    if isinstance(row, dict) and cfg.path_column not in row:
        raise InputError(f"manifest {url!r}: first row has no {cfg.path_column!r} (source.path_column); "
                         f"keys: {sorted(row)}")


def read_manifest(shard: Shard, cfg: SourceConfig) -> Iterator[Sample]:
    opts = shard.options
    url, columns = opts.manifest, opts.columns
    try:
        with open_timed(url, cfg.storage_options, cfg.read_timeout_s) as f:
            f.seek(opts.offset)
            records = list(itertools.islice(_records(f, columns is not None), opts.rows))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ShardReadError(f"shard {shard.shard_id} ({shard.url}): {type(exc).__name__}: {exc}") from exc
    if len(records) != opts.rows:
        raise ShardReadError(f"shard {shard.shard_id} ({shard.url}): manifest changed since it was listed")
    base = posixpath.dirname(url) if is_remote(url) else os.path.dirname(url)
    seen: dict[str, int] = {}
    for index, (_, record) in enumerate(records, start=opts.first_row):
        yield _manifest_sample(_row(record, columns), index, base, shard, seen, cfg)


def _row(record: Any, columns: tuple[str, ...] | None) -> dict[str, Any] | None:
    if columns is not None:
        return dict(zip(columns, record))
    try:
        row = json.loads(record)
    except ValueError:
        return None
    return row if isinstance(row, dict) else None


def _manifest_sample(row, index: int, base: str, shard: Shard, seen: dict[str, int], cfg: SourceConfig) -> Sample:
    row = row or {}
    path = str(row.get(cfg.path_column) or "")
    key, dup = dedupe(derive_key(row, path, index, shard, cfg), seen)
    meta = keep_meta(row, cfg)
    if dup:
        return Sample(key, shard.url, None, ext_of(path), meta, dup)
    if not path:
        why = f"no {cfg.path_column!r} value" if row else "empty, or not a JSON object"
        return Sample(key, shard.url, None, "", meta, ("missing_audio", f"manifest row {index}: {why}"))
    if "://" not in path and not path.startswith(("pipe:", "data:")) and not os.path.isabs(path):
        path = posixpath.join(base, path) if is_remote(base) else os.path.join(base, path)
    data, reject = fetch(path, cfg)
    return Sample(key, shard.url, data, ext_of(path), meta, reject, path)
