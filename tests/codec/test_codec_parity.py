"""Our codec against transformers' EncodecModel under identical, non-trivial random weights."""

import contextlib

import numpy as np
import pytest
import torch

from codec import load_model, random_model, save_model
from codec.codebook_fitting import fit_codebooks
from tests.conftest import batch_independent_kernels, excerpts_batch, real_audio, transformers_codes

transformers = pytest.importorskip("transformers")

SOURCES = {"24khz": "music/encodec_test_24k_mono_20s.wav", "48khz": "music/encodec_test_48k_stereo_15s.wav"}
# shorter than one hop, exactly one hop, odd, not a multiple of the 48 kHz chunk stride, several chunks
LENGTHS = {"24khz": [100, 320, 12345, 48007, 96000], "48khz": [100, 320, 12345, 48007, 100000]}


@pytest.fixture(scope="module", params=["24khz", "48khz"])
def pair(request, tmp_path_factory):
    preset = request.param
    ours = random_model(f"random:{preset}")
    path = save_model(ours, tmp_path_factory.mktemp(preset))
    ref = transformers.EncodecModel.from_pretrained(path).eval()
    embed = ref.quantizer.layers[5].codebook.embed
    assert embed.abs().sum() > 0 and len(torch.unique(embed[:, 0])) > 100, "codebooks must be non-trivial"
    audio = real_audio(SOURCES[preset], ours.config.sampling_rate, ours.config.audio_channels)
    return preset, ours, ref, torch.from_numpy(audio)


ref_encode = transformers_codes


def kernels_for(max_batch):
    """A whole mixed batch in one pass is compared with native kernels on both sides (conftest)."""
    return contextlib.nullcontext() if max_batch is None else batch_independent_kernels()


# None: the CPU default (one item per forward pass); 8: the whole mixed-length batch in one pass,
# as on CUDA, so each conv rewrites the padded tails per item (the LSTM still runs per item on the CPU)
@pytest.mark.parametrize("max_batch", [None, 8])
def test_batched_codes_equal_reference_per_item(pair, max_batch):
    preset, ours, ref, audio = pair
    lengths = LENGTHS[preset]
    x = excerpts_batch(audio, lengths, 1000)
    for bw in ours.config.target_bandwidths:
        with kernels_for(max_batch):
            items = ours.encode(x, lengths, bandwidth=bw, max_batch=max_batch)
        for b, n in enumerate(lengths):
            with kernels_for(max_batch):
                codes, scales, _ = ref_encode(ref, x[b, :, :n], bw)
            assert items[b].codes.shape == codes.shape, (bw, n)
            assert torch.equal(items[b].codes, codes), f"{preset} bw={bw} len={n}: codes differ"
            if scales is None:
                assert items[b].scales is None
            else:
                assert items[b].scales == pytest.approx(scales, rel=0, abs=0)


@pytest.mark.parametrize("max_batch", [None, 8])
def test_batched_equals_one_by_one_on_every_frame(pair, max_batch):
    _, ours, _, audio = pair
    lengths = [777, 25000, 321, 60001, 2000]
    with kernels_for(max_batch):
        batched = ours.encode(excerpts_batch(audio, lengths, 1000), lengths, max_batch=max_batch)
    for b, n in enumerate(lengths):
        with kernels_for(max_batch):
            single = ours.encode(audio[None, :, 1000 * b : 1000 * b + n])
        assert torch.equal(batched[b].codes, single[0].codes), f"len={n}"


def test_lower_bandwidth_is_prefix_of_highest(pair):
    _, ours, _, audio = pair
    x = audio[None, :, :30000]
    top = ours.encode(x)[0].codes
    assert top.shape[0] == ours.config.num_quantizers
    for bw, n_q in ours.config.bandwidth_to_num_quantizers.items():
        assert torch.equal(ours.encode(x, bandwidth=bw)[0].codes, top[:n_q])


def test_decode_matches_reference(pair):
    preset, ours, ref, audio = pair
    bw = 6.0
    for n in LENGTHS[preset][1:]:
        x = audio[:, 5000 : 5000 + n]
        _, _, out = ref_encode(ref, x, bw)
        with torch.no_grad():
            expected = ref.decode(out.audio_codes, out.audio_scales, last_frame_pad_length=out.last_frame_pad_length)
            expected = expected.audio_values[0, :, :n]
        got = ours.decode(ours.encode(x[None], bandwidth=bw))[0]
        assert got.shape == (ours.config.audio_channels, n)
        # fp32, same ops: observed max difference ~1e-7; the bound leaves room for BLAS differences
        assert torch.allclose(got, expected, atol=1e-5, rtol=0), (got - expected).abs().max()


def test_load_directory_written_by_transformers(tmp_path):
    config = transformers.EncodecConfig()
    torch.manual_seed(3)
    ref = transformers.EncodecModel(config).eval()
    x = torch.from_numpy(real_audio(SOURCES["24khz"], 24000, 1, seconds=3.0))
    with torch.no_grad():  # transformers starts with zero codebooks: fill them from its own latents
        fit_codebooks(ref.quantizer, ref.encoder(x[None])[0].t(), generator=torch.Generator().manual_seed(0))
    ref.save_pretrained(tmp_path)
    ours = load_model(tmp_path)
    assert ours.provenance.sha256 and not ours.provenance.random_weights
    with torch.no_grad():
        expected = ref.encode(x[None], bandwidth=24.0).audio_codes[0, 0]
    assert len(torch.unique(expected[-1])) > 1
    assert torch.equal(ours.encode(x[None])[0].codes, expected)


def test_pytorch_model_bin_layout(tmp_path, pair):
    preset, ours, _, audio = pair
    path = save_model(ours, tmp_path / "m")
    from safetensors.torch import load_file

    torch.save(load_file(str(path / "model.safetensors")), path / "pytorch_model.bin")
    (path / "model.safetensors").unlink()
    again = load_model(path)
    x = audio[None, :, :20000]
    assert torch.equal(again.encode(x)[0].codes, ours.encode(x)[0].codes)
    assert np.isclose(float((again.encoder.layers[0].conv.weight - ours.encoder.layers[0].conv.weight).abs().max()), 0)
