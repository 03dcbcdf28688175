"""Listing and reading input shards: webdataset tars, manifests of audio files, Hugging Face datasets.

`list_shards(spec, cfg)` turns an input spec into `Shard`s in a fixed order; `read_shard(shard, cfg)`
streams the shard's `Sample`s (encoded audio bytes + passthrough metadata) in the same order on every
call, so a caller that gets `ShardReadError` halfway reads the shard again from the start. Tars,
manifests and the files that rows name are read through `timed_read.open_timed`: storage that
stalls for `cfg.read_timeout_s` raises ShardReadError instead of hanging the reader.

Tars are streamed with `tarfile` over an fsspec file object: members are never extracted to disk,
never unpickled, links and devices are never followed, and `pipe:` URLs are refused (the webdataset
library would run them as shell commands). Manifests and Hugging Face datasets are read by
`pipeline.source_manifest` and `pipeline.source_hf`, with the helpers defined here.
"""

from __future__ import annotations

import glob
import hashlib
import json
import lzma
import os
import re
import tarfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import braceexpand
import fsspec

from .config import SourceConfig
from .records import Sample, Shard
from .timed_read import open_timed

AUDIO_EXTS = frozenset(
    {"flac", "wav", "wave", "mp3", "ogg", "oga", "opus", "aiff", "aif", "aifc", "au", "snd", "w64", "caf", "rf64"}
)
PICKLE_EXTS = frozenset({"pyd", "pth", "pt", "pickle", "pkl"})
# fsspec protocols a manifest or dataset row may point at; anything else (pipe:, data:, zip::...) is refused
ROW_PROTOCOLS = frozenset(
    {"file", "local", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "http", "https", "hf", "memory"}
)
MAX_META_BYTES = 1 << 20  # metadata members (.json, .txt, ...) larger than this are left out
_TAR_ERRORS = (OSError, EOFError, tarfile.TarError, zlib.error, lzma.LZMAError)


class ShardReadError(RuntimeError):
    """The shard as a whole could not be opened or read to its end; read it again from the start."""


