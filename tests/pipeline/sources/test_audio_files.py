"""Audio files as a source (pipeline.sources.audio_files, paths): what a spec matches, keys, shards, metadata."""

import json
import re
import shutil

import fsspec
import pytest

from pipeline.config import SourceConfig
from pipeline.errors import InputError
from pipeline.rejects import REASONS
from pipeline.sources import list_shards, read_shard
from pipeline.sources.audio_files import AudioFiles
from tests.conftest import copy_corpus_tree, corpus_file
from tests.hostile_corpus import write_tar

# relative path in the test folder -> corpus file copied there (".mp3" from a WAV: converted)
TREE = {
    "top.wav": "speech/cmu_arctic_a0007_16k.wav",
    "spk1/ch1/0001.flac": "speech/librivox_0890_16k.flac",
    "spk1/ch1/0002.ogg": "speech/librivox_0920_16k.ogg",
    "spk1/ch2/0001.mp3": "speech/goforward_16k.wav",
    "spk2/Loud.AIFF": "edge/aiff_klettres_en_car_44k.aiff",
}
KEYS = ["spk1/ch1/0001", "spk1/ch1/0002", "spk1/ch2/0001", "spk2/Loud", "top"]  # sorted by path


def make_tree(root):
    copy_corpus_tree(root, TREE)
    (root / "spk1" / "ch1" / "0001.txt").write_text("first words")
    (root / "spk1" / "ch1" / "0001.json").write_text(json.dumps({"speaker": "s1", "text": "json loses", "age": 3}))
    (root / "spk1" / "ch2" / "0001.json").write_text(json.dumps({"speaker": "s2"}))
    (root / "spk2" / "Loud.speaker").write_text("s3")
    (root / "spk2" / "broken.json").write_text("{not json")
    (root / "README").write_text("not audio")
    (root / "._top.wav").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    (root / ".cache").mkdir()
    shutil.copy(corpus_file(TREE["top.wav"]), root / ".cache" / "hidden.wav")
    return root


def read(spec, cfg=None, log=None):
    cfg = cfg or SourceConfig()
    shards = list_shards(spec, cfg, log)
    return shards, [s for sh in shards for s in read_shard(sh, cfg)]


def test_nested_directory_of_mixed_formats(tmp_path):
    root = make_tree(tmp_path / "wavs")
    lines = []
    cfg = SourceConfig(manifest_rows_per_shard=2, metadata_columns=["text", "speaker"])
    shards, samples = read(str(root) + "/", cfg, lines.append)
    assert [s.kind for s in shards] == ["audio_files"] * 3 and all(isinstance(s.options, AudioFiles) for s in shards)
    assert [s.url for s in shards] == [f"{root}#files={a}-{b}" for a, b in ((0, 2), (2, 4), (4, 5))]
    assert [s.key for s in samples] == KEYS and {s.source for s in samples} == {sh.url for sh in shards}
    assert [s.ext for s in samples] == ["flac", "ogg", "mp3", "aiff", "wav"]
    assert all(s.reject is None for s in samples)
    by_key = {s.key: s for s in samples}
    for rel in TREE:
        key = rel.rsplit(".", 1)[0]
        assert by_key[key].data == (root / rel).read_bytes(), key
    assert [s.meta for s in samples] == [
        {"text": "first words", "speaker": "s1"}, {}, {"speaker": "s2"}, {"speaker": "s3"}, {}]
    assert lines == [(f"[audiotok] {root}/: 0 tar files, 5 audio files, 6 other files "
                      "(.json 3, .speaker 1, .txt 1, no extension 1); tokenizing the audio files")]
    again, _ = read(str(root), cfg)  # stable: the same shards and ids on a re-run, with or without the slash
    assert [(s.shard_id, s.url, s.options) for s in again] == [(s.shard_id, s.url, s.options) for s in shards]
    assert len({s.shard_id for s in shards}) == 3


def test_globs_and_brace_patterns(tmp_path):
    root = make_tree(tmp_path / "wavs")
    cfg = SourceConfig(metadata_columns=["text", "speaker"])
    _, whole = read(str(root), cfg)
    for spec in (f"{root}/**", f"{root}/**/*.*", f"file://{root}/**/*", f"{root}/{{spk1,spk2,top.wav}}"):
        _, got = read(spec, cfg)
        assert [(s.key, s.data, s.meta) for s in got] == [(s.key, s.data, s.meta) for s in whole], spec
    # one level, and a glob of one format: keys relative to the fixed prefix, sidecars found beside the files
    _, got = read(f"{root}/*.wav", cfg)
    assert [s.key for s in got] == ["top"]
    _, got = read(f"{root}/spk1/**/0001.*", cfg)
    assert [(s.key, s.meta) for s in got] == [("ch1/0001", {"text": "first words", "speaker": "s1"}),
                                              ("ch2/0001", {"speaker": "s2"})]
    _, got = read(f"{root}/spk1/ch1/{{0001.flac,0002.ogg}}", cfg)
    assert [s.key for s in got] == ["0001", "0002"]
    _, got = read(f"{root}/spk*/*/0002.ogg", cfg)
    assert [s.key for s in got] == ["spk1/ch1/0002"]
    (shard,), (one,) = read(f"{root}/spk1/ch1/0001.flac", cfg)  # a named audio file is an audio file, not a tar
    assert (shard.kind, one.key, one.meta["text"]) == ("audio_files", "0001", "first words")
    with pytest.raises(InputError, match=re.escape("1 path(s) do not exist") + ".*nope.flac"):
        list_shards(f"{root}/spk1/ch1/{{0001.flac,nope.flac}}", cfg)
    # different specs over the same files never share shard ids (outputs of both can live in one directory)
    ids = [list_shards(spec, cfg)[0].shard_id for spec in (str(root), f"{root}/**", f"{root}/spk1/**")]
    assert len(set(ids)) == 3


