"""Pieces of pipeline.bench.codec: the agreement measure, k-means codebooks from real latents, variants."""

import numpy as np
import pytest
import torch

from codec import random_model
from codec.precision import PrecisionError
from codec.seanet import LSTM
from pipeline.bench import codec as bench_codec
from tests.conftest import real_audio


def test_agreement_counts_codes_of_the_prefix_levels():
    ref = [torch.arange(12).view(3, 4), torch.zeros(3, 2, dtype=torch.long)]
    got = [ref[0][:2].clone(), torch.zeros(2, 2, dtype=torch.long)]  # 2 of 3 levels (a lower bandwidth)
    got[0][1, 3] = -1
    assert bench_codec.agreement(got, ref) == pytest.approx(100 * 11 / 12)
    assert bench_codec.agreement(got, ref, levels=1) == 100.0


def test_codebooks_are_fitted_to_the_audio_latents():
    model = random_model("random:24khz")
    audio = [real_audio("music/encodec_test_24k_mono_20s.wav", 24000, 1, seconds=4.0)]
    before = model.quantizer.layers[0].codebook.embed.clone()
    frames = bench_codec.fit_to_audio(model, audio, iters=3, max_frames=200)
    after = model.quantizer.layers[0].codebook.embed
    assert frames == 200 and not torch.equal(before, after)
    latents = []
    hook = model.encoder.register_forward_hook(lambda m, a, o: latents.append(o[0][0].t()))
    model.encode(torch.from_numpy(audio[0])[None])
    hook.remove()
    # fitted codewords sit among this audio's latents, closer than those random_model drew from noise
    def mean_distance(embed):
        return torch.cdist(latents[0], embed).min(dim=1).values.mean()
    assert mean_distance(after) < 0.7 * mean_distance(before)


def test_held_out_split_and_clips():
    names = [f"music/f{i}.wav" for i in range(60)]
    held = [n for n in names if bench_codec.held_out(n)]
    assert 10 < len(held) < 30 and held == [n for n in names if bench_codec.held_out(n)]
    clips = bench_codec.cut_clips([np.ones((1, 250), np.float32), np.zeros((1, 260), np.float32)], 100, 2.0)
    assert clips.shape == (2, 1, 200) and clips[1, 0, 49] == 1 and clips[1, 0, 50] == 0


def test_variants(monkeypatch):
    base = random_model("random:24khz")
    batched = bench_codec.make_variant("batched", base, "cpu")
    assert all(m.per_item is False for m in batched.model.modules() if isinstance(m, LSTM))
    assert all(m.per_item is None for m in base.modules() if isinstance(m, LSTM))
    bf16 = bench_codec.make_variant("bf16", base, "cpu")
    assert bf16.model.dtype == torch.bfloat16 and bf16.model.quantizer.layers[0].codebook.embed.dtype == torch.float32

    def refuse(ref, model):
        raise PrecisionError("wrong kernel")

    import codec.precision

    monkeypatch.setattr(codec.precision, "check_precision", refuse)  # what reduced_copy runs
    with pytest.raises(PrecisionError, match="wrong kernel"):
        bench_codec.make_variant("bf16", base, "cpu")


def test_out_of_memory_row_is_reported_and_other_errors_raise():
    def oom():
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    t, why = bench_codec.guarded_timed(oom, repeats=1)
    assert t is None and why.startswith("out of memory: CUDA out of memory")
    line = bench_codec.row_line("24khz", 6.0, 256, "compile", 2560.0, t, 0.5, None, None, 0.0)
    assert line.split()[-3:] == ["out", "of", "memory"] and "compile" in line
    assert bench_codec.guarded_timed(lambda: (_ for _ in ()).throw(MemoryError()), 1)[0] is None

    def bug():
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        bench_codec.guarded_timed(bug, repeats=1)
    ok = bench_codec.row_line("24khz", 6.0, 16, "fp32", 160.0, 2.0, 4.0, 99.95, 100.0, 1024.0)
    assert "80.0" in ok and "2.00" in ok and "< 99.9" not in ok
