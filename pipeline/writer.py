"""Atomic shard commit and the manifest of finished shards.

Layout under the output directory (a local path or an fsspec URL):

  tokens/part-<shard_id>.parquet    the shard's token rows
  rejects/part-<shard_id>.parquet   its rejections (always written, maybe 0 rows)
  rows/<shard_id>.parquet           its row index: per row key, frames, part, row, encode batch
                                    (`shard_rows`; outputs written before it have none)
  _manifest/<shard_id>.json         the commit point: one record per finished shard, written last
  _manifest/_snapshot/              the compacted manifest: all committed records in one file, read
                                    with the records newer than it (`manifest_snapshot`)
  _provenance.json                  model and config, outside Parquet too (datasets drops file metadata)
  _summary.json                     the last run's summary (`write_summary`)

Files are first written next to their final name as `.tmp-<shard_id>-<uuid>` (a dot-file with
no extension: pyarrow.dataset, datasets, Spark and `*.parquet` globs all skip it), then renamed
into place: tokens, rejects, the row index, and last the manifest record (counts only: the
per-row details, encode batches included, are in the row index). A crash before the last rename leaves
parts without a record; `cleanup_uncommitted` deletes them (and temp files), so a re-run redoes
that shard and no row appears twice.

Guarantees by filesystem:
  local (POSIX)  each file is fsynced before `os.replace` and each directory after it, so a
                 record is durable only after its parts are. Per file atomic; the shard is
                 committed exactly when its record exists.
  s3, gs, az     an object appears whole or not at all, but a "rename" is copy + delete: a part
                 can be visible before its record, and a crash can leave a `.tmp-*` object.
                 Readers that need exactly-once while a job runs (or after a crash, before
                 `cleanup_uncommitted`) should read only `committed_parts(out_dir)`.
  memory, other  as the filesystem's `mv` allows; the record is still written last.
Off the local disk, files are staged in a local temp directory (not fsynced: a crash loses only
the staging) and uploaded next to their final name before the rename. Listings are never served
from fsspec's listing cache. Named fault stage (`pipeline.fault_injection`): between_renames, just before
the manifest record's rename.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import tempfile
import time
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from . import fault_injection, manifest_snapshot, shard_files, shard_rows, size_listing
from .config import OutputConfig
from .errors import InputError
from .records import ShardRecord
from .schema import CORE_COLUMNS, FORMAT_VERSION, REJECTS_SCHEMA, REQUIRED_PROVENANCE, tokens_schema

log = logging.getLogger(__name__)

PARTS = ("tokens", "rejects")
ROWS = shard_rows.FOLDER  # the row-index file's kind in a record's `files`
MANIFEST = "_manifest"
PROVENANCE = "_provenance.json"
RUN_MARKER = "_run.json"  # written by the driver at start; actors check they see it
SUMMARY = "_summary.json"
TMP_PREFIX = ".tmp-"
_SHARD_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")
_LEVELED = {"zstd", "gzip", "brotli"}


def _fs(out_dir: str, storage_options: dict | None = None):
    return manifest_snapshot.filesystem(out_dir, storage_options)


def part_name(kind: str, shard_id: str) -> str:
    """Relative path of a shard's part file: `tokens/part-<shard_id>.parquet` (kind: tokens | rejects)."""
    return shard_files.path(kind, shard_id)


def _write_parquet(path: str, table: pa.Table, metadata: dict, cfg: OutputConfig, sync: bool) -> None:
    write_parquet_file(path, table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata}), cfg, sync)


def write_parquet_file(path: str, table: pa.Table, cfg: OutputConfig, sync: bool) -> None:
    """`table` (its schema metadata included) as a Parquet file at `path` with `cfg`'s compression."""
    level = cfg.compression_level if cfg.compression in _LEVELED else None
    with open(path, "wb") as f:
        pq.write_table(table, f, compression=cfg.compression, compression_level=level,
                       row_group_size=max(1, cfg.row_group_rows), use_dictionary=True)
        if sync:
            f.flush()
            os.fsync(f.fileno())


