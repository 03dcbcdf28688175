"""The compacted manifest: a snapshot of every committed record, read together with the records newer than it.

The commit point stays the shard's record `_manifest/<shard_id>.json` (written last by
`writer.commit_shard`). Reading a million of them one GET each costs hours on an object store, so
the job also writes, after cleanup and at the end of a run, a snapshot of all of them (as table
formats checkpoint their commit logs):

    _manifest/_snapshot/snapshot-<generation:010d>.jsonl.zst

zstd-compressed JSON lines: a header `{"snapshot": 1, "generation": g, "records": n,
"newest_finished_at": t}`, one line `{"stamp": s, "record": {...}}` per committed record (the
record as its file holds it, and the stamp the listing gave that file: its size and, where the
filesystem lists one, its ETag / generation / mtime / inode), and a last line `{"end": n}` (a file
without it is truncated: ignored).

Reading the committed state (`load`) is one listing of `_manifest/` (plus, at job start, of the
part folders and the root, all listed at once on threads), one GET of the newest snapshot, and a
parallel read (`fs.cat` of many paths; a thread pool on the local disk) of the records the
snapshot does not hold with that same stamp. The listing decides what is committed:

  - a record without a snapshot entry is committed (read from its file);
  - a snapshot entry whose record file is gone is not: a snapshot never makes a shard committed
    whose record is gone, and `writer.cleanup_uncommitted` still checks every shard's parts against
    one listing of the part folders;
  - an entry whose record's stamp changed (the record was rewritten since) is read afresh.

The job snapshots only shards it will not redo (a shard it redoes is left out, so that its new
record is read from its file), so that the rule holds on a store whose listing gives sizes only.
Writing: local disk, a temp file (`.tmp-*`, fsynced) renamed into place; object stores, one PUT
(an object appears whole or not at all). Older snapshots are deleted after the new one is in
place. A crash at any point leaves the records as they were, and at worst a `.tmp-*` file (cleanup
removes it) or an older snapshot (read with more records after it). Fault stage (`fault_injection`):
`snapshot_write`, between writing the new snapshot's bytes and putting it in place.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import fsspec
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from . import fault_injection, shard_files
from .records import ShardRecord
from .size_listing import Listed, SizeListing

log = logging.getLogger(__name__)

MANIFEST = "_manifest"
SNAPSHOTS = f"{MANIFEST}/_snapshot"
PROVENANCE = "_provenance.json"
PART_DIRS = ("tokens", "rejects", "rows")  # listed at a start: the parts, and the row-index files (`shard_rows`)
TMP_PREFIX = ".tmp-"
FORMAT = 1
_NAME = re.compile(r"snapshot-(\d{10})\.jsonl\.zst")
_VERSION_KEYS = ("ETag", "etag", "generation", "md5Hash", "LastModified", "mtime", "updated", "ino")
# object stores: listings of a file per shard (the manifest, the part folders) made at once; each is a
# list of dicts while it is made, so this bounds the driver's peak memory at a start (docs/scale.md)
LARGE_LISTINGS_AT_ONCE = 2
READ_THREADS = 16  # records read at once on the local disk (object stores: the filesystem's own cat)
_CHUNK = 2**20  # decompressed bytes parsed at a time (a fixed part of the peak memory)


@dataclass
class ManifestState:
    """The committed state of an output directory as one read found it.

    records: {shard_id: record} of the committed shards, sorted by shard id.
    stamps: {shard_id: the stamp of its record file}.
    listings: {folder: {file name: Listed}} of what was listed: `_manifest` (its files other than the
        records, whose stamps are `stamps`), `_manifest/_snapshot`, and for a job start
        (`load(..., start=True)`) `tokens`, `rejects`, `rows` and "" (the root), these as `SizeListing`s
        (names and sizes in arrays).
    provenance: the `_provenance.json` sidecar as found (start=True; None when there is none).
    snapshot: the path of the snapshot read (None: none usable); generation: its generation (0: none).
    from_snapshot / from_files: how many committed records came from the snapshot / from their files.
    """

    fs: object
    root: str
    records: dict[str, ShardRecord]
    stamps: dict[str, str]
    listings: dict[str, Mapping[str, Listed]]
    provenance: dict | None = None
    snapshot: str | None = None
    generation: int = 0
    snapshot_stamps: dict[str, str] = field(default_factory=dict)  # what the snapshot read holds
    from_snapshot: int = 0
    from_files: int = 0
    started: bool = False

    @property
    def local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def record_path(self, shard_id: str) -> str:
        return f"{self.root}/{MANIFEST}/{shard_id}.json"

    def url(self, path: str) -> str:
        return path if self.local else self.fs.unstrip_protocol(path)


def filesystem(out_dir: str, storage_options: dict | None = None):
    """(fs, root) of an output directory, with the output filesystem's storage options."""
    fs, root = fsspec.core.url_to_fs(str(out_dir), **(storage_options or {}))
    return fs, root.rstrip("/") or "/"


