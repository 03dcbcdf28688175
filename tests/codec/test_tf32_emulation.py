"""TF32 emulation: the rounding against hand-computed bit patterns, emulated ops against ops on rounded
operands, and nothing changed once the emulation is off."""

import pytest
import torch
import torch.nn.functional as F

from codec import random_model
from codec.tf32_emulation import emulate_tf32, lstm_tf32, round_to_tf32


def bits_to_float(bits: list[int]) -> torch.Tensor:
    return torch.tensor([b - (1 << 32) if b >= 1 << 31 else b for b in bits], dtype=torch.int32).view(torch.float32)


def float_bits(x: torch.Tensor) -> list[int]:
    return [b & 0xFFFFFFFF for b in x.view(torch.int32).tolist()]


# input bits: (RNA, RNE, RZ) bits. TF32 keeps the top 10 of 23 mantissa bits: 13 low bits (0x1FFF) go.
CASES = {
    0x3F800000: (0x3F800000, 0x3F800000, 0x3F800000),  # 1.0: already TF32
    0x3F801000: (0x3F802000, 0x3F800000, 0x3F800000),  # 1 + 2^-11, a tie: away / to even (down) / down
    0x3F803000: (0x3F804000, 0x3F804000, 0x3F802000),  # 1 + 3 * 2^-11, a tie: even is up here
    0x3F800FFF: (0x3F800000, 0x3F800000, 0x3F800000),  # just below the tie
    0x3F801001: (0x3F802000, 0x3F802000, 0x3F800000),  # just above it
    0xBF801000: (0xBF802000, 0xBF800000, 0xBF800000),  # -(1 + 2^-11): away from zero is more negative
    0x3FFFF000: (0x40000000, 0x40000000, 0x3FFFE000),  # carry into the exponent: 2.0
    0x7F7FFFFF: (0x7F800000, 0x7F800000, 0x7F7FE000),  # fp32's largest finite rounds to +Inf (RZ stays)
    0x00001000: (0x00002000, 0x00000000, 0x00000000),  # a subnormal tie
    0x7F800000: (0x7F800000, 0x7F800000, 0x7F800000),  # +Inf
    0xFF800000: (0xFF800000, 0xFF800000, 0xFF800000),  # -Inf
}


@pytest.mark.parametrize("mode, column", [("rna", 0), ("rne", 1), ("rz", 2)])
def test_rounding_matches_hand_computed_bit_patterns(mode, column):
    x = bits_to_float(list(CASES))
    assert float_bits(round_to_tf32(x, mode)) == [v[column] for v in CASES.values()]


def test_nan_stays_nan_and_low_payload_nan_does_not_become_inf():
    x = bits_to_float([0x7FC00000, 0x7F800001])  # quiet NaN; a NaN whose payload is all in the dropped bits
    assert torch.isnan(round_to_tf32(x)).all() and torch.isnan(round_to_tf32(x, "rz")).all()


def test_1024_5_rounds_as_reported_for_cublas_tf32():
    # pytorch/pytorch#53635: 1024.5 @ [[1.0]] gave 1025 on an RTX 3090 with TF32 on: a tie rounded away
    assert round_to_tf32(torch.tensor([1024.5])).item() == 1025.0
    assert round_to_tf32(torch.tensor([1024.5]), "rz").item() == 1024.0


def test_every_result_is_representable_and_within_half_an_ulp():
    x = torch.randn(10000, generator=torch.Generator().manual_seed(0)) * 100
    for mode in ("rna", "rne"):
        r = round_to_tf32(x, mode)
        assert (r.view(torch.int32) & 0x1FFF == 0).all()
        assert ((r - x).abs() <= x.abs() * 2.0**-11 * 1.0001).all()
    r = round_to_tf32(x, "rz")
    assert (r.abs() <= x.abs()).all() and ((x - r).abs() < x.abs() * 2.0**-10).all()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="rounding mode"):
        round_to_tf32(torch.ones(2), "up")
    with pytest.raises(TypeError, match="float32"):
        round_to_tf32(torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="rounding mode"):
        emulate_tf32(mode="nearest")


