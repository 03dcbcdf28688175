"""Listing and reading shards: webdataset tars, manifests of audio files, Hugging Face datasets.

Tars are streamed with `tarfile` over an fsspec file; members are never extracted to disk, never
unpickled, and `pipe:` URLs are refused (the webdataset library would run them as shell commands).
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Iterator

import braceexpand
import fsspec

from .config import SourceConfig
from .records import Sample, Shard

AUDIO_EXTS = {"flac", "wav", "mp3", "ogg", "oga", "opus", "aiff", "aif", "au", "w64", "caf", "wave"}
UNSAFE_EXTS = {"pyd", "pth", "pickle", "pkl", "pt"}
SAFE_PROTOCOLS = {"file", "local", "s3", "s3a", "gs", "gcs", "az", "abfs", "http", "https", "hf", "memory"}


class ShardReadError(RuntimeError):
    """The shard as a whole could not be opened or read to its end."""


def shard_id_for(url: str) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", url.rstrip("/").rsplit("/", 1)[-1])[:60].lstrip("._-") or "shard"
    return f"{base}-{hashlib.sha1(url.encode()).hexdigest()[:10]}"


def _check_protocol(url: str) -> None:
    protocol = url.split("://", 1)[0] if "://" in url else "file"
    if url.startswith("pipe:") or protocol not in SAFE_PROTOCOLS:
        raise ValueError(f"refusing {url!r}: only {sorted(SAFE_PROTOCOLS)} URLs are read (no pipe:)")


def list_shards(spec: str, cfg: SourceConfig) -> list[Shard]:
    if spec.startswith("hf:"):
        return _list_hf(spec[3:], cfg)
    _check_protocol(spec)
    if spec.endswith((".jsonl", ".csv")):
        return _list_manifest(spec, cfg)
    urls: list[str] = []
    for pattern in braceexpand.braceexpand(spec):
        if "://" in pattern and not pattern.startswith("file://"):
            fs, _ = fsspec.core.url_to_fs(pattern, **cfg.storage_options)
            protocol = pattern.split("://", 1)[0]
            matches = fs.glob(pattern) if any(c in pattern for c in "*?[") else [pattern]
            urls += [m if "://" in m else f"{protocol}://{m}" for m in matches]
        else:
            path = pattern.removeprefix("file://")
            urls += sorted(glob.glob(path)) if any(c in path for c in "*?[") else ([path] if os.path.exists(path) else [])
    if not urls:
        raise ValueError(f"input {spec!r} matches no shard")
    return [Shard(shard_id_for(u), u, "webdataset") for u in sorted(set(urls))]


def read_shard(shard: Shard, cfg: SourceConfig) -> Iterator[Sample]:
    if shard.kind == "webdataset":
        return _read_tar(shard, cfg)
    if shard.kind == "manifest":
        return _read_manifest(shard, cfg)
    if shard.kind == "hf":
        return _read_hf(shard, cfg)
    raise ValueError(f"unknown shard kind {shard.kind!r}")


def _keep_meta(meta: dict, cfg: SourceConfig) -> dict:
    return {k: v for k, v in meta.items() if k in cfg.metadata_columns}


def _read_tar(shard: Shard, cfg: SourceConfig) -> Iterator[Sample]:
    groups: dict[str, dict] = {}
    order: list[str] = []
    try:
        with fsspec.open(shard.url, "rb", **cfg.storage_options) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
            for member in tar:
                name = member.name
                base = name.rsplit("/", 1)[-1]
                stem, _, ext = base.partition(".")
                key, ext = name[: len(name) - len(base)] + stem, ext.lower()
                entry = groups.get(key)
                if entry is None:
                    entry = groups[key] = {"audio": None, "ext": "", "meta": {}, "unsafe": None}
                    order.append(key)
                parts = name.split("/")
                if name.startswith("/") or ".." in parts or not member.isfile() or ext.rsplit(".", 1)[-1] in UNSAFE_EXTS:
                    entry["unsafe"] = f"member {name!r} ({'link/device' if not member.isfile() else 'unsafe name or pickle'}) not read"
                    continue
                data = tar.extractfile(member).read()
                last = ext.rsplit(".", 1)[-1]
                if last in AUDIO_EXTS and entry["audio"] is None:
                    entry["audio"], entry["ext"] = data, last
                elif last == "json":
                    try:
                        value = json.loads(data)
                        if isinstance(value, dict):
                            entry["meta"].update(value)
                    except ValueError:
                        pass
                elif last == "txt":
                    entry["meta"]["text"] = data.decode("utf-8", "replace")
                elif last == "cls":
                    entry["meta"]["cls"] = data.decode("utf-8", "replace").strip()
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise ShardReadError(f"cannot read shard {shard.url}: {type(exc).__name__}: {exc}") from exc
    for key in order:
        e = groups[key]
        meta = _keep_meta(e["meta"], cfg)
        if e["audio"] is None:
            reject = ("unsafe_member", e["unsafe"]) if e["unsafe"] else ("missing_audio", "no audio member")
            yield Sample(key, shard.url, None, "", meta, reject)
        elif len(e["audio"]) == 0:
            yield Sample(key, shard.url, None, e["ext"], meta, ("empty", "zero-byte audio member"))
        else:
            yield Sample(key, shard.url, e["audio"], e["ext"], meta)


def _list_manifest(spec: str, cfg: SourceConfig) -> list[Shard]:
    rows = _manifest_rows(spec, cfg)
    if not rows:
        raise ValueError(f"manifest {spec!r} has no rows")
    step = max(1, cfg.manifest_rows_per_shard)
    return [Shard(shard_id_for(f"{spec}#{i}"), f"{spec}#rows={i}-{min(i + step, len(rows))}", "manifest",
                  {"manifest": spec, "start": i, "stop": min(i + step, len(rows))}) for i in range(0, len(rows), step)]


def _manifest_rows(spec: str, cfg: SourceConfig) -> list[dict]:
    with fsspec.open(spec, "r", **cfg.storage_options) as f:
        text = f.read()
    if spec.endswith(".jsonl"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return list(csv.DictReader(io.StringIO(text)))


def _read_manifest(shard: Shard, cfg: SourceConfig) -> Iterator[Sample]:
    spec = shard.options["manifest"]
    try:
        rows = _manifest_rows(spec, cfg)[shard.options["start"] : shard.options["stop"]]
    except OSError as exc:
        raise ShardReadError(f"cannot read manifest {spec}: {exc}") from exc
    base = os.path.dirname(spec.removeprefix("file://"))
    seen: set[str] = set()
    for row in rows:
        path = str(row.get(cfg.path_column, ""))
        key = str(row.get(cfg.key_column) if cfg.key_column else os.path.splitext(path.rsplit("/", 1)[-1])[0])
        if key in seen:
            yield Sample(f"{key}~dup", shard.url, None, "", {}, ("duplicate_key", f"{key!r} repeats in the manifest"))
            continue
        seen.add(key)
        meta = _keep_meta(row, cfg)
        try:
            _check_protocol(path)
        except ValueError as exc:
            yield Sample(key, shard.url, None, "", meta, ("unsafe_member", str(exc)))
            continue
        url = path if "://" in path or os.path.isabs(path) else os.path.join(base, path)
        try:
            with fsspec.open(url, "rb", **cfg.storage_options) as f:
                data = f.read()
        except OSError as exc:
            yield Sample(key, shard.url, None, "", meta, ("undecodable", f"cannot open {path}: {exc}"))
            continue
        ext = path.rsplit(".", 1)[-1].lower() if "." in path else ""
        yield Sample(key, shard.url, data, ext, meta, None if data else ("empty", "zero-byte file"))


def _list_hf(name: str, cfg: SourceConfig) -> list[Shard]:
    path = os.path.expanduser(name)
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "dataset_info.json")):
        files = sorted(glob.glob(os.path.join(path, "*.arrow")))
        return [Shard(shard_id_for(f), f, "hf", {"format": "arrow"}) for f in files]
    if os.path.isdir(path) or path.endswith(".parquet") or any(c in path for c in "*?["):
        files = sorted(glob.glob(os.path.join(path, "**", "*.parquet"), recursive=True)) if os.path.isdir(path) else sorted(glob.glob(path))
        if files:
            return [Shard(shard_id_for(f), f, "hf", {"format": "parquet"}) for f in files]
        if os.path.isdir(path):  # audiofolder: one shard per directory of files
            return [Shard(shard_id_for(path), path, "hf", {"format": "audiofolder"})]
    raise ValueError(f"hf:{name}: not a local dataset (save_to_disk dir, Parquet files or audiofolder); "
                     "hub datasets need network access, which this machine does not have")


def _read_hf(shard: Shard, cfg: SourceConfig) -> Iterator[Sample]:
    import datasets

    fmt = shard.options["format"]
    try:
        if fmt == "arrow":
            ds = datasets.Dataset.from_file(shard.url)
        elif fmt == "parquet":
            ds = datasets.Dataset.from_parquet(shard.url)
        else:
            ds = datasets.load_dataset("audiofolder", data_dir=shard.url, split="train")
        ds = ds.cast_column(cfg.audio_column, datasets.Audio(decode=False))
    except Exception as exc:  # datasets raises many types for unreadable files
        raise ShardReadError(f"cannot read dataset shard {shard.url}: {exc}") from exc
    seen: set[str] = set()
    for i, row in enumerate(ds):
        audio = row.get(cfg.audio_column) or {}
        path = audio.get("path") or ""
        key = str(row[cfg.key_column]) if cfg.key_column else (os.path.splitext(os.path.basename(path))[0] or f"{shard.shard_id}/{i}")
        if key in seen:
            key = f"{key}~{i}"
        seen.add(key)
        data = audio.get("bytes")
        if data is None and path and os.path.exists(path):
            with open(path, "rb") as f:
                data = f.read()
        meta = _keep_meta({k: v for k, v in row.items() if k != cfg.audio_column}, cfg)
        ext = path.rsplit(".", 1)[-1].lower() if "." in path else ""
        if not data:
            yield Sample(key, shard.url, None, ext, meta, ("empty" if data == b"" else "missing_audio", "no audio bytes"))
        else:
            yield Sample(key, shard.url, data, ext, meta)
