"""Brace patterns over an object store: one listing of the directory, not one request per named file."""

import pytest

from pipeline.bench.object_store import FakeObjectStore
from pipeline.config import SourceConfig
from pipeline.errors import InputError
from pipeline.sources import list_shards, paths

N = 300


@pytest.fixture
def store(tmp_path):
    FakeObjectStore.use(str(tmp_path / "store"))
    shards = tmp_path / "store" / "b" / "shards"
    shards.mkdir(parents=True)
    for i in range(N + 20):  # 20 more than the pattern names
        (shards / f"s-{i:04d}.tar").write_bytes(b"")
    (shards / "s-0007.tar.d").mkdir()  # a directory of its own
    (shards / "s-0007.tar.d" / "x.tar").write_bytes(b"")
    yield "fakes3://b/shards"
    FakeObjectStore.state = None


def requests(spec: str) -> tuple[paths.Matches, dict]:
    before = FakeObjectStore.stats()
    found = paths.match(spec, SourceConfig())
    return found, FakeObjectStore.stats().minus(before).requests


def test_many_names_in_one_directory_take_one_listing(store, monkeypatch):
    spec = f"{store}/s-{{0000..{N - 1:04d}}}.tar"
    listed, listing = requests(spec)
    assert listing == {"list": 1}  # 321 entries: one page
    monkeypatch.setattr(paths, "LIST_FROM", 10**9)  # one HEAD per name, as before
    asked, heads = requests(spec)
    assert heads == {"head": N}
    assert listed == asked and len(listed.files) == N and listed.named
    assert listed.root == "fakes3://b/shards" and listed.files[0] == "s-0000.tar"
    assert [s.url for s in list_shards(spec, SourceConfig())][:2] == [f"{store}/s-0000.tar", f"{store}/s-0001.tar"]


def test_missing_names_are_named_and_a_named_directory_is_listed_whole(store):
    with pytest.raises(InputError, match=r"2 path\(s\) do not exist, e.g. \['fakes3://b/shards/s-0320.tar'"):
        paths.match(f"{store}/s-{{0200..0321}}.tar", SourceConfig())
    found, _ = requests(f"{store}/{{s-0007.tar.d,{','.join(f's-{i:04d}.tar' for i in range(150))}}}")
    assert "s-0007.tar.d/x.tar" in found.files and len(found.files) == 151 and not found.named


def test_local_listing_gives_what_asking_each_name_gives(tmp_path, monkeypatch):
    for i in range(120):
        (tmp_path / f"c{i:03d}.wav").write_bytes(b"")
    (tmp_path / ".c005.wav").write_bytes(b"")
    spec = str(tmp_path / "{.c005,c{000..119}}.wav")
    listed = paths.match(spec, SourceConfig())
    monkeypatch.setattr(paths, "LIST_FROM", 10**9)
    assert paths.match(spec, SourceConfig()) == listed and len(listed.files) == 121


def test_a_directory_that_cannot_be_listed_is_asked_about_name_by_name(store, monkeypatch):
    def refuse(self, path, detail=True, **kwargs):
        raise PermissionError(f"listing {path} is not allowed")

    monkeypatch.setattr(FakeObjectStore, "ls", refuse)
    found, asked = requests(f"{store}/s-{{0000..0149}}.tar")
    assert len(found.files) == 150 and asked == {"head": 150}
