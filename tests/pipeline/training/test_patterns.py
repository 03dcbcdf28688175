"""Codebook patterns: audiocraft's layouts written out by hand, inverses, masks for mixed lengths, and the
delay pattern's code positions against transformers' MusicGen."""

import pytest
import torch

from pipeline.training.patterns import PATTERNS, Pattern, shift_right


def test_layouts_as_audiocraft_defines_them():
    # audiocraft's Pattern.layout[1:] for K = 3, T = 2, written out by hand from its providers' loops
    assert Pattern("parallel", 3).layout(2) == [[(0, 0), (0, 1), (0, 2)], [(1, 0), (1, 1), (1, 2)]]
    assert Pattern("delay", 3).layout(2) == [[(0, 0)], [(1, 0), (0, 1)], [(1, 1), (0, 2)], [(1, 2)]]
    assert Pattern("delay", 3, (0, 2, 2)).layout(2) == [[(0, 0)], [(1, 0)], [(0, 1), (0, 2)], [(1, 1), (1, 2)]]
    assert Pattern("flatten", 3).layout(2) == [[(0, 0)], [(0, 1)], [(0, 2)], [(1, 0)], [(1, 1)], [(1, 2)]]
    assert Pattern("coarse_first", 3).layout(2) == [[(0, 0)], [(1, 0)], [(0, 1), (0, 2)], [(1, 1), (1, 2)]]
    assert Pattern("coarse_first", 3, (0, 1)).layout(2) == [[(0, 0)], [(1, 0)], [(0, 1)], [(1, 1), (0, 2)],
                                                            [(1, 2)]]
    assert Pattern("vall_e", 3).layout(2) == Pattern("coarse_first", 3).layout(2)


@pytest.mark.parametrize("name", PATTERNS)
@pytest.mark.parametrize("n_q", [1, 4])
def test_inverse_gives_back_the_codes(name, n_q):
    codes = torch.randint(0, 2048, (3, n_q, 11), generator=torch.Generator().manual_seed(n_q))
    pattern = Pattern(name, n_q)
    built = pattern.build(codes, empty_id=2048)
    assert built.sequence.shape == built.mask.shape == (3, n_q, pattern.num_steps(11))
    assert torch.equal(pattern.revert(built.sequence, 11), codes)
    assert built.mask.sum() == codes.numel()  # every code once, nothing else
    assert (built.sequence[~built.mask] == 2048).all()
    # each step holds at most one code per codebook, and a codebook's frames come in order
    steps = pattern.steps(11)
    assert (steps[:, 1:] > steps[:, :-1]).all()
    logits = torch.randn(3, n_q, pattern.num_steps(11), 5)
    assert torch.equal(pattern.revert(logits, 11)[..., 2], pattern.revert(logits[..., 2], 11))


def test_delay_places_codebook_k_frame_t_at_step_t_plus_k():
    codes = torch.arange(4 * 6).view(1, 4, 6)
    built = Pattern("delay", 4).build(codes, empty_id=-1)
    for k in range(4):
        for t in range(6):
            assert built.sequence[0, k, t + k] == codes[0, k, t]
        assert (built.sequence[0, k, :k] == -1).all() and (built.sequence[0, k, 6 + k :] == -1).all()


@pytest.mark.parametrize("name", PATTERNS)
def test_mixed_lengths_mask_only_real_codes(name):
    codes = torch.randint(0, 1024, (3, 4, 9))
    lengths = torch.tensor([9, 4, 1])
    pattern = Pattern(name, 4)
    built = pattern.build(codes, lengths, empty_id=1024, pad_id=1025)
    for b, n in enumerate(lengths.tolist()):
        alone = pattern.build(codes[b : b + 1, :, :n], empty_id=1024)
        s = pattern.num_steps(n)
        if name in ("parallel", "delay", "flatten"):  # the item alone is a prefix of its padded row
            assert torch.equal(built.sequence[b : b + 1, :, :s].masked_fill(built.sequence[b : b + 1, :, :s] == 1025,
                                                                            1024), alone.sequence)
        assert built.mask[b].sum() == 4 * n
        assert torch.equal(pattern.revert(built.sequence, 9)[b, :, :n], codes[b, :, :n])
        assert (built.sequence[b][~built.mask[b]] >= 1024).all()
    assert (built.sequence == 1025).sum() == 4 * (9 - 4) + 4 * (9 - 1)


def test_shift_right_feeds_the_previous_step():
    seq = torch.arange(12).view(1, 3, 4)
    assert shift_right(seq, 99).tolist() == [[[99, 0, 1, 2], [99, 4, 5, 6], [99, 8, 9, 10]]]


def test_bad_patterns_name_the_choices():
    with pytest.raises(ValueError, match="choose one of"):
        Pattern("interleave", 4)
    with pytest.raises(ValueError, match="needs 4 delays"):
        Pattern("delay", 4, (0, 1))
    with pytest.raises(ValueError, match="non-decreasing"):
        Pattern("delay", 3, (0, 2, 1))
    with pytest.raises(ValueError, match="codes have 4 codebooks; this delay pattern has 3"):
        Pattern("delay", 3).build(torch.zeros(1, 4, 5, dtype=torch.long), empty_id=1024)
    with pytest.raises(ValueError, match="lengths"):
        Pattern("delay", 2).build(torch.zeros(2, 2, 5, dtype=torch.long), torch.tensor([6, 1]), empty_id=1024)
    with pytest.raises(ValueError, match="not a delay pattern"):
        Pattern("delay", 2).revert(torch.zeros(1, 2, 5, dtype=torch.long), 5)


@pytest.mark.parametrize("n_q,frames", [(4, 7), (4, 3), (8, 30)])
def test_delay_code_positions_equal_transformers_musicgen(n_q, frames):
    """transformers' `build_delay_pattern_mask` on decoder input ids [BOS, codes...]: a code of codebook k,
    frame t lands at position 1 + t + k, i.e. our step t + k after the start token; only the fill
    ids and the end triangle differ (compared here: positions that hold codes, and their values)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.MusicgenDecoderConfig(vocab_size=2048, num_codebooks=n_q, hidden_size=16, ffn_dim=32,
                                                num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=64)
    musicgen = transformers.MusicgenForCausalLM(config)
    pad = 2048
    codes = torch.randint(0, 2048, (2, n_q, frames), generator=torch.Generator().manual_seed(frames))
    input_ids = torch.cat([torch.full((2, n_q, 1), pad), codes], dim=2).reshape(2 * n_q, frames + 1)
    _, pattern_mask = musicgen.build_delay_pattern_mask(input_ids, pad_token_id=pad, max_length=frames + n_q)
    theirs = pattern_mask.reshape(2, n_q, frames + n_q)[:, :, 1:]  # drop the start position
    ours = Pattern("delay", n_q).build(codes, empty_id=pad)
    holds_code = (theirs != pad) & (theirs != -1)
    assert torch.equal(holds_code, ours.mask)
    assert torch.equal(theirs[holds_code], ours.sequence[ours.mask])
