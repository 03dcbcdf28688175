"""codec.runtime: device choice, precision -> dtype, strict fp32."""

import pytest
import torch

from codec.runtime import dtype_for, resolve_device, strict_fp32


@pytest.mark.parametrize("cuda", [True, False])
def test_resolve_device(monkeypatch, cuda):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert resolve_device("auto") == ("cuda" if cuda else "cpu")
    assert resolve_device() == ("cuda" if cuda else "cpu")
    assert resolve_device("cpu") == "cpu"  # an explicit choice is kept, GPU or not
    assert resolve_device("cuda:1") == "cuda:1"


def test_dtype_for():
    assert dtype_for("fp32") is torch.float32
    assert dtype_for("bf16") is torch.bfloat16
    assert dtype_for("fp16") is torch.float16
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, fp16; got 'fp8'"):
        dtype_for("fp8")


def test_strict_fp32_turns_tf32_off():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        strict_fp32()
        assert torch.backends.cudnn.allow_tf32 is False
        assert torch.backends.cuda.matmul.allow_tf32 is False
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
