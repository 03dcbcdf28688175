"""Codec API contract: config derivations, loading paths, bad input."""

import sys
import types

import pytest
import torch

from codec import PRESETS, load_model, random_model, save_model
from codec.checkpoints import original_to_transformers
from codec.conv import PaddedConvTranspose1d


@pytest.fixture(scope="module")
def m24():
    return random_model("random:24khz")


def test_preset_derived_numbers():
    c24, c48 = PRESETS["24khz"], PRESETS["48khz"]
    assert (c24.hop_length, c24.frame_rate, c24.num_quantizers) == (320, 75, 32)
    assert c24.bandwidth_to_num_quantizers == {1.5: 2, 3.0: 4, 6.0: 8, 12.0: 16, 24.0: 32}
    assert (c48.hop_length, c48.frame_rate, c48.chunk_length, c48.chunk_stride) == (320, 150, 48000, 47520)
    assert c48.bandwidth_to_num_quantizers == {3.0: 2, 6.0: 4, 12.0: 8, 24.0: 16}


def test_random_model_is_seeded_and_labelled():
    a, b, c = random_model("random:24khz"), random_model("random:24khz"), random_model("random:24khz:seed=1")
    assert a.provenance.random_weights and a.provenance.source.startswith("random:24khz")
    assert a.provenance.sha256 == b.provenance.sha256 != c.provenance.sha256


def test_true_lengths_and_frames(m24):
    x = torch.randn(2, 1, 1000) * 0.1
    items = m24.encode(x, [1000, 321], bandwidth=6.0)
    assert [tuple(i.codes.shape) for i in items] == [(8, 4), (8, 2)]
    assert [a.shape for a in m24.decode(items)] == [(1, 1000), (1, 321)]
    assert m24.pad_samples_for(321) == 319


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: (torch.randn(1, 2, 100), None, 6.0), "channels"),
        (lambda: (torch.randint(0, 5, (1, 1, 100)), None, 6.0), "floating-point"),
        (lambda: (torch.full((1, 1, 100), float("nan")), None, 6.0), "NaN"),
        (lambda: (torch.randn(1, 1, 0), None, 6.0), "empty"),
        (lambda: (torch.randn(2, 1, 100), [100, 101], 6.0), "lengths"),
        (lambda: (torch.randn(2, 1, 100), [100], 6.0), "entries"),
        (lambda: (torch.randn(1, 1, 100), None, 5.0), "choose one of"),
        (lambda: (torch.randn(1, 100), None, 6.0), "shape"),
    ],
)
def test_bad_input_raises_value_error(m24, make, message):
    audio, lengths, bw = make()
    with pytest.raises(ValueError, match=message):
        m24.encode(audio, lengths, bandwidth=bw)


def test_wrong_declared_sample_rate(m24):
    with pytest.raises(ValueError, match="24000 Hz"):
        m24.encode(torch.zeros(1, 1, 100), sample_rate=16000)


def test_decode_rejects_wrong_frame_count(m24):
    items = m24.encode(torch.randn(1, 1, 1000) * 0.1)
    items[0].codes = items[0].codes[:, :-1]
    with pytest.raises(ValueError, match="codes must be"):
        m24.decode(items)


def _as_original_state(model):
    """Our model's weights under the original encodec names (inverse of checkpoints.original_to_transformers)."""
    import re

    from safetensors.torch import load_file

    path = save_model(model, model._tmp)
    state = load_file(str(path / "model.safetensors"))
    transposed = {i for i, layer in enumerate(model.decoder.layers) if isinstance(layer, PaddedConvTranspose1d)}
    out = {}
    for key, value in state.items():
        key = key.replace("parametrizations.weight.original0", "weight_g")
        key = key.replace("parametrizations.weight.original1", "weight_v")
        key = re.sub(r"^quantizer\.layers\.(\d+)\.codebook\.", r"quantizer.vq.layers.\1._codebook.", key)
        layer = re.match(r"^decoder\.layers\.(\d+)\.(conv|norm)\.(weight_[gv]|weight|bias)$", key)
        if layer and int(layer.group(1)) in transposed:
            part = "convtr" if layer.group(2) == "conv" else "norm"
            key = f"decoder.model.{layer.group(1)}.convtr.{part}.{layer.group(3)}"
        key = re.sub(r"^(encoder|decoder)\.layers\.(\d+)\.(block\.\d+\.|shortcut\.)?(conv|norm)\.",
                     r"\1.model.\2.\3conv.\4.", key)
        key = re.sub(r"^(encoder|decoder)\.layers\.(\d+)\.lstm\.", r"\1.model.\2.lstm.", key)
        out[key] = value
    return out