def _write_bytes(path: str, data: bytes, sync: bool) -> None:
    with open(path, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())


def _plain(value):
    return value.item() if hasattr(value, "item") else str(value)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_inputs(shard_id: str, tokens: pa.Table, rejects: pa.Table, record: ShardRecord) -> None:
    if not _SHARD_ID.fullmatch(shard_id) or shard_id.startswith(TMP_PREFIX[1:]):
        raise ValueError(f"shard_id {shard_id!r} must match {_SHARD_ID.pattern} and not start with 'tmp-'")
    if record.shard_id != shard_id:
        raise ValueError(f"manifest record for {shard_id!r} names shard {record.shard_id!r}")
    if record.rows != tokens.num_rows or record.rejects != rejects.num_rows:
        raise ValueError(f"record counts ({record.rows} rows, {record.rejects} rejects) differ from "
                         f"the tables ({tokens.num_rows}, {rejects.num_rows})")
    core = tokens_schema([])
    if tokens.schema.names[: len(CORE_COLUMNS)] != list(CORE_COLUMNS) or not all(
            tokens.schema.field(n).type == core.field(n).type for n in CORE_COLUMNS):
        raise ValueError(f"tokens table does not follow schema.tokens_schema: {tokens.schema}")
    if not rejects.schema.equals(REJECTS_SCHEMA):
        raise ValueError(f"rejects table does not follow schema.REJECTS_SCHEMA: {rejects.schema}")


def commit_shard(out_dir: str, shard_id: str, tokens: pa.Table, rejects: pa.Table, record: ShardRecord,
                 metadata: dict, cfg: OutputConfig, write_parquet=None) -> ShardRecord:
    """Write a shard's tokens, rejects, row index and manifest record so that it is committed all at once.

    metadata: Parquet key/value metadata for both files (see `schema.file_metadata`).
    write_parquet(path, table, metadata, cfg, sync): writes one Parquet file (default: in this
    process; `parquet_process.ParquetProcess.write` builds it in a helper process).
    record: `rows`/`rejects` equal to the tables' row counts; the committed record adds
    `finished_at` (unix seconds, unless given), `format_version` and `files` ({kind: {"path":
    relative path, "bytes": size}} for tokens, rejects and rows); its `encode_batches` go to the
    row-index file (`shard_rows`), the committed record keeps none (the count stays in `batches`).
    Returns the committed record. A commit that fails removes the part files (and row index) it
    already moved into place, so readers never see a shard without its record.
    """
    _check_inputs(shard_id, tokens, rejects, record)
    fs, root = _fs(out_dir, cfg.storage_options)
    tag = f"{TMP_PREFIX}{shard_id}-{uuid.uuid4().hex}"
    names = {**{kind: part_name(kind, shard_id) for kind in PARTS}, ROWS: shard_rows.file_name(shard_id)}
    finals = {kind: f"{root}/{name}" for kind, name in names.items()}
    finals[MANIFEST] = f"{root}/{MANIFEST}/{shard_id}.json"
    temps = {kind: f"{final.rsplit('/', 1)[0]}/{tag}" for kind, final in finals.items()}
    local = isinstance(fs, LocalFileSystem)
    for final in finals.values():
        fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
    # off the local disk, files are staged in a temp directory first (none is made for a local commit)
    with contextlib.nullcontext() if local else tempfile.TemporaryDirectory(prefix="audiotok-") as spool:
        staged = temps if local else {kind: os.path.join(spool, kind) for kind in temps}
        try:
            for kind, table in zip(PARTS, (tokens, rejects)):
                (write_parquet or _write_parquet)(staged[kind], table, metadata, cfg, local)
            _write_row_index(staged[ROWS], tokens, record, names["tokens"], staged["tokens"], local)
            files = {k: {"path": names[k], "bytes": os.path.getsize(staged[k])} for k in (*PARTS, ROWS)}
            committed = dataclasses.replace(record, finished_at=record.finished_at or time.time(),
                                            format_version=FORMAT_VERSION, files=files, encode_batches=[])
            record_blob = json.dumps(committed.to_json(), indent=1, sort_keys=True, default=_plain).encode()
            _write_bytes(staged[MANIFEST], record_blob, sync=local)
            for kind in (*PARTS, ROWS, MANIFEST):
                if kind == MANIFEST:
                    fault_injection.maybe_fault("between_renames", shard_id)
                if local:
                    os.replace(temps[kind], finals[kind])
                    _fsync_dir(os.path.dirname(finals[kind]))
                else:
                    fs.put_file(staged[kind], temps[kind])
                    fs.mv(temps[kind], finals[kind])
        except BaseException:
            _remove_uncommitted_parts(fs, finals)
            raise
        finally:
            for path in temps.values():
                try:
                    if local:
                        if os.path.lexists(path):
                            os.remove(path)
                    elif fs.exists(path):
                        fs.rm(path)
                except OSError:
                    log.warning("could not remove temp file %s", path)
    return committed


