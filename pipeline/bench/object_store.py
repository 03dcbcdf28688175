"""A fake object store ("fakes3://bucket/key") that charges every request like S3, on a simulated clock.

Objects are files under a local directory (`FakeObjectStore.use(root)`); what a request costs is
not what this disk does but `StoreCosts`: `request_s` (20 ms) per request plus its bytes at
`bytes_per_s` (100 MB/s), at most `max_in_flight` (10, s3fs's default) requests at once: the store
holds a semaphore of that many around every request, and on the simulated clock (`sim_clock`) a
request beyond them waits for one to end, that wait charged. It behaves like s3fs where cost is
concerned:

    ls(dir)         LIST with a delimiter, `page_keys` (1,000) entries a page, pages one after another;
                    a file's entry has its size and an ETag that changes when it is written again
    find / glob     find: LIST without a delimiter (every key under the prefix), pages as above;
                    glob: the patterns' fixed prefix is found (fsspec's glob over `find`)
    info, exists    HEAD; a key that is not an object: one more LIST (is it a prefix?)
    open(rb), read  HEAD for the size, then ranged GETs of `block_size` (5 MiB) blocks, read ahead
    cat_file        GET (its bytes); cat([paths]): GETs in parallel, as s3fs's async cat, starting
                    when a request of the caller's thread would
    pipe, put_file  PUT (its bytes); open(wb): one PUT at close
    mv              COPY then DELETE (a rename is not atomic on an object store)
    rm              DELETE, up to 1,000 keys a request; makedirs: nothing (there are no directories)

`stats()` gives the requests by kind, the bytes moved and the simulated seconds since `use`.
"""

from __future__ import annotations

import io
import math
import os
import shutil
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import fsspec
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from .sim_clock import SimulatedClock

PROTOCOL = "fakes3"


@dataclass(frozen=True)
class StoreCosts:
    request_s: float = 0.020
    bytes_per_s: float = 100e6
    max_in_flight: int = 10
    page_keys: int = 1000
    block_size: int = 5 * 2**20


@dataclass(frozen=True)
class StoreStats:
    """Requests by kind (list, head, get, put, copy, delete), bytes moved, simulated seconds since `use`."""

    requests: dict[str, int]
    bytes_read: int
    bytes_written: int
    seconds: float
    waited_s: float  # simulated seconds requests waited for one of the max_in_flight connections
    most_in_flight: int  # the most requests the semaphore let in at once (real threads)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def minus(self, before: StoreStats) -> StoreStats:
        """What happened since `before`."""
        return StoreStats({k: n - before.requests.get(k, 0) for k, n in self.requests.items()
                           if n - before.requests.get(k, 0)},
                          self.bytes_read - before.bytes_read, self.bytes_written - before.bytes_written,
                          self.seconds - before.seconds, self.waited_s - before.waited_s, self.most_in_flight)


class _State:
    """What every instance shares (fsspec hands out one instance per arguments, code paths take URLs)."""

    def __init__(self, root: str, costs: StoreCosts):
        self.root, self.costs = root, costs
        self.clock = SimulatedClock(costs.max_in_flight)
        self.gate = threading.BoundedSemaphore(costs.max_in_flight)
        self.lock = threading.Lock()
        self.requests: Counter = Counter()
        self.bytes_read = self.bytes_written = 0
        self.in_flight = self.most_in_flight = 0


