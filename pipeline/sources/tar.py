"""webdataset tar shards: each tar (path, glob, brace pattern or fsspec URL) is one shard.

Tars are read with `tarfile` over a timed fsspec file object (`timed_read.open_timed`), member by
member (a seekable uncompressed tar in tarfile's "r:" mode, anything else streamed), rather
than read with the webdataset library: a shard cut short anywhere but after its end-of-archive
block raises ShardReadError (tarfile, and so webdataset, end such a stream quietly), members are
never extracted to disk, nothing is unpickled, links and devices are never followed, and `pipe:`
URLs are refused. Member names follow webdataset's convention (`tests/pipeline/sources/test_webdataset_conventions.py`
checks it against webdataset's TarWriter and reader): key = path up to the first dot of the basename.
"""

from __future__ import annotations

import lzma
import re
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..config import SourceConfig
from ..records import Sample, Shard
from .common import (
    AUDIO_EXTS,
    MAX_META_BYTES,
    PICKLE_EXTS,
    ShardReadError,
    dedupe,
    keep_meta,
    parse_meta,
    shard_id_for,
    wants_meta,
)
from .timed_read import open_timed

_TAR_ERRORS = (OSError, EOFError, tarfile.TarError, zlib.error, lzma.LZMAError)


def tar_shards(urls: list[str]) -> list[Shard]:
    """One shard per tar URL, in the given order."""
    return [Shard(shard_id_for(url), url, "webdataset") for url in urls]


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
    member: str = ""  # the audio member's name
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
            group.audio, group.ext, group.member = tar.extractfile(member).read(), last, member.name
        return
    if member.size > MAX_META_BYTES or not wants_meta(ext, cfg):
        return
    meta = parse_meta(ext, tar.extractfile(member).read())
    (group.json if ext == "json" else group.members).update(meta)


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
    return Sample(key, shard.url, group.audio, group.ext, meta, path=f"{shard.url}#{group.member}")


_COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")  # gzip, bzip2, xz


def _mode(f) -> str:
    """"r:" (members read whole, skipped ones seeked over) for a seekable uncompressed tar; else the
    stream mode "r|*" (any compression, reads in 10 KiB records: ~2.4x the CPU per byte)."""
    if f.seekable() and not f.peek(6).startswith(_COMPRESSED):
        return "r:"
    return "r|*"


def read_tar(shard: Shard, cfg: SourceConfig) -> Iterator[Sample]:
    """Every sample of a tar shard, in member order; raises ShardReadError when the shard breaks off."""
    seen: dict[str, int] = {}
    group: _Group | None = None
    try:
        with open_timed(shard.url, cfg.storage_options, cfg.read_timeout_s) as f, tarfile.open(
            fileobj=f, mode=_mode(f), tarinfo=_StrictTarInfo
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
