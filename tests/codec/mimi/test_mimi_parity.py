"""Our Mimi against transformers' MimiModel under identical weights (the full kyutai/mimi architecture,
`MimiConfig()`), codebooks fitted to real audio, weights written by transformers' `save_pretrained`.

"Alone" is transformers' reference for one item: `MimiModel.encode` of the item at its own length (no
padding: its convolutions complete the last partial frame themselves): ceil(L / 1920) frames.
"""

import math
import os

import pytest
import torch

from codec.mimi import PRESETS, load_mimi_directory, random_from_config, save_mimi
from tests.conftest import batch_independent_kernels, excerpts_batch, real_audio, torch_threads

transformers = pytest.importorskip("transformers")

SPEECH = "speech/librivox_0870_16k.wav"  # 7.1 s
MUSIC = "music/wesnoth_battle-epic_10s_44k.flac"
RATE, HOP = 24000, 1920
# longest first (the batch's length): 10 s (250 frames at 25 Hz: the window mask's threshold), 0.1 s, odd lengths
LENGTHS = [10 * RATE + 5, 2400, 3 * RATE + 7, HOP + 1, HOP - 1, 961]


def clip(rel: str, seconds: float) -> torch.Tensor:
    """[1, T] of real audio at 24 kHz, looped to `seconds`."""
    audio = torch.from_numpy(real_audio(rel, RATE, 1))
    return audio.repeat(1, math.ceil(seconds * RATE / audio.shape[-1]))[:, : int(seconds * RATE)]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(ours loaded from transformers' save_pretrained, transformers' model, real audio [1, T])."""
    root = tmp_path_factory.mktemp("mimi")
    with torch_threads(1):
        fit = torch.stack([clip(SPEECH, 6.0), clip(MUSIC, 6.0)])
        built = random_from_config(PRESETS["mimi"], seed=3, fit_audio=fit)
        save_mimi(built, root / "ours")
        ref = transformers.MimiModel.from_pretrained(root / "ours").eval()
        ref.save_pretrained(root / "transformers")
        ours = load_mimi_directory(root / "transformers")
    embed = ref.quantizer.acoustic_residual_vector_quantizer.layers[3].codebook.embed
    assert len(torch.unique(embed[:, 0])) > 1000, "codebooks must be non-trivial"
    audio = torch.cat([clip(SPEECH, 7.0), clip(MUSIC, 10.0)], dim=-1)
    return ours, ref, audio


def alone(ref, item: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
    """transformers' codes of one item [1, L] alone: [n_q, ceil(L / 1920)]."""
    with torch.no_grad():
        return ref.encode(item[None], num_quantizers=n_q).audio_codes[0]


def test_mixed_batch_codes_equal_transformers_alone(pair):
    """The default CPU plan: one mixed batch of 6 items (0.04 s to 10 s), codes bit-identical to each item
    encoded alone by transformers, every frame of every codebook."""
    ours, ref, audio = pair
    x = excerpts_batch(audio, LENGTHS, 2 * RATE)
    with torch_threads(1):
        items = ours.set_batch_plan("cpu").encode(x, LENGTHS)
        used = set()
        for b, n in enumerate(LENGTHS):
            codes = alone(ref, x[b, :, :n])
            assert codes.shape == items[b].codes.shape == (32, math.ceil(n / HOP))
            assert torch.equal(items[b].codes, codes), f"len={n}: codes differ"
            assert items[b].scales is None and items[b].num_samples == n
            used |= {(k, c) for k, row in enumerate(codes.tolist()) for c in row}
    ours.set_batch_plan(None)
    assert len(used) > 1000, f"only {len(used)} distinct (codebook, code) pairs: the comparison would be weak"