def shard_id_for(url: str) -> str:
    """Stable, filesystem-safe, unique name: sanitized basename of `url` + 10 hex digits of sha1(url)."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", url.rstrip("/").rsplit("/", 1)[-1])[:60].strip("._-") or "shard"
    return f"{base}-{hashlib.sha1(url.encode()).hexdigest()[:10]}"


def list_shards(spec: str, cfg: SourceConfig) -> list[Shard]:
    """Shards named by `spec`, in a deterministic order.

    spec: a .tar path, a glob (`data/*.tar`), a brace pattern (`data/shard-{000..099}.tar`), an fsspec
    URL (`s3://bucket/shard-*.tar`, `file://...`), a manifest (`.jsonl` / `.csv`, `cfg.path_column`
    naming each audio file, `cfg.manifest_rows_per_shard` rows per shard) or `hf:<dir|files|hub name>`.
    Raises ValueError naming the spec when it matches nothing.
    """
    if spec.startswith("pipe:"):
        raise ValueError(f"refusing input {spec!r}: pipe: URLs run shell commands; give a path or fsspec URL")
    if spec.startswith("hf:"):
        from . import source_hf

        shards = source_hf.list_hf(spec[3:], cfg)
    elif spec.lower().endswith((".jsonl", ".csv")):
        from . import source_manifest

        shards = source_manifest.list_manifest(normalize(spec), cfg)
    else:
        shards = [Shard(shard_id_for(url), url, "webdataset") for url in expand_urls(spec, cfg)]
    if not shards:
        raise ValueError(f"input {spec!r} matches no shard")
    return shards


def read_shard(shard: Shard, cfg: SourceConfig) -> Iterator[Sample]:
    """Every sample of `shard`, in shard order; raises ShardReadError when the shard breaks off."""
    if shard.kind == "webdataset":
        return _read_tar(shard, cfg)
    if shard.kind == "manifest":
        from . import source_manifest

        return source_manifest.read_manifest(shard, cfg)
    if shard.kind == "hf":
        from . import source_hf

        return source_hf.read_hf(shard, cfg)
    raise ValueError(f"unknown shard kind {shard.kind!r}; expected webdataset, manifest or hf")


# ----- shared helpers -----------------------------------------------------------------------------
def is_remote(url: str) -> bool:
    return "://" in url and not url.startswith(("file://", "local://"))


def normalize(url: str) -> str:
    """Local paths (and file:// URLs) become absolute paths; other URLs are kept."""
    if is_remote(url):
        return url
    return os.path.abspath(os.path.expanduser(re.sub(r"^(file|local)://", "", url)))


def expand_urls(spec: str, cfg: SourceConfig) -> list[str]:
    """Brace-expand and glob `spec` into sorted, unique file URLs; missing explicit paths raise ValueError.

    Remote paths are checked with one metadata request each, 16 at a time.
    """
    patterns = list(braceexpand.braceexpand(spec))
    with ThreadPoolExecutor(16) as pool:
        matches = list(pool.map(lambda p: _matches(p, cfg), patterns))
    missing = [p for p, m in zip(patterns, matches) if m is None]
    if missing:
        raise ValueError(f"input {spec!r}: {len(missing)} path(s) do not exist, e.g. {missing[:3]}")
    return sorted({url for m in matches for url in m})


def _matches(pattern: str, cfg: SourceConfig) -> list[str] | None:
    """Files matching one glob (maybe none), or [the file] for a plain path; None when it does not exist."""
    magic = any(c in pattern for c in "*?[")
    if is_remote(pattern):
        fs, path = fsspec.core.url_to_fs(pattern, **cfg.storage_options)
        if magic:
            return sorted(fs.unstrip_protocol(p) for p, info in fs.glob(path, detail=True).items()
                          if info.get("type") != "directory")
        try:
            kind = fs.info(path).get("type")
        except FileNotFoundError:
            return None
    else:
        path = normalize(pattern)
        if magic:
            return sorted(p for p in glob.glob(path) if os.path.isfile(p))
        kind = "directory" if os.path.isdir(path) else "file" if os.path.exists(path) else None
        if kind is None:
            return None
    if kind == "directory":
        raise ValueError(f"input {pattern!r} is a directory: give a glob such as {pattern.rstrip('/')}/*.tar")
    return [fs.unstrip_protocol(path) if is_remote(pattern) else path]


def keep_meta(meta: dict[str, Any], cfg: SourceConfig) -> dict[str, Any]:
    return {k: meta[k] for k in cfg.metadata_columns if k in meta}


def refuse_url(url: str) -> str | None:
    """Why a row's audio URL must not be opened (pipe:, data:, chained or unlisted protocols), or None."""
    if "::" in url or url.startswith(("pipe:", "data:")):
        return f"refusing {url[:200]!r}: pipe:, data: and chained URLs are never opened"
    protocol = url.split("://", 1)[0].lower() if "://" in url else "file"
    if protocol not in ROW_PROTOCOLS:
        return f"refusing {url[:200]!r}: protocol {protocol!r} is not one of {sorted(ROW_PROTOCOLS)}"
    return None


def fetch(url: str, cfg: SourceConfig) -> tuple[bytes | None, tuple[str, str] | None]:
    """Bytes of one audio file (at most cfg.max_member_bytes), or (None, (reason, detail)).

    A missing or unreadable file is the item's fault (undecodable); other I/O errors, and storage
    that stalls for cfg.read_timeout_s, are the storage's (ShardReadError, so the shard is retried).
    """
    refusal = refuse_url(url)
    if refusal:
        return None, ("unsafe_member", refusal)
    local = url.removeprefix("file://") if "://" not in url or url.startswith("file://") else None
    if local is not None and os.path.exists(local) and not (os.path.isfile(local) or os.path.isdir(local)):
        # a FIFO, device or socket would block or stream forever (/dev/zero, a named pipe)
        return None, ("unsafe_member", f"{url[:200]} is not a regular file")
    try:
        with open_timed(url, cfg.storage_options, cfg.read_timeout_s) as f:
            data = f.read(cfg.max_member_bytes + 1)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, ImportError, ValueError) as exc:
        return None, ("undecodable", f"cannot open {url[:200]}: {type(exc).__name__}: {exc}"[:400])
    except OSError as exc:
        raise ShardReadError(f"reading {url[:200]}: {type(exc).__name__}: {exc}") from exc
    if len(data) > cfg.max_member_bytes:
        return None, ("too_large", f"{url[:200]} is larger than max_member_bytes {cfg.max_member_bytes}")
    if not data:
        return None, ("empty", f"{url[:200]} has zero bytes")
    return data, None


def dedupe(key: str, seen: dict[str, int]) -> tuple[str, tuple[str, str] | None]:
    """(key, None) the first time a key is seen in a shard; (`key~dupN`, duplicate_key reject) after."""
    if key not in seen:
        seen[key] = 0
        return key, None
    seen[key] += 1
    return f"{key}~dup{seen[key]}", ("duplicate_key", f"key {key!r} was already read earlier in this shard")


def ext_of(path: str) -> str:
    base = re.split(r"[\\/]", path)[-1]
    return base.rsplit(".", 1)[-1].lower() if "." in base else ""