@pytest.mark.parametrize("preset", ["24khz", "48khz"])
def test_original_checkpoint_file(tmp_path, preset):
    model = random_model(f"random:{preset}")
    model._tmp = tmp_path / "hf"
    state = _as_original_state(model)
    original_to_transformers(state)  # every key is known
    path = tmp_path / "checkpoint.th"  # no preset in the name: told from the tensors
    torch.save(state, path)
    loaded = load_model(path)
    assert loaded.config.sampling_rate == model.config.sampling_rate
    assert len(loaded.provenance.sha256) == 64
    x = torch.randn(1, model.config.audio_channels, 5000) * 0.1
    assert torch.equal(loaded.encode(x)[0].codes, model.encode(x)[0].codes)


def test_unknown_and_missing_tensors_are_named(tmp_path, m24):
    m24._tmp = tmp_path / "hf"
    state = _as_original_state(m24)
    state["encoder.model.99.extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "encodec_24khz-x.th")
    with pytest.raises(ValueError, match="encoder.model.99.extra.weight"):
        load_model(tmp_path / "encodec_24khz-x.th")
    del state["encoder.model.99.extra.weight"]
    del state["encoder.model.0.conv.conv.bias"]
    torch.save(state, tmp_path / "encodec_24khz-y.th")
    with pytest.raises(ValueError, match=r"missing \['encoder.layers.0.conv.bias'\]"):
        load_model(tmp_path / "encodec_24khz-y.th")


def test_missing_source_and_offline_hub_id_name_alternatives(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="random:24khz"):
        load_model(tmp_path / "nope")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="local directory"):
        load_model("facebook/encodec_24khz-not-cached")


def test_original_encodec_package_as_second_reference(m24, monkeypatch):
    """The original `encodec` package, where it imports; its model code does not need torchaudio
    (only its audio I/O helpers do), so a stand-in module is used when torchaudio is unusable
    (for this test only: transformers, imported later, refuses a torchaudio without a spec)."""
    import importlib.util

    if importlib.util.find_spec("encodec") is None:
        pytest.skip("encodec not installed")
    try:
        import encodec
    except (ImportError, OSError):
        sys.modules.pop("encodec", None)
        for name in [n for n in sys.modules if n.startswith(("encodec.", "torchaudio"))]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, "torchaudio", types.ModuleType("torchaudio"))
        try:
            import encodec  # noqa: F401
        except Exception as exc:  # pragma: no cover
            pytest.skip(f"encodec does not import: {exc}")
    from encodec.model import EncodecModel as Original

    ref = Original.encodec_model_24khz(pretrained=False).eval()
    m24._tmp = None
    import tempfile
    from pathlib import Path

    m24._tmp = Path(tempfile.mkdtemp())
    ref.load_state_dict(_as_original_state(m24))
    ref.set_target_bandwidth(24.0)
    x = torch.randn(1, 1, 24000) * 0.1
    with torch.no_grad():
        (codes, scale), = ref.encode(x)
    assert scale is None
    assert torch.equal(m24.encode(x)[0].codes, codes[0])


def test_max_batch_bounds_each_forward_pass_without_changing_codes():
    model = random_model("random:48khz")
    seen = []
    hook = model.encoder.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[0]))
    x = torch.randn(3, 2, 100000) * 0.1
    split = model.encode(x, max_batch=2)
    hook.remove()
    assert max(seen) <= 2 and sum(seen) == 9  # 3 items x 3 chunks
    whole = model.encode(x)
    assert all(torch.equal(a.codes, b.codes) and a.scales == b.scales for a, b in zip(split, whole))
