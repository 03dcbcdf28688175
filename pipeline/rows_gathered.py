"""The row-index files of the committed shards, gathered a thousand shards to a file, cached by fingerprint.

    <out>/_row_index/<fingerprint>.parquet    the row-index rows (`shard_rows`) of up to GROUP_SHARDS
                                              consecutive committed shards (sorted shard ids), shard after shard

The committed shards, in sorted order, are cut into groups of GROUP_SHARDS; a group's fingerprint
hashes each of its shard ids with the sizes of its row-index and tokens files and its commit time,
so a shard committed again, added or removed gives its group a new fingerprint (and a new file),
while the files of the other groups are reused. Reading the row index of a million shards is then
~1,000 reads instead of a million. The first reader of a group that has no gathered file yet reads
its shards' row-index files (all at once: `fs.cat`, in parallel on object stores) and writes the
gathered file (best effort: on a read-only output it only warns). Shards without a row-index file
(outputs written before it) get their rows from the tokens part, as before: one read per part.
Gathered files of earlier committed sets are not removed (a reader may still use them).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from . import manifest_snapshot, shard_files, shard_rows, writer
from .records import ShardRecord

log = logging.getLogger(__name__)

FOLDER = "_row_index"
GROUP_SHARDS = 1000
_GROUPS_AT_ONCE = 8  # groups whose files are fetched in one parallel `cat`


@dataclass(frozen=True)
class RowChunk:
    """The row-index rows of consecutive committed shards `shard_ids` (sorted), shard after shard;
    part_columns: the columns that every one of their tokens parts has (None: not known)."""

    shard_ids: list[str]
    table: pa.Table
    part_columns: list[str] | None


def group_fingerprint(records: list[ShardRecord]) -> str:
    digest = hashlib.sha256(f"rows v{shard_rows.VERSION}\n".encode())
    for r in records:
        sizes = [shard_files.size(r.files, k) for k in (writer.ROWS, "tokens")]
        digest.update(f"{r.shard_id}\t{sizes[0]}\t{sizes[1]}\t{r.finished_at!r}\n".encode())
    return digest.hexdigest()[:32]


def _has_rows_file(record: ShardRecord) -> bool:
    return writer.ROWS in record.files


def _from_part(fs, root: str, record: ShardRecord) -> pa.Table:
    """An output written before the row index: the shard's rows from its tokens part (one read of it)."""
    part = writer.part_name("tokens", record.shard_id)
    with fs.open(f"{root}/{part}", "rb") as f:
        pf = pq.ParquetFile(f)
        names = pf.schema_arrow.names
        wanted = ["key", *(c for c in shard_rows.STREAMS.values() if c in names)]
        table = pf.read(columns=wanted)
        sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]
    frames = {s: table.column(c).combine_chunks() for s, c in shard_rows.STREAMS.items() if s in names and c in names}
    return shard_rows.rows_table(table.column("key").to_pylist(), frames, record.encode_batches, part, sizes, names)


def _same_schema(tables: list[pa.Table]) -> list[pa.Table]:
    """Row-index tables with their metadata dropped and `part` a plain string, ready to concatenate."""
    out = []
    for t in tables:
        t = t.replace_schema_metadata(None)
        i = t.schema.get_field_index("part")
        if pa.types.is_dictionary(t.schema.field(i).type):
            t = t.set_column(i, "part", t.column(i).cast(pa.string()))
        out.append(t)
    return out


def _common_columns(tables: list[pa.Table]) -> list[str] | None:
    common = None
    for t in tables:
        names = shard_rows.part_columns(t)
        if names is None:
            return None
        common = names if common is None else [n for n in common if n in names]
    return common


def _parquet(blob: bytes, what: str) -> pa.Table | None:
    """The Parquet file `blob`, None (with a warning) when it is not one (truncated, overwritten)."""
    try:
        return pq.read_table(io.BytesIO(blob), use_threads=False)
    except (pa.ArrowException, OSError, ValueError) as exc:
        log.warning("%s is not a readable Parquet file (%s: %s)", what, type(exc).__name__, exc)
        return None


def _gather(fs, root: str, records: list[ShardRecord], blobs: dict[str, bytes]) -> pa.Table:
    tables = []
    for r in records:
        blob = blobs.get(f"{root}/{shard_rows.file_name(r.shard_id)}") if _has_rows_file(r) else None
        table = _parquet(blob, f"shard {r.shard_id}'s row-index file") if blob is not None else None
        if table is None and _has_rows_file(r):
            log.warning("shard %s: its row-index file cannot be read; indexing its tokens part instead", r.shard_id)
        tables.append(table if table is not None else _from_part(fs, root, r))
    columns = _common_columns(tables)
    table = pa.concat_tables(_same_schema(tables), promote_options="default") if tables else None
    meta = {shard_rows.VERSION_KEY: str(shard_rows.VERSION).encode()}
    if columns is not None:
        meta[shard_rows.PART_COLUMNS_KEY] = json.dumps(columns).encode()
    return table.replace_schema_metadata(meta)


