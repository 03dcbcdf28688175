"""Mimi's preset, the registry, and the weights Mimi loads: transformers' save_pretrained (full size in
test_mimi_parity.py), kyutai's original layout, bad checkpoints; a reduced Mimi against transformers with
a window of 8 frames, so that sequences far past the window are cheap."""

import math

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from codec import family_of, load_codec
from codec.mimi import PRESETS, MimiConfig, MimiModel, load_mimi_directory, random_from_config, save_mimi
from codec.mimi.checkpoints import interleaved_to_halves
from tests.conftest import REPO, excerpts_batch, real_audio, torch_threads

TINY = MimiConfig(hidden_size=32, num_filters=4, num_attention_heads=2, head_dim=16, intermediate_size=64,
                  num_hidden_layers=2, codebook_size=64, codebook_dim=8, vector_quantization_hidden_dimension=8,
                  num_quantizers=4, upsample_groups=32, sliding_window=8, name="tiny")


@pytest.fixture(scope="module")
def tiny():
    audio = torch.from_numpy(real_audio("speech/librivox_0870_16k.wav", 24000, 1, seconds=4.0))[None]
    with torch_threads(1):
        return random_from_config(TINY, seed=5, fit_audio=audio)


def test_preset_is_transformers_default_config():
    transformers = pytest.importorskip("transformers")
    ref = transformers.MimiConfig()
    ours = MimiConfig.from_dict(ref.to_dict())
    assert ours == PRESETS["mimi"]
    assert (ours.hop_length, ours.frame_rate, ref.frame_rate) == (1920, 12.5, 12.5)
    table = ours.bandwidth_to_num_quantizers
    assert table[1.1] == 8 and table[4.4] == 32 and min(table) == 0.138  # 1 codebook: the semantic one alone
    assert MimiConfig.from_dict({**ref.to_dict(), "rope_parameters": None, "rope_theta": 10000.0}) == ours  # 4.x


@pytest.mark.parametrize("name, n_q", [("mimi_8", 8), ("mimi_32", 32)])
def test_shipped_configs(name, n_q):
    from pipeline.config import load_config

    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    assert [PRESETS["mimi"].bandwidth_to_num_quantizers[b] for b in cfg.bandwidths] == [n_q]
    assert yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())["model"] == "kyutai/mimi"


def test_registry_picks_mimi(tmp_path, tiny):
    assert family_of("random:mimi").name == "mimi" and family_of("random:mimi:seed=2").name == "mimi"
    assert family_of("kyutai/mimi").name == "mimi"
    save_mimi(tiny, tmp_path / "d")
    assert family_of(tmp_path / "d").name == "mimi"
    (tmp_path / "f.safetensors").write_bytes((tmp_path / "d" / "model.safetensors").read_bytes())
    assert family_of(tmp_path / "f.safetensors").name == "mimi"
    model = load_codec(tmp_path / "d")
    assert isinstance(model, MimiModel) and model.family == "mimi" and not model.provenance.random_weights
    with pytest.raises(ValueError, match="fp32 only"):
        load_codec(tmp_path / "d", dtype=torch.float16)
    with pytest.raises(ValueError, match="unknown random preset"):
        load_codec("random:mimi_64")


def test_bad_checkpoints_raise(tmp_path, tiny):
    save_mimi(tiny, tmp_path / "d")
    weights = tmp_path / "d" / "model.safetensors"
    state = load_file(str(weights))
    save_file({**state, "encoder.layers.99.lstm.weight": torch.zeros(1)}, str(weights))
    with pytest.raises(ValueError, match="unknown tensors.*lstm"):
        load_mimi_directory(tmp_path / "d")
    save_file({k: v for k, v in state.items() if "downsample" not in k}, str(weights))
    with pytest.raises(ValueError, match="missing.*downsample"):
        load_mimi_directory(tmp_path / "d")
    save_file({**state, "upsample.conv.weight": torch.zeros(3, 1, 4)}, str(weights))
    with pytest.raises(ValueError, match="upsample.conv.weight.*shape"):
        load_mimi_directory(tmp_path / "d")
    (tmp_path / "x.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_codec(tmp_path / "x.safetensors")


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="use_causal_conv"):
        MimiConfig.from_dict({"use_causal_conv": False})
    with pytest.raises(ValueError, match="grouped-query"):
        MimiConfig.from_dict({"num_key_value_heads": 2})
    with pytest.raises(ValueError, match="frame_rate"):
        MimiConfig.from_dict({"frame_rate": 25.0})