def _stamp(entry: dict) -> str:
    return "/".join([str(entry.get("size"))] + [f"{k}={entry[k]}" for k in _VERSION_KEYS if entry.get(k) is not None])


def list_files(fs, path: str, stamps: bool = True) -> dict[str, Listed] | SizeListing:
    """{file name: Listed} of the plain files directly in `path` ({} when it does not exist).
    stamps=False: a `SizeListing` (names and sizes in arrays, no stamps), for folders whose files are
    checked by size (the parts: at 1M shards a dict of them would hold ~0.6 GB of the driver's memory).

    Listed afresh: s3fs and gcsfs cache listings per filesystem instance, and fsspec reuses the
    instance, so a driver would otherwise not see the shards its actors committed since.
    """
    if stamps:
        return {name: Listed(size, stamp) for name, size, stamp in _entries(fs, path, stamps)}
    return SizeListing.build((name, size) for name, size, _ in _entries(fs, path, stamps))


def _entries(fs, path: str, stamps: bool):
    """(name, size, stamp or "") of the plain files directly in `path` (none when it does not exist)."""
    if isinstance(fs, LocalFileSystem):
        try:
            with os.scandir(path) as entries:
                for e in entries:
                    if e.is_file(follow_symlinks=False):
                        st = e.stat(follow_symlinks=False)
                        yield e.name, st.st_size, (f"{st.st_size}/mtime={st.st_mtime_ns}/ino={st.st_ino}"
                                                   if stamps else "")
        except (FileNotFoundError, NotADirectoryError):
            return
        return
    fs.invalidate_cache(path)
    try:
        entries = fs.ls(path, detail=True)
    except FileNotFoundError:
        return
    for e in entries:
        if e.get("type") == "file":
            yield e["name"].rstrip("/").rsplit("/", 1)[-1], e.get("size"), _stamp(e) if stamps else ""