# ----- webdataset tars ----------------------------------------------------------------------------
class _StrictTarInfo(tarfile.TarInfo):
    """tarfile ends a stream quietly on a truncated or garbled header after the first member; this
    raises instead, so a shard cut anywhere but after its end-of-archive block is a ShardReadError."""

    @classmethod
    def fromtarfile(cls, tarfile_):
        try:
            return super().fromtarfile(tarfile_)
        except tarfile.EOFHeaderError:
            raise
        except tarfile.EmptyHeaderError as exc:
            raise tarfile.ReadError("archive ends without an end-of-archive block (truncated)") from exc
        except tarfile.HeaderError as exc:
            raise tarfile.ReadError(f"bad member header at byte {tarfile_.offset}: {exc}") from exc


@dataclass
class _Group:
    key: str
    exts: set[str] = field(default_factory=set)
    audio: bytes | None = None
    ext: str = ""
    json: dict[str, Any] = field(default_factory=dict)
    members: dict[str, Any] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)


def _split_name(name: str) -> tuple[str, str] | None:
    """webdataset convention: key = path up to the first dot of the basename, ext = the rest, lower-cased."""
    head, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    if not stem or not dot:
        return None
    return (f"{head}/" if head else "") + stem, ext.lower()


def _unsafe(member: tarfile.TarInfo, ext: str) -> str | None:
    name = member.name
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[\\/]", name):
        why = "absolute path"
    elif ".." in re.split(r"[\\/]", name):
        why = "'..' path component"
    elif member.issym() or member.islnk():
        why = "link"
    elif not member.isreg():
        why = "device, fifo or other special file"
    elif ext.rsplit(".", 1)[-1] in PICKLE_EXTS:
        why = "pickle-like extension"
    else:
        return None
    return f"member {name[:200]!r}: {why}; not read"


def _add_member(group: _Group, member: tarfile.TarInfo, ext: str, tar: tarfile.TarFile, cfg: SourceConfig):
    group.exts.add(ext)
    unsafe = _unsafe(member, ext)
    if unsafe:
        group.problems.append(("unsafe_member", unsafe))
        return
    last = ext.rsplit(".", 1)[-1]
    if last in AUDIO_EXTS:
        if member.size > cfg.max_member_bytes:
            detail = f"member {member.name[:200]!r}: {member.size} bytes > max_member_bytes {cfg.max_member_bytes}"
            group.problems.append(("too_large", detail))
        elif not group.audio:
            group.audio, group.ext = tar.extractfile(member).read(), last
        return
    name = "text" if ext == "txt" else ext
    if member.size > MAX_META_BYTES or (ext != "json" and name not in cfg.metadata_columns):
        return
    raw = tar.extractfile(member).read()
    if ext == "json":
        try:
            value = json.loads(raw)
        except ValueError:
            return
        if isinstance(value, dict):
            group.json.update(value)
    else:
        text = raw.decode("utf-8", "replace")
        group.members[name] = text.strip() if name == "cls" else text


def _finish(group: _Group, shard: Shard, seen: dict[str, int], cfg: SourceConfig) -> Sample:
    meta = keep_meta({**group.json, **group.members}, cfg)
    key, dup = dedupe(group.key, seen)
    if dup:
        return Sample(key, shard.url, None, group.ext, meta, dup)
    if group.audio is None:
        reject = group.problems[0] if group.problems else (
            "missing_audio", f"no audio member; members: {sorted(group.exts)}")
        return Sample(key, shard.url, None, "", meta, reject)
    if not group.audio:
        return Sample(key, shard.url, None, group.ext, meta, ("empty", f"zero-byte .{group.ext} member"))
    return Sample(key, shard.url, group.audio, group.ext, meta)


def _read_tar(shard: Shard, cfg: SourceConfig) -> Iterator[Sample]:
    seen: dict[str, int] = {}
    group: _Group | None = None
    try:
        with open_timed(shard.url, cfg.storage_options, cfg.read_timeout_s) as f, tarfile.open(
            fileobj=f, mode="r|*", tarinfo=_StrictTarInfo
        ) as tar:
            for member in tar:
                if member.isdir():
                    continue
                split = _split_name(member.name)
                if split is None and not _unsafe(member, ""):
                    continue  # not a sample member (no key.ext name), as in webdataset
                key, ext = split or (member.name, "")
                if group is not None and (key != group.key or ext in group.exts):
                    yield _finish(group, shard, seen, cfg)
                    group = None
                group = group or _Group(key)
                _add_member(group, member, ext, tar, cfg)
    except _TAR_ERRORS as exc:
        raise ShardReadError(f"shard {shard.shard_id} ({shard.url}): {type(exc).__name__}: {exc}") from exc
    if group is not None:
        yield _finish(group, shard, seen, cfg)