def _write_row_index(path: str, tokens: pa.Table, record: ShardRecord, part: str, written_part: str,
                     sync: bool) -> None:
    """The shard's row-index file (`shard_rows`) at `path`, its row groups read from the part as written."""
    meta = pq.read_metadata(written_part)
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    table = shard_rows.from_tokens(tokens, record.encode_batches, part, sizes)
    with open(path, "wb") as f:
        pq.write_table(table, f, compression="zstd")
        if sync:
            f.flush()
            os.fsync(f.fileno())


def _remove_uncommitted_parts(fs, finals: dict[str, str]) -> None:
    """After a failed commit: delete the shard's part files unless its manifest record exists (best
    effort: what cannot be removed now, `cleanup_uncommitted` removes before the next run)."""
    try:
        if fs.isfile(finals[MANIFEST]):
            return
        for kind in (*PARTS, ROWS):
            if fs.isfile(finals[kind]):
                fs.rm(finals[kind])
    except OSError as exc:
        log.warning("could not remove the parts of a failed commit (%s); the next run removes them", exc)


def committed_shards(out_dir: str, state: manifest_snapshot.ManifestState | None = None,
                     storage_options: dict | None = None) -> dict[str, ShardRecord]:
    """{shard_id: committed record}, sorted by shard id: the manifest's snapshot and the records newer
    than it (`manifest_snapshot.load`), or `state` when the caller has read it already. Unreadable
    records are skipped with a warning."""
    return (state or manifest_snapshot.load(out_dir, storage_options=storage_options)).records


def committed_parts(out_dir: str, kind: str = "tokens", storage_options: dict | None = None) -> list[str]:
    """Paths (or URLs) of the committed part files of `kind` (tokens | rejects), sorted by shard id.

    Reading exactly these gives exactly-once rows even while a job runs or after a crash.
    """
    if kind not in PARTS:
        raise ValueError(f"kind must be one of {PARTS}; got {kind!r}")
    fs, root = _fs(out_dir, storage_options)
    paths = [f"{root}/{part_name(kind, s)}" for s in sorted(committed_shards(out_dir, storage_options=storage_options))]
    return paths if isinstance(fs, LocalFileSystem) else [fs.unstrip_protocol(p) for p in paths]


def part_paths(out_dir: str, shard_ids: list[str], kind: str = "tokens",
               storage_options: dict | None = None) -> list[str]:
    """Paths (or URLs) of the part files of `kind` of `shard_ids`, in their order (as `committed_parts`)."""
    fs, root = _fs(out_dir, storage_options)
    paths = [f"{root}/{part_name(kind, s)}" for s in shard_ids]
    return paths if isinstance(fs, LocalFileSystem) else [fs.unstrip_protocol(p) for p in paths]


