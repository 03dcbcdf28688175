"""Two token streams in one shard (no Ray): `codes` byte-identical to a one-stream job, `semantic_codes`
equal to the tokenizer run on each item alone at 16 kHz (decoded once, resampled once per rate), items too
short for either stream rejected as a whole, and the streams' identity in the Parquet metadata."""

import io
import json
import re

import numpy as np
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch

from codec import load_model
from pipeline import audio as audio_prep
from pipeline import schema
from pipeline.config import ConfigError, load_config
from pipeline.provenance import build_provenance
from pipeline.records import Sample
from pipeline.shard_worker import ShardTokenizer
from pipeline.sources import list_shards
from pipeline.streams import TokenStream
from tests.conftest import corpus_file
from tests.fault_scenarios import demo_config
from tests.hostile_corpus import write_tar
from tests.pipeline.semantic_fake import FakeSemantic

CLIPS = {"hello": "speech/supertux_tux_hello_44k_stereo.ogg", "saw": "speech/klettres_en_saw_44k.ogg"}


def _wav(seconds: float, rate: int = 22050) -> bytes:
    buf = io.BytesIO()
    t = np.arange(int(seconds * rate)) / rate
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, format="WAV")
    return buf.getvalue()


def _members():
    members = [(f"{k}.{p.rsplit('.', 1)[1]}", corpus_file(p).read_bytes()) for k, p in CLIPS.items()]
    # 0.02 s at 22.05 kHz: 480 samples at 24 kHz (EnCodec encodes it), 320 at 16 kHz (< 400: too short)
    return members + [("blip.wav", _wav(0.02))]


def _run(tmp_path, name, streams, *overrides):
    write_tar(tmp_path / "in.tar", _members())
    cfg = demo_config("audio.min_duration_s=0.01", "audio.max_duration_s=2.5", "prefetch_shards=0", *overrides)
    model = load_model(cfg.model)
    out = tmp_path / name
    worker = ShardTokenizer(model, cfg, str(out), build_provenance(model, cfg, "cpu", streams=streams),
                            decoders=1, streams=streams)
    try:
        record = worker.run(list_shards(str(tmp_path / "in.tar"), cfg.source)[0])
    finally:
        worker.close()
    return cfg, out, record


def test_two_streams_in_one_shard(tmp_path):
    fake = FakeSemantic()
    cfg1, one, _ = _run(tmp_path, "one", [])
    stream = TokenStream("semantic", fake, cfg1)
    cfg, two, record = _run(tmp_path, "two", [stream])
    a = pads.dataset(one / "tokens").to_table().sort_by("key")
    b = pads.dataset(two / "tokens").to_table().sort_by("key")
    # the blip is rejected as a whole in the two-stream job, kept in the one-stream job
    assert "blip" in a.column("key").to_pylist() and "blip" not in b.column("key").to_pylist()
    rejects = pads.dataset(two / "rejects").to_table().to_pylist()
    assert [(r["key"], r["reason"]) for r in rejects] == [("blip", "too_short")]
    assert "semantic: 320 samples at 16000 Hz < 400" in rejects[0]["detail"]
    assert record.rejects_by_reason == {"too_short": 1}
    # acoustic codes byte-identical to the one-stream job's, row by row
    keep = [k != "blip" for k in a.column("key").to_pylist()]
    a = a.filter(keep)
    assert a.column("key").to_pylist() == b.column("key").to_pylist()
    for name in schema.CORE_COLUMNS:
        assert a.column(name).equals(b.column(name)), name
    # semantic ids: the tokenizer on each segment alone, resampled from the decoded file to 16 kHz by soxr
    expect = {}
    for member, data in _members()[:-1]:
        key, ext = member.rsplit(".", 1)
        segments, _ = audio_prep.prepare(Sample(key, "x", data, ext), cfg.audio, 16000, 1)
        for seg in segments:
            x = torch.from_numpy(seg.audio)[None]
            expect[seg.key] = fake.encode(x, [seg.num_samples])[0].numpy()
    rows = b.to_pylist()
    assert sorted(expect) == [r["key"] for r in rows] and any("#" in k for k in expect)  # 'saw' is cut in pieces
    for r in rows:
        got = np.asarray(r["semantic_codes"])
        assert got.shape == expect[r["key"]].shape and (got == expect[r["key"]]).all(), r["key"]
        assert abs(got.shape[1] / 50.0 - r["duration_s"]) < 0.03  # 50 Hz over the same segment
    assert max(fake.calls) > 1  # batched
    # the schema and metadata name both streams
    part = pq.ParquetFile(next((two / "tokens").glob("*.parquet")))
    assert part.schema_arrow.field("semantic_codes").type == schema.CODES_TYPE
    meta = schema.read_file_metadata(part.schema_arrow.metadata)
    (info,) = meta["streams"]
    assert info["column"] == "semantic_codes" and info["frame_rate"] == 50.0 and info["sample_rate"] == 16000
    assert info["model_name"] == "fake_k50" and info["codebook_size"] == 50
    assert json.loads(json.dumps(meta["frame_rate"])) == 75.0


def test_semantic_config_keys():
    cfg = load_config(None, ["semantic.model=random:hubert_base", "semantic.layer=6", "semantic.centroids=c.npy"])
    assert (cfg.semantic.model, cfg.semantic.layer, cfg.semantic.centroids) == ("random:hubert_base", 6, "c.npy")
    assert load_config(None).semantic is None
    with pytest.raises(ConfigError, match="unknown config key 'semantic.layers'"):
        load_config(None, ["semantic.layers=9"])
    with pytest.raises(ConfigError, match="semantic.centroids"):
        load_config(None, ["semantic.model=random:hubert_base"])
    with pytest.raises(ConfigError, match="semantic.layer"):
        load_config(None, ["semantic.layer=nine", "semantic.centroids=c.npy"])


