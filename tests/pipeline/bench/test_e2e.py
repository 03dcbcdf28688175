import io
import tarfile

import numpy as np
import pytest
import soundfile as sf

from pipeline.bench import stage_ceilings
from pipeline.bench.e2e import JobStages, Run, bound_line, build_corpus, run_lines
from pipeline.bench.resource_monitor import GpuUsage, Usage
from pipeline.bench.stage_ceilings import Ceilings
from pipeline.config import AudioConfig


def test_build_corpus_repeats_files_until_minutes(tmp_path):
    files = [(b"a" * 10, 10.0), (b"bb" * 10, 10.0), (b"ccc" * 10, 10.0)]
    shards, items = build_corpus(files, 1.0, tmp_path, per_shard=4)
    assert [d for _, d in items] == [10.0] * 6
    assert [data for data, _ in items] == [f[0] for f in files] * 2
    assert len(shards) == 2
    with tarfile.open(shards[1]) as tf:
        assert tf.getnames() == ["item000004.flac", "item000005.flac"]
        assert tf.extractfile("item000004.flac").read() == files[1][0]


def test_bound_line_names_the_lower_ceiling():
    cheap_cpu = Ceilings(audio_s=60.0, decode_cpu_s=0.02, resample_cpu_s=0.01)  # 2000x per core
    line = bound_line(10.0, JobStages(prepare_s=1.0, encode_s=5.0, actors=1), 60.0, cheap_cpu, cores=2)
    assert line.startswith("bound by encode: ours 10.0x rt = 83 % of the encode ceiling")
    assert "12.0x rt per actor x 1 actor" in line and "ceiling 4000x on 2 cores" in line

    dear_cpu = Ceilings(audio_s=60.0, decode_cpu_s=1.0, resample_cpu_s=1.0)  # 30x per core
    line = bound_line(50.0, JobStages(prepare_s=1.0, encode_s=0.1, actors=2), 60.0, dear_cpu, cores=2)
    assert line.startswith("bound by CPU decode + resample: ours 50.0x rt = 83 % of the CPU decode + resample")
    assert "encode ceiling 1200x (600x rt per actor x 2 actors)" in line and "decode alone 120x" in line

    line = bound_line(1.0, JobStages(prepare_s=1.0, encode_s=5.0, actors=1), 60.0, cheap_cpu, cores=2)
    assert line.startswith("bound by neither stage alone")

    # resampling on the actor: the CPU ceiling is decode alone (120x on 2 cores), encode includes resampling
    line = bound_line(100.0, JobStages(prepare_s=1.0, encode_s=0.1, actors=2), 60.0, dear_cpu, cores=2,
                      resample_on_cpu=False)
    assert line.startswith("bound by CPU decode: ours 100x rt = 83 % of the CPU decode ceiling")
    assert "resample + encode ceiling 1200x" in line and "decode alone" not in line


def test_run_lines_report_missing_gpu_and_system_wide_cpu():
    run = Run("ours", wall_s=10.0, audio_s=60.0, rows=3, padding_waste=0.25,
              usage=Usage(cpu_busy_pct=73.4, gpu=None, gpu_missing="no GPU"), peak_rss=[("actor", 700.0)])
    text = "\n".join(run_lines(run))
    assert "6.0x realtime, 3 rows, wall 10.0 s" in text
    assert "GPU busy n/a (no GPU)" in text and "our GPU memory peak n/a (CPU)" in text
    assert "CPU busy 73 % (system-wide" in text and "padding waste 25.0 %" in text and "actor 700 MiB" in text

    run.usage = Usage(cpu_busy_pct=None, gpu=GpuUsage(busy_pct=41.5, peak_mem_mib=2048.0, samples=9))
    run.device_peak_mb = 812.4
    text = "\n".join(run_lines(run))
    assert "our GPU memory peak 812 MiB (torch.cuda.max_memory_allocated)" in text and "CPU busy n/a" in text
    assert "GPU busy 42 % (mean of 9 samples), device memory 2048 MiB (nvidia-smi: device-wide" in text


def _flac(seconds: float, rate: int) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, 0.5 * np.sin(2 * np.pi * 440 * t)[:, None], rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def test_stage_ceilings_time_both_stages():
    items = [(_flac(2.0, 16000), 2.0)] * 3
    c = stage_ceilings.measure(items, 24000, 1, AudioConfig())
    assert c.audio_s == 6.0
    assert c.decode_cpu_s > 1e-9 and c.resample_cpu_s > 1e-9  # both stages actually ran and were timed
    assert c.prepare_rt == pytest.approx(6.0 / (c.decode_cpu_s + c.resample_cpu_s))


def test_stage_ceilings_reject_undecodable_bytes():
    from pipeline.audio import AudioRejected

    with pytest.raises(AudioRejected):
        stage_ceilings.measure([(b"not audio", 1.0)], 24000, 1, AudioConfig())


def test_startup_is_reported_apart_and_ratio_says_when_gpu_counts_differ():
    from pipeline.bench.e2e import ratio_line

    usage = Usage(cpu_busy_pct=50.0, gpu=None, gpu_missing="no GPU")
    base = Run("baseline", wall_s=12.0, audio_s=600.0, rows=10, padding_waste=0.3, usage=usage, startup_s=2.0, gpus=1)
    ours = Run("ours", wall_s=20.0, audio_s=600.0, rows=10, padding_waste=0.0, usage=usage, startup_s=15.0, gpus=1)
    assert base.steady_realtime == 60.0 and ours.steady_realtime == 120.0
    assert ratio_line(ours, base) == "ratio (ours / baseline): 0.60 whole run, 2.00 steady state"
    assert "start-up 15.0 s, steady state 120x realtime" in "\n".join(run_lines(ours))
    ours.gpus = 8
    assert "NOT like for like: ours on 8 GPU(s), baseline on 1" in ratio_line(ours, base)
    ours.startup_s = None
    assert ours.steady_realtime is None and "0.60 whole run, n/a steady state" in ratio_line(ours, base)
