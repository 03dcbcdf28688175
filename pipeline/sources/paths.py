"""What a path spec matches, and which reader takes it: webdataset tars or audio files.

A spec is a directory (listed recursively), a glob (`**` crosses directories), a brace pattern
(`clips/a-{000..009}.wav`, `{train,dev}/**/*.flac`) or a file, as a local path or an fsspec URL.
Files and directories whose name starts with '.' are never listed from a directory or a glob
(macOS `._x.wav` resource forks are not audio).

    the spec matches                       kind
    tars only (.tar, .tar.gz, .tgz, ...)    webdataset: each tar is a shard
    audio files only (common.AUDIO_EXTS)   audio_files: `manifest_rows_per_shard` files a shard
    both                                   InputError: give a glob for one of them
    neither                                InputError "... matches 0 files ...", naming what it found

A file named explicitly (no wildcard, not a directory) is read as a tar unless it has an audio
extension, whatever its name, as before audio files were a kind of their own.

Cost on an object store: a brace pattern naming many paths in one directory (`shards/train-{000000..
999999}.tar`) lists that directory once (1,000 keys a request) and keeps the names it asked for,
instead of one metadata request per path; a directory with fewer than `LIST_FROM` of the names is
asked about each name (listing a large directory for a few of its names would cost more).
"""

from __future__ import annotations

import posixpath
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

import braceexpand
import fsspec

from ..config import SourceConfig
from ..errors import InputError
from .common import AUDIO_EXTS, ext_of, is_remote, join_url, normalize

LIST_FROM = 100  # names a brace pattern gives in one directory from which that directory is listed once
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tbz2", ".tar.xz", ".txz")
_MAGIC = "*?[{"


@dataclass(frozen=True)
class Matches:
    """Files a path spec matched: `url(f)` for each `f` of `files`.

    root: the directory, the pattern's fixed directory prefix (`wavs` for `wavs/**/*.wav`) or the
      named file's directory, as a local absolute path or an fsspec URL; keys are relative to it.
    files: '/'-separated paths relative to `root`, sorted and unique.
    whole_dirs: the spec names directories only, so `files` holds every file in each directory.
    named: every file was named explicitly (no wildcard, no directory).
    """

    spec: str
    root: str
    files: tuple[str, ...]
    whole_dirs: bool
    named: bool

    def url(self, rel: str) -> str:
        return join_url(self.root, rel)

    def is_tar(self, rel: str) -> bool:
        return rel.lower().endswith(TAR_SUFFIXES) or (self.named and not is_audio(rel))

    @cached_property
    def tars(self) -> list[str]:
        return [f for f in self.files if self.is_tar(f)]

    @cached_property
    def audio(self) -> list[str]:
        return [f for f in self.files if is_audio(f)]

    @cached_property
    def others(self) -> list[str]:
        return [f for f in self.files if not is_audio(f) and not self.is_tar(f)]

    def counts(self) -> str:
        """`0 tar files, 312 audio files, 310 other files (.txt 300, .json 10)`: the 5 commonest others."""
        others = Counter(f".{ext_of(f)}" if ext_of(f) else "no extension" for f in self.others)
        line = f"{len(self.tars)} tar files, {len(self.audio)} audio files"
        if not others:
            return line
        common = sorted(others.items(), key=lambda item: (-item[1], item[0]))
        kinds = ", ".join(f"{e} {n}" for e, n in common[:5]) + (", ..." if len(others) > 5 else "")
        return f"{line}, {sum(others.values())} other files ({kinds})"


def is_audio(rel: str) -> bool:
    return ext_of(rel) in AUDIO_EXTS


def choose(m: Matches) -> str:
    """The reader kind for what `m` holds ("webdataset" or "audio_files"); InputError when it is unclear."""
    tars, audio = m.tars, m.audio
    if tars and audio:
        raise InputError(
            f"input {m.spec!r} holds both tars and audio files ({m.counts()}); give one kind, e.g. "
            f"{posixpath.join(m.root, '**/*.tar')!r} or {posixpath.join(m.root, '**/*.' + ext_of(audio[0]))!r}")
    if not tars and not audio:
        raise InputError(
            f"input {m.spec!r} matches 0 files to tokenize ({m.counts()}); accepted: webdataset tars "
            f"({', '.join(TAR_SUFFIXES)}) or audio files (.{', .'.join(sorted(AUDIO_EXTS))}); a manifest "
            "ends in .jsonl/.csv; a Hugging Face dataset or an audiofolder with metadata.csv is hf:<dir>")
    return "webdataset" if tars else "audio_files"


def summary(m: Matches, kind: str) -> str:
    """One line for the job's log: what `m` holds and what is tokenized."""
    what = "tars as webdataset shards" if kind == "webdataset" else "audio files"
    line = f"{m.spec}: {m.counts()}; tokenizing the {what}"
    tables = sorted({f.rsplit("/", 1)[-1] for f in m.files} & {"metadata.csv", "metadata.jsonl"})
    if kind == "audio_files" and tables:
        line += f" ({' and '.join(tables)} not read: hf:<dir> reads an audiofolder's metadata table)"
    return line


