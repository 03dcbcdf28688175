import os
import subprocess
import sys
import time

import pytest

from pipeline.bench.resource_monitor import GpuSampler, ResourceMonitor, busy_pct, read_cpu_times

FAKE_SMI = """#!/bin/sh
echo "$@" > "$(dirname "$0")/args"
echo "40, 1000"
echo "[N/A], [N/A]"
echo "80, 3000"
echo "60, 2000"
exec sleep 30
"""


def _fake_smi(directory, script: str) -> None:
    directory.mkdir(exist_ok=True)
    exe = directory / "nvidia-smi"
    exe.write_text(script)
    exe.chmod(0o755)


def test_busy_pct_between_proc_stat_snapshots(tmp_path):
    before, after = tmp_path / "before", tmp_path / "after"
    before.write_text("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
    after.write_text("cpu  400 0 150 1100 150 0 0 0 20 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
    # busy (user+nice+system+irq+softirq+steal) 150 -> 550, total 1000 -> 1800; guest (20) is inside user
    assert read_cpu_times(before) == (150, 1000)
    assert busy_pct(read_cpu_times(before), read_cpu_times(after)) == pytest.approx(50.0)
    assert busy_pct(None, read_cpu_times(after)) is None
    assert read_cpu_times(tmp_path / "missing") is None


def _window(work) -> float:
    with ResourceMonitor() as monitor:
        work()
    return monitor.usage.cpu_busy_pct


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs /proc/stat")
def test_system_cpu_busy_rises_under_busy_children():
    def spin():
        loop = "import time\nt = time.perf_counter()\nwhile time.perf_counter() - t < 1.5: pass"
        children = [subprocess.Popen([sys.executable, "-c", loop]) for _ in range(os.cpu_count() or 1)]
        for child in children:
            child.wait()

    idle = _window(lambda: time.sleep(0.5))
    busy = _window(spin)  # children, not threads of this process: getrusage(SELF) would not see them
    assert 0 <= idle <= 100 and 0 <= busy <= 100
    assert busy >= 60 and busy > idle


def test_gpu_sampler_parses_fake_nvidia_smi(tmp_path, monkeypatch):
    _fake_smi(tmp_path / "bin", FAKE_SMI)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    sampler = GpuSampler(interval_ms=200)
    sampler.start()
    deadline = time.monotonic() + 5
    while len(sampler.samples) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    usage, missing = sampler.stop()  # must end the looping child (here: `sleep 30`)
    assert time.monotonic() - started < 5
    assert missing == ""
    assert (usage.busy_pct, usage.peak_mem_mib, usage.samples) == (60.0, 3000.0, 3)  # "[N/A]" line skipped
    args = (tmp_path / "bin" / "args").read_text().split()
    assert args == ["--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-lms", "200"]


def test_nvidia_smi_without_samples(tmp_path, monkeypatch):
    _fake_smi(tmp_path / "bin", "#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with ResourceMonitor() as monitor:
        time.sleep(0.2)
    assert monitor.usage.gpu is None
    assert monitor.usage.gpu_missing == "nvidia-smi gave no samples"


def test_no_nvidia_smi_on_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory
    with ResourceMonitor() as monitor:
        time.sleep(0.1)
    assert monitor.usage.gpu is None and monitor.usage.gpu_missing == "no GPU"
    if os.path.exists("/proc/stat"):
        assert 0 <= monitor.usage.cpu_busy_pct <= 100
