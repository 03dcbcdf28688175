"""Our DAC against transformers' DacModel under identical weights, with codebooks fitted to real audio.

"Alone" is transformers' reference for one item: `DacFeatureExtractor` (zero-pads to a multiple of the
hop) then `DacModel.encode`: ceil(L / hop) frames. Reduced widths keep the 30 s items cheap on the CPU;
the full-size dac_44khz runs on two short clips.
"""

import math

import pytest
import torch

from codec.dac import PRESETS, DacConfig, random_from_config, save_dac
from codec.dac.layers import decoded_length
from tests.conftest import batch_independent_kernels, excerpts_batch, real_audio, torch_threads

transformers = pytest.importorskip("transformers")

MUSIC = "music/wesnoth_battle-epic_10s_44k.flac"
SPEECH = "speech/librivox_0870_16k.wav"
# reduced widths, the released rates: 44.1 kHz (hop 512, even strides) and 16 kHz (hop 320, a stride of 5)
REDUCED = {
    "44khz": DacConfig(sampling_rate=44100, encoder_hidden_size=4, downsampling_ratios=(2, 4, 8, 8),
                       decoder_hidden_size=32, n_codebooks=9, name="reduced_44khz"),
    "16khz": DacConfig(sampling_rate=16000, encoder_hidden_size=4, downsampling_ratios=(2, 4, 5, 8),
                       decoder_hidden_size=32, n_codebooks=12, name="reduced_16khz"),
}
SOURCES = {"44khz": MUSIC, "16khz": SPEECH}


def lengths_for(config: DacConfig) -> list[int]:
    """A few hundred samples, one hop +- 1, odd lengths, and 30 s (longest first: the batch's length)."""
    hop, rate = config.hop_length, config.sampling_rate
    return [30 * rate, 300, hop - 1, hop, hop + 1, 12345, 3 * rate + 7]


def corpus_clip(rel: str, rate: int, seconds: float) -> torch.Tensor:
    """[1, T] of real audio, looped to `seconds`."""
    audio = torch.from_numpy(real_audio(rel, rate, 1))
    reps = math.ceil(seconds * rate / audio.shape[-1])
    return audio.repeat(1, reps)[:, : int(seconds * rate)]


def transformers_pair(ours, directory):
    save_dac(ours, directory)
    ref = transformers.DacModel.from_pretrained(directory).eval()
    extractor = transformers.DacFeatureExtractor(sampling_rate=ours.config.sampling_rate,
                                                 hop_length=ours.config.hop_length)
    return ref, extractor


