"""pipeline.sources (tar, manifest, hf readers): listing specs and reading shards of real audio."""

import json
import re
import shutil
import tarfile

import fsspec
import pytest

from pipeline.config import SourceConfig
from pipeline.rejects import REASONS
from pipeline.sources import ShardReadError, list_shards, read_shard
from pipeline.sources.audio_files import AudioFiles
from tests.conftest import corpus_file
from tests.hostile_corpus import write_tar

FLAC = "speech/librivox_0890_16k.flac"
WAV = "speech/cmu_arctic_a0007_16k.wav"
OGG = "speech/librivox_0920_16k.ogg"
PICKLE = b"\x80\x04\x95PICKLE-PAYLOAD."


def audio(rel: str) -> bytes:
    return corpus_file(rel).read_bytes()




def read_all(spec: str, cfg: SourceConfig | None = None):
    cfg = cfg or SourceConfig()
    return [s for shard in list_shards(spec, cfg) for s in read_shard(shard, cfg)]


def by_key(samples):
    return {s.key: s for s in samples}


def test_local_tar_groups_members_and_filters_metadata(tmp_path):
    path = tmp_path / "shard.tar"
    write_tar(path, [
        ("a.flac", audio(FLAC)),
        ("a.json", json.dumps({"speaker": "s1", "text": "from json", "secret": "x"}).encode()),
        ("a.txt", b"hello there"),
        ("dir/b.wav", audio(WAV)),
        ("dir/b.cls", b" 3\n"),
        ("dir/b.json", b"{not json"),
        ("dir/b.npy", b"ignored"),
        ("c.seg1.OGG", audio(OGG)),
        ("README", b"not a sample"),
    ])
    cfg = SourceConfig(metadata_columns=["text", "speaker", "cls"])
    shards = list_shards(str(path), cfg)
    assert [(s.url, s.kind) for s in shards] == [(str(path), "webdataset")]
    samples = list(read_shard(shards[0], cfg))
    assert [s.key for s in samples] == ["a", "dir/b", "c"]
    a, b, c = samples
    assert (a.data, a.ext, a.meta, a.reject) == (audio(FLAC), "flac", {"text": "hello there", "speaker": "s1"}, None)
    assert (b.data, b.ext, b.meta) == (audio(WAV), "wav", {"cls": "3"})
    assert (c.data, c.ext, c.meta) == (audio(OGG), "ogg", {})
    assert {s.source for s in samples} == {str(path)}
    only_speaker = SourceConfig(metadata_columns=["speaker"])
    assert [s.meta for s in read_shard(shards[0], only_speaker)] == [{"speaker": "s1"}, {}, {}]


def test_glob_brace_and_file_url_specs(tmp_path):
    for i in range(3):
        write_tar(tmp_path / f"shard-{i:03d}.tar", [(f"k{i}.flac", audio(FLAC))])
    cfg = SourceConfig()
    by_glob = list_shards(str(tmp_path / "shard-*.tar"), cfg)
    assert [s.url for s in by_glob] == [str(tmp_path / f"shard-{i:03d}.tar") for i in range(3)]
    assert list_shards(str(tmp_path / "shard-{000..002}.tar"), cfg) == by_glob
    assert list_shards(f"file://{tmp_path}/shard-*.tar", cfg) == by_glob
    assert list_shards(f"file://{tmp_path}/shard-001.tar", cfg) == [by_glob[1]]
    ids = [s.shard_id for s in by_glob]
    assert len(set(ids)) == 3 and all(re.fullmatch(r"shard-00\d\.tar-[0-9a-f]{10}", i) for i in ids)
    assert [s.key for s in read_all(str(tmp_path / "shard-{000..002}.tar"))] == ["k0", "k1", "k2"]

    for bad in ("nothing-*.tar", "shard-{000..004}.tar", "missing.tar"):
        with pytest.raises(ValueError, match=re.escape(str(tmp_path / bad))):
            list_shards(str(tmp_path / bad), cfg)
    assert list_shards(str(tmp_path), cfg) == by_glob  # a directory of tars: its tars
    with pytest.raises(ValueError, match="pipe:"):
        list_shards("pipe:curl -s http://example.com/x.tar", cfg)


