"""pipeline.writer (and the shard worker's commit) on a non-local fsspec filesystem, in process.

`CrashFS` ("crashfs://") is an in-memory filesystem of its own, like an object store to the writer
(no fsync, rename = copy + delete). With `fail_mv_at = N` its Nth `mv` raises; with `crash` set,
so does every later `mv` and `rm`, as if the process had died there and cleaned nothing up. `CachingFS`
("cachingfs://") also caches directory listings until `invalidate_cache`, as s3fs and gcsfs do, and
never sees its own writes in them, as a driver does not see the files its actors commit.
"""

import json
from typing import ClassVar

import fsspec
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from pipeline import reader, writer
from pipeline.schema import REQUIRED_PROVENANCE
from tests.pipeline.test_writer import CFG, METADATA, shard


class CrashFS(MemoryFileSystem):
    protocol = "crashfs"
    store: ClassVar[dict] = {}
    pseudo_dirs: ClassVar[list] = [""]
    fail_mv_at: int | None = None
    crash = False
    mv_calls = 0
    crashed = False

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(str(path).removeprefix(f"{cls.protocol}://"))

    def mv(self, path1, path2, **kwargs):
        type(self).mv_calls += 1
        if self.mv_calls == self.fail_mv_at or self.crashed:
            type(self).crashed = self.crash
            raise OSError(f"simulated failure at mv {path1} -> {path2}")
        return super().mv(path1, path2, **kwargs)

    def rm(self, path, recursive=False, maxdepth=None):
        if self.crashed:
            raise OSError("simulated crash: the process is gone")
        return super().rm(path, recursive, maxdepth)


class CachingFS(CrashFS):
    protocol = "cachingfs"
    store: ClassVar[dict] = {}
    pseudo_dirs: ClassVar[list] = [""]

    def ls(self, path, detail=True, **kwargs):
        key = self._strip_protocol(path)
        if key not in self.dircache:
            self.dircache[key] = super().ls(key, detail=True)
        return self.dircache[key] if detail else [e["name"] for e in self.dircache[key]]

    def invalidate_cache(self, path=None):
        self.dircache.clear()


for _cls in (CrashFS, CachingFS):
    fsspec.register_implementation(_cls.protocol, _cls, clobber=True)


@pytest.fixture(params=[CrashFS, CachingFS], ids=lambda c: c.protocol)
def remote(request):
    """(filesystem, output URL) on a fresh store."""
    cls = request.param
    cls.store.clear()
    fs = cls()
    fs.invalidate_cache()
    yield fs, f"{cls.protocol}://bucket/out"
    heal(fs)
    cls.store.clear()


def fail_mv(fs, n: int, crash: bool) -> None:
    """The nth `mv` from now fails (crash: and every later mv and rm)."""
    cls = type(fs)
    cls.fail_mv_at, cls.crash, cls.mv_calls, cls.crashed = n, crash, 0, False


def heal(fs) -> None:
    type(fs).fail_mv_at, type(fs).crash, type(fs).crashed = None, False, False


def commit(out: str, shard_id: str, n: int):
    rows, tokens, rejects, record = shard(shard_id, n=n, seed=n)
    return rows, writer.commit_shard(out, shard_id, tokens, rejects, record, METADATA, CFG)


def listing(fs) -> list[str]:
    return sorted(p.removeprefix("/bucket/out/") for p in fs.find("/bucket/out"))


def read_back(out: str) -> dict[str, list]:
    """{key: codes} of the committed token parts, read with pyarrow over fsspec; asserts keys are unique."""
    table = reader.arrow_dataset(out).to_table(columns=["key", "codes"])
    keys = table.column("key").to_pylist()
    assert len(keys) == len(set(keys)), "a row appears twice"
    return dict(zip(keys, table.column("codes").to_pylist()))


def expected(*shards) -> dict[str, list]:
    return {r.key: r.codes.tolist() for rows in shards for r in rows}


def test_commit_resume_cleanup_and_read_back(remote):
    fs, out = remote
    prov = {k: k for k in REQUIRED_PROVENANCE}
    writer.write_provenance(out, prov)
    rows0, record0 = commit(out, "sh-0", 10)
    rows1, _ = commit(out, "sh-1", 3)
    assert listing(fs) == ["_manifest/sh-0.json", "_manifest/sh-1.json", "_provenance.json",
                           "rejects/part-sh-0.parquet", "rejects/part-sh-1.parquet",
                           "rows/sh-0.parquet", "rows/sh-1.parquet",
                           "tokens/part-sh-0.parquet", "tokens/part-sh-1.parquet"]
    assert writer.committed_shards(out)["sh-0"] == record0
    assert record0.files["tokens"]["bytes"] == fs.size("/bucket/out/tokens/part-sh-0.parquet")
    assert writer.committed_parts(out) == [f"{fs.protocol}:///bucket/out/tokens/part-sh-{i}.parquet" for i in (0, 1)]
    assert writer.committed_parts(out, "rejects")[1].endswith("/bucket/out/rejects/part-sh-1.parquet")
    assert read_back(out) == expected(rows0, rows1)
    with fsspec.open(writer.committed_parts(out)[0], "rb") as f:
        assert pq.read_table(f).column("key").to_pylist() == [r.key for r in rows0]
    assert writer.cleanup_uncommitted(out) == []
    assert json.loads(fs.cat_file("/bucket/out/_provenance.json"))["model_name"] == "model_name"
    with pytest.raises(ValueError, match="model_name"):
        writer.write_provenance(out, prov | {"model_name": "another model"})
    writer.write_summary(out, {"rows": 13})
    assert json.loads(fs.cat_file("/bucket/out/_summary.json")) == {"rows": 13}
    rows0_again, _ = commit(out, "sh-0", 10)  # a shard redone replaces its parts
    assert read_back(out) == expected(rows0_again, rows1) and len(listing(fs)) == 10


