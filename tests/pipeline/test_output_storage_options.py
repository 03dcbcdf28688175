"""`output.storage_options`: from the config to fsspec, for every read and write of the output.

`KeyedFS` ("keyedfs://") is an in-memory object store that refuses to be made without its token,
as s3fs without credentials would: a read or write that does not pass the output's storage options
fails with PermissionError.
"""

from typing import ClassVar

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from pipeline import job_start, manifest_snapshot, reader, rows_gathered, writer
from pipeline.config import ConfigError, load_config, to_dict
from pipeline.records import Shard
from pipeline.training.index import RowIndex, RowReader
from pipeline.verify.job_context import job_rejects
from pipeline.verify.run import job_batches
from pipeline.verify.sampling import read_rows
from tests.conftest import REPO
from tests.pipeline.training.token_corpus import write_tokens

TOKEN = {"token": "sesame"}
OUT = "keyedfs://bucket/out"


class KeyedFS(MemoryFileSystem):  # its own class: importing one from another test module re-registers it
    protocol = "keyedfs"
    store: ClassVar[dict] = {}
    pseudo_dirs: ClassVar[list] = [""]

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(str(path).removeprefix(f"{cls.protocol}://"))

    def __init__(self, *args, token=None, **kwargs):
        if token != TOKEN["token"]:
            raise PermissionError("keyedfs: no credentials (pass storage_options={'token': ...})")
        super().__init__(*args, **kwargs)


fsspec.register_implementation(KeyedFS.protocol, KeyedFS, clobber=True)


@pytest.fixture
def store():
    KeyedFS.store.clear()
    yield
    KeyedFS.store.clear()


def test_every_output_read_and_write_takes_the_storage_options(store):
    with pytest.raises(PermissionError):
        write_tokens(OUT, [2])  # without the options the store cannot even be made
    rows = write_tokens(OUT, [3, 2], storage_options=TOKEN)  # commit_shard (OutputConfig) and the sidecar
    shards = [Shard(f"s{i}", f"s{i}", "webdataset") for i in range(3)]
    begun = job_start.start(OUT, shards, log=lambda line: None, storage_options=TOKEN)
    assert sorted(begun.done) == ["s0", "s1"] and [s.shard_id for s in begun.todo] == ["s2"]
    assert begun.snapshot is not None  # written through the options
    assert job_start.finish(begun, {}, log=lambda line: None) is None  # snapshot current; rows gathered
    assert len(KeyedFS(**TOKEN).ls(f"/bucket/out/{rows_gathered.FOLDER}")) == 1
    assert rows_gathered.gather(OUT, storage_options=TOKEN) == 0  # there already
    writer.write_run_marker(OUT, "run-1", TOKEN)
    assert writer.read_run_marker(OUT, TOKEN) == "run-1"
    writer.write_summary(OUT, {"rows": 5}, TOKEN)

    index = RowIndex.build(OUT, storage_options=TOKEN)
    assert len(index) == len(rows)
    first = RowReader(index).read(0, 0, 1)
    assert first["key"] in rows
    dataset = reader.TokenDataset(OUT, storage_options=TOKEN)
    assert sorted(r["key"] for r in dataset) == sorted(rows)
    assert job_batches(OUT, set(rows), TOKEN) == {}  # CPU plan: no batches; the records and row index read
    assert job_rejects(OUT, TOKEN) == []
    assert sorted(r["key"] for r in read_rows(OUT, sorted(rows), [], TOKEN)) == sorted(rows)

    for without in (lambda: manifest_snapshot.load(OUT), lambda: RowIndex.build(OUT),
                    lambda: reader.TokenDataset(OUT), lambda: writer.read_run_marker(OUT)):
        with pytest.raises(PermissionError):
            without()


def test_output_storage_options_in_the_config(tmp_path):
    base = (REPO / "configs" / "test.yaml").read_text()
    good = tmp_path / "good.yaml"
    good.write_text(base + "\noutput:\n  storage_options: {token: sesame, anon: false}\n"
                    if "\noutput:" not in base else base.replace("\noutput:\n", "\noutput:\n  storage_options: "
                                                                 "{token: sesame, anon: false}\n", 1))
    cfg = load_config(good)
    assert cfg.output.storage_options == {"token": "sesame", "anon": False}
    assert to_dict(cfg)["output"]["storage_options"] == {"token": "<redacted>", "anon": "<redacted>"}
    assert load_config(None, ["output.storage_options={key: k}"]).output.storage_options == {"key": "k"}
    for bad in ("[token, sesame]", "token=sesame", "{1: x}"):
        with pytest.raises(ConfigError, match=r"output\.storage_options must be a mapping"):
            load_config(None, [f"output.storage_options={bad}"])
