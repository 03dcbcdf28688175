"""48 kHz: chunks of different lengths (each item's partial last chunk) share one forward pass, and
their codes equal encoding each item alone (GroupNorm over each item's valid samples: codec/norm.py)."""

import math

import pytest
import torch
import torch.nn.functional as F

from codec import random_model
from codec.codebook_fitting import fit_codebooks
from codec.host_syncs import forward_passes
from codec.norm import LengthGroupNorm
from tests.conftest import batch_independent_kernels, excerpts_batch, real_audio

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# shorter than one hop, odd, just over one chunk, several chunks, a multiple of the chunk stride
LENGTHS = [100, 777, 12345, 48007, 60001, 100000, 95040]


@pytest.fixture(scope="module")
def fitted():
    """random:48khz with codebooks fitted to the latents of real music (codes at realistic near-ties)."""
    model = random_model("random:48khz")
    audio = torch.from_numpy(real_audio("music/encodec_test_48k_stereo_15s.wav", 48000, 2))
    with torch.inference_mode():
        latents = model.encoder(audio[None, :, 200000:392000])[0][0].t().contiguous()
        fit_codebooks(model.quantizer, latents, iters=0, generator=torch.Generator().manual_seed(0))
    return model, audio


def test_partial_chunks_share_forward_passes(fitted):
    model, audio = fitted
    x = excerpts_batch(audio, LENGTHS, 7000)
    chunk_lengths = [n for length in LENGTHS for _, n in model.chunk_spans(length)]
    grouped_by_exact_length = len(set(chunk_lengths))  # the passes of the earlier exact-length grouping
    for max_batch in (64, 4):
        with forward_passes(model.encoder) as shapes:
            model.encode(x, LENGTHS, max_batch=max_batch)
        sizes, total = [shape[0] for shape in shapes], len(chunk_lengths)
        assert sizes == [min(max_batch, total - i) for i in range(0, total, max_batch)]
        assert max(sizes) == model.largest_forward_pass(LENGTHS, x.shape[-1], max_batch)
    assert len(sizes) == math.ceil(len(chunk_lengths) / 4) < grouped_by_exact_length


@pytest.mark.parametrize("max_batch", [64, 3])
def test_mixed_length_passes_equal_each_item_alone(fitted, max_batch):
    model, audio = fitted
    x = excerpts_batch(audio, LENGTHS, 7000)
    with batch_independent_kernels():  # oneDNN may pick another conv kernel per batch size (conftest)
        batched = model.encode(x, LENGTHS, max_batch=max_batch)
        alone_items = [model.encode(x[b : b + 1, :, :n])[0] for b, n in enumerate(LENGTHS)]
    for b, (n, alone) in enumerate(zip(LENGTHS, alone_items)):
        assert torch.equal(batched[b].codes, alone.codes), f"len={n}"
        assert batched[b].scales == alone.scales, f"len={n}"
    last = torch.cat([item.codes[-1] for item in batched])
    assert len(torch.unique(last)) > 50, "the last codebook must see varied codes for the comparison to mean much"


def test_length_group_norm_equals_group_norm_of_each_item():
    norm = LengthGroupNorm(1, 16)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(5, 16, 301) * 3 + 1
    lengths = [301, 17, 17, 250, 17]  # equal lengths both adjacent and apart
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            given = x.clone()
            y = norm(given, lengths)
        if grad:
            assert torch.equal(given, x), "with autograd on, the input is not normalised in place"
        for b, n in enumerate(lengths):
            alone = F.group_norm(x[b : b + 1, :, :n].contiguous(), 1, norm.weight, norm.bias, norm.eps)
            assert torch.equal(y[b : b + 1, :, :n], alone), (grad, b)
    assert torch.equal(norm(x, [301] * 5), F.group_norm(x, 1, norm.weight, norm.bias, norm.eps))


def test_decoder_mixed_frame_counts_ignore_padding(fitted):
    """The 48 kHz decoder (GroupNorm in its transposed convs too) with per-item frame counts: an
    item's output does not depend on the frames past its end, and matches decoding it alone up to
    float rounding (short items are not bit-equal to the item alone even with oneDNN off; the
    transposed convolution's kernels seem to round by input length: not chased further)."""
    model, _ = fitted
    frames = [150, 3, 41, 150, 1]
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(len(frames), model.config.hidden_size, max(frames), generator=gen)
    garbage = latents.clone()
    for b, f in enumerate(frames):
        garbage[b, :, f:] = 1e3 * torch.randn(garbage.shape[1], garbage.shape[2] - f, generator=gen)
    hop = model.config.hop_length
    with torch.inference_mode(), batch_independent_kernels():
        batched, out_lengths = model.decoder(latents, frames)
        other, _ = model.decoder(garbage, frames)
        assert out_lengths == [f * hop for f in frames]
        for b, f in enumerate(frames):
            alone, _ = model.decoder(latents[b : b + 1, :, :f])
            assert torch.equal(other[b, :, : f * hop], batched[b, :, : f * hop]), f"frames={f}"
            torch.testing.assert_close(batched[b : b + 1, :, : f * hop], alone, rtol=1e-4, atol=1e-4)