def test_fsspec_memory_url():
    fs = fsspec.filesystem("memory")
    wav, flac = (corpus_file(TREE[k]).read_bytes() for k in ("top.wav", "spk1/ch1/0001.flac"))
    try:
        fs.pipe({"/audiotok-af/wavs/a/x.wav": wav, "/audiotok-af/wavs/a/x.txt": b"said x",
                 "/audiotok-af/wavs/b.flac": flac, "/audiotok-af/wavs/b.json": b'{"speaker": "sb"}',
                 "/audiotok-af/wavs/.hidden.wav": wav, "/audiotok-af/other.wav": wav})
        for spec in ("memory://audiotok-af/wavs/", "memory://audiotok-af/wavs/**/*.{wav,flac}"):
            shards, got = read(spec)
            assert [(s.key, s.data, s.meta) for s in got] == [
                ("a/x", wav, {"text": "said x"}), ("b", flac, {"speaker": "sb"})], spec
            assert shards[0].options.root == "memory:///audiotok-af/wavs"
    finally:
        fs.rm("/audiotok-af", recursive=True)


def test_key_collision_is_a_recorded_duplicate_even_across_shards(tmp_path):
    root = tmp_path / "wavs"
    (root / "d").mkdir(parents=True)
    for rel, src in (("a.wav", "top.wav"), ("a.flac", "spk1/ch1/0001.flac"), ("d/a.ogg", "spk1/ch1/0002.ogg")):
        shutil.copy(corpus_file(TREE[src]), root / rel)
    shutil.copy(root / "a.wav", root / "a.wave")
    shards, got = read(str(root), SourceConfig(manifest_rows_per_shard=1))
    assert len(shards) == 4
    assert [(s.key, s.reject and s.reject[0]) for s in got] == [
        ("a", None), ("a~dup1", "duplicate_key"), ("a~dup2", "duplicate_key"), ("d/a", None)]
    assert got[0].data == (root / "a.flac").read_bytes() and got[1].data is None and got[2].data is None
    assert [s.reject[1] for s in got[1:3]] == [
        f"{rel}: its key 'a' is also a.flac's, which is tokenized" for rel in ("a.wav", "a.wave")]
    assert "duplicate_key" in REASONS


def test_directory_with_tars_and_audio_files(tmp_path):
    root = make_tree(tmp_path / "mixed")
    (root / "shards").mkdir()
    write_tar(root / "shards" / "s-0.tar", [("k.flac", corpus_file(TREE["spk1/ch1/0001.flac"]).read_bytes())])
    write_tar(root / "shards" / "s-1.tar.gz", [])
    with pytest.raises(InputError, match=re.escape(
            f"input '{root}' holds both tars and audio files (2 tar files, 5 audio files, 6 other files")) as err:
        list_shards(str(root), SourceConfig())
    assert f"'{root}/**/*.tar' or '{root}/**/*.flac'" in str(err.value)
    lines = []
    shards = list_shards(f"{root}/**/*.tar", SourceConfig(), lines.append)
    assert [(s.url, s.kind) for s in shards] == [(f"{root}/shards/s-0.tar", "webdataset")]
    assert lines == [f"[audiotok] {root}/**/*.tar: 1 tar files, 0 audio files; "
                     "tokenizing the tars as webdataset shards"]
    assert [s.key for s in read(f"{root}/**/*.flac")[1]] == ["spk1/ch1/0001"]
    # a file named explicitly is a tar whatever its extension, as before audio files were a kind
    (root / "shards" / "s-0.tar").rename(root / "shards" / "s-0.bin")
    (shard,), (sample,) = read(f"{root}/shards/s-0.bin")
    assert (shard.kind, sample.key) == ("webdataset", "k")


def test_specs_matching_no_audio_and_no_tar_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    (tmp_path / "notes" / "metadata.csv").write_text("file_name\n")
    (tmp_path / "notes" / ".hidden.wav").write_bytes(b"RIFF")
    cases = {
        str(tmp_path / "empty"): "(0 tar files, 0 audio files)",
        str(tmp_path / "notes"): "(0 tar files, 0 audio files, 2 other files (.csv 1, .txt 1))",
        str(tmp_path / "notes" / "*.wav"): "(0 tar files, 0 audio files)",
        "memory://audiotok-none/**/*.flac": "(0 tar files, 0 audio files)",
    }
    for spec, found in cases.items():
        message = f"input {spec!r} matches 0 files to tokenize {found}; accepted:"
        with pytest.raises(InputError, match=re.escape(message)):
            list_shards(spec, SourceConfig())
    with pytest.raises(ValueError, match=r"accepted: webdataset tars \(.tar, .tar.gz.*\) or audio files \(.aif, .aifc"):
        list_shards(str(tmp_path / "empty"), SourceConfig())
    with pytest.raises(InputError, match="do not exist"):
        list_shards(str(tmp_path / "missing"), SourceConfig())


def test_metadata_table_is_named_when_not_read(tmp_path):
    root = tmp_path / "folder"
    root.mkdir()
    shutil.copy(corpus_file(TREE["top.wav"]), root / "a.wav")
    (root / "metadata.csv").write_text("file_name,text\na.wav,from the table\n")
    lines = []
    _, (plain,) = read(str(root), log=lines.append)
    assert plain.meta == {} and "metadata.csv not read: hf:<dir> reads an audiofolder's metadata table" in lines[0]
    (shard,), (via_hf,) = read(f"hf:{root}")
    assert (shard.kind, via_hf.key, via_hf.meta) == ("audio_files", "a", {"text": "from the table"})
