"""Input shards: one reader per format, over the rules they share (`common.py`).

`list_shards(spec, cfg)` turns an input spec into `Shard`s in a fixed order; `read_shard(shard, cfg)`
streams a shard's `Sample`s (encoded audio bytes + passthrough metadata) in the same order on every
call, so a caller that gets `ShardReadError` halfway reads the shard again from the start. Storage
is read through `timed_read.open_timed`: storage that stalls for `cfg.read_timeout_s` raises
ShardReadError instead of hanging the reader.

    kind         module          spec
    audio_files  audio_files.py  a directory, glob or brace pattern matching audio files (paths.py)
    webdataset   tar.py          a directory, glob or brace pattern matching tars, or a named tar file
    manifest     manifest.py     a .jsonl / .csv listing audio files
    hf           hf.py           hf:<save_to_disk dir | Parquet | audiofolder | hub name>
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ..config import SourceConfig
from ..errors import InputError
from ..records import Sample, Shard
from . import audio_files, hf, manifest, paths, tar
from .common import ShardReadError, normalize, shard_id_for

__all__ = ["READERS", "ShardReadError", "list_shards", "read_shard", "shard_id_for"]

READERS: dict[str, Callable[[Shard, SourceConfig], Iterator[Sample]]] = {
    "audio_files": audio_files.read_audio_files,
    "webdataset": tar.read_tar,
    "manifest": manifest.read_manifest,
    "hf": hf.read_hf,
}


def list_shards(spec: str, cfg: SourceConfig, log: Callable[[str], None] | None = None) -> list[Shard]:
    """Shards named by `spec`, in a deterministic order; InputError naming the spec when it matches nothing.

    A path spec's files decide its kind (`paths.choose`); `log` gets one line saying what it found.
    """
    if spec.startswith("pipe:"):
        raise InputError(f"refusing input {spec!r}: pipe: URLs run shell commands; give a path or fsspec URL")
    if spec.startswith("hf:"):
        shards = hf.list_hf(spec[3:], cfg)
    elif spec.lower().endswith((".jsonl", ".csv")):
        shards = manifest.list_manifest(normalize(spec), cfg)
    else:
        found = paths.match(spec, cfg)
        kind = paths.choose(found)
        if kind == "webdataset":
            shards = tar.tar_shards([found.url(f) for f in found.tars])
        else:
            shards = audio_files.list_audio_files(found, cfg)
        if log is not None and not found.named:
            log(f"[audiotok] {paths.summary(found, kind)}")
    if not shards:
        raise InputError(f"input {spec!r} matches no shard")
    return shards


def read_shard(shard: Shard, cfg: SourceConfig) -> Iterator[Sample]:
    """Every sample of `shard`, in shard order; raises ShardReadError when the shard breaks off."""
    reader = READERS.get(shard.kind)
    if reader is None:
        raise ValueError(f"unknown shard kind {shard.kind!r}; expected one of {sorted(READERS)}")
    return reader(shard, cfg)