class _Writer:
    """Writes gathered files; after the first failure (a read-only output) it only warns once."""

    def __init__(self, fs, root: str, enabled: bool):
        self.fs, self.root, self.enabled = fs, root, enabled

    def put(self, name: str, table: pa.Table) -> None:
        if not self.enabled:
            return
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        final = f"{self.root}/{FOLDER}/{name}"
        tmp = f"{self.root}/{FOLDER}/{writer.TMP_PREFIX}{name}-{uuid.uuid4().hex}"
        try:
            self.fs.makedirs(f"{self.root}/{FOLDER}", exist_ok=True)
            self.fs.pipe_file(tmp, buf.getvalue())
            self.fs.mv(tmp, final)
        except OSError as exc:
            self.enabled = False
            log.warning("cannot write the gathered row index under %s/%s (%s); reading the shards' files instead",
                        self.root, FOLDER, exc)


def _cat(fs, paths: list[str]) -> dict[str, bytes]:
    if not paths:
        return {}
    if isinstance(fs, LocalFileSystem):
        out = {}
        for p in paths:
            try:
                out[p] = fs.cat_file(p)
            except OSError:
                pass
        return out
    got = fs.cat(paths, on_error="omit")
    return got if isinstance(got, dict) else {paths[0]: got}


def _groups(records: dict[str, ShardRecord]) -> list[list[ShardRecord]]:
    ids = sorted(records)
    return [[records[s] for s in ids[i : i + GROUP_SHARDS]] for i in range(0, len(ids), GROUP_SHARDS)]


def _present(fs, root: str) -> set[str]:
    """The names of the gathered files there (listed afresh)."""
    fs.invalidate_cache(f"{root}/{FOLDER}")
    try:
        return {e.rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(f"{root}/{FOLDER}", detail=False)}
    except FileNotFoundError:
        return set()


def chunks(out_dir: str, records: dict[str, ShardRecord], write: bool = True,
           storage_options: dict | None = None) -> Iterator[RowChunk]:
    """The row-index rows of the committed shards `records` ({shard id: record}, e.g.
    `writer.committed_shards(out_dir)`), a group of GROUP_SHARDS shards at a time in sorted shard order.
    write: write the gathered file of a group that has none yet."""
    fs, root = manifest_snapshot.filesystem(out_dir, storage_options)
    groups = _groups(records)
    if not groups:
        return
    present = _present(fs, root)
    out = _Writer(fs, root, write)
    for w in range(0, len(groups), _GROUPS_AT_ONCE):
        window = groups[w : w + _GROUPS_AT_ONCE]
        names = [f"{group_fingerprint(g)}.parquet" for g in window]
        gathered = _cat(fs, [f"{root}/{FOLDER}/{n}" for n, g in zip(names, window) if n in present])
        missing = [g for n, g in zip(names, window) if f"{root}/{FOLDER}/{n}" not in gathered]
        singles = _cat(fs, [f"{root}/{shard_rows.file_name(r.shard_id)}" for g in missing for r in g
                            if _has_rows_file(r)])
        for name, group in zip(names, window):
            blob = gathered.get(f"{root}/{FOLDER}/{name}")
            table = _parquet(blob, f"{root}/{FOLDER}/{name}") if blob is not None else None
            if table is None:
                if blob is not None:  # a broken gathered file: gathered again from the shards' files
                    singles = {**singles, **_cat(fs, [f"{root}/{shard_rows.file_name(r.shard_id)}" for r in group
                                                      if _has_rows_file(r)])}
                table = _gather(fs, root, group, singles)
                out.put(name, table)
            yield RowChunk([r.shard_id for r in group], table, shard_rows.part_columns(table))


def gather(out_dir: str, records: dict[str, ShardRecord] | None = None, storage_options: dict | None = None) -> int:
    """Write the gathered row-index files of `out_dir`'s committed shards (`records`, default
    `writer.committed_shards(out_dir)`) that are missing, reading only the row-index files of their
    groups (a group whose file is there is not read): the job calls it at its end, so that the
    trainer's first index build finds them. Returns the number of files written."""
    if records is None:
        records = writer.committed_shards(out_dir, storage_options=storage_options)
    fs, root = manifest_snapshot.filesystem(out_dir, storage_options)
    groups = _groups(records)
    present = _present(fs, root) if groups else set()
    out = _Writer(fs, root, True)
    written = 0
    for w in range(0, len(groups), _GROUPS_AT_ONCE):
        window = [(f"{group_fingerprint(g)}.parquet", g) for g in groups[w : w + _GROUPS_AT_ONCE]]
        window = [(n, g) for n, g in window if n not in present]
        singles = _cat(fs, [f"{root}/{shard_rows.file_name(r.shard_id)}" for _, g in window for r in g
                            if _has_rows_file(r)])
        for name, group in window:
            if not out.enabled:
                return written
            out.put(name, _gather(fs, root, group, singles))
            written += out.enabled
    return written
