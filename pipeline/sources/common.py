"""What every reader shares: URL rules, listing files, fetching one file, keys and their dedup.

Keys: `derive_key` is the one rule for readers whose items name a file (manifests, audiofolders,
dataset rows): a key column's value, else the path as the reader gives it minus scheme and
extension, else `<shard_id>/<row index>`; `dedupe` renames a repeated key and rejects the item.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import braceexpand
import fsspec

from ..config import SourceConfig
from ..errors import AudiotokError, InputError
from ..records import Shard
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


class ShardReadError(AudiotokError):
    """The shard as a whole could not be opened or read to its end; read it again from the start."""


def shard_id_for(url: str) -> str:
    """Stable, filesystem-safe, unique name: sanitized basename of `url` + 10 hex digits of sha1(url)."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", url.rstrip("/").rsplit("/", 1)[-1])[:60].strip("._-") or "shard"
    return f"{base}-{hashlib.sha1(url.encode()).hexdigest()[:10]}"


def is_remote(url: str) -> bool:
    return "://" in url and not url.startswith(("file://", "local://"))


def normalize(url: str) -> str:
    """Local paths (and file:// URLs) become absolute paths; other URLs are kept."""
    if is_remote(url):
        return url
    return os.path.abspath(os.path.expanduser(re.sub(r"^(file|local)://", "", url)))


def expand_urls(spec: str, cfg: SourceConfig) -> list[str]:
    """Brace-expand and glob `spec` into sorted, unique file URLs; missing explicit paths raise InputError.

    Remote paths are checked with one metadata request each, 16 at a time.
    """
    patterns = list(braceexpand.braceexpand(spec))
    with ThreadPoolExecutor(16) as pool:
        matches = list(pool.map(lambda p: _matches(p, cfg), patterns))
    missing = [p for p, m in zip(patterns, matches) if m is None]
    if missing:
        raise InputError(f"input {spec!r}: {len(missing)} path(s) do not exist, e.g. {missing[:3]}")
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
        raise InputError(f"input {pattern!r} is a directory: give a glob such as {pattern.rstrip('/')}/*.tar")
    return [fs.unstrip_protocol(path) if is_remote(pattern) else path]


def join_url(root: str, rel: str) -> str:
    """`rel` ('/'-separated) under `root`, a local directory or an fsspec URL (`memory://` included)."""
    return root + rel if root.endswith("/") else f"{root}/{rel}"


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


def input_root(shards: list[Shard]) -> str | None:
    """The directory or bucket prefix every shard of the input lives under (the part of each URL
    before any glob or brace character); None for Hub datasets, which have no such root."""
    roots = []
    for shard in shards:
        url = shard.url.split("#", 1)[0]
        if url.startswith("hf:"):
            url = url[3:]
            if not os.path.exists(normalize(url)):
                return None
        parts = url.split("/")
        fixed = next((i for i, p in enumerate(parts) if any(c in p for c in "*?[{")), None)
        roots.append("/".join(parts[:fixed]) if fixed is not None else url.rsplit("/", 1)[0] or "/")
    if not roots:
        return None
    if all(not is_remote(r) for r in roots):
        return os.path.commonpath([normalize(r) for r in roots])
    common = os.path.commonprefix(roots)
    return common.rsplit("/", 1)[0] if not common.endswith("/") and common not in roots else common.rstrip("/")


def derive_key(row: dict[str, Any], path: str, index: int, shard: Shard, cfg: SourceConfig) -> str:
    """An item's key: its `cfg.key_column` value, else `path` minus scheme and extension
    (`s3://b/audio/spk1/0001.flac` -> `b/audio/spk1/0001`), else `<shard_id>/<index>`."""
    if cfg.key_column and row.get(cfg.key_column) not in (None, ""):
        return str(row[cfg.key_column])
    if path:
        return path_key(path)
    return f"{shard.shard_id}/{index}"


def path_key(path: str) -> str:
    """The key a file path gives: minus scheme and extension (`s3://b/spk1/0001.flac` -> `b/spk1/0001`)."""
    return os.path.splitext(re.sub(r"^[A-Za-z0-9+.-]+://", "", path))[0]


def dedupe(key: str, seen: dict[str, int]) -> tuple[str, tuple[str, str] | None]:
    """(key, None) the first time a key is seen in a shard; (`key~dupN`, duplicate_key reject) after."""
    if key not in seen:
        seen[key] = 0
        return key, None
    seen[key] += 1
    return f"{key}~dup{seen[key]}", ("duplicate_key", f"key {key!r} was already read earlier in this shard")


def wants_meta(ext: str, cfg: SourceConfig) -> bool:
    """Whether a metadata member or sibling file `<key>.<ext>` can feed a passthrough column."""
    return ext == "json" or ("text" if ext == "txt" else ext) in cfg.metadata_columns


def parse_meta(ext: str, raw: bytes) -> dict[str, Any]:
    """Columns from a metadata member or file: a .json object's fields ({} for other JSON or invalid
    JSON); else {"text" for .txt, else the extension: the text (stripped for .cls)}."""
    if ext == "json":
        try:
            value = json.loads(raw)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}
    text = raw.decode("utf-8", "replace")
    return {"text" if ext == "txt" else ext: text.strip() if ext == "cls" else text}


def ext_of(path: str) -> str:
    base = path.replace("\\", "/").rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[-1].lower() if "." in base else ""