def reference_codes(ref, extractor, item: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
    """transformers' codes of one item [1, L] alone: [n_q, ceil(L / hop)]."""
    inputs = extractor(item[0].numpy(), sampling_rate=extractor.sampling_rate, return_tensors="pt")
    with torch.no_grad():
        return ref.encode(inputs["input_values"], n_quantizers=n_q).audio_codes[0]


@pytest.fixture(scope="module", params=sorted(REDUCED))
def reduced(request, tmp_path_factory):
    config = REDUCED[request.param]
    rate = config.sampling_rate
    with torch_threads(1):
        fit = corpus_clip(SOURCES[request.param], rate, 20.0)[None]
        ours = random_from_config(config, seed=3, fit_audio=fit)
        ref, extractor = transformers_pair(ours, tmp_path_factory.mktemp(request.param))
    codebook = ref.quantizer.quantizers[4].codebook.weight
    assert len(torch.unique(codebook[:, 0])) > 900, "codebooks must be non-trivial"
    audio = corpus_clip(SOURCES[request.param], rate, 34.0)
    return ours, ref, extractor, audio


def test_mixed_batch_codes_equal_transformers_alone(reduced):
    """The default CPU plan: a mixed batch of 7 items, codes bit-identical to each item alone."""
    ours, ref, extractor, audio = reduced
    lengths = lengths_for(ours.config)
    x = excerpts_batch(audio, lengths, 4000)
    with torch_threads(1):
        items = ours.set_batch_plan("cpu").encode(x, lengths)
        used = set()
        for b, n in enumerate(lengths):
            codes = reference_codes(ref, extractor, x[b : b + 1, 0, :n])
            assert items[b].codes.shape == (ours.config.n_codebooks, math.ceil(n / ours.config.hop_length))
            assert torch.equal(items[b].codes, codes), f"len={n}: codes differ"
            assert items[b].scales is None and items[b].num_samples == n
            used |= set(codes[0].tolist())
    ours.set_batch_plan(None)
    assert len(used) > 100, f"only {len(used)} distinct first-level codes: the comparison would be weak"


def test_cuda_plan_one_masked_pass_keeps_every_latent(reduced):
    """The CUDA plan's single pass over the whole grid-padded batch: every valid latent frame of every
    item equals the item alone to float rounding (the masks work: without them a short item's latents
    change by far more, see `test_padding_needs_the_masks`). Kernels chosen for a long batch round
    differently in the last bits from those for one short item, and the quantizer's matmul over 7 items'
    rows may round a near-tie differently (seen: 1 code of 18,000), as EnCodec's batched LSTM does: the
    job records each row's batch (`EncodeBatch`) and verify re-encodes it that way. The CPU plan (one
    item per pass, the default on the CPU) is the bit-exact one."""
    ours, ref, extractor, audio = reduced
    lengths = lengths_for(ours.config)
    x = excerpts_batch(audio, lengths, 4000)
    hop = ours.config.hop_length
    padded = [math.ceil(n / hop) * hop for n in lengths]
    with torch_threads(1), batch_independent_kernels(), torch.inference_mode():
        ours.set_batch_plan("cuda")
        total = ours.padded_length(max(lengths))
        assert total > max(padded)  # the grid pads past the longest item too
        batch = ours.encoder(torch.nn.functional.pad(x, (0, total - x.shape[-1])), padded)
        items = ours.encode(x, lengths)
        agree, count = 0, 0
        for b, n in enumerate(lengths):
            alone = ours.encoder(torch.nn.functional.pad(x[b : b + 1, :, :n], (0, padded[b] - n)))
            diff = float((batch[b, :, : padded[b] // hop] - alone[0]).abs().max())
            assert diff <= 1e-5 * float(alone.abs().max()), f"len={n}: latents differ by {diff}"
            codes = reference_codes(ref, extractor, x[b : b + 1, 0, :n])
            agree, count = agree + int((items[b].codes == codes).sum()), count + codes.numel()
    ours.set_batch_plan(None)
    assert agree / count > 0.999, f"{count - agree} of {count} codes differ"


def test_fewer_codebooks_are_a_prefix(reduced):
    ours, ref, extractor, audio = reduced
    x = audio[None, :, :20000]
    bandwidths = ours.target_bandwidths
    full = ours.encode(x)[0].codes
    three = ours.encode(x, bandwidth=bandwidths[2])[0].codes
    assert torch.equal(three, full[:3])
    assert torch.equal(three, reference_codes(ref, extractor, x[0], n_q=3))


def test_padding_needs_the_masks(reduced):
    """Control: the same batch through the encoder without the per-item masks changes a short item's codes
    (Snake and the biases fill its padding region), so the test above can fail."""
    ours, ref, extractor, audio = reduced
    lengths = [20 * ours.config.hop_length, 3 * ours.config.hop_length]
    x = excerpts_batch(audio, lengths, 4000)
    with torch.inference_mode():
        codes = ours.quantizer.encode(ours.encoder(x), ours.config.n_codebooks)
    alone = reference_codes(ref, extractor, x[1:2, 0, : lengths[1]])
    assert not torch.equal(codes[1, :, :3], alone)


def test_decode_within_1e5_of_transformers(reduced):
    ours, ref, extractor, audio = reduced
    lengths = lengths_for(ours.config)[1:]  # the 30 s item's decode is slow; the shapes are the same
    x = excerpts_batch(audio, lengths, 4000)
    with torch_threads(1):
        for plan in ("cpu", "cuda"):
            items = ours.set_batch_plan(plan).encode(x, lengths)
            decoded = ours.decode(items)
            for item, y in zip(items, decoded):
                assert y.shape == (1, item.num_samples)
                with torch.no_grad():
                    want = ref.decode(audio_codes=item.codes[None]).audio_values[0]
                valid = min(item.num_samples, decoded_length(item.codes.shape[1], ours.config))
                assert want.shape[-1] == decoded_length(item.codes.shape[1], ours.config)
                assert torch.allclose(y[0, :valid], want[:valid], rtol=0, atol=1e-5), plan
                assert not y[0, valid:].any()  # past the decoder's output (16/24 kHz rates only): zeros
    ours.set_batch_plan(None)


@pytest.fixture(scope="module")
def full_44khz(tmp_path_factory):
    config = PRESETS["dac_44khz"]
    with torch_threads(2):
        fit = corpus_clip(MUSIC, config.sampling_rate, 3.0)[None]
        ours = random_from_config(config, seed=1, fit_audio=fit)
        ref, extractor = transformers_pair(ours, tmp_path_factory.mktemp("dac_44khz"))
    return ours, ref, extractor


def test_full_size_44khz_codes_and_decode(full_44khz):
    ours, ref, extractor = full_44khz
    audio = corpus_clip(MUSIC, 44100, 4.0)
    lengths = [30000, 777]
    x = excerpts_batch(audio, lengths, 44100)
    with torch_threads(2), batch_independent_kernels():
        items = ours.set_batch_plan("cpu").encode(x, lengths)
        ours.set_batch_plan("cuda")  # both items decoded in one masked pass
        decoded = ours.decode(items)
        for b, n in enumerate(lengths):
            assert torch.equal(items[b].codes, reference_codes(ref, extractor, x[b : b + 1, 0, :n]))
            with torch.no_grad():
                want = ref.decode(audio_codes=items[b].codes[None]).audio_values[0]
            assert torch.allclose(decoded[b][0], want[:n], rtol=0, atol=1e-5)
    ours.set_batch_plan(None)
    assert len(set(items[0].codes[0].tolist())) > 20