def _read_provenance(fs, root: str) -> dict | None:
    try:
        return json.loads(fs.cat_file(f"{root}/{PROVENANCE}"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("unreadable %s/%s (%s): taken as absent", root, PROVENANCE, exc)
        return None


def read_many(fs, paths: list[str]) -> dict[str, bytes]:
    """{path: bytes} of the files at `paths` read in parallel; the unreadable ones are left out."""
    if not paths:
        return {}
    if isinstance(fs, LocalFileSystem):
        def one(path):
            try:
                with open(path, "rb") as f:
                    return path, f.read()
            except OSError:
                return path, None

        with ThreadPoolExecutor(READ_THREADS) as pool:
            return {p: b for p, b in pool.map(one, paths) if b is not None}
    return {p: b for p, b in fs.cat(paths, on_error="omit").items() if isinstance(b, bytes)}


def _parse_record(name: str, blob: bytes | None, where: str) -> ShardRecord | None:
    try:
        data = json.loads(blob)
    except (TypeError, ValueError):
        log.warning("unreadable manifest record %s/%s: ignored", where, name)
        return None
    if not isinstance(data, dict) or data.get("shard_id") != name[: -len(".json")]:
        log.warning("manifest record %s names shard %r: ignored", name,
                    data.get("shard_id") if isinstance(data, dict) else None)
        return None
    try:
        return ShardRecord.from_json(data)
    except (TypeError, ValueError) as exc:
        log.warning("manifest record %s/%s does not hold a record (%s): ignored", where, name, exc)
        return None


def _snapshot_names(listing: dict[str, Listed]) -> list[tuple[int, str]]:
    """(generation, name) of the snapshots listed, newest first."""
    found = [(int(m.group(1)), n) for n in listing if (m := _NAME.fullmatch(n))]
    return sorted(found, reverse=True)


def read_snapshot(fs, path: str, parse=None) -> dict[str, tuple[str, object]]:
    """{shard_id: (stamp, record JSON)} of a snapshot file; ValueError when it is not a whole snapshot.
    parse: made of each record's JSON as it is read (e.g. `ShardRecord.from_json`), so that the JSON of
    every record is not held at once (at 1M shards: GBs)."""
    return {shard_id: (stamp, parse(record) if parse else record)
            for shard_id, stamp, record in snapshot_entries(fs, path)}


def snapshot_entries(fs, path: str):
    """(shard_id, stamp, record JSON) of each entry of a snapshot file, as it is read; ValueError (at
    the end, or where the file is not a snapshot) when it is not a whole snapshot: a caller keeps
    what it made of the entries only once the iteration has ended."""
    with fs.open(path, "rb", block_size=64 * 2**20) as f:
        stream = pa.input_stream(f, compression="zstd")
        header = end = None
        count = 0
        rest = b""
        while True:
            chunk = stream.read(_CHUNK)
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop() if chunk else b""
            for line in lines:
                if not line:
                    continue
                if end is not None:
                    raise ValueError("data after the end line")
                item = json.loads(line)
                if header is None:
                    if item.get("snapshot") != FORMAT:
                        raise ValueError(f"not a snapshot of format {FORMAT}: {item}")
                    header = item
                elif "end" in item:
                    end = item["end"]
                else:
                    record = item["record"]
                    count += 1
                    yield record["shard_id"], item["stamp"], record
            if not chunk:
                break
    if header is None or end != count or header.get("records") != count:
        raise ValueError(f"truncated snapshot ({count} records, end line {end}, header {header})")


def load(out_dir: str, *, start: bool = False, storage_options: dict | None = None) -> ManifestState:
    """The committed state of `out_dir`: the newest snapshot, then the records newer than it.

    start=True (a job start): also lists the part folders and the root (for `writer.cleanup_uncommitted`)
    and reads the provenance sidecar, all at the same time as the manifest's listing.
    """
    fs, root = filesystem(out_dir, storage_options)
    large = [MANIFEST, *(PART_DIRS if start else ())]  # a file per shard each
    small = [SNAPSHOTS, *([""] if start else ())]
    at_once = len(large) if isinstance(fs, LocalFileSystem) else min(len(large), LARGE_LISTINGS_AT_ONCE)
    with ThreadPoolExecutor(at_once) as pool, ThreadPoolExecutor(len(small) + 1) as side:
        listed = {name: (pool if name in large else side).submit(
                      _list_records if name == MANIFEST else list_files, fs, f"{root}/{name}" if name else root,
                      name == SNAPSHOTS) for name in large + small}
        sidecar = side.submit(_read_provenance, fs, root) if start else None
        listings = {name: job.result() for name, job in listed.items()}
        provenance = sidecar.result() if sidecar else None
    names, listings[MANIFEST] = listings[MANIFEST]  # {shard_id: its record's stamp}, the manifest's other files
    snapshot, generation, held, snapshot_stamps = None, 0, {}, {}
    for gen, name in _snapshot_names(listings[SNAPSHOTS]):
        held, snapshot_stamps = {}, {}
        try:  # records whose stamp the listing gives are made as read; the others are read from their files
            for shard_id, stamp, record in snapshot_entries(fs, f"{root}/{SNAPSHOTS}/{name}"):
                current = names.get(shard_id)
                if current == stamp:
                    held[shard_id] = ShardRecord.from_json(record)
                    stamp = current  # the listing's string: one copy held
                snapshot_stamps[shard_id] = stamp
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("snapshot %s/%s/%s unusable (%s): trying an older one", root, SNAPSHOTS, name, exc)
            held, snapshot_stamps = {}, {}
            continue
        snapshot, generation = f"{root}/{SNAPSHOTS}/{name}", gen
        break
    state = ManifestState(fs, root, {}, {}, listings, provenance, snapshot, generation, snapshot_stamps, started=start)
    # generations are never reused: one newer than every snapshot listed, readable or not
    state.generation = max([generation, *(g for g, _ in _snapshot_names(listings[SNAPSHOTS]))])
    fresh = sorted(s for s in names if s not in held)
    blobs = read_many(fs, [state.record_path(s) for s in fresh])
    for shard_id in fresh:
        record = _parse_record(f"{shard_id}.json", blobs.pop(state.record_path(shard_id), None), f"{root}/{MANIFEST}")
        if record is not None:
            held[shard_id] = record
            state.from_files += 1
    state.from_snapshot = len(held) - state.from_files
    in_order = not fresh and all(a < b for a, b in itertools.pairwise(held))  # as snapshots are written
    for shard_id in held if in_order else sorted(held):
        record = held[shard_id]
        state.records[record.shard_id] = record  # the record's own string as the key: one copy held
        state.stamps[record.shard_id] = names[shard_id]
    return state


def _list_records(fs, path: str, stamps: bool = True) -> tuple[dict[str, str], dict[str, Listed]]:
    """The manifest's listing: ({shard_id: the stamp of its record file}, {name: Listed} of its other
    files: temp files and the like)."""
    records, others = {}, {}
    for name, size, stamp in _entries(fs, path, True):
        if name.endswith(".json") and not name.startswith(TMP_PREFIX):
            records[name[: -len(".json")]] = stamp
        else:
            others[name] = Listed(size, stamp)
    return records, others


def is_current(state: ManifestState, shard_ids=None) -> bool:
    """Whether the snapshot read holds exactly the records `shard_ids` (default: all) with their stamps."""
    keep = state.records.keys() if shard_ids is None else shard_ids
    if state.snapshot is None:
        return not keep  # nothing to hold, nothing held
    held = state.snapshot_stamps
    return len(held) == len(keep) and all(held.get(s) == state.stamps[s] for s in keep)


def write(state: ManifestState, shard_ids=None, force: bool = False) -> str | None:
    """Write a snapshot of `state`'s committed records (only `shard_ids` when given: the shards the job
    will not redo) as the next generation, then delete the older snapshots. Returns its path, or None
    when the snapshot read already holds exactly these records (nothing written unless `force`)."""
    keep = sorted(state.records if shard_ids is None else set(shard_ids) & state.records.keys())
    if not force and is_current(state, keep):
        return None
    fs, root = state.fs, state.root
    generation = state.generation + 1
    final = f"{root}/{SNAPSHOTS}/snapshot-{generation:010d}.jsonl.zst"
    newest = max((state.records[s].finished_at or 0.0 for s in keep), default=0.0)
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as out:
        out.write(json.dumps({"snapshot": FORMAT, "generation": generation, "records": len(keep),
                              "newest_finished_at": newest, "written_at": time.time()}).encode() + b"\n")
        lines = []
        for shard_id in keep:
            lines.append(json.dumps({"stamp": state.stamps[shard_id], "record": _record_json(state.records[shard_id])},
                                    separators=(",", ":"), default=_plain))
            if len(lines) >= 4096:
                out.write(("\n".join(lines) + "\n").encode())
                lines.clear()
        if lines:
            out.write(("\n".join(lines) + "\n").encode())
        out.write(json.dumps({"end": len(keep)}).encode() + b"\n")
    blob = sink.getvalue()
    fs.makedirs(f"{root}/{SNAPSHOTS}", exist_ok=True)
    if state.local:
        tmp = f"{root}/{SNAPSHOTS}/{TMP_PREFIX}snapshot-{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())
            fault_injection.maybe_fault("snapshot_write", f"snapshot-{generation:010d}")
            os.replace(tmp, final)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        fd = os.open(os.path.dirname(final), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    else:
        fault_injection.maybe_fault("snapshot_write", f"snapshot-{generation:010d}")
        fs.pipe_file(final, blob.to_pybytes())  # one PUT: the object appears whole or not at all
    older = [f"{root}/{SNAPSHOTS}/{n}" for g, n in _snapshot_names(state.listings.get(SNAPSHOTS, {})) if g < generation]
    if older:
        try:
            fs.rm(older)
        except OSError as exc:
            log.warning("could not remove older snapshot(s) %s (%s); the next snapshot removes them", older, exc)
    state.listings[SNAPSHOTS] = {final.rsplit("/", 1)[-1]: Listed(len(blob), "")}
    state.snapshot, state.generation = final, generation
    state.snapshot_stamps = {s: state.stamps[s] for s in keep}
    return final


def refresh(state: ManifestState, committed: dict[str, ShardRecord]) -> ManifestState:
    """The state after a run, for its closing snapshot: the manifest listed again; the records the
    run committed (`committed`, as the actors returned them) taken as they are, the others from
    `state` where their stamp is unchanged, else read from their files (in parallel)."""
    fs, root = state.fs, state.root
    with ThreadPoolExecutor(2) as pool:
        manifest = pool.submit(_list_records, fs, f"{root}/{MANIFEST}")
        snapshots = pool.submit(list_files, fs, f"{root}/{SNAPSHOTS}")
        names, others = manifest.result()
        listings = {MANIFEST: others, SNAPSHOTS: snapshots.result()}
    known = {s: r for s, r in state.records.items() if s in names and state.stamps.get(s) == names[s]}
    known.update({s: r for s, r in committed.items() if s in names and r.shard_id == s})
    unread = sorted(set(names) - known.keys())
    blobs = read_many(fs, [state.record_path(s) for s in unread])
    for shard_id in unread:
        record = _parse_record(f"{shard_id}.json", blobs.get(state.record_path(shard_id)), f"{root}/{MANIFEST}")
        if record is not None:
            known[shard_id] = record
    records = {s: known[s] for s in sorted(known)}
    generation = max([state.generation, *(g for g, _ in _snapshot_names(listings[SNAPSHOTS]))])
    return ManifestState(fs, root, records, {s: names[s] for s in records}, listings, state.provenance,
                         state.snapshot, generation, state.snapshot_stamps, started=False)


_FIELDS = dataclasses.fields(ShardRecord)


def _record_json(record: ShardRecord) -> dict:
    """`record.to_json()` without `dataclasses.asdict`'s deep copies (6x faster): its fields, and lists of
    dataclasses (the encode batches) as their fields."""
    out = {f.name: getattr(record, f.name) for f in _FIELDS}  # slots: no __dict__
    for name, value in out.items():
        if isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            out[name] = [dict(item.__dict__) for item in value]
    out["files"] = shard_files.as_json(record.files)
    return out


def _plain(value):
    return value.item() if hasattr(value, "item") else str(value)