def test_fsspec_memory_url():
    fs = fsspec.filesystem("memory")
    try:
        for i in range(2):
            with fs.open(f"/audiotok-test/s{i}.tar", "wb") as f:
                f.write(write_tar_bytes([(f"m{i}.wav", audio(WAV))]))
        shards = list_shards("memory://audiotok-test/s*.tar", SourceConfig())
        assert [s.url for s in shards] == ["memory:///audiotok-test/s0.tar", "memory:///audiotok-test/s1.tar"]
        samples = [s for sh in shards for s in read_shard(sh, SourceConfig())]
        assert [(s.key, s.data == audio(WAV)) for s in samples] == [("m0", True), ("m1", True)]
    finally:
        fs.rm("/audiotok-test", recursive=True)


def write_tar_bytes(members) -> bytes:
    return write_tar(None, members)


def test_webdataset_tarwriter_shard(tmp_path):
    import webdataset as wds

    path = tmp_path / "wds.tar"
    with wds.TarWriter(str(path)) as sink:
        sink.write({"__key__": "utt-1", "flac": audio(FLAC), "json": {"speaker": "sp", "age": 3}, "txt": "words"})
        sink.write({"__key__": "utt-2", "wav": audio(WAV), "json": {"speaker": "sq"}})
    samples = read_all(str(path))
    assert [(s.key, s.ext, s.meta) for s in samples] == [
        ("utt-1", "flac", {"text": "words", "speaker": "sp"}), ("utt-2", "wav", {"speaker": "sq"})]
    assert samples[0].data == audio(FLAC)


def test_tar_reject_reasons(tmp_path):
    path = tmp_path / "bad.tar"
    write_tar(path, [
        ("good.flac", audio(FLAC)),
        ("onlymeta.json", b'{"text": "no audio here"}'),
        ("empty.flac", b""),
        ("../escape.flac", audio(FLAC)),
        ("/abs/olute.flac", audio(FLAC)),
        ("link.flac", tarfile.SYMTYPE, "/etc/passwd"),
        ("hard.wav", tarfile.LNKTYPE, "good.flac"),
        ("dev.wav", tarfile.CHRTYPE, ""),
        ("model.pyd", PICKLE),
        ("mixed.flac", audio(FLAC)),
        ("mixed.pth", PICKLE),
        ("dup.flac", audio(FLAC)),
        ("other.wav", audio(WAV)),
        ("dup.wav", audio(WAV)),
        ("rep.flac", audio(FLAC)),
        ("rep.flac", audio(FLAC)),
    ])
    samples = read_all(str(path))
    got = {s.key: s.reject and s.reject[0] for s in samples}
    assert got == {
        "good": None, "onlymeta": "missing_audio", "empty": "empty", "../escape": "unsafe_member",
        "/abs/olute": "unsafe_member", "link": "unsafe_member", "hard": "unsafe_member", "dev": "unsafe_member",
        "model": "unsafe_member", "mixed": None, "dup": None, "other": None, "dup~dup1": "duplicate_key",
        "rep": None, "rep~dup1": "duplicate_key",
    }
    assert len(samples) == len(got)
    for s in samples:
        assert (s.data is None) == (s.reject is not None) and (s.reject is None or s.reject[0] in REASONS)
        assert s.data is None or PICKLE not in s.data
    assert by_key(samples)["mixed"].data == audio(FLAC)
    assert "link" in by_key(samples)["link"].reject[1]


def test_member_larger_than_limit_is_not_read(tmp_path):
    write_tar(tmp_path / "s.tar", [("big.flac", audio(FLAC)), ("small.wav", b"RIFF" + bytes(60))])
    samples = read_all(str(tmp_path / "s.tar"), SourceConfig(max_member_bytes=1000))
    assert [(s.key, s.reject and s.reject[0]) for s in samples] == [("big", "too_large"), ("small", None)]


def test_truncated_or_unreadable_tar_raises_after_earlier_samples(tmp_path):
    full = write_tar(tmp_path / "ok.tar", [("a.flac", audio(FLAC)), ("b.wav", audio(WAV)), ("c.ogg", audio(OGG))])
    with tarfile.open(tmp_path / "ok.tar") as tar:
        b_header, c_header = (m.offset for m in tar.getmembers()[1:])
    shard = list_shards(str(tmp_path / "ok.tar"), SourceConfig())[0]
    first = [(s.key, s.data) for s in read_shard(shard, SourceConfig())]
    assert [(s.key, s.data) for s in read_shard(shard, SourceConfig())] == first  # restartable, deterministic

    cuts = {"header": c_header + 100, "data": b_header + 512 + 1000, "no_end_block": c_header}
    for name, cut in cuts.items():
        path = tmp_path / f"cut-{name}.tar"
        path.write_bytes(full[:cut])
        shard = list_shards(str(path), SourceConfig())[0]
        got = []
        with pytest.raises(ShardReadError, match=re.escape(shard.shard_id)):
            for s in read_shard(shard, SourceConfig()):
                got.append(s.key)
        assert got == ["a"], name

    (tmp_path / "junk.tar").write_bytes(b"this is not a tar archive" * 50)
    shard = list_shards(str(tmp_path / "junk.tar"), SourceConfig())[0]
    with pytest.raises(ShardReadError, match="junk.tar"):
        list(read_shard(shard, SourceConfig()))
    (tmp_path / "junk.tar").unlink()
    with pytest.raises(ShardReadError, match="junk.tar"):
        list(read_shard(shard, SourceConfig()))