@pytest.mark.parametrize("mode", ["rna", "rz"])
def test_emulated_convs_equal_convs_of_rounded_operands(mode):
    g = torch.Generator().manual_seed(1)
    x, w, b = torch.randn(2, 8, 50, generator=g), torch.randn(16, 8, 5, generator=g), torch.randn(16, generator=g)
    wt = torch.randn(8, 4, 6, generator=g)
    with emulate_tf32(mode):
        y = F.conv1d(x, w, b, stride=2, dilation=1)
        yt = F.conv_transpose1d(x, wt, None, stride=3)
        module = torch.nn.Conv1d(8, 16, 5)(x)  # nn modules go through the same functions
    r = lambda t: round_to_tf32(t, mode)  # noqa: E731
    assert torch.equal(y, F.conv1d(r(x), r(w), b, stride=2))
    assert torch.equal(yt, F.conv_transpose1d(r(x), r(wt), None, stride=3))
    assert not torch.equal(y, F.conv1d(x, w, b, stride=2))  # the emulation did round something
    assert module.shape == (2, 16, 46)


def test_matmul_is_rounded_only_when_asked():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(4, 64, generator=g), torch.randn(64, 3, generator=g)
    with emulate_tf32():
        plain = a @ b
    with emulate_tf32(matmul=True):
        rounded, linear = a @ b, F.linear(a, b.t())
    assert torch.equal(plain, a @ b)
    assert torch.equal(rounded, round_to_tf32(a) @ round_to_tf32(b))
    assert torch.equal(linear, F.linear(round_to_tf32(a), round_to_tf32(b.t())))
    assert not torch.equal(rounded, plain)


@pytest.fixture(scope="module")
def lstm_case():
    torch.manual_seed(3)
    lstm = torch.nn.LSTM(16, 16, 2)
    x = torch.randn(30, 2, 16)
    return lstm, x, torch.zeros(2, 2, 16)


def test_the_step_by_step_lstm_is_torchs_lstm_when_nothing_is_rounded(lstm_case):
    lstm, x, h0 = lstm_case
    with torch.no_grad():
        ref, (h, c) = lstm(x)
        out, h_n, c_n = lstm_tf32(x, (h0, h0), lstm._flat_weights, True, 2, 0.0, False, False, False, lambda t: t)
    torch.testing.assert_close(out, ref, rtol=0, atol=2e-6)
    torch.testing.assert_close(h_n, h, rtol=0, atol=2e-6)
    torch.testing.assert_close(c_n, c, rtol=0, atol=2e-6)


def test_the_emulated_lstm_rounds_its_operands(lstm_case):
    lstm, x, h0 = lstm_case
    with torch.no_grad():
        ref = lstm(x)[0]
        with emulate_tf32():
            emulated = lstm(x)[0]
        direct = lstm_tf32(x, (h0, h0), lstm._flat_weights, True, 2, 0.0, False, False, False, round_to_tf32)[0]
    assert torch.equal(emulated, direct)
    error = float((emulated - ref).norm() / ref.norm())
    assert 1e-5 < error < 1e-2  # TF32's 2^-11 unit roundoff, not fp32's 2^-24 and not garbage


def test_emulation_off_leaves_codes_byte_identical():
    model = random_model("random:24khz")
    x = torch.randn(2, 1, 12000, generator=torch.Generator().manual_seed(5)) * 0.1
    state = {k: v.clone() for k, v in model.state_dict().items()}
    before = [i.codes for i in model.encode(x, bandwidth=24.0)]
    with emulate_tf32():
        emulated = [i.codes for i in model.encode(x, bandwidth=24.0)]
    after = [i.codes for i in model.encode(x, bandwidth=24.0)]
    assert all(a.numpy().tobytes() == b.numpy().tobytes() for a, b in zip(before, after))
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(e.shape == b.shape for e, b in zip(emulated, before))
