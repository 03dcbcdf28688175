"""Loading HuBERT: transformers directories (safetensors, pytorch_model.bin with hub-style names), random
presets, and the mistakes a user can make, each a ValueError that says what is wrong."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from codec.hubert import PRESETS, load_hubert, random_from_config, random_hubert, save_hubert
from tests.codec.hubert.reference import reference_of, transformers

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = dataclasses.replace(PRESETS["hubert_base"], hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=128, conv_dim=(32,) * 7, num_conv_pos_embedding_groups=4,
                            name="reduced_base")
LARGE_SMALL = dataclasses.replace(PRESETS["hubert_large"], hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=128, conv_dim=(32,) * 7, num_conv_pos_embedding_groups=4,
                                  name="reduced_large")
AUDIO = torch.randn(1, 1, 4000, generator=torch.Generator().manual_seed(0)) * 0.1


def features(model, layer=2):
    with torch.inference_mode():
        return model(AUDIO, [4000], layer)[0]


@pytest.mark.parametrize("config", [SMALL, LARGE_SMALL], ids=["base", "large"])
def test_directory_written_by_transformers_loads_bit_exact(tmp_path, config):
    model = random_from_config(config, seed=1)
    ref = reference_of(model)
    ref.save_pretrained(tmp_path)
    loaded = load_hubert(tmp_path)
    assert loaded.config == config and loaded.config.do_normalize == config.do_normalize
    assert not loaded.provenance.random_weights and len(loaded.provenance.sha256) == 64
    assert torch.equal(features(loaded), features(model))


def test_hub_style_pytorch_model_bin_with_weight_g_v_and_prefix(tmp_path):
    model = random_from_config(SMALL, seed=2)
    save_hubert(model, tmp_path)
    from safetensors.torch import load_file

    state = load_file(str(tmp_path / "model.safetensors"))
    renamed = {"hubert." + k.replace("parametrizations.weight.original0", "weight_g")
               .replace("parametrizations.weight.original1", "weight_v"): v for k, v in state.items()}
    renamed["hubert.masked_spec_embed"] = torch.zeros(SMALL.hidden_size)
    (tmp_path / "model.safetensors").unlink()
    torch.save(renamed, tmp_path / "pytorch_model.bin")
    assert torch.equal(features(load_hubert(tmp_path)), features(model))


def test_random_presets_are_seeded_and_full_size():
    a, b = random_hubert("random:hubert_base"), random_hubert("random:hubert_base:seed=1")
    assert a.provenance.random_weights and a.provenance.source == "random:hubert_base:seed=0"
    assert a.provenance.sha256 != b.provenance.sha256
    assert random_from_config(SMALL, 3).provenance.sha256 == random_from_config(SMALL, 3).provenance.sha256
    # transformers' HubertModel base: 94,371,712 parameters, less masked_spec_embed (768) and weight norm's g (128)
    assert sum(p.numel() for p in a.parameters()) == 94_371_712 - 768 - 128
    assert a.frames_for(16000) == 49 and a.frames_for(400) == 1 and a.frames_for(399) == 0


def test_mistakes_are_value_errors_that_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="unknown random preset"):
        load_hubert("random:hubert_huge")
    with pytest.raises(ValueError, match="not found"):
        load_hubert(str(tmp_path / "missing"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    with pytest.raises(ValueError, match="model_type 'hubert'"):
        load_hubert(tmp_path / "other")
    save_hubert(random_from_config(SMALL, seed=0), tmp_path / "wide")
    config = json.loads((tmp_path / "wide" / "config.json").read_text())
    (tmp_path / "wide" / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    with pytest.raises(ValueError, match="missing .*encoder.layers.2"):
        load_hubert(tmp_path / "wide")
    (tmp_path / "wide" / "config.json").write_text(json.dumps({**config, "hidden_act": "relu"}))
    with pytest.raises(ValueError, match="hidden_act 'relu' is not supported"):
        load_hubert(tmp_path / "wide")


def test_transformers_config_defaults_are_the_base_preset():
    from codec.hubert import HubertConfig

    assert HubertConfig.from_dict(transformers.HubertConfig().to_dict()) == PRESETS["hubert_base"]


def test_hubert_is_a_semantic_family_and_not_an_acoustic_codec():
    from codec import families
    from codec.registry import load_codec

    assert families.semantic_family_of("random:hubert_large") is families.HUBERT
    assert families.semantic_family_of("facebook/hubert-base-ls960") is families.HUBERT
    with pytest.raises(ValueError, match="random:hubert_base"):
        families.semantic_family_of("random:hubert_xl")
    assert not any("hubert" in choice for choice in families.random_choices())
    with pytest.raises(ValueError, match="unknown random preset"):
        load_codec("random:hubert_base")
