"""How busy the machine was over a timed window: system-wide CPU busy % and GPU busy % / memory.

    with ResourceMonitor() as monitor:
        work()
    monitor.usage  # Usage(cpu_busy_pct, gpu, gpu_missing)

CPU: jiffies of the aggregate `cpu` line of /proc/stat read when the window opens and when it closes;
busy = 1 - (idle + iowait) / total, in % of all cores, counting every process on the machine (Ray
actors and their decoder processes too, which getrusage in the driver does not see). None where
/proc/stat does not exist.

GPU: `nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -lms 200`
runs in the background while the window is open; every line it prints is one GPU at one instant,
e.g. "37, 1024": the % of the last sample period in which a kernel was running, and MiB in use by all
processes on that device. busy_pct is the mean over lines, peak_mem_mib the largest memory of any one
line. No nvidia-smi on PATH, or no parsable line, gives gpu None and the reason in gpu_missing.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

PROC_STAT = Path("/proc/stat")
GPU_QUERY = ["--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]


@dataclass(frozen=True)
class GpuUsage:
    busy_pct: float  # mean utilization.gpu over all samples, %
    peak_mem_mib: float  # largest memory.used of one GPU in one sample, MiB
    samples: int


@dataclass(frozen=True)
class Usage:
    cpu_busy_pct: float | None  # system-wide, all cores, over the window
    gpu: GpuUsage | None
    gpu_missing: str = ""  # why gpu is None: "no GPU" or "nvidia-smi gave no samples"


def read_cpu_times(path: Path = PROC_STAT) -> tuple[int, int] | None:
    """(busy, total) jiffies summed over all cores since boot; None without /proc/stat.

    Fields of the `cpu` line: user nice system idle iowait irq softirq steal [guest guest_nice];
    guest time is already counted in user/nice, so total is the sum of the first eight.
    """
    try:
        line = path.read_text().splitlines()[0]
    except OSError:
        return None
    fields = [int(v) for v in line.split()[1:9]]
    total = sum(fields)
    return total - fields[3] - fields[4], total


def busy_pct(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """CPU busy % between two read_cpu_times() snapshots; None if either is missing or no time passed."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return 100.0 * (after[0] - before[0]) / (after[1] - before[1])


def parse_gpu_line(line: str) -> tuple[float, float] | None:
    """"37, 1024" -> (37.0, 1024.0); None for anything else ("[N/A], [N/A]", error text)."""
    parts = [p.strip() for p in line.split(",")]
    try:
        return (float(parts[0]), float(parts[1])) if len(parts) == 2 else None
    except ValueError:
        return None


class GpuSampler:
    """nvidia-smi in a child process, its lines parsed by a reader thread into `samples`."""

    def __init__(self, interval_ms: int = 200):
        self.interval_ms = interval_ms
        self.samples: list[tuple[float, float]] = []  # (busy %, memory MiB), one per GPU per period
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        exe = shutil.which("nvidia-smi")
        if exe is None:
            return
        self._proc = subprocess.Popen([exe, *GPU_QUERY, "-lms", str(self.interval_ms)], stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True)
        self._thread = threading.Thread(target=self._read, args=(self._proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            sample = parse_gpu_line(line)
            if sample is not None:
                self.samples.append(sample)

    def stop(self) -> tuple[GpuUsage | None, str]:
        """(usage, "") or (None, why not)."""
        if self._proc is None:
            return None, "no GPU"
        self._proc.terminate()
        self._proc.wait(timeout=10)
        self._thread.join(timeout=10)
        if not self.samples:
            return None, "nvidia-smi gave no samples"
        busy = sum(s[0] for s in self.samples) / len(self.samples)
        return GpuUsage(busy, max(s[1] for s in self.samples), len(self.samples)), ""


class ResourceMonitor:
    """Context manager: CPU and GPU usage over the `with` block, in `usage` afterwards."""

    def __init__(self, gpu_interval_ms: int = 200):
        self.gpu = GpuSampler(gpu_interval_ms)
        self.usage: Usage | None = None
        self._cpu0: tuple[int, int] | None = None

    def __enter__(self):
        self.gpu.start()
        self._cpu0 = read_cpu_times()
        return self

    def __exit__(self, *exc) -> None:
        cpu = busy_pct(self._cpu0, read_cpu_times())
        gpu, missing = self.gpu.stop()
        self.usage = Usage(cpu, gpu, missing)
