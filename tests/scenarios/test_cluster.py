"""The job on simulated clusters (ray.cluster_utils.Cluster; nodes declaring logical GPUs are
scheduled as GPU nodes and their actors run on the CPU): placement, elasticity, GPU honesty."""

from __future__ import annotations

import os
import threading
import time

import pytest

from pipeline.config import load_config
from pipeline.errors import JobFailed
from tests.conftest import REPO
from tests.fault_scenarios import make_shards

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

DEMO = str(REPO / "demo" / "shards" / "demo-000.tar")


@pytest.fixture
def cluster():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    made = []

    def start(head_cpus: int = 1, head_gpus: int = 0, env: dict | None = None) -> Cluster:
        old = {k: os.environ.get(k) for k in env or {}}
        os.environ.update(env or {})  # the nodes' processes inherit it
        c = Cluster(initialize_head=True, head_node_args={"num_cpus": head_cpus, "num_gpus": head_gpus})
        made.append((c, old))
        ray.init(address=c.address, log_to_driver=False)
        return c

    yield start
    ray.shutdown()
    for c, old in made:
        c.shutdown()
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def run(cfg, spec, out, lines=None):
    from pipeline.job import run_job

    return run_job(cfg, spec, str(out), log=(lines.append if lines is not None else lambda m: None))


def test_preset_on_a_node_smaller_than_it_asks_runs(cluster, tmp_path):
    cluster(head_cpus=2)
    cfg = load_config(REPO / "configs" / "encodec_24khz.yaml", ["model=random:24khz", "placement_timeout_s=60"])
    lines: list[str] = []
    summary = run(cfg, DEMO, tmp_path / "out", lines)
    assert summary.rows > 0 and summary.shards_committed == 1
    assert any("cpus_per_actor 4 capped at 2" in line for line in lines)
    assert any("no node has a GPU: running on CPUs" in line for line in lines)
    assert any("2 torch thread(s)" in line for line in lines)


def test_impossible_request_fails_naming_what_was_asked_and_what_is_there(cluster, tmp_path):
    cluster(head_cpus=2)
    cfg = load_config(REPO / "configs" / "test.yaml", ["device=cuda", "placement_timeout_s=2"])
    started = time.monotonic()
    lines: list[str] = []
    with pytest.raises(JobFailed, match=r"no actor could start within placement_timeout_s \(2 s\): each actor asks "
                                         r"1 GPU\(s\) and 1 CPU\(s\) per actor; the nodes have: \w+: 2 CPUs, 0 GPUs"):
        run(cfg, DEMO, tmp_path / "out", lines)
    assert time.monotonic() - started < 60
    assert any("no node can hold an actor now" in line and "asking for one" in line for line in lines)


def test_gpu_actor_without_cuda_fails_unless_simulated(cluster, tmp_path):
    c = cluster(head_cpus=2, head_gpus=1)
    cfg = load_config(REPO / "configs" / "test.yaml", ["device=auto", "placement_timeout_s=30"])
    with pytest.raises(JobFailed, match=r"holds GPU\(s\) \[.*\] but cannot use CUDA: torch .* is a CPU-only build"):
        run(cfg, DEMO, tmp_path / "honest")
    ray.shutdown()
    c.shutdown()

    cluster(head_cpus=2, head_gpus=1, env={"AUDIOTOK_TEST_SIMULATED_GPUS": "1"})
    lines: list[str] = []
    summary = run(cfg, DEMO, tmp_path / "simulated", lines)
    assert summary.rows > 0
    import json

    prov = json.loads((tmp_path / "simulated" / "_provenance.json").read_text())
    assert prov["simulated_gpu"] is True and prov["device"] == "cpu" and prov["torch_threads"] == 1
    assert any("simulated GPU: encoding on the CPU" in line for line in lines)


def test_node_added_mid_run_gets_an_actor_and_shards(cluster, tmp_path):
    from pipeline import writer

    c = cluster(head_cpus=1, head_gpus=1, env={"AUDIOTOK_TEST_SIMULATED_GPUS": "1"})
    spec = make_shards(tmp_path / "in", shards=30, per_shard=2)
    cfg = load_config(REPO / "configs" / "test.yaml", ["device=cuda", "num_actors=0", "decode_threads=1",
                                                       "prefetch_shards=0", "progress_interval_s=0.5"])
    out = tmp_path / "out"
    lines: list[str] = []

    result: dict = {}

    def job():  # the job runs in a thread; this (main) thread plays the autoscaler
        try:
            result["summary"] = run(cfg, spec, out, lines)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            result["error"] = exc

    worker = threading.Thread(target=job)
    worker.start()
    deadline = time.monotonic() + 300
    while not writer.committed_shards(str(out)) and worker.is_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    c.add_node(num_cpus=1, num_gpus=1)  # once the first shard is committed, a GPU node joins
    worker.join(600)
    assert "error" not in result, result.get("error")
    summary = result["summary"]
    assert summary.rows == 60 and summary.actors == 2
    assert any("the cluster grew: 1 more actor(s)" in line for line in lines)
    nodes = {r.node_id for r in writer.committed_shards(str(out)).values()}
    assert len(nodes) == 2, "the new node ran no shard"


def test_unreachable_actor_is_confirmed_dead_before_its_shard_moves(cluster, monkeypatch):
    from pipeline.engine import ray_backend
    from pipeline.engine.placement import ActorRequest

    cluster(head_cpus=2)

    @ray.remote(num_cpus=0)
    class Sleeper:
        def run(self):
            return "done, but the driver lost sight of the actor"

    from pipeline.shard_actor import ActorSetup, ShardWork

    backend = ray_backend.RayBackend(ShardWork, (load_config(REPO / "configs" / "test.yaml"), "/nonexistent",
                                                 ActorSetup(ActorRequest(1.0), "run", None)), ActorRequest(1.0))
    handle = Sleeper.remote()
    ref = handle.run.remote()
    backend.actors[7], backend.waiting[ref] = handle, (7, "s0")
    real_get = ray.get

    def get(r, *a, **kw):
        if r is ref:
            raise ray.exceptions.ActorUnavailableError("network partition", None)
        return real_get(r, *a, **kw)

    monkeypatch.setattr(ray_backend.ray, "get", get)
    (event,) = backend.poll(5.0) or backend.poll(5.0)
    assert type(event).__name__ == "ActorLost" and "unreachable" in event.error
    assert ray_backend.get_actor(handle._actor_id.hex()).state == "DEAD"