class FakeObjectStore(AbstractFileSystem):
    protocol = PROTOCOL
    root_marker = ""
    state: _State | None = None

    # ----- the store as a whole ------------------------------------------------------------------
    @classmethod
    def use(cls, root: str, costs: StoreCosts = StoreCosts()) -> None:
        """Serve objects from the local directory `root` from now on, with a fresh clock and counts."""
        os.makedirs(root, exist_ok=True)
        cls.state = _State(os.path.abspath(root), costs)

    @classmethod
    def stats(cls) -> StoreStats:
        s = cls._state()
        with s.lock:
            return StoreStats(dict(s.requests), s.bytes_read, s.bytes_written, s.clock.now, s.clock.waited,
                              s.most_in_flight)

    @classmethod
    def _state(cls) -> _State:
        if cls.state is None:
            raise RuntimeError(f"{PROTOCOL}:// has no backing directory: call FakeObjectStore.use(root) first")
        return cls.state

    @classmethod
    def _strip_protocol(cls, path):
        path = str(path)
        if path.startswith(f"{PROTOCOL}://"):
            path = path[len(PROTOCOL) + 3:]
        return path.rstrip("/")

    def _local(self, path: str) -> str:
        key = self._strip_protocol(path).lstrip("/")
        if ".." in key.split("/"):
            raise ValueError(f"{PROTOCOL}:// keys may not hold '..': {path!r}")
        return os.path.join(self._state().root, key)

    def _request(self, kind: str, op, read: int = 0, written: int = 0, after: float = 0.0):
        """Run `op()` as one request of `kind` moving `read`/`written` bytes (callables: of op's result),
        issued no earlier than the simulated instant `after`."""
        s = self._state()
        issued = s.clock.issue(after)
        with s.gate:
            with s.lock:
                s.in_flight += 1
                s.most_in_flight = max(s.most_in_flight, s.in_flight)
            try:
                result = op()
            finally:
                with s.lock:
                    s.in_flight -= 1
                    s.requests[kind] += 1
            n_read = read(result) if callable(read) else read
            n_written = written(result) if callable(written) else written
            with s.lock:
                s.bytes_read += n_read
                s.bytes_written += n_written
            s.clock.run(issued, s.costs.request_s + (n_read + n_written) / s.costs.bytes_per_s)
        return result

    # ----- listing -------------------------------------------------------------------------------
    def _entry(self, path: str, local_entry: os.DirEntry) -> dict:
        if local_entry.is_dir():
            return {"name": path, "size": 0, "type": "directory"}
        st = local_entry.stat()  # ETag: changes whenever the object is written again (as S3's, a content hash)
        return {"name": path, "size": st.st_size, "type": "file", "ETag": f'"{st.st_mtime_ns:x}-{st.st_ino:x}"'}

    def _pages(self, n_keys: int) -> None:
        """Charge the LIST pages after the first, one after another (each needs the last one's token)."""
        clock = self._state().clock
        for _ in range(max(0, math.ceil(n_keys / self._state().costs.page_keys) - 1)):
            self._request("list", lambda: None, after=clock.last_end())

    def ls(self, path, detail=True, **kwargs):
        path = self._strip_protocol(path)
        local = self._local(path)

        def page():
            if os.path.isfile(local):
                return [{"name": path, "size": os.path.getsize(local), "type": "file"}]
            try:
                with os.scandir(local) as it:
                    return sorted((self._entry(f"{path}/{e.name}".lstrip("/"), e) for e in it),
                                  key=lambda e: e["name"])
            except (FileNotFoundError, NotADirectoryError):
                return None

        entries = self._request("list", page)
        if entries is None:
            raise FileNotFoundError(path)
        self._pages(len(entries))
        return entries if detail else [e["name"] for e in entries]

    def find(self, path, maxdepth=None, withdirs=False, detail=False, **kwargs):
        if maxdepth is not None:  # fsspec walks level by level (one ls a directory)
            return super().find(path, maxdepth=maxdepth, withdirs=withdirs, detail=detail, **kwargs)
        path = self._strip_protocol(path)
        local = self._local(path)

        def flat():
            if os.path.isfile(local):
                return {path: {"name": path, "size": os.path.getsize(local), "type": "file"}}
            out = {}
            for top, dirs, files in os.walk(local):
                rel = os.path.relpath(top, local).replace(os.sep, "/")
                prefix = path if rel == "." else f"{path}/{rel}"
                for name in files:
                    out[f"{prefix}/{name}"] = {"name": f"{prefix}/{name}", "type": "file",
                                               "size": os.path.getsize(os.path.join(top, name))}
                if withdirs:
                    for name in dirs:
                        out[f"{prefix}/{name}"] = {"name": f"{prefix}/{name}", "type": "directory", "size": 0}
            return out

        found = self._request("list", flat)
        self._pages(sum(e["type"] == "file" for e in found.values()))
        found = dict(sorted(found.items()))
        return found if detail else list(found)

    def info(self, path, **kwargs):
        path = self._strip_protocol(path)
        local = self._local(path)
        size = self._request("head", lambda: os.path.getsize(local) if os.path.isfile(local) else None)
        if size is not None:
            return {"name": path, "size": size, "type": "file"}
        is_prefix = self._request("list", lambda: os.path.isdir(local) and bool(os.listdir(local)),
                                  after=self._state().clock.last_end())
        if is_prefix or not path:
            return {"name": path, "size": 0, "type": "directory"}
        raise FileNotFoundError(path)

    # ----- reading -------------------------------------------------------------------------------
    def cat_file(self, path, start=None, end=None, after: float = 0.0, **kwargs):
        local = self._local(path)

        def get():
            with open(local, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                lo = 0 if start is None else (start if start >= 0 else max(0, size + start))
                hi = size if end is None else (end if end >= 0 else max(0, size + end))
                f.seek(lo)
                return f.read(max(0, hi - lo))

        return self._request("get", get, read=len, after=after)

    def cat(self, path, recursive=False, on_error="raise", **kwargs):
        magic = isinstance(path, str) and any(c in path for c in "*?[")
        paths = self.expand_path(path, recursive=recursive) if recursive or magic else path
        if isinstance(paths, str):
            return self.cat_file(paths, **kwargs)

        # the GETs start when a request of the caller's would (from the main thread: once every earlier
        # request has ended, e.g. the listing that named these paths), then run side by side
        after = max(kwargs.pop("after", 0.0), self._state().clock.issue())

        def one(p):
            try:
                return p, self.cat_file(p, after=after, **kwargs)
            except Exception as exc:
                if on_error == "raise":
                    raise
                return p, exc

        with ThreadPoolExecutor(self._state().costs.max_in_flight) as pool:
            out = dict(pool.map(one, paths))
        if on_error == "omit":
            out = {p: v for p, v in out.items() if not isinstance(v, Exception)}
        return out

    def _open(self, path, mode="rb", block_size=None, autocommit=True, cache_options=None, **kwargs):
        if "r" in mode:
            return _ReadFile(self, path, mode, block_size=block_size or self._state().costs.block_size,
                             cache_type=kwargs.get("cache_type", "readahead"), cache_options=cache_options)
        return _WriteFile(self, self._strip_protocol(path))

    # ----- writing -------------------------------------------------------------------------------
    def pipe_file(self, path, value, mode="overwrite", **kwargs):
        local = self._local(path)

        def put():
            os.makedirs(os.path.dirname(local), exist_ok=True)
            with open(local, "wb") as f:
                f.write(value)

        self._request("put", put, written=len(value))

    def put_file(self, lpath, rpath, callback=None, mode="overwrite", **kwargs):
        with open(lpath, "rb") as f:
            self.pipe_file(rpath, f.read())

    def cp_file(self, path1, path2, **kwargs):
        src, dst = self._local(path1), self._local(path2)

        def copy():
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(src, dst)

        self._request("copy", copy)

    def mv(self, path1, path2, recursive=False, maxdepth=None, **kwargs):
        if recursive:
            return super().mv(path1, path2, recursive=recursive, maxdepth=maxdepth, **kwargs)
        self.cp_file(path1, path2)
        self.rm_file(path1)

    def rm_file(self, path):
        self.rm([path])

    def rm(self, path, recursive=False, maxdepth=None):
        paths = [path] if isinstance(path, str) else list(path)
        if recursive:
            paths = [p for p in self.expand_path(paths, recursive=True, maxdepth=maxdepth) if self.isfile(p)]
        page = self._state().costs.page_keys
        for i in range(0, len(paths), page):
            batch = [self._local(p) for p in paths[i:i + page]]
            missing = self._request("delete", lambda b=batch: [p for p in b if not _unlink(p)])
            if missing and len(paths) == 1:
                raise FileNotFoundError(paths[0])

    def makedirs(self, path, exist_ok=False):
        pass  # an object store has no directories

    def mkdir(self, path, create_parents=True, **kwargs):
        pass

    def invalidate_cache(self, path=None):
        pass  # nothing is cached: every listing is a request


def _unlink(local: str) -> bool:
    """Remove a file and the directories it leaves empty (prefixes exist only while keys do)."""
    try:
        os.remove(local)
    except FileNotFoundError:
        return False
    root = FakeObjectStore._state().root
    parent = os.path.dirname(local)
    while parent != root and parent.startswith(root):
        try:
            os.rmdir(parent)
        except OSError:
            break
        parent = os.path.dirname(parent)
    return True


class _ReadFile(AbstractBufferedFile):
    """Each ranged GET follows the HEAD (or the GET) before it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._after = self.fs._state().clock.last_end()

    def _fetch_range(self, start, end):
        data = self.fs.cat_file(self.path, start, end, after=self._after)
        self._after = self.fs._state().clock.last_end()
        return data


class _WriteFile(io.BytesIO):
    """Written in memory, stored with one PUT at close."""

    def __init__(self, fs: FakeObjectStore, path: str):
        super().__init__()
        self.fs, self.path = fs, path

    def close(self):
        if not self.closed:
            self.fs.pipe_file(self.path, self.getvalue())
        super().close()


fsspec.register_implementation(PROTOCOL, FakeObjectStore, clobber=True)
