"""Atomic shard commit and the manifest of finished shards.

Layout under the output directory:
  tokens/part-<shard_id>.parquet    rejects/part-<shard_id>.parquet (always, maybe 0 rows)
  _manifest/<shard_id>.json         the commit point: written last, one per finished shard
  _provenance.json                  model and config, also kept outside Parquet (datasets drops it)
  _tmp/                             files being written; readers never look here

A shard's files are written under _tmp/, flushed, then renamed into place: tokens, rejects, and
finally the manifest record. A crash before the manifest rename leaves parts without a record;
`cleanup_uncommitted` deletes them, so a re-run redoes that shard and no row appears twice.
Local filesystems rename atomically; on object stores (s3://, gs://) a "rename" is copy+delete,
so a part can be visible before its manifest record: readers that need exactly-once must read
only the parts listed in _manifest/ (the `reader` does).
"""

from __future__ import annotations

import json
import os
import uuid

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from .config import OutputConfig


def _fs(out_dir: str):
    fs, path = fsspec.core.url_to_fs(out_dir)
    return fs, path.rstrip("/")


def _write_parquet(fs, path: str, table: pa.Table, metadata: dict, cfg: OutputConfig) -> None:
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    with fs.open(path, "wb") as f:
        pq.write_table(table, f, compression=cfg.compression, compression_level=cfg.compression_level,
                       row_group_size=cfg.row_group_rows, use_dictionary=True)
        _sync(f)


def _sync(f) -> None:
    try:
        f.flush()
        os.fsync(f.fileno())
    except (AttributeError, OSError, ValueError, NotImplementedError):
        pass  # not a local file: the filesystem's own close() is the durability point


def commit_shard(out_dir: str, shard_id: str, tokens: pa.Table, rejects: pa.Table, record: dict,
                 metadata: dict, cfg: OutputConfig) -> None:
    fs, root = _fs(out_dir)
    for sub in ("tokens", "rejects", "_manifest", "_tmp"):
        fs.makedirs(f"{root}/{sub}", exist_ok=True)
    tag = uuid.uuid4().hex[:12]
    staged = {
        f"{root}/tokens/part-{shard_id}.parquet": f"{root}/_tmp/{shard_id}-{tag}.tokens.parquet",
        f"{root}/rejects/part-{shard_id}.parquet": f"{root}/_tmp/{shard_id}-{tag}.rejects.parquet",
    }
    final_tokens, final_rejects = list(staged)
    _write_parquet(fs, staged[final_tokens], tokens, metadata, cfg)
    _write_parquet(fs, staged[final_rejects], rejects, metadata, cfg)
    record = {**record, "files": {"tokens": final_tokens.rsplit("/", 2)[-2:], "rejects": final_rejects.rsplit("/", 2)[-2:]}}
    manifest_tmp = f"{root}/_tmp/{shard_id}-{tag}.json"
    with fs.open(manifest_tmp, "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    for final, tmp in staged.items():
        fs.mv(tmp, final)
    fs.mv(manifest_tmp, f"{root}/_manifest/{shard_id}.json")


def committed_shards(out_dir: str) -> dict[str, dict]:
    fs, root = _fs(out_dir)
    if not fs.exists(f"{root}/_manifest"):
        return {}
    out = {}
    for path in sorted(fs.glob(f"{root}/_manifest/*.json")):
        with fs.open(path, "r") as f:
            record = json.load(f)
        out[record["shard_id"]] = record
    return out


def cleanup_uncommitted(out_dir: str) -> list[str]:
    """Delete staged files and parts that have no manifest record; returns what was removed."""
    fs, root = _fs(out_dir)
    committed = set(committed_shards(out_dir))
    removed = []
    if fs.exists(f"{root}/_tmp"):
        for path in fs.ls(f"{root}/_tmp", detail=False):
            fs.rm(path)
            removed.append(path)
    for sub in ("tokens", "rejects"):
        if not fs.exists(f"{root}/{sub}"):
            continue
        for path in fs.ls(f"{root}/{sub}", detail=False):
            name = path.rsplit("/", 1)[-1]
            shard_id = name.removeprefix("part-").removesuffix(".parquet")
            if shard_id not in committed:
                fs.rm(path)
                removed.append(path)
    return removed


def write_provenance(out_dir: str, provenance: dict) -> None:
    fs, root = _fs(out_dir)
    fs.makedirs(root, exist_ok=True)
    with fs.open(f"{root}/_provenance.json", "w") as f:
        json.dump(provenance, f, indent=2, sort_keys=True)
