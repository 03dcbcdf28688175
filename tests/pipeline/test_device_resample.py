"""Resampling in torch (audio.resample_on: actor): accuracy, soxr's lengths, batch == alone, and
the job path that uses it."""

from dataclasses import replace

import numpy as np
import pytest
import soxr
import torch

from pipeline import audio as audio_prep
from pipeline.device_resample import batch_at_model_rate, output_length, resample
from pipeline.records import Sample, Segment
from tests.conftest import corpus_file, real_audio, torch_threads
from tests.fault_scenarios import demo_config


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    return float(10 * np.log10((reference**2).sum() / ((reference - other) ** 2).sum()))


@pytest.mark.parametrize("rate_in, rate_out", [(16000, 24000), (44100, 48000), (48000, 24000), (8000, 24000)])
def test_a_tone_comes_out_exact(rate_in, rate_out):
    t = np.arange(2 * rate_in) / rate_in
    x = np.sin(2 * np.pi * 997 * t)
    y = resample(torch.from_numpy(x)[None, None], rate_in, rate_out)[0, 0].numpy()
    expected = np.sin(2 * np.pi * 997 * np.arange(len(y)) / rate_out)
    inner = slice(rate_out // 10, -rate_out // 10)  # away from the ends, where the input stops
    assert snr_db(expected[inner], y[inner]) > 100


@pytest.mark.parametrize("rel, rate_in, rate_out, floor_db", [
    ("speech/librivox_0870_16k.wav", 16000, 24000, 60),  # measured 68 dB (soxr HQ vs VHQ: 99 dB)
    ("music/wesnoth_battle-epic_10s_44k.flac", 44100, 48000, 90),  # measured 101 dB
])
def test_close_to_soxr_on_real_audio(rel, rate_in, rate_out, floor_db):
    x = real_audio(rel, rate_in, 1)
    ours = resample(torch.from_numpy(x)[None], rate_in, rate_out)[0].numpy()
    ref = soxr.resample(x.T, rate_in, rate_out, quality="HQ").T
    assert ours.shape == ref.shape
    inner = slice(rate_out // 10, -rate_out // 10)
    assert snr_db(ref[:, inner], ours[:, inner]) > floor_db


def test_lengths_match_soxr():
    for n in [1, 2, 3, 147, 1000, 12345, 44101]:
        for rate_in, rate_out in [(16000, 24000), (44100, 48000), (48000, 24000), (22050, 24000)]:
            assert output_length(n, rate_in, rate_out) == len(soxr.resample(np.zeros(n, np.float32), rate_in, rate_out))


def test_a_padded_batch_resamples_each_item_as_alone():
    gen = torch.Generator().manual_seed(0)
    lengths = [44100, 12345, 300, 30000]
    segments = [Segment(f"k{i}", "s", torch.randn(2, n, generator=gen).numpy() * 0.1, 0.0, n / 44100, rate=44100)
                for i, n in enumerate(lengths)]
    segments.append(Segment("native", "s", np.full((2, 4800), 0.25, np.float32), 0.0, 0.1))  # already at 48 kHz
    x, out_lengths = batch_at_model_rate(segments, 48000, "cpu")
    assert out_lengths == [output_length(n, 44100, 48000) for n in lengths] + [4800]
    assert x.shape == (5, 2, max(out_lengths))
    for j, seg in enumerate(segments[:-1]):
        alone = resample(torch.from_numpy(seg.audio)[None], 44100, 48000)[0]
        assert torch.equal(x[j, :, : out_lengths[j]], alone)
        assert not x[j, :, out_lengths[j]:].any()
    assert torch.equal(x[4, :, :4800], torch.full((2, 4800), 0.25))


def test_prepare_defers_resampling_to_the_actor():
    data = corpus_file("speech/cmu_arctic_a0007_16k.wav").read_bytes()
    sample = Sample("k", "s", data, "wav", {})
    now = demo_config().audio
    later = demo_config("audio.resample_on=actor").audio
    (seg_now,), _ = audio_prep.prepare(sample, now, 24000, 1)
    (seg_later,), _ = audio_prep.prepare(sample, later, 24000, 1)
    assert seg_now.rate is None and seg_later.rate == 16000
    assert seg_later.duration_s == pytest.approx(seg_now.duration_s, abs=1 / 16000)
    x, (n,) = batch_at_model_rate([seg_later], 24000, "cpu")
    assert n == seg_now.num_samples
    assert snr_db(seg_now.audio[:, 2400:-2400], x[0, :, 2400:-2400].numpy()) > 40  # measured 47 dB
    # an odd rate (24000 filter phases to 24 kHz) stays on soxr in the decoder process
    import io

    import soundfile as sf

    odd = io.BytesIO()
    sf.write(odd, np.zeros(47999, np.float32), 47999, format="WAV")
    (seg_odd,), _ = audio_prep.prepare(Sample("odd", "s", odd.getvalue(), "wav", {}), later, 24000, 1)
    assert seg_odd.rate is None and seg_odd.num_samples == 24000
    assert audio_prep.device_resamplable(44100, 48000) and not audio_prep.device_resamplable(47999, 24000)
    with pytest.raises(ValueError, match="audio.resample_on must be decoder or actor"):
        demo_config("audio.resample_on=gpu")


def test_job_with_resampling_on_the_actor(tmp_path):
    from codec import load_model
    from pipeline import writer
    from pipeline.config import to_dict
    from pipeline.provenance import build_provenance
    from pipeline.shard_worker import ShardTokenizer
    from pipeline.sources import list_shards
    from pipeline.verify import VerifyOptions, run_verify
    from tests.conftest import REPO

    rows = {}
    spec = str(REPO / "demo" / "shards" / "demo-000.tar")
    for where in ("decoder", "actor"):
        cfg = demo_config(f"audio.resample_on={where}")
        model = load_model(cfg.model)
        info = build_provenance(model, cfg, "cpu")
        out = tmp_path / where
        worker = ShardTokenizer(model, cfg, str(out), info)
        try:
            with torch_threads(cfg.cpus_per_actor):  # as the actor does, and verify after it
                records = [worker.run(s) for s in list_shards(spec, cfg.source)]
        finally:
            worker.close()
        import pyarrow.parquet as pq

        table = pq.read_table(out / writer.part_name("tokens", records[0].shard_id))
        rows[where] = {r["key"]: r for r in table.to_pylist()}
        assert info.resampler["library"] == ("soxr" if where == "decoder" else "audiotok.device_resample")
        # verify re-reads the originals and resamples them as the job did: the same codes again
        writer.write_provenance(str(out), replace(info, job_config=to_dict(cfg), input=spec).to_json())
        summary = run_verify(str(out), str(tmp_path / f"report-{where}"),
                             VerifyOptions(count=2, bandwidths=[6.0], use_ray="inline"))
        assert summary.passed and summary.rows_sampled == 2, summary
    assert rows["decoder"].keys() == rows["actor"].keys() and rows["actor"]
    for key, row in rows["actor"].items():
        assert row["num_samples"] == rows["decoder"][key]["num_samples"]
        assert row["duration_s"] == pytest.approx(rows["decoder"][key]["duration_s"])
