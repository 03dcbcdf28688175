"""Hugging Face datasets as shards, read without ever decoding audio.

    hf:<dir written by save_to_disk>    each .arrow file is a shard (DatasetDict: every split, or cfg.hf_split)
    hf:<dir, file or glob of .parquet>  each Parquet file is a shard
    hf:<audiofolder dir>                audio files (+ metadata.csv / metadata.jsonl with `file_name`),
                                        as `audio_files` shards (no sibling-file metadata)
    hf:<hub name>                       load_dataset(name, cfg.hf_config, streaming=True): each data-file
                                        shard of each split (needs network)

The audio column is cast to `Audio(decode=False)`: a sample's bytes are the stored file bytes, or the
file at `path` when bytes are None. Audiofolders are listed here rather than by datasets' builder,
which needs torchcodec to produce rows and copies everything into its cache.
"""

from __future__ import annotations

import csv
import glob
import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec

from ..config import SourceConfig
from ..errors import InputError
from ..records import Sample, Shard
from . import paths
from .audio_files import AudioFile, shards_of, unique_keys
from .common import (
    ShardReadError,
    dedupe,
    derive_key,
    expand_urls,
    ext_of,
    fetch,
    is_remote,
    keep_meta,
    normalize,
    shard_id_for,
)


@dataclass(frozen=True)
class DatasetFile:
    """Options of a shard that is one .arrow or .parquet file."""

    format: str  # "arrow" | "parquet"


@dataclass(frozen=True)
class HubShard:
    """Options of a Hub dataset shard: data-file shard `index` of `num_shards` of one split."""

    name: str
    config: str | None
    split: str
    index: int
    num_shards: int


def list_hf(name: str, cfg: SourceConfig) -> list[Shard]:
    """Shards of the dataset named by `name` (the spec without its `hf:` prefix)."""
    local = None if is_remote(name) else normalize(name)
    if local and os.path.isdir(local):
        if os.path.exists(os.path.join(local, "dataset_dict.json")):
            return _list_saved_dict(local, cfg)
        if os.path.exists(os.path.join(local, "state.json")):
            return _file_shards(_saved_arrow_files(local), "arrow", cfg)
        parquet = sorted(glob.glob(os.path.join(local, "**", "*.parquet"), recursive=True))
        return _file_shards(parquet, "parquet", cfg) if parquet else _list_audiofolder(local, cfg)
    if is_remote(name) or name.lower().endswith((".parquet", ".arrow")) or any(c in name for c in "*?[{"):
        urls = expand_urls(name, cfg)
        return _file_shards(urls, "arrow" if all(u.endswith(".arrow") for u in urls) else "parquet", cfg)
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:
        raise InputError(f"hf:{name}: no such local dataset directory or file")
    return _list_hub(name, cfg)


def read_hf(shard: Shard, cfg: SourceConfig) -> Iterator[Sample]:
    """Samples of one dataset shard in row order; raises ShardReadError when the shard breaks off."""
    rows = _open_rows(shard, cfg)
    seen: dict[str, int] = {}
    for index in itertools.count():
        try:
            row = next(rows)
        except StopIteration:
            return
        except Exception as exc:  # datasets / pyarrow / fsspec raise many types for unreadable data
            raise ShardReadError(f"shard {shard.shard_id} ({shard.url}) row {index}: "
                                 f"{type(exc).__name__}: {exc}") from exc
        yield _row_sample(row, index, shard, seen, cfg)


# ----- listing ------------------------------------------------------------------------------------
def _file_shards(urls: list[str], fmt: str, cfg: SourceConfig) -> list[Shard]:
    if urls:
        columns = _columns(urls[0], fmt, cfg)
        if cfg.audio_column not in columns:
            raise InputError(f"{urls[0]} has no audio column {cfg.audio_column!r} (source.audio_column); "
                             f"columns: {columns}")
    return [Shard(shard_id_for(url), url, "hf", DatasetFile(fmt)) for url in sorted(urls)]


def _columns(url: str, fmt: str, cfg: SourceConfig) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with fsspec.open(url, "rb", **cfg.storage_options) as f:
        schema = pa.ipc.open_stream(f).schema if fmt == "arrow" else pq.read_schema(f)
    return list(schema.names)


def _saved_arrow_files(directory: str) -> list[str]:
    with open(os.path.join(directory, "state.json")) as f:
        state = json.load(f)
    return [os.path.join(directory, item["filename"]) for item in state.get("_data_files", [])]


def _list_saved_dict(directory: str, cfg: SourceConfig) -> list[Shard]:
    with open(os.path.join(directory, "dataset_dict.json")) as f:
        splits = sorted(json.load(f)["splits"])
    if cfg.hf_split is not None and cfg.hf_split not in splits:
        raise InputError(f"hf:{directory}: no split {cfg.hf_split!r} (source.hf_split); splits: {splits}")
    chosen = [cfg.hf_split] if cfg.hf_split else splits
    files = [f for split in chosen for f in _saved_arrow_files(os.path.join(directory, split))]
    return _file_shards(files, "arrow", cfg)