def test_more_clusters_than_int16_is_refused():
    fake = FakeSemantic(k=5)
    fake.codebook_size = 40000
    with pytest.raises(ConfigError, match="int16"):
        TokenStream("semantic", fake, demo_config())


def test_a_decoder_crash_costs_one_file_in_a_two_stream_job(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOTOK_TEST_DECODER_FAULTS", "segv:saw")
    fake = FakeSemantic()
    _, out, record = _run(tmp_path, "two", [TokenStream("semantic", fake, demo_config())])
    rows = pads.dataset(out / "tokens").to_table().to_pylist()
    assert sorted({r["key"].split("#")[0] for r in rows}) == ["hello"]
    assert all(len(r["semantic_codes"][0]) > 0 and len(r["codes"][0]) > 0 for r in rows)
    assert record.rejects_by_reason == {"decoder_crash": 1, "too_short": 1} and record.decoder_restarts >= 1


def test_verify_fails_a_stream_below_the_agreement_threshold():
    from pipeline.config import VerifyConfig
    from pipeline.verify.result import BandwidthScores, CheckResult
    from pipeline.verify.thresholds import threshold_failures

    def result(key, semantic):
        r = CheckResult(key, "s", 100, 1.0, 0.0, code_agreement_all=1.0, stream_agreement={"semantic": semantic})
        r.bandwidths[6.0] = BandwidthScores(8, 10.0, 1.0, 1.0, 1.0)
        assert CheckResult.from_json(json.loads(json.dumps(r.to_json()))).stream_agreement == {"semantic": semantic}
        return r

    limits = VerifyConfig(min_code_agreement=0.999)
    assert threshold_failures([result("a", 1.0), result("b", 1.0)], limits) == []
    (line,) = threshold_failures([result("a", 1.0), result("b", 0.75)], limits)
    assert line == "semantic code agreement < 0.999 for 1/2 rows: b (0.75)"


def test_preflight_checks_the_semantic_tokenizer(tmp_path):
    from pipeline.preflight import check_semantic, settings_changed

    np.save(tmp_path / "c.npy", np.zeros((20, 768), np.float32))
    np.save(tmp_path / "wide.npy", np.zeros((20, 1024), np.float32))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "many.npy", np.zeros((40000, 768), np.float32))
    (tmp_path / "c.pkl").write_bytes(b"x")

    def check(*overrides):
        check_semantic(load_config(None, [f"semantic.centroids={tmp_path / 'c.npy'}", *overrides]))

    check()
    check("semantic.model=random:hubert_large", "semantic.layer=24", f"semantic.centroids={tmp_path / 'wide.npy'}")
    for overrides, says in [
        (["semantic.layer=13"], "semantic.layer 13 is out of range: random:hubert_base has hidden_states 0..12"),
        ([f"semantic.centroids={tmp_path / 'wide.npy'}"], "are 1024 wide; random:hubert_base's features are 768"),
        ([f"semantic.centroids={tmp_path / 'obj.npy'}"], "holds object values"),
        ([f"semantic.centroids={tmp_path / 'many.npy'}"], "40000 clusters do not fit"),
        ([f"semantic.centroids={tmp_path / 'none.npy'}"], "cannot read it"),
        ([f"semantic.centroids={tmp_path / 'c.pkl'}"], "must be a .safetensors"),
        (["semantic.model=random:wav2vec2"], "unknown random model"),
        (["semantic.model=./no/such/dir"], "not found"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(says)):
            check(*overrides)
    cfg = load_config(None, [f"semantic.centroids={tmp_path / 'c.npy'}"])
    changes = settings_changed({"model_source": cfg.model, "job_config": {"model": cfg.model, "semantic": None}}, cfg)
    assert len(changes) == 1 and changes[0].startswith("semantic: None -> {")


@pytest.mark.parametrize("resample_on", ["decoder", "actor"])
def test_other_stream_audio_is_the_decoded_file_resampled_once(resample_on):
    """The 16 kHz pieces hung on the 24 kHz segments equal a 16 kHz job's own segments (same keys, same
    soxr output from the decoded file, cut at the same seconds), also when the codec's audio is resampled
    on the actor."""
    from pipeline.config import AudioConfig

    cfg = AudioConfig(max_duration_s=1.5, resample_on=resample_on)
    data = corpus_file(CLIPS["hello"]).read_bytes()
    segments, rejections = audio_prep.prepare(Sample("hello", "x", data, "ogg"), cfg, 24000, 1, [(16000, 1)])
    alone, _ = audio_prep.prepare(Sample("hello", "x", data, "ogg"), AudioConfig(max_duration_s=1.5), 16000, 1)
    assert not rejections and [s.key for s in segments] == [s.key for s in alone] == ["hello#0", "hello#1", "hello#2"]
    for seg, ref in zip(segments, alone):
        (other,) = seg.other_audio
        assert np.array_equal(other, ref.audio) and other.dtype == np.float32
        assert seg.rate == (44100 if resample_on == "actor" else None)
        assert abs(seg.start_s - ref.start_s) < 1e-9 and abs(seg.duration_s - ref.duration_s) < 1 / 16000
