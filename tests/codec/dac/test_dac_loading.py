"""DAC presets, the registry, and the weights DAC loads: transformers' save_pretrained, original .pth files."""

import math
import re

import pytest
import torch
import yaml

from codec import Codec, family_of, load_codec, load_first
from codec.dac import PRESETS, DacConfig, DacModel, load_dac_original, random_from_config, save_dac
from codec.dac.checkpoints import _rules
from codec.interface import EncodedItem
from tests.conftest import REPO

TINY = DacConfig(sampling_rate=16000, encoder_hidden_size=4, downsampling_ratios=(2, 4, 5, 8),
                 decoder_hidden_size=32, n_codebooks=3, codebook_size=64, name="tiny")


@pytest.fixture(scope="module")
def tiny():
    return random_from_config(TINY, seed=5)


def test_presets_are_the_released_configurations():
    want = {"dac_44khz": (44100, (2, 4, 8, 8), 512, 9), "dac_24khz": (24000, (2, 4, 5, 8), 320, 32),
            "dac_16khz": (16000, (2, 4, 5, 8), 320, 12)}
    for name, (rate, rates, hop, n_q) in want.items():
        c = PRESETS[name]
        assert (c.sampling_rate, c.downsampling_ratios, c.hop_length, c.n_codebooks) == (rate, rates, hop, n_q)
        assert (c.encoder_hidden_size, c.decoder_hidden_size, c.codebook_size, c.codebook_dim) == (64, 1536, 1024, 8)
        assert c.hidden_size == 1024
    assert PRESETS["dac_44khz"].frame_rate == pytest.approx(86.1328125)
    assert PRESETS["dac_44khz"].bandwidth_to_num_quantizers[7.752] == 9
    assert max(PRESETS["dac_24khz"].bandwidth_to_num_quantizers) == 24.0


def test_preset_matches_transformers_config():
    transformers = pytest.importorskip("transformers")
    ref = transformers.DacConfig(downsampling_ratios=[2, 4, 8, 8], n_codebooks=9, sampling_rate=44100)
    ours = DacConfig.from_dict(ref.to_dict())
    assert ours == PRESETS["dac_44khz"]
    assert ref.hop_length == ours.hop_length and ref.hidden_size == ours.hidden_size


@pytest.mark.parametrize("name", ["dac_44khz", "dac_24khz", "dac_16khz"])
def test_shipped_configs_load_and_name_valid_bandwidths(name):
    from pipeline.config import load_config

    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    table = PRESETS[name].bandwidth_to_num_quantizers
    assert all(b in table for b in cfg.bandwidths), (cfg.bandwidths, sorted(table))
    if name == "dac_44khz":
        assert [table[b] for b in cfg.bandwidths] == [9]
    assert yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())["model"] == f"descript/{name}"


def test_registry_picks_the_family(tmp_path, tiny):
    assert family_of("random:dac_44khz").name == "dac"
    assert family_of("random:24khz:seed=3").name == "encodec"
    save_dac(tiny, tmp_path / "d")
    assert family_of(tmp_path / "d").name == "dac"
    with pytest.raises(ValueError, match="unknown random preset.*random:dac_16khz"):
        load_codec("random:dac_8khz")
    model, skipped = load_first(["random:dac_99khz", "random:dac_16khz"])
    assert model.family == "dac" and isinstance(model, Codec) and "dac_99khz" in skipped[0]
    with pytest.raises(ValueError, match="fp32 only"):
        load_codec("random:dac_16khz", dtype=torch.bfloat16)


def test_transformers_save_pretrained_loads(tmp_path, tiny):
    transformers = pytest.importorskip("transformers")
    save_dac(tiny, tmp_path / "ours")
    ref = transformers.DacModel.from_pretrained(tmp_path / "ours")
    ref.save_pretrained(tmp_path / "theirs")
    loaded = load_codec(tmp_path / "theirs")
    assert isinstance(loaded, DacModel) and loaded.provenance.random_weights is False
    assert len(loaded.provenance.sha256) == 64
    for key, value in tiny.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = torch.randn(1, 1, 5000, generator=torch.Generator().manual_seed(0)) * 0.1
    assert torch.equal(loaded.encode(x)[0].codes, tiny.encode(x)[0].codes)