def manifest_files(tmp_path):
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "a.wav").write_bytes(audio(WAV))
    (tmp_path / "audio" / "zero.flac").write_bytes(b"")
    return str(corpus_file(FLAC))


def test_manifest_jsonl(tmp_path):
    flac = manifest_files(tmp_path)
    rows = [
        json.dumps({"path": flac, "text": "t1", "speaker": "s1", "other": 1}),
        json.dumps({"path": "audio/a.wav", "speaker": "s2"}),
        "",
        json.dumps({"path": "audio/a.wav"}),
        json.dumps({"path": "audio/missing.flac"}),
        json.dumps({"path": "pipe:cat /etc/passwd"}),
        json.dumps({"path": "zip::file://archive.zip"}),
        "this line is not json",
        json.dumps({"path": "audio/zero.flac"}),
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(rows) + "\n")
    cfg = SourceConfig(manifest_rows_per_shard=3)
    shards = list_shards(str(tmp_path / "m.jsonl"), cfg)
    assert [s.url.rsplit("#", 1)[1] for s in shards] == ["rows=0-3", "rows=3-6", "rows=6-8"]
    assert {s.kind for s in shards} == {"manifest"} and len({s.shard_id for s in shards}) == 3
    samples = [s for sh in shards for s in read_shard(sh, cfg)]
    got = [(s.key, s.reject and s.reject[0]) for s in samples]
    assert got == [
        (flac[:-5], None), ("audio/a", None), ("audio/a~dup1", "duplicate_key"),
        ("audio/missing", "undecodable"), ("pipe:cat /etc/passwd", "unsafe_member"),
        ("zip::file://archive", "unsafe_member"), (f"{shards[2].shard_id}/6", "missing_audio"),
        ("audio/zero", "empty"),
    ]
    assert samples[0].data == audio(FLAC) and samples[0].meta == {"text": "t1", "speaker": "s1"}
    assert samples[1].data == audio(WAV) and samples[1].meta == {"speaker": "s2"} and samples[1].ext == "wav"
    assert "missing.flac" in samples[3].reject[1]
    assert [s.key for s in read_shard(shards[1], cfg)] == [s.key for s in samples[3:6]]


def test_manifest_csv_with_key_column(tmp_path):
    flac = manifest_files(tmp_path)
    (tmp_path / "m.csv").write_text(
        "\ufeffid,path,text\n"
        f'u1,{flac},"two\nlines, quoted"\n'
        "u2,audio/a.wav,plain\n"
        "u3,audio/nope.wav,gone\n"
    )
    cfg = SourceConfig(manifest_rows_per_shard=2, key_column="id")
    shards = list_shards(str(tmp_path / "m.csv"), cfg)
    assert len(shards) == 2
    samples = [s for sh in shards for s in read_shard(sh, cfg)]
    assert [(s.key, s.meta, s.reject and s.reject[0]) for s in samples] == [
        ("u1", {"text": "two\nlines, quoted"}, None), ("u2", {"text": "plain"}, None),
        ("u3", {"text": "gone"}, "undecodable")]
    assert samples[1].data == audio(WAV)
    with pytest.raises(ValueError, match="'wav_path'"):
        list_shards(str(tmp_path / "m.csv"), SourceConfig(path_column="wav_path"))
    with pytest.raises(ValueError, match="nope.csv"):
        list_shards(str(tmp_path / "nope.csv"), cfg)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="empty.jsonl"):
        list_shards(str(tmp_path / "empty.jsonl"), cfg)


def hf_dataset(rows):
    import datasets
    import pyarrow as pa

    audio_type = pa.struct({"bytes": pa.binary(), "path": pa.string()})
    table = pa.table({
        "audio": pa.array([r[0] for r in rows], type=audio_type),
        "text": [r[1] for r in rows],
        "speaker": [r[2] for r in rows],
    })
    features = datasets.Features({"audio": datasets.Audio(), "text": datasets.Value("string"),
                                  "speaker": datasets.Value("string")})
    return datasets.Dataset(table, info=datasets.DatasetInfo(features=features))


