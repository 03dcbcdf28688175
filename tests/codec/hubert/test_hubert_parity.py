"""Our HuBERT against transformers' HubertModel under identical seeded weights, item alone and in
mixed-length batches: features of layer L = transformers' hidden_states[L] within 1e-5 x that layer's
RMS. Base runs the full-size architecture on a few seconds of real speech; large runs its full widths
with 3 of its 24 layers (`hubert_large_3layers`, the same code path) to stay short on the CPU."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from codec.hubert import PRESETS, random_from_config
from codec.hubert import features as hubert_features
from tests.codec.hubert.reference import reference_features, reference_of
from tests.conftest import real_audio

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TOLERANCE = 1e-5
SPEECH = "speech/librivox_0870_16k.wav"
LENGTHS = [16000, 400, 401, 720, 9999]  # longest first; 400: one frame exactly


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    return torch.from_numpy(real_audio(SPEECH, 16000, 1))[0]


def batch_of(speech: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    audio = torch.zeros(len(lengths), 1, max(lengths))
    for b, n in enumerate(lengths):
        audio[b, 0, :n] = speech[1000 * b : 1000 * b + n]
    return audio


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).abs().max() / ref.pow(2).mean().sqrt())


@pytest.mark.parametrize("preset, layer", [("hubert_base", 9), ("hubert_large", 3)])
def test_batched_items_equal_transformers_alone(speech, preset, layer):
    config = PRESETS[preset]
    if preset == "hubert_large":
        config = dataclasses.replace(config, num_hidden_layers=3, name="hubert_large_3layers")
    model = random_from_config(config, seed=5)
    ref = reference_of(model)
    audio = batch_of(speech, LENGTHS)
    with torch.inference_mode():
        batched, frames = model(audio, LENGTHS, layer)
    for b, n in enumerate(LENGTHS):
        expected = reference_features(ref, model, audio[b, 0, :n], layer)
        assert frames[b] == expected.shape[0] == (n - 400) // 320 + 1
        with torch.inference_mode():
            alone, _ = model(audio[b : b + 1, :, :n], [n], layer)
        assert relative_error(alone[0], expected) <= TOLERANCE, (preset, n)
        assert relative_error(batched[b, : frames[b]], expected) <= TOLERANCE, (preset, n)


def test_layers_0_1_12_of_base_equal_transformers(speech):
    model = random_from_config(PRESETS["hubert_base"], seed=2)
    ref = reference_of(model)
    item = speech[:6000]
    expected = reference_features(ref, model, item, None)
    for layer in (0, 1, 12):
        with torch.inference_mode():
            ours, _ = model(item[None, None], [len(item)], layer)
        assert relative_error(ours[0], expected[layer]) <= TOLERANCE, layer


def test_unmasked_group_norm_would_break_the_batch(speech, monkeypatch):
    """The batch test can fail: GroupNorm over the padded length (what transformers does in a batch) moves
    a short item's features far beyond the tolerance."""
    config = dataclasses.replace(PRESETS["hubert_base"], num_hidden_layers=1, name="hubert_base_1layer")
    model = random_from_config(config, seed=5)
    lengths = [16000, 3000]
    audio = batch_of(speech, lengths)
    with torch.inference_mode():
        alone, _ = model(audio[1:, :, :3000], [3000], 1)
        monkeypatch.setattr(hubert_features, "masked_group_norm", lambda x, frames, norm: norm(x))
        batched, frames = model(audio, lengths, 1)
    assert relative_error(batched[1, : frames[1]], alone[0]) > 1e-2


def test_items_shorter_than_one_frame_are_refused():
    from codec.hubert import TooShort

    model = random_from_config(dataclasses.replace(PRESETS["hubert_base"], num_hidden_layers=1, name="tiny"), 0)
    with pytest.raises(TooShort, match="399 samples, fewer than the 400"):
        model(torch.zeros(2, 1, 1000), [1000, 399], 1)
    with pytest.raises(ValueError, match="layer must be 0..1"):
        model(torch.zeros(1, 1, 1000), [1000], 2)
