"""Audio files as they lie in a directory (or match a glob or brace pattern), local or fsspec URLs.

The files are sorted by their path relative to the spec's root (`paths.Matches.root`: the
directory, or the pattern's fixed prefix) and cut into shards of `cfg.manifest_rows_per_shard`
files, so the same files give the same shards, shard ids and rows on every run (files added
between runs shift the shards after them: write such a run to a new output).

Keys are those relative paths without their extension (`spk1/ch2/0001.flac` -> `spk1/ch2/0001`).
Two files with one key (`a.wav` and `a.flac`) are decided once for the whole input: the first in
sorted order (`a.flac`) is tokenized, each other one is a recorded `duplicate_key` rejection under
the key `a~dup1`, `a~dup2`... naming the file kept.

Metadata comes from sibling files with the same stem, as from a webdataset sample's members:
`a.txt` -> the `text` column, the fields of the object in `a.json` -> columns, `a.<column>` ->
that column (text), for the columns named in `cfg.metadata_columns`; a sibling larger than
`common.MAX_META_BYTES` or a JSON file that is not an object is left out.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..config import SourceConfig
from ..records import Sample, Shard
from .common import (
    AUDIO_EXTS,
    MAX_META_BYTES,
    ShardReadError,
    ext_of,
    fetch,
    is_remote,
    join_url,
    keep_meta,
    normalize,
    parse_meta,
    path_key,
    shard_id_for,
    wants_meta,
)
from .paths import Matches, list_dir
from .timed_read import open_timed


@dataclass(frozen=True)
class AudioFile:
    """One audio file of a shard.

    path: relative to the shard's root, '/'-separated.
    key: the sample key (`path` minus extension, or `<that>~dupN` for a duplicate).
    sidecars: sibling metadata files (relative paths), read in this order, later fields winning.
    duplicate_of: for a duplicate key, the path of the file that is tokenized under the key.
    meta: metadata known when listing (an audiofolder's metadata.csv row).
    """

    path: str
    key: str
    sidecars: tuple[str, ...] = ()
    duplicate_of: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AudioFiles:
    """Options of an audio-files shard: `files`, in order, under `root` (local path or fsspec URL)."""

    root: str
    files: tuple[AudioFile, ...]

    def url(self, rel: str) -> str:
        return join_url(self.root, rel)


def list_audio_files(m: Matches, cfg: SourceConfig) -> list[Shard]:
    """Shards of the audio files in `m`, with their sidecars: `{spec}#files={first}-{end}` each."""
    audio = m.audio
    siblings = set(m.files) if m.whole_dirs else _siblings(m, audio, cfg)
    by_stem: dict[str, list[str]] = defaultdict(list)
    for rel in sorted(siblings):
        stem, ext = posixpath.splitext(rel)
        if ext[1:] not in AUDIO_EXTS and wants_meta(ext[1:], cfg):
            by_stem[stem].append(rel)
    files = [AudioFile(rel, key, _json_first(by_stem.get(posixpath.splitext(rel)[0], [])), dup)
             for rel, key, dup in unique_keys(audio)]
    return shards_of(m.spec if is_remote(m.spec) else normalize(m.spec), m.root, files, cfg)


def shards_of(label: str, root: str, files: list[AudioFile], cfg: SourceConfig) -> list[Shard]:
    """`files` (in order) cut into shards of cfg.manifest_rows_per_shard; shard urls are `{label}#files=a-b`."""
    step = max(1, cfg.manifest_rows_per_shard)
    shards = []
    for start in range(0, len(files), step):
        chunk = tuple(files[start : start + step])
        url = f"{label.rstrip('/')}#files={start}-{start + len(chunk)}"
        shards.append(Shard(shard_id_for(url), url, "audio_files", AudioFiles(root, chunk)))
    return shards


def unique_keys(paths: list[str]) -> list[tuple[str, str, str | None]]:
    """(path, key, path kept under that key or None) for sorted `paths`; a repeated key becomes `key~dupN`."""
    first: dict[str, str] = {}
    count: dict[str, int] = defaultdict(int)
    out = []
    for rel in paths:
        key = path_key(rel)
        if key not in first:
            first[key] = rel
            out.append((rel, key, None))
        else:
            count[key] += 1
            out.append((rel, f"{key}~dup{count[key]}", first[key]))
    return out


def read_audio_files(shard: Shard, cfg: SourceConfig) -> Iterator[Sample]:
    """Samples of the shard's files in order; raises ShardReadError when the storage fails (not a file)."""
    opts: AudioFiles = shard.options
    for item in opts.files:
        meta = keep_meta({**item.meta, **_read_sidecars(opts, item, cfg)}, cfg)
        ext = ext_of(item.path)
        if item.duplicate_of is not None:
            detail = f"{item.path}: its key {path_key(item.path)!r} is also {item.duplicate_of}'s, which is tokenized"
            yield Sample(item.key, shard.url, None, ext, meta, ("duplicate_key", detail), opts.url(item.path))
            continue
        data, reject = fetch(opts.url(item.path), cfg)
        yield Sample(item.key, shard.url, data, ext, meta, reject, opts.url(item.path))


def _siblings(m: Matches, audio: list[str], cfg: SourceConfig) -> set[str]:
    """Every file in the directories holding `audio` (one listing per directory, 16 at a time)."""
    dirs = sorted({posixpath.dirname(rel) for rel in audio})
    with ThreadPoolExecutor(16) as pool:
        names = list(pool.map(lambda d: list_dir(m, d, cfg), dirs))
    return {posixpath.join(d, n) for d, ns in zip(dirs, names) for n in ns}


def _json_first(sidecars: list[str]) -> tuple[str, ...]:
    """.json first: a .txt or .<column> file wins over a json field of the same name, as in tars."""
    return tuple(sorted(sidecars, key=lambda rel: not rel.endswith(".json")))


def _read_sidecars(opts: AudioFiles, item: AudioFile, cfg: SourceConfig) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for rel in item.sidecars:
        url = opts.url(rel)
        try:
            with open_timed(url, cfg.storage_options, cfg.read_timeout_s) as f:
                raw = f.read(MAX_META_BYTES + 1)
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            continue  # gone since listing, or unreadable: the item keeps its audio
        except OSError as exc:
            raise ShardReadError(f"reading {url[:200]}: {type(exc).__name__}: {exc}") from exc
        if len(raw) <= MAX_META_BYTES:
            meta.update(parse_meta(rel[len(posixpath.splitext(item.path)[0]) + 1:], raw))
    return meta