def test_hf_save_to_disk(tmp_path):
    wav_path = str(corpus_file(WAV))
    ds = hf_dataset([
        ({"bytes": audio(FLAC), "path": "clips/utt1.flac"}, "one", "s1"),
        ({"bytes": None, "path": wav_path}, "two", "s2"),
        ({"bytes": audio(OGG), "path": None}, "three", "s3"),
        ({"bytes": b"", "path": "clips/zero.wav"}, "four", "s4"),
        (None, "five", "s5"),
        ({"bytes": audio(FLAC), "path": "other/utt1.flac"}, "six", "s6"),
    ])
    ds.save_to_disk(str(tmp_path / "saved"), num_shards=2)
    shards = list_shards(f"hf:{tmp_path / 'saved'}", SourceConfig())
    assert len(shards) == 2 and {(s.kind, s.options.format) for s in shards} == {("hf", "arrow")}
    samples = read_all(f"hf:{tmp_path / 'saved'}", SourceConfig(metadata_columns=["text"]))
    assert [(s.key, s.reject and s.reject[0]) for s in samples] == [
        ("utt1", None), ("cmu_arctic_a0007_16k", None), (f"{shards[0].shard_id}/2", None),
        ("zero", "empty"), (f"{shards[1].shard_id}/1", "missing_audio"), ("utt1", None)]
    assert [s.data for s in samples[:3]] == [audio(FLAC), audio(WAV), audio(OGG)]
    assert [s.meta for s in samples[:2]] == [{"text": "one"}, {"text": "two"}] and samples[1].ext == "wav"

    import datasets

    datasets.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(str(tmp_path / "dict"))
    assert len(read_all(f"hf:{tmp_path / 'dict'}")) == 7
    assert [s.key for s in read_all(f"hf:{tmp_path / 'dict'}", SourceConfig(hf_split="test"))] == ["utt1"]
    with pytest.raises(ValueError, match="'dev'"):
        list_shards(f"hf:{tmp_path / 'dict'}", SourceConfig(hf_split="dev"))


def test_hf_parquet_with_audio_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "pq").mkdir()
    hf_dataset([({"bytes": audio(FLAC), "path": "a.flac"}, "one", "s1"),
                ({"bytes": audio(WAV), "path": "a.wav"}, "two", "s2")]).to_parquet(str(tmp_path / "pq" / "p0.parquet"))
    pq.write_table(pa.table({  # no Hugging Face metadata; a path to read, and a row without audio
        "audio": pa.array([{"bytes": None, "path": str(corpus_file(OGG))}, None],
                          type=pa.struct({"bytes": pa.binary(), "path": pa.string()})),
        "text": ["three", "four"],
    }), tmp_path / "pq" / "p1.parquet")
    shards = list_shards(f"hf:{tmp_path / 'pq'}", SourceConfig())
    assert [s.url for s in shards] == [str(tmp_path / "pq" / f"p{i}.parquet") for i in range(2)]
    assert list_shards(f"hf:{tmp_path / 'pq'}/*.parquet", SourceConfig()) == shards
    samples = read_all(f"hf:{tmp_path / 'pq'}")
    assert [(s.key, s.meta, s.reject and s.reject[0]) for s in samples] == [
        ("a", {"text": "one", "speaker": "s1"}, None), ("a~dup1", {"text": "two", "speaker": "s2"}, "duplicate_key"),
        ("librivox_0920_16k", {"text": "three"}, None), (f"{shards[1].shard_id}/1", {"text": "four"}, "missing_audio")]
    assert [samples[0].data, samples[2].data] == [audio(FLAC), audio(OGG)]
    with pytest.raises(ValueError, match="'sound'"):
        list_shards(f"hf:{tmp_path / 'pq'}", SourceConfig(audio_column="sound"))