@pytest.mark.parametrize("crash_at", [1, 2, 3, 4])
def test_crash_between_renames_then_cleanup_and_recommit(remote, crash_at):
    """mv 1, 2, 3, 4 of a commit place tokens, rejects, the row index and last the manifest record."""
    fs, out = remote
    rows0, _ = commit(out, "sh-0", 10)
    clean = listing(fs)
    fail_mv(fs, crash_at, crash=True)
    with pytest.raises(OSError, match="simulated failure at mv"):
        commit(out, "sh-1", 3)
    heal(fs)  # the next process
    placed = ["tokens/part-sh-1.parquet", "rejects/part-sh-1.parquet", "rows/sh-1.parquet"][: crash_at - 1]
    left = sorted(set(listing(fs)) - set(clean))
    assert [p for p in left if "/.tmp-sh-1-" not in p] == sorted(placed)
    assert len(left) == len(placed) + 1  # and the temp object of the failed mv, never removed
    assert list(writer.committed_shards(out)) == ["sh-0"]
    assert writer.committed_parts(out) == [f"{fs.protocol}:///bucket/out/tokens/part-sh-0.parquet"]
    assert read_back(out) == expected(rows0)

    removed = writer.cleanup_uncommitted(out)
    assert sorted(p.removeprefix("/bucket/out/") for p in removed) == left
    assert listing(fs) == clean
    rows1, _ = commit(out, "sh-1", 3)
    assert read_back(out) == expected(rows0, rows1)
    assert writer.cleanup_uncommitted(out) == [] and len(listing(fs)) == len(clean) + 4


@pytest.mark.parametrize("remote", [CrashFS], indirect=True, ids=["crashfs"])
def test_failed_commit_in_the_shard_worker_removes_its_parts_then_the_job_resumes(remote, tmp_path):
    """ShardTokenizer.run over local tars into the non-local output; the manifest record of the second
    shard cannot be placed (an error the process survives): its parts go, and a resume as `run_job`
    does it (cleanup, skip the committed shards, run the rest) gives the rows of a run without the fault."""
    from codec import load_model
    from pipeline.provenance import build_provenance
    from pipeline.shard_worker import ShardTokenizer
    from pipeline.sources import list_shards
    from tests.fault_scenarios import demo_config, make_shards

    fs, out = remote
    cfg = demo_config()
    shards = list_shards(make_shards(tmp_path / "in", shards=2, per_shard=1), cfg.source)
    model = load_model(cfg.model)
    worker = ShardTokenizer(model, cfg, out, build_provenance(model, cfg, "cpu"))
    try:
        worker.run(shards[0])
        fail_mv(fs, 4, crash=False)
        with pytest.raises(OSError, match="simulated failure at mv .*_manifest"):
            worker.run(shards[1])
        heal(fs)
        assert list(writer.committed_shards(out)) == [shards[0].shard_id]
        assert [p for p in listing(fs) if shards[1].shard_id in p] == []

        assert writer.cleanup_uncommitted(out) == []
        done = writer.committed_shards(out)
        for s in shards:
            if s.shard_id not in done:
                worker.run(s, attempt=2)
        assert [r.attempt for r in writer.committed_shards(out).values()] == [1, 2]
        worker.out_dir = clean = out.replace("/out", "/clean")
        for s in shards:
            worker.run(s)
    finally:
        worker.close()
    got = read_back(out)
    assert len(got) == 2 and got == read_back(clean)


def test_listings_are_read_fresh(remote):
    """Files committed by other processes (actors) must show up in the driver's next listing."""
    fs, out = remote
    commit(out, "sh-0", 2)
    assert list(writer.committed_shards(out)) == ["sh-0"]
    assert writer.cleanup_uncommitted(out) == []
    commit(out, "sh-1", 2)
    assert list(writer.committed_shards(out)) == ["sh-0", "sh-1"]
    assert len(writer.committed_parts(out, "rejects")) == 2
    assert writer.cleanup_uncommitted(out) == [] and len(listing(fs)) == 8
    assert sorted(read_back(out)) == [f"sh-{s}/k{i}" for s in (0, 1) for i in range(2)]
