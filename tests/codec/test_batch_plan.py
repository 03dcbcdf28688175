"""The CUDA batch plan, run on the CPU: what a GPU run would do, observed where no GPU is.

Host syncs are counted by `codec.host_syncs`: calls of the tensor methods that wait for the device on
CUDA (`.cpu()`, `.item()`, `bool(t)`, ...), not counting those on tensors already brought to the host.
"""

import pytest
import torch

from codec import EncodedItem, load_model, random_model
from codec import model as codec_model
from codec.batch_plan import grid_length, resolve_plan
from codec.host_syncs import count_host_syncs, forward_passes
from tests.conftest import batch_independent_kernels


def batch(lengths, channels=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(len(lengths), channels, max(lengths))
    for b, n in enumerate(lengths):
        x[b, :, :n] = torch.randn(channels, n, generator=g) * 0.1
    return x


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny:24khz")


LENGTHS_24 = [24000 * 3 + 17, 24000 * 2, 7001, 30011, 51234, 321]


def test_grid_length():
    assert [grid_length(n * 320, 320) for n in (1, 8, 9, 15, 16, 17, 100, 750)] == \
        [n * 320 for n in (1, 8, 9, 15, 16, 18, 104, 768)]
    assert grid_length(1, 320) == 320 and grid_length(321, 320) == 640
    # at most 1/8 of padding, and few distinct lengths per octave
    lengths = range(24000, 48000, 7)
    padded = {grid_length(n, 320) for n in lengths}
    assert len(padded) <= 9 and all(grid_length(n, 320) < n * 1.126 + 320 for n in lengths)


def test_plan_names():
    assert resolve_plan(None, "cpu") == resolve_plan("auto", "cpu") == "cpu"
    assert resolve_plan("cuda", "cpu") == "cuda"
    with pytest.raises(ValueError, match="batch_plan"):
        resolve_plan("gpu", "cpu")


def test_cuda_plan_one_pass_one_sync_for_a_mixed_batch(tiny):
    x = batch(LENGTHS_24)
    model = tiny.set_batch_plan("cuda")
    try:
        with forward_passes(model.encoder) as shapes, count_host_syncs("cpu") as counts:
            items = model.encode(x, LENGTHS_24)
        # one pass over the whole batch, padded to the grid; the finiteness check and the codes: 2 syncs
        assert shapes == [(6, 1, grid_length(max(LENGTHS_24), 320))]
        assert sum(counts.values()) <= 2, counts
        assert [it.codes.shape[-1] for it in items] == [-(-n // 320) for n in LENGTHS_24]
        model.set_batch_plan("cpu")
        with forward_passes(model.encoder) as shapes, count_host_syncs("cpu") as counts:
            alone = model.encode(x, LENGTHS_24)
        assert len(shapes) == 6 and sum(counts.values()) >= 6  # the CPU plan: one item per pass
    finally:
        model.set_batch_plan(None)
    # the batched LSTM rounds differently from a batch of one: codes agree closely, not exactly
    same = sum(int((a.codes == b.codes).sum()) for a, b in zip(items, alone))
    assert same / sum(a.codes.numel() for a in alone) > 0.98


def test_grid_padding_is_masked_exactly(tiny, monkeypatch):
    """The grid's extra samples change no valid output: the same batch padded exactly or to the grid
    gives the same codes (with kernels that do not depend on the shape: conftest)."""
    x = batch(LENGTHS_24, seed=1)
    model = tiny.set_batch_plan("cuda")
    try:
        with batch_independent_kernels():
            grid = model.encode(x, LENGTHS_24)
            monkeypatch.setattr(codec_model, "grid_length", lambda n, multiple: n)
            exact = model.encode(x, LENGTHS_24)
    finally:
        model.set_batch_plan(None)
    assert all(torch.equal(a.codes, b.codes) for a, b in zip(grid, exact))


def test_tail_indices_are_cached_per_batch(tiny):
    x = batch(LENGTHS_24, seed=2)
    model = tiny.set_batch_plan("cuda")
    try:
        model.encode(x, LENGTHS_24)
        convs = [m for m in model.encoder.modules() if hasattr(m, "_index_cache")]
        cached = [dict(m._index_cache) for m in convs]
        assert any(v is not None for c in cached for v in c.values())
        model.encode(x, LENGTHS_24)  # the same batch again (a retried pass, verify): nothing rebuilt
        assert all(all(m._index_cache[k] is v for k, v in c.items()) for m, c in zip(convs, cached))
    finally:
        model.set_batch_plan(None)


def test_48khz_cuda_plan_syncs_per_pass():
    model = random_model("random:48khz").set_batch_plan("cuda")
    lengths = [48000 * 2 + 5000, 70000, 48000]  # chunks: full ones and partial ones of 3 lengths
    with forward_passes(model.encoder) as shapes, count_host_syncs("cpu") as counts:
        items = model.encode(batch(lengths, channels=2), lengths)
    # the finiteness check, then per pass the codes and the scales
    assert sum(counts.values()) <= 1 + 2 * len(shapes), (counts, shapes)
    assert [len(it.scales) for it in items] == [len(model.chunk_spans(n)) for n in lengths]


def test_decode_splits_by_element_count(tiny, monkeypatch):
    lengths = [24000, 36000, 12000, 30000]
    items = tiny.encode(batch(lengths, seed=3), lengths)
    whole = tiny.decode(items)
    monkeypatch.setattr(codec_model, "_MAX_ELEMENTS", 40000 * tiny.config.num_filters * 2)
    with forward_passes(tiny.decoder) as shapes, count_host_syncs("cpu") as counts:
        split = tiny.decode(items)
    assert len(shapes) == 4 and max(s[0] for s in shapes) == 1
    # decoded audio is not bit-exact across batch compositions (float rounding of batched kernels)
    assert all(torch.allclose(a, b, rtol=0, atol=1e-5) for a, b in zip(whole, split))
    assert sum(counts.values()) <= 3 + len(shapes)  # the code range check (3), then the audio once per pass


@pytest.mark.parametrize("bad", [256, -1])
def test_decode_refuses_out_of_range_codes_on_the_host(tiny, bad):
    """On CUDA an out-of-range code is a device-side assert that breaks the process: refuse it first."""
    codes = torch.zeros(2, 75, dtype=torch.long)
    broken = codes.clone()
    broken[1, 40] = bad
    items = [EncodedItem(codes, None, 24000), EncodedItem(broken, None, 24000)]
    assert tiny.config.codebook_size == 256
    with pytest.raises(ValueError, match=r"item 1: codes must lie in \[0, 256\)"):
        tiny.decode(items)


@pytest.mark.parametrize("override, message", [
    ("batch_plan=gpu", "batch_plan must be one of auto, cpu, cuda"),
    ("prefetch_bytes=0", "prefetch_bytes must be > 0"),
    ("shards_in_flight_per_actor=3", "shards_in_flight_per_actor 1 or 2"),
])
def test_job_config_refuses_bad_values(override, message):
    from pipeline.config import load_config
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])