def test_hf_audiofolder(tmp_path):
    root = tmp_path / "folder"
    (root / "sub").mkdir(parents=True)
    shutil.copy(corpus_file(WAV), root / "a.wav")
    shutil.copy(corpus_file(FLAC), root / "sub" / "b.flac")
    shutil.copy(corpus_file(OGG), root / "sub" / "a.ogg")
    (root / "notes.txt").write_text("not audio")
    (root / "metadata.csv").write_text("file_name,text,speaker\na.wav,hello,s1\nsub/b.flac,world,s2\n")
    cfg = SourceConfig(manifest_rows_per_shard=2)
    shards = list_shards(f"hf:{root}", cfg)
    assert len(shards) == 2 and all(isinstance(s.options, AudioFiles) for s in shards)
    samples = [s for sh in shards for s in read_shard(sh, cfg)]
    assert [(s.key, s.ext, s.meta) for s in samples] == [
        ("a", "wav", {"text": "hello", "speaker": "s1"}), ("sub/a", "ogg", {}),
        ("sub/b", "flac", {"text": "world", "speaker": "s2"})]
    assert [s.data for s in samples] == [audio(WAV), audio(OGG), audio(FLAC)]


def test_hf_hub_name_offline_and_missing_local(monkeypatch, tmp_path):
    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match=r"hf:someorg/somedataset: .*Hub.*Offline\?"):
        list_shards("hf:someorg/somedataset", SourceConfig())
    with pytest.raises(ValueError, match="no such local dataset"):
        list_shards(f"hf:{tmp_path}/does/not/exist", SourceConfig())


def test_hf_hub_code_path_with_a_local_builder(monkeypatch, tmp_path):
    import datasets

    files = []
    for i, rel in enumerate((FLAC, WAV)):
        files.append(str(tmp_path / f"part{i}.parquet"))
        row = {"bytes": audio(rel), "path": f"utt{i}.{rel.rsplit('.', 1)[1]}"}
        hf_dataset([(row, f"t{i}", "s")]).to_parquet(files[-1])
    real = datasets.load_dataset

    def hub_stand_in(name, config=None, **kwargs):  # what the Hub would serve, from local Parquet files
        assert (name, config) == ("org/speech", None)
        return real("parquet", data_files={"train": files, "test": files[:1]}, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", hub_stand_in)
    shards = list_shards("hf:org/speech", SourceConfig())
    assert [s.url for s in shards] == ["hf:org/speech/test#shard=0-of-1", "hf:org/speech/train#shard=0-of-2",
                                       "hf:org/speech/train#shard=1-of-2"]
    samples = [s for sh in shards for s in read_shard(sh, SourceConfig())]
    assert [(s.key, s.meta["text"]) for s in samples] == [("utt0", "t0"), ("utt0", "t0"), ("utt1", "t1")]
    assert [s.data for s in samples[1:]] == [audio(FLAC), audio(WAV)]
    assert [s.key for s in read_all("hf:org/speech", SourceConfig(hf_split="test"))] == ["utt0"]


def test_gzipped_tar_and_truncated_gzip(tmp_path):
    import gzip

    packed = gzip.compress(write_tar_bytes([("a.flac", audio(FLAC)), ("b.wav", audio(WAV))]))
    (tmp_path / "s.tar.gz").write_bytes(packed)
    assert [(s.key, s.data == audio(rel)) for s, rel in zip(read_all(str(tmp_path / "s.tar.gz")), (FLAC, WAV))] == [
        ("a", True), ("b", True)]
    (tmp_path / "cut.tar.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(ShardReadError, match="cut.tar.gz"):
        read_all(str(tmp_path / "cut.tar.gz"))


def test_a_plain_tar_is_read_member_by_member_with_the_same_samples_as_streamed(tmp_path, monkeypatch):
    import gzip

    from pipeline.sources import tar as tar_source

    members = [("a.flac", audio(FLAC)), ("a.json", b'{"text": "t"}'), ("b.wav", audio(WAV)), ("c.txt", b"x")]
    (tmp_path / "s.tar").write_bytes(write_tar_bytes(members))
    (tmp_path / "s.tar.gz").write_bytes(gzip.compress(write_tar_bytes(members)))
    modes = []
    choose = tar_source._mode
    monkeypatch.setattr(tar_source, "_mode", lambda f: modes.append(choose(f)) or modes[-1])
    cfg = SourceConfig(metadata_columns=("text",))
    plain, packed = read_all(str(tmp_path / "s.tar"), cfg), read_all(str(tmp_path / "s.tar.gz"), cfg)
    assert modes == ["r:", "r|*"]
    monkeypatch.setattr(tar_source, "_mode", lambda f: "r|*")
    streamed = read_all(str(tmp_path / "s.tar"), cfg)
    for got in (plain, packed):
        assert [(s.key, s.data, s.ext, s.meta, s.reject) for s in got] == \
               [(s.key, s.data, s.ext, s.meta, s.reject) for s in streamed]
    assert [s.key for s in plain] == ["a", "b", "c"] and plain[0].meta == {"text": "t"}
