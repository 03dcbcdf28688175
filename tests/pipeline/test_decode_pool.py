"""pipeline.decode_pool without Ray: same results as in-process decoding, crashes cost one file."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pipeline import audio as audio_prep
from pipeline.config import AudioConfig
from pipeline.decode_child import FAULTS_ENV
from pipeline.decode_pool import DecodePool, DecoderError
from pipeline.records import Sample
from tests.conftest import REPO, corpus_file

FILES = ["speech/librivox_0890_16k.flac", "music/asc_frontiers_30s_22k_orig.mp3", "speech/librivox_0920_16k.ogg",
         "edge/6ch_alsa_FL_FR_FC_noise_RL_RR_48k.wav", "edge/short_50ms_wesnoth_battle-epic_44k_stereo.flac"]


def samples(*keys):
    out = [Sample(f"k{i}", "src", corpus_file(p).read_bytes(), p.rsplit(".", 1)[1], {"text": p})
           for i, p in enumerate(FILES)]
    out += [Sample(k, "src", corpus_file(FILES[0]).read_bytes(), "flac") for k in keys]
    out += [Sample("junk", "src", b"not audio" * 100, "wav"),
            Sample("told", "src", None, "", {}, ("unsafe_member", "x"))]
    return out


@pytest.fixture
def faults(monkeypatch):
    def plant(spec):
        monkeypatch.setenv(FAULTS_ENV, spec)
    return plant


@pytest.mark.parametrize("rate,channels", [(24000, 1), (48000, 2)])
def test_same_results_as_decoding_in_process(rate, channels):
    cfg = AudioConfig(max_duration_s=10.0)
    pool = DecodePool(cfg, rate, channels, workers=2)
    try:
        batch = samples()
        results, stats = pool.prepare_all(batch)
    finally:
        pool.close()
    assert stats["decoder_restarts"] == 0 and stats["decoder_peak_rss_mb"] > 0
    for sample, (segments, rejections) in zip(batch, results):
        want_segments, want_rejections = audio_prep.prepare(sample, cfg, rate, channels)
        assert [(s.key, s.start_s, s.duration_s, s.meta) for s in segments] == \
               [(s.key, s.start_s, s.duration_s, s.meta) for s in want_segments]
        assert all(np.array_equal(a.audio, b.audio) and a.audio.flags.writeable
                   for a, b in zip(segments, want_segments))
        assert [(r.key, r.reason) for r in rejections] == [(r.key, r.reason) for r in want_rejections]


def test_crashing_file_is_retried_then_rejected_and_the_rest_decoded(faults):
    faults("segv:crash-segv,abort:crash-abort,segv-once:crash-once")
    pool = DecodePool(AudioConfig(max_duration_s=10.0, decoder_crash_retries=2), 24000, 1, workers=2)
    try:
        batch = samples("crash-segv", "crash-abort", "crash-once")
        results, stats = pool.prepare_all(batch)
    finally:
        pool.close()
    out = {s.key: r for s, r in zip(batch, results)}
    for key, code in (("crash-segv", -11), ("crash-abort", -6)):
        (rejection,) = out[key][1]
        assert rejection.reason == "decoder_crash"
        assert f"exit code {code}" in rejection.detail and "try 3" in rejection.detail
    assert len(out["crash-once"][0]) == 1 and not out["crash-once"][1]
    assert all(out[f"k{i}"][0] for i in range(4)) and out["junk"][1][0].reason == "undecodable"
    assert stats["decoder_restarts"] == 3 + 3 + 1  # one replaced process per crash, nothing else


def test_hanging_file_times_out_without_retry(faults):
    faults("hang:crash-hang")
    pool = DecodePool(AudioConfig(decode_timeout_s=1.5), 24000, 1, workers=1)
    started = time.monotonic()
    try:
        results, stats = pool.prepare_all(samples("crash-hang"))
    finally:
        pool.close()
    (rejection,) = results[len(FILES)][1]
    assert rejection.reason == "decoder_crash" and "decode_timeout_s 1.5" in rejection.detail
    assert stats["decoder_restarts"] == 1 and time.monotonic() - started < 20


def test_python_exception_in_the_decoder_is_our_bug_and_raises(monkeypatch):
    monkeypatch.setenv(FAULTS_ENV, "raise:crash-raise")
    pool = DecodePool(AudioConfig(), 24000, 1, workers=2)
    try:
        with pytest.raises(DecoderError, match="'crash-raise'.*failed in our code"):
            pool.prepare_all(samples("crash-raise"))
        results, _ = pool.prepare_all(samples())  # usable again: no stale replies are read
        assert results[0][0] and not results[0][1]
    finally:
        pool.close()


def test_decoders_exit_when_their_parent_is_killed(tmp_path):
    """An actor SIGKILLed (by Ray, the OOM killer, a lost node) must not leave decoders behind."""
    script = (
        "import sys, time\n"
        "from pipeline.config import AudioConfig\nfrom pipeline.decode_pool import DecodePool\n"
        "from pipeline.records import Sample\n"
        "pool = DecodePool(AudioConfig(), 24000, 1, workers=2)\n"
        f"data = open({str(corpus_file(FILES[0]))!r}, 'rb').read()\n"
        "pool.prepare_all([Sample('a', 's', data, 'flac'), Sample('b', 's', data, 'flac')])\n"
        "print(' '.join(str(w.proc.pid) for w in pool.workers), flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert len(pids) == 2
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(os.path.exists(f"/proc/{p}") for p in pids):
        time.sleep(0.1)
    assert not any(os.path.exists(f"/proc/{p}") for p in pids)


def test_segments_are_views_of_the_decoders_arenas_freed_for_reuse_and_outliving_the_decoder():
    import gc

    pool = DecodePool(AudioConfig(max_duration_s=10.0), 24000, 1, workers=1)
    batch = samples()[:3]
    try:
        for _ in range(20):  # taken and dropped each time: the space is freed and written again
            pool.prepare_all(batch)
            gc.collect()
        assert sorted(pool.workers[0].inbox.arenas) == [0]
        held = []
        for _ in range(20):  # held: the arena is never written over, others are made
            results, _ = pool.prepare_all(batch)
            held += [s.audio for segments, _ in results for s in segments]
        worker = pool.workers[0]
        assert len(worker.inbox.arenas) > 1 and all(a.base is not None for a in held)  # views, no copies
        copies = [a.copy() for a in held[:3]]
        want = [s.audio for segments, _ in (audio_prep.prepare(s, pool.cfg, 24000, 1) for s in batch)
                for s in segments]
        assert all(np.array_equal(a, b) for a, b in zip(copies, want))
        os.kill(worker.proc.pid, signal.SIGKILL)  # the decoder dies: what the actor holds stays intact
        worker.proc.wait()
        results, stats = pool.prepare_all(batch)
        assert stats["decoder_restarts"] == 1 and all(segments for segments, _ in results)
    finally:
        pool.close()
    assert all(np.array_equal(a, b) for a, b in zip(held[:3], copies))
    assert all(np.isfinite(a).all() for a in held)


def test_several_files_per_request_and_a_crash_inside_one_costs_only_that_file(faults):
    """Files go to a decoder several per request; the decoder says which one it is on, so a crash in
    the middle of a request is that file's (retried, then rejected) and the others of the request are
    decoded as if alone."""
    faults("segv:crash-segv")
    cfg = AudioConfig(max_duration_s=10.0, decoder_crash_retries=1)
    pool = DecodePool(cfg, 24000, 1, workers=1)
    batch = samples("a", "crash-segv", "b")
    batch[5:5] = [Sample(f"pad{i}", "src", corpus_file(FILES[0]).read_bytes(), "flac") for i in range(6)]
    try:
        results, stats = pool.prepare_all(batch)
        requests = pool.workers[0].seq
    finally:
        pool.close()
    decoded = [s for s in batch if s.data and s.key != "crash-segv"]
    assert requests < len(decoded)  # several files per request
    assert stats["decoder_restarts"] == 2  # the first try and its one retry: nothing else
    for sample, (segments, rejections) in zip(batch, results):
        if sample.key == "crash-segv":
            assert [r.reason for r in rejections] == ["decoder_crash"] and "try 2" in rejections[0].detail
            continue
        want_segments, want_rejections = audio_prep.prepare(sample, cfg, 24000, 1)
        assert [s.key for s in segments] == [s.key for s in want_segments]
        assert all(np.array_equal(a.audio, b.audio) for a, b in zip(segments, want_segments))
        assert [(r.key, r.reason) for r in rejections] == [(r.key, r.reason) for r in want_rejections]
