"""The reduced-precision self-check: passes sound kernels, names the layer of a wrong one."""

import copy

import pytest
import torch

from codec import load_model, random_model
from codec.precision import PrecisionError, check_precision


def reduced(model, dtype=torch.bfloat16):
    out = copy.deepcopy(model).to(dtype)
    out.quantizer.float()
    return out


def test_sound_bf16_and_fp16_pass_with_small_errors():
    model = random_model("random:24khz")
    worst_bf16 = check_precision(model, reduced(model, torch.bfloat16))
    worst_fp16 = check_precision(model, reduced(model, torch.float16))
    assert 1e-4 < worst_bf16 < 0.05  # bf16 keeps 8 bits of mantissa: about 0.3 % per layer
    assert 0 < worst_fp16 < worst_bf16


@pytest.mark.parametrize("part, index", [("encoder", 3), ("decoder", 6)])
def test_a_wrong_layer_is_named(part, index):
    model = random_model("random:24khz")
    bad = reduced(model)
    layer = getattr(bad, part).layers[index]
    conv = layer.conv if hasattr(layer, "conv") else layer.block[1].conv
    conv.weight.data.mul_(-1)  # a kernel that gets the sign wrong
    with pytest.raises(PrecisionError, match=rf"{part} layer {index} \(\w+\) with a relative error of [0-9.]+"):
        check_precision(model, bad)


def test_nan_output_is_refused():
    model = random_model("random:24khz")
    bad = reduced(model)
    bad.decoder.layers[0].conv.bias.data.fill_(float("nan"))
    with pytest.raises(PrecisionError, match="decoder layer 0"):
        check_precision(model, bad)


def test_load_model_runs_the_check(monkeypatch):
    calls = []
    import codec.loading

    monkeypatch.setattr(codec.loading, "check_precision", lambda ref, m: calls.append((ref.dtype, m.dtype)))
    load_model("random:24khz")
    assert calls == []  # fp32: nothing to check
    model = load_model("random:24khz", dtype=torch.bfloat16)
    assert calls == [(torch.float32, torch.bfloat16)]
    assert model.quantizer.layers[0].codebook.embed.dtype == torch.float32


def test_a_failed_check_is_not_a_fallback(monkeypatch):
    import codec.loading
    from codec import load_first

    def refuse(ref, model):
        raise PrecisionError("wrong kernel")

    monkeypatch.setattr(codec.loading, "check_precision", refuse)
    with pytest.raises(PrecisionError, match="wrong kernel"):  # not "tiny:24khz, loaded instead"
        load_first(["random:24khz", "tiny:24khz"], dtype=torch.bfloat16)
