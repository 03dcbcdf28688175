"""A node removed mid-run from a 3-node Ray cluster (ray.cluster_utils.Cluster, all on this machine)."""

import os
import random

import pytest

from tests.fault_scenarios import SEED, Killer, compare, demo_config, descendants, read_outcome

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    workers = [c.add_node(num_cpus=1) for _ in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    yield c, workers
    ray.shutdown()
    c.shutdown()


def test_node_removed_mid_run(cluster, fault_inputs, tmp_path):
    from ray._private import ray_constants

    from pipeline.job import run_job

    c, workers = cluster
    spec, want = fault_inputs
    out, lines, removed = tmp_path / "out", [], []

    def remove_node_of(pid: int) -> None:
        for node in workers:
            raylet = node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
            if node not in removed and pid in descendants(raylet, "ray::TokenizerActor"):
                c.remove_node(node)
                removed.append(node)
                return
        raise ValueError("that actor runs on the head node; pick again")

    # two actors on three 1-CPU nodes; the node of one of them goes away while shards are in flight
    remover = Killer(os.getpid(), "ray::TokenizerActor", 1, out, random.Random(SEED + 5), first=(0.0, 1.0),
                     act=remove_node_of, first_after_commit=True)
    remover.start()
    try:
        summary = run_job(demo_config("num_actors=2"), spec, str(out), log=lines.append)
    finally:
        remover.finish()
    died = sum("actor died" in line for line in lines)
    row = compare("node removed (3-node cluster)", 1, read_outcome(out), want,
                  f"{len(removed)} node removed, {died} shard(s) redone")
    assert row.ok, row.problems
    assert len(removed) == 1 and died >= 1, lines
    assert summary["shards_committed"] == 8
    assert len(ray.nodes()) == 3 and sum(n["Alive"] for n in ray.nodes()) == 2