def _to_original(state: dict[str, torch.Tensor], heads: int) -> dict[str, torch.Tensor]:
    """Ours -> kyutai's names (the test's own inverse of the loader's map; q, k rows back to interleaved)."""
    out = {}
    for key, value in state.items():
        k = key
        for old, new in (("quantizer.semantic_residual_vector_quantizer.layers", "quantizer.rvq_first.vq.layers"),
                         ("quantizer.acoustic_residual_vector_quantizer.layers", "quantizer.rvq_rest.vq.layers"),
                         ("quantizer.semantic_residual_vector_quantizer", "quantizer.rvq_first"),
                         ("quantizer.acoustic_residual_vector_quantizer", "quantizer.rvq_rest"),
                         (".codebook.embed_sum", "._codebook.embedding_sum"),
                         (".codebook.cluster_usage", "._codebook.cluster_usage"),
                         ("_transformer.layers", "_transformer.transformer.layers"),
                         ("self_attn.o_proj", "self_attn.out_proj"),
                         ("mlp.fc1", "linear1"), ("mlp.fc2", "linear2"), ("input_layernorm", "norm1"),
                         ("post_attention_layernorm", "norm2"), ("self_attn_layer_scale", "layer_scale_1"),
                         ("mlp_layer_scale", "layer_scale_2"), ("encoder.layers", "encoder.model"),
                         ("decoder.layers", "decoder.model")):
            k = k.replace(old, new)
        if k.startswith("downsample."):
            k = "downsample.conv.conv.conv.weight"
        elif k.startswith("upsample."):
            k = "upsample.convtr.convtr.convtr.weight"
        elif k.startswith(("encoder.model", "decoder.model")):
            transposed = k.startswith("decoder.model") and value.shape[-1] in (8, 12, 10, 16) and ".block." not in k
            k = k.replace(".conv.", ".convtr.convtr." if transposed else ".conv.conv.")
        if "self_attn.q_proj" in k or "self_attn.k_proj" in k:
            d = value.shape[0] // heads
            value = value.reshape(heads, 2, d // 2, -1).transpose(1, 2).reshape(value.shape)  # halves -> pairs
        out[k] = value
    qkv = {}
    for k in [k for k in out if "_proj.weight" in k and "self_attn." in k and "out_proj" not in k]:
        prefix, which = k.rsplit(".", 2)[0], k.rsplit(".", 2)[1][0]
        qkv.setdefault(prefix, {})[which] = out.pop(k)
    for prefix, parts in qkv.items():
        out[f"{prefix}.in_proj_weight"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    for k in [k for k in out if k.endswith("cluster_usage")]:
        out[k.replace("cluster_usage", "_initialized")] = torch.ones(1)
    return out


def test_original_layout_loads_to_the_same_model(tmp_path, tiny, monkeypatch):
    import codec.mimi.loading as loading

    monkeypatch.setitem(loading.PRESETS, "mimi", TINY)  # a bare file carries no config: the preset's is used
    original = _to_original(tiny.state_dict(), TINY.num_attention_heads)
    assert any("in_proj_weight" in k for k in original) and any("convtr.convtr" in k for k in original)
    save_file(original, str(tmp_path / "tokenizer.safetensors"))
    loaded = load_codec(tmp_path / "tokenizer.safetensors")
    for key, value in tiny.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    save_file({**original, "encoder.model.0.lstm.weight": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="unknown tensors in original Mimi checkpoint"):
        load_codec(tmp_path / "bad.safetensors")


def test_interleaved_rope_weights_give_the_same_scores():
    """kyutai's RoPE rotates pairs (2i, 2i + 1) of a head by angle p * f_i; transformers' rotates (i, i + d/2).
    With the q, k rows reordered by the loader, both give the same attention scores."""
    torch.manual_seed(0)
    heads, d, width = 2, 16, 32
    wq, wk, x = torch.randn(heads * d, width), torch.randn(heads * d, width), torch.randn(5, width)
    freqs = 1.0 / 10000 ** (torch.arange(0, d, 2).float() / d)
    angles = torch.arange(5)[:, None].float() * freqs  # [T, d/2]

    def interleaved(v):  # [T, heads, d], pairs (2i, 2i + 1)
        pairs = torch.view_as_complex(v.reshape(5, heads, d // 2, 2).contiguous())
        return torch.view_as_real(pairs * torch.polar(torch.ones_like(angles), angles)[:, None]).reshape(5, heads, d)

    def halves(v):
        cos, sin = torch.cat([angles, angles], -1).cos()[:, None], torch.cat([angles, angles], -1).sin()[:, None]
        return v * cos + torch.cat([-v[..., d // 2:], v[..., : d // 2]], -1) * sin

    q0, k0 = interleaved((x @ wq.t()).view(5, heads, d)), interleaved((x @ wk.t()).view(5, heads, d))
    wq1, wk1 = interleaved_to_halves(wq, heads), interleaved_to_halves(wk, heads)
    q1, k1 = halves((x @ wq1.t()).view(5, heads, d)), halves((x @ wk1.t()).view(5, heads, d))
    assert torch.allclose(torch.einsum("thd,shd->hts", q0, k0), torch.einsum("thd,shd->hts", q1, k1), atol=1e-4)
    assert not torch.allclose(torch.einsum("thd,shd->hts", q0, k0),
                              torch.einsum("thd,shd->hts", halves((x @ wq.t()).view(5, heads, d)),
                                           halves((x @ wk.t()).view(5, heads, d))), atol=1e-2)


def test_reduced_mimi_past_the_window_equals_transformers(tiny, tmp_path):
    """Window 8 frames (0.32 s at 25 Hz): items up to 3 s (75 frames) in one batch, both plans, every code equal
    to transformers alone (the CPU plan bit for bit; the CUDA plan here too: no near-tie in 64-entry books);
    decode within 1e-5."""
    transformers = pytest.importorskip("transformers")
    save_mimi(tiny, tmp_path / "tiny")
    ref = transformers.MimiModel.from_pretrained(tmp_path / "tiny").eval()
    audio = torch.from_numpy(real_audio("music/wesnoth_battle-epic_10s_44k.flac", 24000, 1, seconds=8.0))
    lengths = [3 * 24000 + 11, 2400, 7 * 1920 + 5, 1919, 24000]
    x = excerpts_batch(audio, lengths, 24000)
    with torch_threads(1):
        for plan in ("cpu", "cuda"):
            items = tiny.set_batch_plan(plan).encode(x, lengths)
            decoded = tiny.decode(items)
            for b, n in enumerate(lengths):
                with torch.no_grad():
                    want = ref.encode(x[b : b + 1, :, :n]).audio_codes[0]
                    audio_ref = ref.decode(want[None]).audio_values[0, :, :n]
                assert want.shape[-1] == math.ceil(n / 1920)
                assert torch.equal(items[b].codes, want), (plan, n)
                assert torch.allclose(decoded[b], audio_ref, rtol=0, atol=1e-5), (plan, n)
    tiny.set_batch_plan(None)
    pairs = {(k, c) for item in items for k, row in enumerate(item.codes.tolist()) for c in row}
    assert len(pairs) > 60, f"only {len(pairs)} distinct (codebook, code) pairs of 256"
