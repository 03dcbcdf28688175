"""soxr_direct: soxr.resample's values, written into the caller's memory; Outbox.reserve puts them
into shared memory without a copy."""

import socket

import numpy as np
import pytest
import soxr

from pipeline import audio, shared_audio, soxr_direct

pytestmark = pytest.mark.skipif(not soxr_direct.available(), reason="this soxr build exports no libsoxr functions")

RATES = [(16000, 24000), (44100, 48000), (22050, 24000), (48000, 24000), (8000, 24000), (96000, 44100),
         (47999, 48000), (11025, 16000)]


def _reference(x, in_rate, out_rate, quality="HQ"):
    """soxr.resample on one plane per channel, as pipeline.audio did before soxr_direct: [C, T']."""
    planar = np.ascontiguousarray(x.T, dtype=np.float32).T
    return soxr.resample(planar, in_rate, out_rate, quality=quality).T


@pytest.mark.parametrize("in_rate,out_rate", RATES)
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_same_values_as_soxr_resample(in_rate, out_rate, channels):
    rng = np.random.default_rng(in_rate + channels)
    lengths = [1, 2, 3, 7, 480, 800, 999, 1000, 1001, 4097, int(rng.integers(5000, 120000))]
    for n in lengths:
        x = (rng.standard_normal((n, channels)) * 0.3).astype(np.float32)
        got = soxr_direct.resample(x, in_rate, out_rate, "HQ")
        want = _reference(x, in_rate, out_rate)
        assert got is not None and got.flags.c_contiguous and got.dtype == np.float32
        assert got.shape == want.shape, (n, got.shape, want.shape)
        assert np.array_equal(got, want), n


@pytest.mark.parametrize("quality", ["QQ", "LQ", "MQ", "HQ", "VHQ"])
def test_every_quality(quality):
    x = (np.random.default_rng(1).standard_normal((30011, 2)) * 0.3).astype(np.float32)
    assert np.array_equal(soxr_direct.resample(x, 44100, 48000, quality), _reference(x, 44100, 48000, quality))


def test_fewer_samples_than_predicted_moves_the_planes_together():
    # 480 frames 96 -> 44.1 kHz: 220.5 predicted as 221, soxr gives 220
    x = (np.random.default_rng(2).standard_normal((480, 2)) * 0.3).astype(np.float32)
    got = soxr_direct.resample(x, 96000, 44100)
    assert got.shape == (2, 220) and np.array_equal(got, _reference(x, 96000, 44100))


def test_writes_into_the_memory_alloc_gives():
    x = (np.random.default_rng(3).standard_normal((44100, 2)) * 0.3).astype(np.float32)
    given = []

    def alloc(n):
        given.append(np.full(n + 16, np.nan, np.float32))
        return given[-1]

    got = soxr_direct.resample(x, 44100, 48000, alloc=alloc)
    assert got.ctypes.data == given[0].ctypes.data and np.shares_memory(got, given[0])
    assert np.array_equal(got, _reference(x, 44100, 48000))


def test_audio_resample_same_with_and_without_soxr_direct(monkeypatch):
    x = (np.random.default_rng(4).standard_normal((20000, 2)) * 0.3).astype(np.float32)
    direct = audio.resample(x, 16000, 24000)
    monkeypatch.setattr(soxr_direct, "_LIB", None)
    assert soxr_direct.resample(x, 16000, 24000) is None
    fallback = audio.resample(x, 16000, 24000)
    assert np.array_equal(direct, fallback) and np.ascontiguousarray(fallback.T).shape == (2, 30000)


def _hand_over(outbox, inbox, arrays):
    child, parent = socket.socketpair()
    try:
        meta, fd = outbox.put(arrays)
        shared_audio.send_fd(child, fd)
        return inbox.take(parent, meta, [a.shape for a in arrays])
    finally:
        child.close()
        parent.close()


def test_reserved_audio_is_put_in_place_and_pieces_of_it_are_moved_safely():
    outbox, inbox = shared_audio.Outbox(keep_bytes=1 << 20), shared_audio.Inbox()
    rng = np.random.default_rng(5)
    try:
        # built in the reserved memory, put first: arrives as it is
        x = (rng.standard_normal((16000, 1)) * 0.3).astype(np.float32)
        y = audio.resample(x, 16000, 24000, alloc=outbox.reserve).T
        want = _reference(x, 16000, 24000)
        assert np.array_equal(_hand_over(outbox, inbox, [y])[0], want)
        # three unaligned pieces of one reserved buffer (a segmented mono file): each moved to its place
        buf = outbox.reserve(3001)
        buf[:] = np.arange(3001, dtype=np.float32)
        pieces = [buf[:1001].reshape(1, -1), buf[1001:2003].reshape(1, -1), buf[2003:].reshape(1, -1)]
        got = _hand_over(outbox, inbox, pieces)
        assert [g[0].tolist() for g in got] == [list(range(0, 1001)), list(range(1001, 2003)), list(range(2003, 3001))]
        # a reserved buffer that no longer fits: a new arena; what was reserved before stays readable
        big = outbox.reserve((1 << 18) - 64)
        big[:] = 1.0
        assert np.array_equal(_hand_over(outbox, inbox, [big.reshape(1, -1)])[0], big.reshape(1, -1))
        assert np.array_equal(got[0][0], np.arange(1001, dtype=np.float32))
    finally:
        outbox.close()
        inbox.close()