def _broken(ids: list[str], id_array: pa.Array, state: manifest_snapshot.ManifestState) -> list[str]:
    """The shards of `ids` (committed records) whose part files are not listed, or listed with another
    size than their record gives, checked against the listings all at once."""
    bad = np.zeros(len(ids), dtype=bool)
    for kind in PARTS:
        prefix, suffix = shard_files.affixes(kind)
        got = _sizes(state.listings[kind]).sizes_of(pc.binary_join_element_wise(prefix, id_array, suffix, ""))
        want = np.fromiter((_want(shard_files.size(state.records[s].files, kind)) for s in ids), np.int64, len(ids))
        bad |= (got == size_listing.MISSING) | ((want != size_listing.UNKNOWN) & (got >= 0) & (got != want))
    return [ids[i] for i in np.flatnonzero(bad)]


def _want(size) -> int:
    """A record's size as an int64 (UNKNOWN: none given; -3: not an integer, so it matches no file)."""
    return size_listing.UNKNOWN if size is None else size if type(size) is int else -3


def _sizes(listing) -> size_listing.SizeListing:
    if isinstance(listing, size_listing.SizeListing):
        return listing
    return size_listing.SizeListing.build((name, item.size) for name, item in listing.items())


def _temps(listing) -> list[str]:
    if isinstance(listing, size_listing.SizeListing):
        return listing.select(pc.starts_with(listing.names, TMP_PREFIX))
    return [name for name in listing if name.startswith(TMP_PREFIX)]


def _orphans(kind: str, listing: size_listing.SizeListing, id_array: pa.Array) -> list[str]:
    """Names of `kind`'s files (shard_files.affixes) whose shard is not in `id_array`."""
    prefix, suffix = shard_files.affixes(kind)
    names = listing.names
    ids = pc.utf8_slice_codeunits(names, len(prefix), -len(suffix))
    mask = pc.and_(pc.and_(pc.starts_with(names, prefix), pc.ends_with(names, suffix)),
                   pc.and_(pc.invert(pc.starts_with(names, TMP_PREFIX)), pc.invert(pc.is_in(ids, value_set=id_array))))
    return listing.select(mask)


def cleanup_uncommitted(out_dir: str, state: manifest_snapshot.ManifestState | None = None,
                        storage_options: dict | None = None) -> list[str]:
    """Make the output directory hold exactly the committed shards; returns the paths removed.

    Removes `.tmp-*` files, manifest records whose part files are missing or have another size
    (the record goes first, so the shard counts as not done), and part files and row-index files
    (`rows/`) with no record.
    The parts are checked against one listing of each part folder, taken with the manifest's
    (`state`: a job start's `manifest_snapshot.load(out_dir, start=True)`, updated here: the records
    removed leave `state.records`; else read here), all shards at once (`size_listing`). Run it before
    a job starts, never while another job writes to the same directory.
    """
    if state is None:
        state = manifest_snapshot.load(out_dir, start=True, storage_options=storage_options)
    if not state.started:
        raise ValueError("cleanup_uncommitted needs the part folders listed: manifest_snapshot.load(..., start=True)")
    fs, root = state.fs, state.root
    listings = state.listings

    def folder(kind: str) -> str:
        return f"{root}/{kind}" if kind else root

    temps = [f"{folder(kind)}/{name}" for kind in (*PARTS, ROWS, MANIFEST, manifest_snapshot.SNAPSHOTS, "")
             for name in _temps(listings.get(kind, {}))]
    ids = list(state.records)
    broken = _broken(ids, pa.array(ids, pa.string()), state) if ids else []
    for shard_id in broken:
        log.warning("shard %s: manifest record without its intact part files; it will be redone", shard_id)
        del state.records[shard_id]
    records = [state.record_path(s) for s in broken]
    del ids
    id_array = pa.array(list(state.records), pa.string())
    parts = [f"{root}/{kind}/{name}" for kind in (*PARTS, ROWS)  # row-index files of shards not committed too
             for name in _orphans(kind, _sizes(listings.get(kind, {})), id_array)]
    removed: list[str] = []
    for batch in (temps, records, parts):  # records before parts: a shard never looks committed without them
        if batch:
            fs.rm(batch)
            removed.extend(batch)
    if removed:
        log.warning("removed %d uncommitted file(s) under %s", len(removed), out_dir)
    return removed