def _to_original(model: DacModel) -> dict:
    """Our state dict in the original descript-audio-codec layout (weight norm as weight_g / weight_v),
    by inverting the key map's rules on every original name the architecture has."""
    n = len(model.config.downsampling_ratios)
    names = ["encoder.block.0", f"encoder.block.{n + 1}", f"encoder.block.{n + 2}", "decoder.model.0",
             f"decoder.model.{n + 1}", f"decoder.model.{n + 2}"]
    for i in range(1, n + 1):
        names += [f"encoder.block.{i}.block.{j}" for j in (3, 4)]
        names += [f"encoder.block.{i}.block.{j}.block.{k}" for j in range(3) for k in range(4)]
        names += [f"decoder.model.{i}.block.{j}" for j in (0, 1)]
        names += [f"decoder.model.{i}.block.{j}.block.{k}" for j in (2, 3, 4) for k in range(4)]
    names += [f"quantizer.quantizers.{q}.{p}" for q in range(model.config.n_codebooks)
              for p in ("in_proj", "out_proj", "codebook")]
    ours = model.state_dict()
    rules = [(re.compile(p), f) for p, f in _rules(n)]
    out = {}
    for name in names:
        for suffix in ("weight", "bias", "alpha"):
            key = f"{name}.{suffix}"
            target = next((f(m) for p, f in rules if (m := p.match(key))), None)
            if target is None or target not in ours:
                continue
            value = ours[target]
            if suffix == "weight" and "codebook" not in name:
                out[f"{name}.weight_g"] = torch.norm_except_dim(value, 2, 0)
                out[f"{name}.weight_v"] = value.clone()
            else:
                out[key] = value
    return out


def test_original_checkpoint_loads(tmp_path, tiny):
    state = _to_original(tiny)
    assert len(state) > len(tiny.state_dict())  # every conv as a (g, v) pair
    kwargs = {"encoder_dim": 4, "encoder_rates": [2, 4, 5, 8], "decoder_dim": 32, "decoder_rates": [8, 5, 4, 2],
              "n_codebooks": 3, "codebook_size": 64, "codebook_dim": 8, "quantizer_dropout": False,
              "sample_rate": 16000, "latent_dim": None}
    path = tmp_path / "weights_16khz.pth"
    torch.save({"state_dict": state, "metadata": {"kwargs": kwargs}}, path)
    loaded = load_codec(path)
    assert loaded.family == "dac" and loaded.config.hop_length == 320
    for key, value in tiny.state_dict().items():
        assert torch.allclose(loaded.state_dict()[key], value, rtol=1e-6, atol=1e-7), key

    torch.save({"state_dict": {**state, "encoder.block.9.weight": torch.zeros(1)}, "metadata": {"kwargs": kwargs}},
               path)
    with pytest.raises(ValueError, match="unknown tensors.*encoder.block.9.weight"):
        load_dac_original(path)
    del state["decoder.model.0.bias"]
    torch.save({"state_dict": state, "metadata": {"kwargs": kwargs}}, path)
    with pytest.raises(ValueError, match="missing.*decoder.conv1.bias"):
        load_dac_original(path)


class _Payload:
    pass


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "metadata": {"kwargs": {}}, "x": _Payload()}, path)
    with pytest.raises(ValueError, match="weights_only"):
        load_dac_original(path)
    torch.save({"not": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="not an original DAC checkpoint"):
        load_dac_original(path)


def test_bad_inputs_are_clear_errors(tiny):
    with pytest.raises(ValueError, match="channels"):
        tiny.encode(torch.zeros(1, 2, 1000))
    with pytest.raises(ValueError, match="NaN"):
        tiny.encode(torch.full((1, 1, 100), float("nan")))
    with pytest.raises(ValueError, match="bandwidth 5.0 kbps is not one of tiny's"):
        tiny.encode(torch.zeros(1, 1, 1000), bandwidth=5.0)
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 64\)"):
        tiny.decode([EncodedItem(torch.full((3, 4), 64), None, 1280)])
    with pytest.raises(ValueError, match=r"codes must be \[n_q, 4\]"):
        tiny.decode([EncodedItem(torch.zeros(3, 5, dtype=torch.long), None, 1280)])


def test_frames_and_padding(tiny):
    for n in (1, 319, 320, 321, 16000):
        assert tiny.frames_for(n) == math.ceil(n / 320)
        assert tiny.pad_samples_for(n) == math.ceil(n / 320) * 320 - n
        item = tiny.encode(torch.randn(1, 1, n) * 0.1)[0]
        assert item.codes.shape == (3, math.ceil(n / 320))
        assert tiny.decode([item])[0].shape == (1, n)
