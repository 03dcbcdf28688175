"""The Ray connection policy: a local Ray unless a cluster is named; a named dead one fails fast.

The cluster tests start their own `ray start --head` on a free port under a private temp dir and
stop it by killing the processes whose command lines name that dir (never `ray stop`, which would
stop other programs' clusters on the machine)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from pipeline.engine.ray_connect import RayTarget, choose_target, host_port, probe
from pipeline.errors import JobFailed

ROOT = Path(__file__).resolve().parents[3]


def test_choose_target_local_unless_named():
    assert choose_target(None, {}) == RayTarget(None, "local")
    assert choose_target(None, {"RAY_ADDRESS": "  "}).local
    assert choose_target(None, {"RAY_ADDRESS": "10.0.0.1:6379"}).address == "10.0.0.1:6379"
    assert choose_target("auto", {"RAY_ADDRESS": "10.0.0.1:6379"}).address == "auto"  # explicit wins


def test_host_port_forms():
    assert host_port("10.0.0.1:6379") == ("10.0.0.1", 6379)
    assert host_port("ray://head:10001") == ("head", 10001)
    assert host_port("auto") is None and host_port("http://head:8265") is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_probe_of_a_dead_address_fails_fast():
    port = _free_port()  # nothing listens there
    started = time.monotonic()
    with pytest.raises(JobFailed, match="cannot reach the Ray cluster"):
        probe(RayTarget(f"127.0.0.1:{port}", "RAY_ADDRESS"), timeout_s=3)
    assert time.monotonic() - started < 3.5


def _env(tmp: str, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**env, "RAY_TMPDIR": tmp, "PYTHONPATH": str(ROOT), **extra}


CONNECT = ("from pipeline.engine.ray_backend import connect_ray; import ray; started = connect_ray(num_cpus=1); "
           "print('STARTED', started, ray.get_runtime_context().gcs_address.rsplit(':', 1)[-1]); ray.shutdown()")


def _connect(tmp: str, code: str = CONNECT, timeout: float = 120, **extra) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], env=_env(tmp, **extra), cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
    return done, time.monotonic() - started


def _pids_naming(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _kill_ours(tmp: str) -> None:
    for _ in range(20):
        pids = [p for p in _pids_naming(tmp) if p != os.getpid()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.5)


@pytest.fixture
def private_tmp():
    tmp = tempfile.mkdtemp(prefix="rt27-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    try:
        yield tmp
    finally:
        _kill_ours(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def test_stale_address_file_is_ignored(private_tmp):
    """`ray start` left only its address file (the cluster died): the job starts its own Ray at once."""
    dead = _free_port()
    os.makedirs(f"{private_tmp}/ray", exist_ok=True)
    Path(f"{private_tmp}/ray/ray_current_cluster").write_text(f"127.0.0.1:{dead}")
    done, seconds = _connect(private_tmp)
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("STARTED"))
    assert line.split()[1] == "True" and line.split()[2] != str(dead)
    assert seconds < 60  # ray.init() without an address would try the dead GCS for 60 s


@pytest.mark.timeout(300)
def test_a_cluster_started_by_ray_start_is_not_joined(private_tmp):
    port = _free_port()
    ray_bin = str(Path(sys.executable).with_name("ray"))
    start = subprocess.run([ray_bin, "start", "--head", f"--port={port}", f"--temp-dir={private_tmp}/ray",
                            "--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats"],
                           env=_env(private_tmp), capture_output=True, text=True, timeout=180, start_new_session=True)
    assert start.returncode == 0, start.stderr[-2000:]
    assert Path(f"{private_tmp}/ray/ray_current_cluster").is_file()
    # the test can fail: plain ray.init() joins that stranger's cluster
    joined, _ = _connect(private_tmp, "import ray; ray.init(); print('STARTED', None, "
                                      "ray.get_runtime_context().gcs_address.rsplit(':', 1)[-1]); ray.shutdown()")
    assert f"STARTED None {port}" in joined.stdout, joined.stderr[-2000:]
    done, _ = _connect(private_tmp)
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("STARTED"))
    assert line.split()[1] == "True" and line.split()[2] != str(port)
    # named explicitly (--ray-address auto: the one `ray start` started here), it is joined
    named, _ = _connect(private_tmp, CONNECT.replace("connect_ray(num_cpus=1)", "connect_ray(address='auto')"))
    assert f"STARTED False {port}" in named.stdout, named.stderr[-2000:]


def test_tokenize_with_a_dead_ray_address_fails_in_seconds(tmp_path):
    port = _free_port()
    env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{port}", "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "jobs.cli", "tokenize", "--input", str(ROOT / "demo" / "shards"),
                           "--model", "random:24khz", "--output", str(tmp_path / "out")],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - started
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[-1].startswith("audiotok: job failed: cannot reach the Ray cluster at 127.0.0.1:")
    assert seconds < 20


def test_gpu_check_env_row_uses_the_same_policy(monkeypatch):
    import pipeline.bench.gpu_check.env_row as env_row
    from pipeline.engine import ray_backend

    calls = []
    monkeypatch.setattr(ray_backend, "connect_ray", lambda **kw: calls.append(kw) or True)
    env_row.ensure_ray()
    assert calls == [{"log_to_driver": False}]