def check_provenance(out_dir: str, old: dict | None, provenance: dict, committed: bool) -> dict:
    """The sidecar to write for `provenance`; InputError (a ValueError) when committed shards exist and
    the sidecar there (`old`) describes different tokens (another model, checkpoint, codec config,
    rate, bandwidth map, precision, resampler or format): rows of two tokenizations would be mixed."""
    data = {"format_version": FORMAT_VERSION, **provenance}
    if old is not None and committed:
        keys = ["format_version", *(k for k in REQUIRED_PROVENANCE if k != "pipeline_version")]
        changed = [k for k in keys if json.dumps(old.get(k), sort_keys=True) != json.dumps(data.get(k), sort_keys=True)]
        if changed:
            raise InputError(f"{out_dir} already holds committed shards tokenized with different {changed}; "
                             f"write to a new output directory")
    return data


def write_provenance(out_dir: str, provenance: dict, state: manifest_snapshot.ManifestState | None = None,
                     storage_options: dict | None = None) -> None:
    """Write `_provenance.json` (atomically where the filesystem allows), after `check_provenance`
    against the sidecar and committed shards there (from `state`, a job start's read, when given)."""
    if state is None or not state.started:
        state = manifest_snapshot.load(out_dir, start=True, storage_options=storage_options)
    data = check_provenance(out_dir, state.provenance, provenance, bool(state.records))
    write_provenance_file(out_dir, data, storage_options)


def write_provenance_file(out_dir: str, data: dict, storage_options: dict | None = None) -> None:
    """`_provenance.json` := data (already checked: `check_provenance`)."""
    fs, root = _fs(out_dir, storage_options)
    _replace_file(fs, root, PROVENANCE, json.dumps(data, indent=2, sort_keys=True, default=str).encode())


def write_run_marker(out_dir: str, run_id: str, storage_options: dict | None = None) -> None:
    """Mark `out_dir` as prepared by the run `run_id` (actors check they see it: shared storage)."""
    fs, root = _fs(out_dir, storage_options)
    fs.makedirs(root, exist_ok=True)
    _replace_file(fs, root, RUN_MARKER, json.dumps({"run_id": run_id}).encode())


def read_run_marker(out_dir: str, storage_options: dict | None = None) -> str | None:
    """The run id in `out_dir`'s run marker, None when there is none."""
    fs, root = _fs(out_dir, storage_options)
    try:
        return json.loads(fs.cat_file(f"{root}/{RUN_MARKER}")).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None


def write_summary(out_dir: str, summary: dict, storage_options: dict | None = None) -> None:
    """Write the run summary to `_summary.json` (replacing the last run's)."""
    fs, root = _fs(out_dir, storage_options)
    _replace_file(fs, root, SUMMARY, json.dumps(summary, indent=2).encode())


def _replace_file(fs, root: str, name: str, blob: bytes) -> None:
    """`root/name` := blob, through a temp file and a rename (atomic where the filesystem's rename is)."""
    fs.makedirs(root, exist_ok=True)
    tmp = f"{root}/{TMP_PREFIX}{name.lstrip('_')}-{uuid.uuid4().hex}"
    if isinstance(fs, LocalFileSystem):
        _write_bytes(tmp, blob, sync=True)
        os.replace(tmp, f"{root}/{name}")
        _fsync_dir(root)
    else:
        fs.pipe_file(tmp, blob)
        fs.mv(tmp, f"{root}/{name}")