def test_cuda_plan_one_padded_pass_keeps_every_latent(pair):
    """The CUDA plan's single pass over the whole grid-padded batch: every valid latent frame of every item
    equals the item alone to float rounding (the padding completion works: without it a short item's last
    frame changes by far more, see `test_transformers_batch_differs_from_alone`). Kernels for the long batch
    round differently in the last bits (and past 250 frames the short items take SDPA's masked kernel, alone
    the causal one), so a near-tie in the quantizer may flip: codes must agree on > 99.9%."""
    ours, ref, audio = pair
    x = excerpts_batch(audio, LENGTHS, 2 * RATE)
    with torch_threads(1), batch_independent_kernels(), torch.inference_mode():
        ours.set_batch_plan("cuda")
        total = ours.padded_length(max(LENGTHS))
        assert total > max(LENGTHS)  # the grid pads past the longest item too
        batch = ours.latents(torch.nn.functional.pad(x, (0, total - x.shape[-1])), LENGTHS)
        items = ours.encode(x, LENGTHS)
        agree, count = 0, 0
        for b, n in enumerate(LENGTHS):
            one = ours.latents(x[b : b + 1, :, :n])
            frames = math.ceil(n / HOP)
            diff = float((batch[b, :, :frames] - one[0]).abs().max())
            assert diff <= 1e-4 * float(one.abs().max()), f"len={n}: latents differ by {diff}"
            codes = alone(ref, x[b, :, :n])
            agree, count = agree + int((items[b].codes == codes).sum()), count + codes.numel()
    ours.set_batch_plan(None)
    assert agree / count > 0.999, f"{count - agree} of {count} codes differ"


def test_transformers_batch_differs_from_alone(pair):
    """Control: transformers' batched encode ignores its padding_mask, so a short item's last frame reads the
    batch's padding (zeros at the input, not what its convolutions pad alone); ours without the item lengths
    does the same. This is what the tests above guard against."""
    ours, ref, audio = pair
    lengths = [3 * HOP, HOP + 700]
    x = excerpts_batch(audio, lengths, RATE)
    mask = (torch.arange(lengths[0])[None] < torch.tensor(lengths)[:, None]).long()
    with torch.no_grad():
        batched = ref.encode(x, padding_mask=mask).audio_codes[1, :, :2]
        ours_unmasked = ours.quantizer.encode(ours.latents(x), 32)[1, :, :2]
    want = alone(ref, x[1, :, : lengths[1]])
    assert not torch.equal(batched, want)
    assert not torch.equal(ours_unmasked, want)
    assert torch.equal(ours.encode(x, lengths)[1].codes, want)


def test_fewer_codebooks_are_a_prefix(pair):
    ours, ref, audio = pair
    x = audio[None, :, : RATE + 333]
    full = ours.encode(x)[0].codes
    eight = ours.encode(x, bandwidth=1.1)[0].codes
    assert eight.shape[0] == 8 and torch.equal(eight, full[:8])
    assert torch.equal(eight, alone(ref, x[0], n_q=8))
    assert torch.equal(ours.encode(x, bandwidth=0.138)[0].codes, full[:1])  # the semantic codebook alone


def test_decode_within_1e5_of_transformers(pair):
    """Both plans (the CUDA plan decodes the whole batch in one padded pass: the decoder is causal)."""
    ours, ref, audio = pair
    lengths = LENGTHS[1:]  # the 10 s item's decode is slow; the shapes are the same
    x = excerpts_batch(audio, lengths, RATE)
    with torch_threads(1):
        items = ours.set_batch_plan("cpu").encode(x, lengths)
        for plan in ("cpu", "cuda"):
            decoded = ours.set_batch_plan(plan).decode(items)
            for item, y in zip(items, decoded):
                assert y.shape == (1, item.num_samples)
                with torch.no_grad():
                    want = ref.decode(item.codes[None]).audio_values[0]
                assert want.shape[-1] == item.codes.shape[1] * HOP
                assert torch.allclose(y[0], want[0, : item.num_samples], rtol=0, atol=1e-5), plan
    ours.set_batch_plan(None)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("AUDIOTOK_MIMI_30S") != "1", reason="~2 min on a loaded 2-core CPU; "
                    "AUDIOTOK_MIMI_30S=1 runs it")
def test_30s_and_100ms_in_one_batch(pair):
    ours, ref, audio = pair
    lengths = [30 * RATE, 2400]
    x = excerpts_batch(torch.cat([audio, audio], dim=-1), lengths, RATE)
    with torch_threads(2):
        items = ours.encode(x, lengths)
        for b, n in enumerate(lengths):
            assert torch.equal(items[b].codes, alone(ref, x[b, :, :n])), n
