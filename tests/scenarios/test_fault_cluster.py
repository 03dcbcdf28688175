"""A node removed mid-run from a Ray cluster (ray.cluster_utils.Cluster, all on this machine): the
node of the actor holding shard 2, while that actor is stopped right after decoding it."""

import os
import threading
import time

import pytest

from pipeline import fault_injection
from tests.fault_scenarios import compare, demo_config, descendants, firings, read_outcome, shard_id

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head without CPUs (no actor lands where it cannot be removed) and three 1-CPU workers."""
    from ray.cluster_utils import Cluster

    fault_dir = tmp_path_factory.mktemp("planted")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    old = os.environ.get(fault_injection.ENV)
    os.environ[fault_injection.ENV] = str(fault_dir)  # the nodes' workers inherit it
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [c.add_node(num_cpus=1) for _ in range(3)]
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    yield c, workers, fault_dir
    ray.shutdown()
    c.shutdown()
    if old is None:
        os.environ.pop(fault_injection.ENV, None)
    else:
        os.environ[fault_injection.ENV] = old


def test_node_removed_mid_run(cluster, fault_inputs, tmp_path):
    from ray._private import ray_constants

    from pipeline.job import run_job

    c, workers, fault_dir = cluster
    spec, want = fault_inputs
    victim = shard_id(spec, 2)
    fault_injection.plant(fault_dir, f"pause@after_decode:{victim}")  # once: the retry elsewhere goes through
    out, lines, removed, done = tmp_path / "out", [], [], threading.Event()

    def remove_node_of_paused_actor() -> None:
        while not done.is_set() and not fault_injection.fired(fault_dir):
            time.sleep(0.05)
        if done.is_set():
            return
        pid = fault_injection.fired(fault_dir)[0].pid
        for node in workers:
            raylet = node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
            if pid in descendants(raylet, "ray::TokenizerActor"):
                c.remove_node(node)
                removed.append(node)
                return

    remover = threading.Thread(target=remove_node_of_paused_actor, daemon=True)
    remover.start()
    try:
        summary = run_job(demo_config("num_actors=2"), spec, str(out), log=lines.append)
    finally:
        done.set()
        remover.join(30)
    died = [line for line in lines if "actor died" in line]
    row = compare("node removed (actor paused after decoding)", 1, read_outcome(out), want,
                  f"{len(removed)} node removed, {len(died)} shard(s) redone")
    assert row.ok, row.problems
    assert firings(fault_dir) == {(f"pause@after_decode:{victim}#1", victim): 1}
    assert len(removed) == 1 and any(victim in line for line in died), lines
    assert summary.shards_committed == 8
    assert sum(n["Alive"] for n in ray.nodes()) == 3