def _list_audiofolder(root: str, cfg: SourceConfig) -> list[Shard]:
    found = paths.match(root, cfg)
    if not found.audio:
        raise InputError(f"hf:{root}: holds no save_to_disk dataset, Parquet files or audio files")
    meta = _audiofolder_meta(root, cfg)
    files = [AudioFile(rel, key, duplicate_of=dup, meta=meta.get(rel, {}))
             for rel, key, dup in unique_keys(found.audio)]
    return shards_of(root, root, files, cfg)


def _audiofolder_meta(root: str, cfg: SourceConfig) -> dict[str, dict[str, Any]]:
    """Passthrough metadata by file path relative to `root`, from every metadata.csv / metadata.jsonl."""
    meta: dict[str, dict[str, Any]] = {}
    for path in sorted(glob.glob(os.path.join(root, "**", "metadata.*"), recursive=True)):
        if path.endswith(".csv"):
            with open(path, newline="", encoding="utf-8", errors="replace") as f:
                rows: list[Any] = list(csv.DictReader(f))
        elif path.endswith(".jsonl"):
            with open(path, encoding="utf-8", errors="replace") as f:
                rows = [_json_or_none(line) for line in f if line.strip()]
        else:
            continue
        here = os.path.dirname(os.path.relpath(path, root))
        for row in rows:
            if isinstance(row, dict) and row.get("file_name"):
                rel = os.path.normpath(os.path.join(here, str(row["file_name"]))).replace(os.sep, "/")
                meta[rel] = keep_meta(row, cfg)
    return meta


def _json_or_none(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None


def _list_hub(name: str, cfg: SourceConfig) -> list[Shard]:
    import datasets

    try:
        splits = datasets.load_dataset(name, cfg.hf_config, streaming=True, storage_options=cfg.storage_options)
    except Exception as exc:  # offline, unknown name, gated repo: all end the listing
        raise InputError(
            f"hf:{name}: not a local path, and loading it from the Hugging Face Hub failed "
            f"({type(exc).__name__}: {exc}). Offline? Give a local save_to_disk directory, Parquet files or an "
            "audiofolder (hf:/path/...) instead."
        ) from exc
    if cfg.hf_split is not None and cfg.hf_split not in splits:
        raise InputError(f"hf:{name}: no split {cfg.hf_split!r} (source.hf_split); splits: {sorted(splits)}")
    shards = []
    for split in [cfg.hf_split] if cfg.hf_split else sorted(splits):
        count = splits[split].num_shards
        for index in range(count):
            url = f"hf:{name}{'/' + cfg.hf_config if cfg.hf_config else ''}/{split}#shard={index}-of-{count}"
            options = HubShard(name, cfg.hf_config, split, index, count)
            shards.append(Shard(shard_id_for(url), url, "hf", options))
    return shards


# ----- reading ------------------------------------------------------------------------------------
def _open_rows(shard: Shard, cfg: SourceConfig) -> Iterator[dict[str, Any]]:
    import datasets

    opts = shard.options
    try:
        if isinstance(opts, HubShard):
            ds = datasets.load_dataset(opts.name, opts.config, split=opts.split, streaming=True,
                                       storage_options=cfg.storage_options)
            ds = ds.shard(num_shards=opts.num_shards, index=opts.index)
        elif opts.format == "arrow":
            ds = datasets.Dataset.from_file(shard.url)
        else:
            ds = datasets.load_dataset("parquet", data_files=[shard.url], split="train", streaming=True,
                                       storage_options=cfg.storage_options)
        return iter(ds.cast_column(cfg.audio_column, datasets.Audio(decode=False)))
    except Exception as exc:  # datasets raises many types for unreadable files
        raise ShardReadError(f"shard {shard.shard_id} ({shard.url}): {type(exc).__name__}: {exc}") from exc


def _row_sample(row: dict[str, Any], index: int, shard: Shard, seen: dict[str, int], cfg: SourceConfig) -> Sample:
    audio = row.get(cfg.audio_column)
    data, path = (audio.get("bytes"), audio.get("path") or "") if isinstance(audio, dict) else (None, "")
    # stored paths are often absolute paths into a build machine's cache: only the file name is the item's
    key, reject = dedupe(derive_key(row, path.replace("\\", "/").rsplit("/", 1)[-1], index, shard, cfg), seen)
    meta = keep_meta({k: v for k, v in row.items() if k != cfg.audio_column}, cfg)
    if reject is None and data is None:
        if path:
            data, reject = fetch(path, cfg)
        else:
            reject = ("missing_audio", f"row {index} has neither audio bytes nor a path")
    elif reject is None and not data:
        reject = ("empty", f"row {index} has zero audio bytes")
    elif reject is None and len(data) > cfg.max_member_bytes:
        reject = ("too_large", f"row {index}: {len(data)} bytes > max_member_bytes {cfg.max_member_bytes}")
    where = path if path and "://" in path else f"{shard.url}{'&' if '#' in shard.url else '#'}row={index}"
    return Sample(key, shard.url, None if reject else bytes(data), ext_of(path), meta, reject, where)
