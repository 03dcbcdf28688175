"""Our tar reader (pipeline.sources) names samples as webdataset does: shards written with
webdataset's TarWriter are split into the same keys and extensions by `read_shard` as by
webdataset's own reader (`webdataset.WebDataset`, no decoding)."""

import json

import pytest
import webdataset as wds
from webdataset.tariterators import base_plus_ext

from pipeline.config import SourceConfig
from pipeline.sources import list_shards, read_shard
from pipeline.sources.common import AUDIO_EXTS
from pipeline.sources.tar import _split_name

SAMPLES = [  # audio bytes are never decoded by the reader, so any bytes will do
    {"__key__": "corpus.v1/part.a/utt-1", "seg.flac": b"fLaC-1",
     "json": json.dumps({"speaker": "sp1"}).encode(), "txt": b"first words"},
    {"__key__": "utt-2", "WAV": b"RIFF-2", "JSON": json.dumps({"speaker": "sp2", "age": 3}).encode()},
    {"__key__": "a.b.c/utt_3", "seg.v2.mp3": b"ID3-3", "txt": b"third"},
    {"__key__": "dir/utt-4", "OGG": b"OggS-4", "info.json": b'{"ignored": true}'},
    {"__key__": "./utt-5", "Seg.Flac": b"fLaC-5"},
]


def _ours(path: str) -> list:
    cfg = SourceConfig(metadata_columns=["text", "speaker"])
    return [s for shard in list_shards(path, cfg) for s in read_shard(shard, cfg)]


def _theirs(path: str) -> list[dict]:
    return list(wds.WebDataset(path, shardshuffle=False, empty_check=False))


def test_read_shard_splits_keys_and_extensions_as_webdataset(tmp_path):
    path = str(tmp_path / "wds-000.tar")
    with wds.TarWriter(path, encoder=False) as sink:
        for sample in SAMPLES:
            sink.write(sample)
    ours, theirs = _ours(path), _theirs(path)
    assert [s.key for s in ours] == [t["__key__"] for t in theirs] == [s["__key__"] for s in SAMPLES]
    for mine, their in zip(ours, theirs):
        exts = [k for k in their if not k.startswith("__")]
        assert exts == [k for k in exts if k == k.lower()]  # webdataset lower-cases extensions; so do we
        audio = [k for k in exts if k.rsplit(".", 1)[-1] in AUDIO_EXTS]
        assert len(audio) == 1, their
        assert mine.reject is None
        assert mine.data == their[audio[0]] and mine.ext == audio[0].rsplit(".", 1)[-1]
        meta = json.loads(their["json"]) if "json" in their else {}
        if "txt" in their:
            meta["text"] = their["txt"].decode()
        assert mine.meta == {k: v for k, v in meta.items() if k in ("text", "speaker")}
    assert ours[0].meta == {"speaker": "sp1", "text": "first words"}  # the comparison above saw metadata
    assert ours[1].ext == "wav" and ours[4].ext == "flac"  # upper-case extensions


@pytest.mark.parametrize("name", [
    "a.flac", "utt.seg.FLAC", "corpus.v1/part.a/utt-1.seg.flac", "a.b.c/utt_3.seg.v2.mp3", "./utt.wav",
    "a..b", "a.", "x/y/z.tar.gz", "sp ace/ünï code.Wav", "noext", "dir.x/noext", "dir/", ".hidden",
])
def test_member_name_split_equals_webdataset(name):
    key, ext = base_plus_ext(name)
    assert _split_name(name) == (None if key is None else (key, ext.lower()))


@pytest.mark.parametrize("name", ["dir/.hidden.flac", "a/.b"])
def test_dot_file_in_a_directory_is_the_one_known_difference(name):
    """webdataset's pattern lets the key end at the '/' (key 'dir/', ext 'hidden.flac'); we take a
    basename that starts with a dot as no sample member, as webdataset does for a top-level '.hidden'."""
    key, ext = base_plus_ext(name)
    assert key is not None and key.endswith("/")
    assert _split_name(name) is None
