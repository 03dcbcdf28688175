"""Placement from a snapshot of the nodes, without Ray."""

from pipeline.config import load_config
from pipeline.engine.placement import ActorRequest, Node, capacity, decoder_processes, plan_actors, unplaceable
from tests.conftest import REPO


def preset(name: str, *overrides: str):
    return load_config(REPO / "configs" / name, list(overrides))


def test_preset_on_a_node_smaller_than_it_asks_is_capped_and_says_so():
    placement = plan_actors(preset("encodec_24khz.yaml"), [Node("n0", cpus=2)], shards=5)
    assert placement.request == ActorRequest(num_cpus=2.0) and placement.count == 1
    assert any("cpus_per_actor 4 capped at 2" in n for n in placement.notes)
    assert any("no node has a GPU: running on CPUs" in n for n in placement.notes)


def test_gpu_nodes_hold_min_of_gpus_and_cpus():
    cfg = preset("encodec_24khz.yaml")  # 1 GPU and 4 CPUs per actor
    nodes = [Node("a", cpus=16, gpus=2), Node("b", cpus=8, gpus=4), Node("cpu-only", cpus=64)]
    placement = plan_actors(cfg, nodes, shards=100)
    assert placement.request == ActorRequest(num_cpus=4.0, num_gpus=1.0)
    assert placement.count == 2 + 2  # b: 4 GPUs but only 8 CPUs -> 2 actors, and the log says so
    assert any(n.startswith("node b: 2 actor(s) for 4 GPU(s)") for n in placement.notes)
    assert plan_actors(cfg, nodes, shards=3).count == 3  # never more actors than shards


def test_gpus_are_a_requirement():
    cuda = preset("encodec_24khz.yaml", "device=cuda")
    placement = plan_actors(cuda, [Node("n0", cpus=8)], shards=4)
    assert placement.count == 0 and placement.request.num_gpus == 1.0
    assert "each actor asks 1 GPU(s) and 4 CPU(s) per actor; the nodes have: n0: 8 CPUs, 0 GPUs" == \
        unplaceable(placement.request, [Node("n0", cpus=8)])
    two = preset("encodec_24khz.yaml", "gpus_per_actor=2")
    assert plan_actors(two, [Node("a", 16, 1), Node("b", 16, 1)], shards=4).count == 0


def test_num_actors_above_what_fits_starts_what_fits():
    cfg = preset("encodec_24khz.yaml", "num_actors=8")
    placement = plan_actors(cfg, [Node("a", cpus=16, gpus=2)], shards=20)
    assert placement.count == 2 and any("num_actors 8: the nodes hold 2 now" in n for n in placement.notes)


def test_capacity_and_decoder_share():
    request = ActorRequest(num_cpus=4.0, num_gpus=1.0)
    assert capacity(request, [Node("a", 16, 1), Node("b", 3, 8)]) == 1
    cfg = preset("encodec_24khz.yaml")
    assert decoder_processes(cfg, request, Node("a", 16, 1)) == 15  # one actor on the node keeps 1 core
    assert decoder_processes(cfg, ActorRequest(num_cpus=2.0), Node("c", 2)) == 1