def match(spec: str, cfg: SourceConfig) -> Matches:
    """Every file `spec` names (see the module docstring); InputError for named paths that do not exist."""
    patterns = list(braceexpand.braceexpand(spec))
    try:
        fs, path = fsspec.core.url_to_fs(_as_path(spec), **cfg.storage_options)
    except (ImportError, ValueError) as exc:  # unknown protocol, missing filesystem package
        raise InputError(f"input {spec!r}: {type(exc).__name__}: {exc}") from exc
    found = _expand(fs, [fs._strip_protocol(_as_path(p)) for p in patterns])
    missing = [p for p, f in zip(patterns, found) if f is None]
    if missing:
        raise InputError(f"input {spec!r}: {len(missing)} path(s) do not exist, e.g. {missing[:3]}")
    how = {f[1] for f in found}
    path = path.rstrip("/") or "/"
    if len(patterns) == 1 and how == {"dir"}:
        root = path
    elif len(patterns) == 1 and how == {"file"}:
        root = posixpath.dirname(path)
    else:
        root = _fixed_prefix(path)
    paths = sorted({p for f in found for p in f[0]})
    if any(not p.startswith(root.rstrip("/") + "/") for p in paths):  # e.g. {/a,/b}/x.wav
        root = posixpath.commonpath([posixpath.dirname(p) for p in paths])
    rel = [p[len(root.rstrip("/")) + 1:] for p in paths]
    if how != {"file"}:
        rel = [r for r in rel if not any(part.startswith(".") for part in r.split("/"))]
    root_url = fs.unstrip_protocol(root) if is_remote(spec) else root
    return Matches(spec, root_url, tuple(rel), how == {"dir"}, how == {"file"})


def list_dir(m: Matches, rel_dir: str, cfg: SourceConfig) -> list[str]:
    """Names of the files in directory `rel_dir` of `m.root` (not recursive); [] when it cannot be listed."""
    fs, path = fsspec.core.url_to_fs(m.url(rel_dir) if rel_dir else m.root, **cfg.storage_options)
    try:
        return [posixpath.basename(p["name"].rstrip("/")) for p in fs.ls(path, detail=True) if p["type"] == "file"]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _as_path(spec: str) -> str:
    return spec if is_remote(spec) else normalize(spec)


def _fixed_prefix(path: str) -> str:
    """The directories before the first component with a wildcard or brace: `/d/wavs/**/*.wav` -> `/d/wavs`."""
    parts = path.split("/")
    fixed = next(i for i, part in enumerate(parts + ["*"]) if any(c in part for c in _MAGIC))
    return "/".join(parts[: min(fixed, len(parts) - 1)]) or "/"


def _expand(fs, paths: list[str]) -> list[tuple[list[str], str] | None]:
    """`_files` of each brace alternative: those named in a directory that holds LIST_FROM or more of
    them come from one listing of it, the others are asked about one by one, 16 at a time."""
    by_dir: dict[str, list[int]] = {}
    for i, path in enumerate(paths):
        if not any(c in path for c in _MAGIC[:-1]):
            by_dir.setdefault(posixpath.dirname(path), []).append(i)
    found: list = [None] * len(paths)
    alone = set(range(len(paths)))
    for directory, named in by_dir.items():
        if len(named) < LIST_FROM:
            continue
        listed = _listing(fs, directory)
        if listed is None:  # it cannot be listed (permissions): its names are asked about one by one
            continue
        for i in named:
            kind = listed.get(posixpath.basename(paths[i]))
            if kind == "file":
                found[i] = [paths[i]], "file"
            if kind in ("file", None):  # None: it does not exist; a directory is asked about on its own
                alone.discard(i)
    rest = sorted(alone)
    with ThreadPoolExecutor(16) as pool:
        for i, files in zip(rest, pool.map(lambda i: _files(fs, paths[i]), rest)):
            found[i] = files
    return found


def _listing(fs, directory: str) -> dict[str, str] | None:
    """{name: "file" | "directory" | ...} of what `directory` holds ({} when it does not exist, None when
    it cannot be listed)."""
    try:
        entries = fs.ls(directory, detail=True)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except OSError:
        return None
    return {posixpath.basename(e["name"].rstrip("/")): e.get("type") for e in entries}


def _files(fs, path: str) -> tuple[list[str], str] | None:
    """(file paths, "glob" | "dir" | "file") for one brace alternative; None when a named path does not exist."""
    if any(c in path for c in _MAGIC[:-1]):
        return [p for p, info in fs.glob(path, detail=True).items() if info.get("type") != "directory"], "glob"
    try:
        kind = fs.info(path).get("type")
    except FileNotFoundError:
        return None
    if kind == "directory":
        return fs.find(path, withdirs=False), "dir"
    return [path], "file"
